//! GSN `perform_gsn` (spec: `gsn-spec.md`): noise and data covariances with cross-validated
//! shrinkage, nearest-PSD projection, the biconvex refinement and ncsnr, for even data, uneven
//! (NaN-padded) trials and per-unit missing data.
//!
//! What runs where: the shrinkage-NLL scorer (51 batched Cholesky factorisations + triangular
//! solves per covariance) runs on the resolved backend ([`crate::backend::Backend`]); the
//! covariance GEMMs, projections and eigendecompositions run on the CPU (faer). [`result`]
//! writes and reads the result file.

pub mod calc;
pub mod eig_scorer;
pub mod estimate;
pub mod psd;
pub mod result;
pub mod rng;
pub mod shrink;

use crate::backend::Backend;
use crate::device::{gsn_device, Device};
use crate::dispatch::{self, Job};
use crate::error::{Error, Result};
use crate::Dtype;
use ndarray::{Array1, Array2, ArrayView2, ArrayView3, ArrayViewD};
use shrink::Scorer;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How NaN data are handled (only consulted when the data contain NaN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Uneven {
    /// Whole-trial NaN padding: a NaN in any unit invalidates that trial (spec §10).
    #[default]
    Fast,
    /// Per-unit missingness with pairwise estimates (spec §11).
    Missing,
}

impl FromStr for Uneven {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fast" => Ok(Uneven::Fast),
            "missing" => Ok(Uneven::Missing),
            "reference" => Err(Error::UnknownOption(
                "uneven 'reference' (the legacy path) is not provided: it agrees with 'fast' to ~1e-15; use fast".into(),
            )),
            _ => Err(Error::UnknownOption(format!("uneven '{s}': expected fast or missing"))),
        }
    }
}

/// An optional output of [`perform_gsn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReturnItem {
    /// Raw noise covariance.
    CN,
    /// Raw signal covariance.
    CS,
    /// Final noise covariance.
    CNb,
    /// Final signal covariance.
    CSb,
    /// Eigenvectors of cSb.
    EigvecsSignal,
    /// Eigenvalues of cSb.
    EigvalsSignal,
    /// Eigenvectors of the difference matrix.
    EigvecsDifference,
    /// Eigenvalues of the difference matrix.
    EigvalsDifference,
}

impl ReturnItem {
    /// Every item with its reference name.
    pub const ALL: [(ReturnItem, &'static str); 8] = [
        (ReturnItem::CN, "cN"),
        (ReturnItem::CS, "cS"),
        (ReturnItem::CNb, "cNb"),
        (ReturnItem::CSb, "cSb"),
        (ReturnItem::EigvecsSignal, "eigvecs_signal"),
        (ReturnItem::EigvalsSignal, "eigvals_signal"),
        (ReturnItem::EigvecsDifference, "eigvecs_difference"),
        (ReturnItem::EigvalsDifference, "eigvals_difference"),
    ];
    /// The reference's key name.
    pub fn name(self) -> &'static str {
        ReturnItem::ALL
            .iter()
            .find(|(i, _)| *i == self)
            .map(|x| x.1)
            .unwrap_or("?")
    }
    /// Parses a comma-separated list of names.
    pub fn parse_list(s: &str) -> Result<Vec<ReturnItem>> {
        s.split(',')
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
            .map(str::parse)
            .collect()
    }
}

impl FromStr for ReturnItem {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ReturnItem::ALL.iter().find(|(_, n)| *n == s).map(|x| x.0).ok_or_else(|| {
            Error::UnknownOption(format!(
                "returns item '{s}': expected cN, cS, cNb, cSb, eigvecs_signal, eigvals_signal, eigvecs_difference or eigvals_difference"
            ))
        })
    }
}

impl fmt::Display for ReturnItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Options of [`perform_gsn`], named after the reference's `opt` fields.
#[derive(Debug, Clone)]
pub struct GsnOptions {
    /// Shrink (cross-validated over the levels) or not (`[1.0]` only).
    pub wantshrinkage: bool,
    /// Explicit levels; override the grid and `wantshrinkage`.
    pub shrink_levels: Option<Vec<f64>>,
    /// NaN handling.
    pub uneven: Uneven,
    /// Optional outputs (default cN, cS, cNb, cSb).
    pub returns: Vec<ReturnItem>,
    /// Where the NLL scorer runs.
    pub device: Device,
    /// Precision (f32 input is rounded to f32; the CPU computes in f64).
    pub dtype: Dtype,
    /// Memory budget in bytes.
    pub max_memory: Option<u64>,
    /// Polled between stages and biconvex iterations: once set, the run stops with
    /// [`crate::Error::Interrupted`].
    pub cancel: Option<crate::Cancel>,
}

impl Default for GsnOptions {
    fn default() -> Self {
        GsnOptions {
            wantshrinkage: true,
            shrink_levels: None,
            uneven: Uneven::Fast,
            returns: vec![
                ReturnItem::CN,
                ReturnItem::CS,
                ReturnItem::CNb,
                ReturnItem::CSb,
            ],
            device: Device::Auto,
            dtype: Dtype::F64,
            max_memory: None,
            cancel: None,
        }
    }
}

impl GsnOptions {
    /// The levels to score.
    pub fn levels(&self) -> Result<Vec<f64>> {
        let l = match &self.shrink_levels {
            Some(l) => l.clone(),
            None if self.wantshrinkage => shrink::default_levels(),
            None => vec![1.0],
        };
        shrink::check_levels(&l)?;
        Ok(l)
    }
}

/// What [`perform_gsn`] returns (names as in the reference dict).
#[derive(Debug, Clone, Default)]
pub struct GsnResult {
    /// Noise mean, `(1, N)` zeros.
    pub mn_n: Array2<f64>,
    /// Signal mean, `(1, N)`.
    pub mn_s: Array2<f64>,
    /// Noise-ceiling SNR per unit.
    pub ncsnr: Array1<f64>,
    /// Chosen noise shrinkage level.
    pub shrinklevel_n: f64,
    /// Chosen data shrinkage level.
    pub shrinklevel_d: f64,
    /// Biconvex passes that did not converge.
    pub numiters: usize,
    /// Raw noise covariance.
    pub c_n: Option<Array2<f64>>,
    /// Raw signal covariance.
    pub c_s: Option<Array2<f64>>,
    /// Final noise covariance.
    pub c_nb: Option<Array2<f64>>,
    /// Final signal covariance.
    pub c_sb: Option<Array2<f64>>,
    /// Eigenvectors of cSb (columns, descending eigenvalues).
    pub eigvecs_signal: Option<Array2<f64>>,
    /// Eigenvalues of cSb, descending.
    pub eigvals_signal: Option<Array1<f64>>,
    /// Eigenvectors of the difference matrix.
    pub eigvecs_difference: Option<Array2<f64>>,
    /// Eigenvalues of the difference matrix, descending.
    pub eigvals_difference: Option<Array1<f64>>,
    /// NLL curve of the noise covariance (diagnostic).
    pub nll_n: Vec<f64>,
    /// NLL curve of the data covariance (diagnostic).
    pub nll_d: Vec<f64>,
    /// Warnings emitted (also logged).
    pub warnings: Vec<String>,
    /// Backend of the scorer.
    pub device: String,
    /// Wall time per stage.
    pub timings: Vec<(String, Duration)>,
}

struct GsnJob<'a> {
    data: ArrayView3<'a, f64>,
    opt: &'a GsnOptions,
    levels: &'a [f64],
}

impl Job for GsnJob<'_> {
    type Output = GsnResult;
    fn run<B: Backend>(&self, be: &B) -> Result<GsnResult> {
        let scorer = Scorer {
            backend: be,
            dtype: self.opt.dtype,
        };
        estimate::run(self.data, self.opt, self.levels, &scorer)
    }
}

/// N × N f64 matrices [`perform_gsn`] holds at its peak besides the Cholesky scorer's level
/// stacks, at most: covariances, their eigendecompositions, the biconvex loop's iterates and the
/// one-decomposition scorer's working set. Measured peak RSS growth on the CPU (N = 1000, 2000,
/// 3000; C = 200, T = 3; even and missing data, default and all optional outputs): 14–22 N × N
/// matrices.
pub const PEAK_SQUARES: u64 = 24;

/// The host memory [`perform_gsn`] plans for `n` units, `c` conditions and `t` trials besides the
/// Cholesky scorer's level stacks: [`PEAK_SQUARES`] `n × n` f64 matrices and four copies of the
/// data's size (an f32 run's rounded copy, trial means, residuals, held-out points).
pub fn host_bytes(n: usize, c: usize, t: usize) -> u64 {
    8 * (PEAK_SQUARES * (n * n) as u64 + 4 * (n * c * t) as u64)
}

/// Runs GSN on `data` (`N units × C conditions × T trials`, NaN = missing).
///
/// Errors: T < 2, C < 2, N = 0, Inf anywhere, NaN data whose conditions lack valid trials
/// (fast mode), and device failures (under `auto` the scorer falls back to the CPU).
pub fn perform_gsn(data: ArrayView3<f64>, opt: &GsnOptions) -> Result<GsnResult> {
    let (n, c, t) = data.dim();
    if t < 2 {
        return Err(Error::InvalidInput(
            "Number of trials must be at least 2.".into(),
        ));
    }
    if c < 2 {
        return Err(Error::InvalidInput(format!(
            "GSN needs at least 2 conditions to estimate the data covariance, got {c}"
        )));
    }
    if n == 0 {
        return Err(Error::InvalidInput("data has no units".into()));
    }
    if let Some(((i, j, k), v)) = data.indexed_iter().find(|(_, v)| v.is_infinite()) {
        return Err(Error::NonFinite(format!(
            "data has {v} at [{i}, {j}, {k}]; only NaN (missing) is allowed"
        )));
    }
    if opt.dtype == Dtype::F32 {
        if let Some(((i, j, k), v)) = data
            .indexed_iter()
            .find(|(_, v)| v.is_finite() && (**v as f32).is_infinite())
        {
            return Err(Error::NonFinite(format!(
                "data has {v:e} at [{i}, {j}, {k}], which overflows float32; use dtype f64 or rescale"
            )));
        }
    }
    let levels = opt.levels()?;
    // the N × N matrices live on the host whatever runs the scorer: refused up front when they
    // cannot fit (on an explicit GPU max_memory is the device's budget, the host's is what the OS
    // has); on the CPU the scorer's level stacks get what they leave
    let resident = host_bytes(n, c, t);
    let host_budget = match (&opt.device, opt.max_memory) {
        (Device::Gpu(_), _) | (_, None) => crate::device::memory::default_cpu_budget(),
        (_, Some(m)) => m,
    };
    let one_level = 8 * (2 * n * n + n * c * t) as u64;
    if resident + one_level > host_budget {
        return Err(Error::OutOfMemory(format!(
            "GSN on {n} units holds about {} of N x N matrices and working arrays at once ({} with one scorer level) but the memory budget is {}; raise max_memory or score fewer units",
            crate::device::memory::format_size(resident),
            crate::device::memory::format_size(resident + one_level),
            crate::device::memory::format_size(host_budget)
        )));
    }
    let flops = 2.0 * levels.len() as f64 * (n as f64).powi(3) / 3.0;
    let device = gsn_device(&opt.device, flops);
    let max_memory = if device == Device::Cpu {
        Some(host_budget - resident)
    } else {
        opt.max_memory
    };
    // f32 rounds its input first; f64 uses the data as given (no copy)
    let data: ndarray::CowArray<f64, ndarray::Ix3> = match opt.dtype {
        Dtype::F64 => data.into(),
        Dtype::F32 => data.mapv(|v| v as f32 as f64).into(),
    };
    let job = GsnJob {
        data: data.view(),
        opt,
        levels: &levels,
    };
    let ran = dispatch::run(&device, opt.dtype, flops, max_memory, "scorer", &job)?;
    let mut r = ran.output;
    r.device = ran.device;
    r.warnings.extend(ran.fallback);
    if opt.dtype == Dtype::F32 {
        let round = |a: &mut Array2<f64>| a.mapv_inplace(|v| v as f32 as f64);
        round(&mut r.mn_s);
        r.ncsnr.mapv_inplace(|v| v as f32 as f64);
        if let Some(a) = r.c_n.as_mut() {
            round(a);
        }
        if let Some(a) = r.c_s.as_mut() {
            round(a);
        }
    }
    Ok(r)
}

struct CalcJob<'a> {
    data: ArrayViewD<'a, f64>,
    leaveout: usize,
    levels: &'a [f64],
    wantfull: bool,
}

impl Job for CalcJob<'_> {
    type Output = calc::ShrunkCov;
    fn run<B: Backend>(&self, be: &B) -> Result<calc::ShrunkCov> {
        let scorer = Scorer {
            backend: be,
            dtype: Dtype::F64,
        };
        calc::calc_shrunken_covariance_on(
            self.data.view(),
            self.leaveout,
            self.levels,
            self.wantfull,
            &scorer,
        )
    }
}

/// The stand-alone `calc_shrunken_covariance` (spec §14) with its scorer on `device`: 2-D data
/// (observations × variables) or 3-D (observations × variables × cases, NaN rows allowed).
pub fn calc_shrunken_covariance(
    data: ArrayViewD<f64>,
    leaveout: usize,
    levels: &[f64],
    wantfull: bool,
    device: &Device,
) -> Result<calc::ShrunkCov> {
    shrink::check_levels(levels)?;
    let nvar = data.shape().get(1).copied().unwrap_or(1);
    // the covariances and the data's copies live on the host: refused up front when they cannot
    // fit the available memory; on the CPU the scorer gets what they leave
    let resident = calc_host_bytes(nvar, data.len());
    let budget = crate::device::memory::default_cpu_budget();
    if resident > budget {
        return Err(Error::OutOfMemory(format!(
            "calc_shrunken_covariance on {nvar} variables holds about {} of covariances and copies of the data at once but {} of memory is available",
            crate::device::memory::format_size(resident),
            crate::device::memory::format_size(budget)
        )));
    }
    let flops = 2.0 * levels.len() as f64 * (nvar as f64).powi(3) / 3.0;
    let job = CalcJob {
        data,
        leaveout,
        levels,
        wantfull,
    };
    let chosen = gsn_device(device, flops);
    let max_memory = (chosen == Device::Cpu).then(|| budget - resident);
    Ok(dispatch::run(&chosen, Dtype::F64, flops, max_memory, "scorer", &job)?.output)
}

/// The host memory [`calc_shrunken_covariance`] plans for `nvar` variables and `elems` data
/// values besides the Cholesky scorer's level stacks: six `nvar × nvar` f64 matrices and four
/// copies of the data. Measured peak RSS growth on the CPU (2-D data, 200 and 5000 observations
/// of 1000–3000 variables, with and without `wantfull`): 2.3–4.1 `nvar²` f64 with 200
/// observations, up to 19.9 with 5000 (the data's copies).
pub fn calc_host_bytes(nvar: usize, elems: usize) -> u64 {
    8 * (6 * (nvar * nvar) as u64 + 4 * elems as u64)
}

/// Runs one of GSN's f64 scorer jobs (`flops` for the crossover) on `device` (see
/// [`gsn_device`]).
fn run_scorer<J: Job>(device: &Device, flops: f64, job: &J) -> Result<J::Output> {
    let chosen = gsn_device(device, flops);
    Ok(dispatch::run(&chosen, Dtype::F64, flops, None, "scorer", job)?.output)
}

struct NllJob<'a> {
    cov: ArrayView2<'a, f64>,
    pts: ArrayView2<'a, f64>,
    levels: &'a [f64],
}

impl Job for NllJob<'_> {
    type Output = Vec<f64>;
    fn run<B: Backend>(&self, be: &B) -> Result<Vec<f64>> {
        let scorer = Scorer {
            backend: be,
            dtype: Dtype::F64,
        };
        shrink::score(&scorer, self.cov, None, self.pts, self.levels)
    }
}

/// The held-out Gaussian NLL of every shrinkage level (spec §5): `cov` is the `N × N` training
/// covariance, `pts` the `M × N` held-out points (already centred), one value per level; NaN
/// where the shrunk covariance is not positive definite. Runs on `device` (f64), scored as the
/// pipeline scores ([`shrink::score`]: one tridiagonalisation on the CPU, Cholesky per level on
/// a GPU).
pub fn shrinkage_nll(
    cov: ArrayView2<f64>,
    pts: ArrayView2<f64>,
    levels: &[f64],
    device: &Device,
) -> Result<Vec<f64>> {
    shrink::check_levels(levels)?;
    let n = cov.nrows();
    if cov.ncols() != n || pts.ncols() != n {
        return Err(Error::InvalidInput(format!(
            "cov must be N × N and pts M × N, got {:?} and {:?}",
            cov.shape(),
            pts.shape()
        )));
    }
    if cov.iter().chain(pts.iter()).any(|v| !v.is_finite()) {
        return Err(Error::NonFinite("cov and pts must be finite".into()));
    }
    let flops = 2.0 * levels.len() as f64 * (n as f64).powi(3) / 3.0;
    let job = NllJob { cov, pts, levels };
    run_scorer(device, flops, &job)
}
