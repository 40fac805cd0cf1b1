//! The FastL2LiR paths that run on a [`Backend`], written once: the selection path (spec §5),
//! the dense path (spec §4) and prediction. Chunking over units, the primal/dual switch, the
//! scatter of the solutions into `W` and the error texts live here and nowhere else.

use super::select::{top_k_rows, TieBreak};
use super::targets::Targets;
use crate::backend::{Backend, FeatureLayout, Op};
use crate::device::memory;
use crate::device::planner::{self, Stage};
use crate::dispatch::Job;
use crate::error::{Error, Result};
use crate::linalg;
use crate::Dtype;
use ndarray::{s, Array1, Array2, ArrayView1, ArrayView2, Axis};
use std::ops::Range;
use std::time::{Duration, Instant};

fn bytes(elems: usize) -> u64 {
    elems as u64 * 8
}

/// Adds host-side buffers to a backend's stage when the backend shares host memory (the CPU);
/// otherwise checks them against the host budget on their own.
pub(crate) fn with_host<B: Backend>(
    be: &B,
    mut stage: Stage,
    host: u64,
    what: &str,
) -> Result<Stage> {
    if be.shares_host_memory() {
        stage.fixed += host;
    } else {
        let budget = memory::default_cpu_budget();
        if host > budget {
            return Err(Error::OutOfMemory(format!(
                "{what}: the host-side arrays need {} but {} of memory is available; raise it or shrink the problem",
                memory::format_size(host),
                memory::format_size(budget)
            )));
        }
    }
    Ok(stage)
}

fn combine(name: &'static str, fixed: &[Stage], per_unit: Stage) -> Stage {
    Stage {
        name,
        items: per_unit.items,
        fixed: fixed.iter().map(|s| s.fixed).sum::<u64>() + per_unit.fixed,
        fixed_binding: fixed
            .iter()
            .map(|s| s.fixed_binding)
            .chain([per_unit.fixed_binding])
            .max()
            .unwrap_or(0),
        per_item: per_unit.per_item,
        per_item_binding: per_unit.per_item_binding,
    }
}

/// The shape of a selection-path fit, for its memory plan.
#[derive(Debug, Clone, Copy)]
pub struct SelectedShape {
    /// Samples.
    pub n: usize,
    /// Features.
    pub f: usize,
    /// Units fitted (a shard's share, or all).
    pub units: usize,
    /// Features per unit.
    pub k: usize,
    /// Bytes of Y held in memory for the whole fit (0 when Y is read from a file by chunks).
    pub resident_y: u64,
    /// The model is a dense `F × U` W held in memory.
    pub dense_w: bool,
    /// The sparse weights (`U × k`) are held in memory.
    pub keep_values: bool,
    /// Each chunk's dense W columns are built and handed on (streamed to a file).
    pub stream_dense: bool,
    /// |r| (`F × U`) is kept for the caller.
    pub keep_corr: bool,
}

impl SelectedShape {
    /// A fit whose Y (`n × units` f64) is in memory and whose W and |r| are kept, as
    /// [`crate::ridge::fit`] does.
    pub fn in_memory(n: usize, f: usize, units: usize, k: usize) -> Self {
        SelectedShape {
            n,
            f,
            units,
            k,
            resident_y: bytes(n * units),
            dense_w: true,
            keep_values: false,
            stream_dense: false,
            keep_corr: true,
        }
    }
}

/// The memory plan of the selection path on `be`: X, the resident part of Y, the outputs (W or
/// the sparse weights, |r| when kept, b and the selection), the resident X₁ and G, and per unit
/// its share of a chunk (its Y column read from the source, and the backend's buffers).
/// [`planner::items_per_chunk`] of it against `be.limits()` is the number of units per chunk.
pub fn plan_selected<B: Backend>(be: &B, sh: &SelectedShape, dtype: Dtype) -> Result<Stage> {
    let (n, f, units, k) = (sh.n, sh.f, sh.units, sh.k);
    let p = f + 1;
    let feats = be.plan(
        Op::Features {
            rows: n,
            cols: f,
            layout: FeatureLayout {
                bias: true,
                correlations: true,
                low_precision_gram: false,
            },
        },
        dtype,
    );
    let gram = be.plan(
        Op::Gram {
            rows: n,
            dim: p,
            selection: true,
        },
        dtype,
    );
    let mut per = be.plan(
        Op::SelectedUnits {
            units,
            rows: n,
            features: f,
            m: k + 1,
        },
        dtype,
    );
    // the chunk of Y as read from the source, and its dense W columns when streamed
    per.per_item += bytes(n) + if sh.stream_dense { bytes(f) } else { 0 };
    let outputs = if sh.dense_w { bytes(f * units) } else { 0 }
        + if sh.keep_values { bytes(units * k) } else { 0 }
        + if sh.keep_corr { bytes(f * units) } else { 0 }
        + bytes(units)
        + (units * k) as u64 * 4;
    let host = bytes(n * f) + sh.resident_y + outputs;
    let stage = combine("FastL2LiR selection path", &[feats, gram], per);
    with_host(be, stage, host, "FastL2LiR selection path")
}

/// The memory plan of the dense path (no selection): X, Y, the Gram (or kernel) matrix, the
/// right-hand sides, the solution and W, none of which is chunked.
pub fn plan_dense<B: Backend>(
    be: &B,
    n: usize,
    f: usize,
    units: usize,
    dtype: Dtype,
) -> Result<Stage> {
    let p = f + 1;
    let primal = n > p;
    let dim = if primal { p } else { n };
    let feats = be.plan(
        Op::Features {
            rows: if primal { n } else { p },
            cols: if primal { f } else { n },
            layout: FeatureLayout {
                bias: primal,
                correlations: false,
                low_precision_gram: false,
            },
        },
        dtype,
    );
    let gram = be.plan(
        Op::Gram {
            rows: n,
            dim,
            selection: false,
        },
        dtype,
    );
    let cross = be.plan(
        Op::Cross {
            q: units,
            rows: n,
            p,
        },
        dtype,
    );
    // X, Y, X₁ᵀ (dual), the host Gram copy, right-hand sides / Z, the solution and W
    let host = bytes(
        n * f
            + n * units
            + if primal { 0 } else { n * p }
            + dim * dim
            + dim * units
            + 2 * p * units,
    );
    let stage = combine("FastL2LiR dense path", &[feats, gram], cross);
    with_host(be, stage, host, "FastL2LiR dense path")
}

/// Progress is reported per chunk: a large fit is cut into at least this many chunks (of at
/// least [`MIN_PROGRESS_CHUNK`] units) so that a progress bar moves.
const PROGRESS_STEPS: usize = 16;
/// The smallest chunk the progress rule makes. Each chunk's solves gather their blocks from the
/// whole Gram matrix (`cpu::blocks`), so a chunk should hold a few hundred units: at fc8
/// (1000 units) chunks of 64 spent 0.10 s in their gathers, chunks of 256 0.065 s.
const MIN_PROGRESS_CHUNK: usize = 256;

/// Units per chunk for `stage`, capped by the user's `chunk_cap` (0 = none) and by the progress
/// rule. Results do not depend on it (bitwise; tested).
fn units_per_chunk<B: Backend>(be: &B, stage: &Stage, chunk_cap: usize) -> Result<usize> {
    let mut chunk = planner::items_per_chunk(stage, &be.limits())? as usize;
    chunk = chunk.min(
        (stage.items as usize)
            .div_ceil(PROGRESS_STEPS)
            .max(MIN_PROGRESS_CHUNK),
    );
    if chunk_cap > 0 {
        chunk = chunk.min(chunk_cap);
    }
    Ok(chunk)
}

/// What the selection path produces, for the units it fitted (`units.len()` of them).
pub struct SelectedOutput {
    /// `F × U` dense weights (dense form).
    pub w: Option<Array2<f64>>,
    /// `U × k` weights of the selected features, in rank order (sparse form).
    pub values: Option<Array2<f64>>,
    /// `U`.
    pub b: Array1<f64>,
    /// `U × k` selected features, best first.
    pub selected: Array2<u32>,
    /// `F × U` |r| (when kept).
    pub corr_abs: Option<Array2<f64>>,
    /// Summed wall time per stage.
    pub timings: Vec<(String, Duration)>,
}

/// The selection path (spec §5): X₁ uploaded once and G formed once; per chunk of units, Y read
/// from its source and uploaded once, |r|, top-k, the gathered systems solved, and the
/// solutions kept (scattered into a dense W, or as sparse weights).
pub struct SelectedFit<'a> {
    /// `n × F`. An f32 fit's values need not be rounded: every backend rounds them to f32 as it
    /// uploads them.
    pub x: ArrayView2<'a, f64>,
    /// The targets.
    pub y: &'a dyn Targets,
    /// The flat units to fit (all of them, or a shard's range).
    pub units: Range<usize>,
    /// Features per unit (`< F`).
    pub k: usize,
    /// Ridge penalty.
    pub alpha: f64,
    /// Precision.
    pub dtype: Dtype,
    /// Upper bound on units per chunk (0 = none).
    pub chunk_cap: usize,
    /// Keep a dense W.
    pub dense_w: bool,
    /// Keep the sparse weights (`U × k`).
    pub keep_values: bool,
    /// Keep |r| (`F × U`).
    pub keep_corr: bool,
    /// Called with the number of units finished.
    pub progress: &'a (dyn Fn(usize) + Sync),
    /// Polled before each chunk.
    pub cancel: Option<&'a crate::Cancel>,
    /// Called with each chunk's results as it finishes (e.g. to stream W to a file).
    pub on_chunk: Option<&'a ChunkFn<'a>>,
}

/// A consumer of each chunk's results: its flat units, their selected features (`units × k`,
/// best first) and their solutions (`units × (k+1)` row-major, the bias last).
pub type ChunkFn<'a> = dyn Fn(Range<usize>, ArrayView2<u32>, &[f64]) -> Result<()> + Sync + 'a;

impl SelectedFit<'_> {
    /// Floating-point operations (for `auto`).
    pub fn flops(&self) -> f64 {
        let (n, f) = (self.x.nrows() as f64, self.x.ncols() as f64);
        let (u, k) = (self.units.len() as f64, self.k as f64);
        n * f * f + 4.0 * n * f * u + u * (k + 1.0).powi(3) / 3.0
    }

    /// The shape of this fit for its memory plan.
    pub fn shape(&self) -> SelectedShape {
        SelectedShape {
            n: self.x.nrows(),
            f: self.x.ncols(),
            units: self.units.len(),
            k: self.k,
            resident_y: self.y.resident_bytes(),
            dense_w: self.dense_w,
            keep_values: self.keep_values,
            stream_dense: self.on_chunk.is_some(),
            keep_corr: self.keep_corr,
        }
    }

    /// Reads units `range` of Y, checks its values and rounds them to the fit's precision.
    fn read_chunk(&self, range: Range<usize>) -> Result<Array2<f64>> {
        let mut y = self.y.read(range.clone())?;
        // the message names the flat unit, not the column within the chunk
        super::check_values_from(y.view(), "Y", false, self.dtype, range.start)?;
        if self.dtype == Dtype::F32 {
            y.mapv_inplace(|v| self.dtype.round(v));
        }
        Ok(y)
    }
}

/// Writes each unit's solved weights (`theta`, `k + 1` per unit, the bias last) into its column
/// of `w` (`F × chunk`) at its selected rows (`sel`, `chunk × k`), units in parallel: every
/// (row, unit) pair is written by one unit only, and the page faults of a fresh `W` (each unit
/// touches pages all over it) are shared by the threads instead of stalling the chunk loop.
fn scatter_weights(
    mut w: ndarray::ArrayViewMut2<'_, f64>,
    sel: ArrayView2<'_, u32>,
    theta: &[f64],
) {
    use ndarray::parallel::prelude::*;
    use rayon::slice::ParallelSlice;
    let m = sel.ncols() + 1;
    w.axis_iter_mut(Axis(1))
        .into_par_iter()
        .zip(sel.axis_iter(Axis(0)).into_par_iter())
        .zip(theta.par_chunks(m))
        .for_each(|((mut col, rows), th)| {
            for (&j, &t) in rows.iter().zip(th) {
                col[j as usize] = t;
            }
        });
}

/// The error of a unit whose selected system is not positive definite.
fn singular_unit(unit: usize, m: usize, pivot: usize) -> Error {
    Error::Singular(format!(
        "unit {unit} (flat index, Fortran order): its {m}x{m} selected system is not positive definite (Cholesky pivot {pivot}); use alpha > 0 or avoid collinear features"
    ))
}

impl Job for SelectedFit<'_> {
    type Output = SelectedOutput;

    fn run<B: Backend>(&self, be: &B) -> Result<SelectedOutput> {
        be.check_dtype(self.dtype)?;
        let (_, f) = self.x.dim();
        let units = self.units.len();
        let (k, m) = (self.k, self.k + 1);
        let stage = plan_selected(be, &self.shape(), self.dtype)?;
        let chunk = units_per_chunk(be, &stage, self.chunk_cap)?;
        let mut times = [Duration::ZERO; 6];
        let t = Instant::now();
        let layout = FeatureLayout {
            bias: true,
            correlations: true,
            // decided on the whole fit's units: every shard decides alike
            low_precision_gram: crate::backend::low_precision_gram_pays(self.y.units(), k, f),
        };
        let x1 = be.upload_features(self.x, layout, self.dtype)?;
        times[0] += t.elapsed();
        let t = Instant::now();
        let g = be.gram(&x1)?;
        times[1] += t.elapsed();
        let mut w = self
            .dense_w
            .then(|| crate::linalg::zeros_populated(f, units));
        let mut values = self.keep_values.then(|| Array2::<f64>::zeros((units, k)));
        let mut corr_abs = self.keep_corr.then(|| Array2::<f64>::zeros((f, units)));
        let mut b = Array1::<f64>::zeros(units);
        let mut selected = Array2::<u32>::zeros((units, k));
        for local in planner::balanced_ranges(units, chunk) {
            crate::cancel::check(self.cancel, "between unit chunks")?;
            let range = local.start + self.units.start..local.end + self.units.start;
            let t = Instant::now();
            let ychunk = self.read_chunk(range.clone())?;
            times[2] += t.elapsed();
            let t = Instant::now();
            let yc = be.upload_targets(ychunk.view(), self.dtype)?;
            drop(ychunk);
            let corr = be.abs_correlations(&x1, &yc)?;
            times[3] += t.elapsed();
            let t = Instant::now();
            let sel = top_k_rows(corr.view(), k, TieBreak::HigherIndex);
            let mut idx = Array2::<u32>::from_elem((local.len(), m), f as u32);
            idx.slice_mut(s![.., ..k]).assign(&sel);
            if let Some(c) = corr_abs.as_mut() {
                c.slice_mut(s![.., local.clone()]).assign(&corr.t());
            }
            be.recycle(corr);
            times[4] += t.elapsed();
            let t = Instant::now();
            let solved = be.solve_selected(&g, &x1, &yc, idx.view(), self.alpha)?;
            if let Some((i, p)) = solved
                .failed
                .iter()
                .enumerate()
                .find_map(|(i, f)| f.map(|p| (i, p)))
            {
                return Err(singular_unit(range.start + i, m, p));
            }
            if let Some(w) = w.as_mut() {
                scatter_weights(
                    w.slice_mut(s![.., local.clone()]),
                    sel.view(),
                    &solved.theta,
                );
            }
            for (i, u) in local.clone().enumerate() {
                let th = &solved.theta[i * m..(i + 1) * m];
                if let Some(v) = values.as_mut() {
                    v.row_mut(u).assign(&ndarray::ArrayView1::from(&th[..k]));
                }
                b[u] = th[k];
            }
            selected.slice_mut(s![local.clone(), ..]).assign(&sel);
            if let Some(f) = self.on_chunk {
                f(range.clone(), sel.view(), &solved.theta)?;
            }
            times[5] += t.elapsed();
            (self.progress)(local.end);
        }
        let names = [
            "upload X",
            "gram",
            "read Y",
            "correlations",
            "top-k selection",
            "per-unit solves",
        ];
        Ok(SelectedOutput {
            w,
            values,
            b,
            selected,
            corr_abs,
            timings: names.iter().map(|s| s.to_string()).zip(times).collect(),
        })
    }
}

/// The dense path (spec §4): ridge on all features with the bias regularised like every weight,
/// primal `(X₁ᵀX₁ + αI)⁻¹X₁ᵀY` when `n > F + 1`, else dual `X₁ᵀ(X₁X₁ᵀ + αI)⁻¹Y`. The Gram (or
/// kernel) matrix and the cross products run on the backend, the one large SPD solve on the host.
pub struct DenseFit<'a> {
    /// `n × F`.
    pub x: ArrayView2<'a, f64>,
    /// `n × U`.
    pub y: ArrayView2<'a, f64>,
    /// Ridge penalty.
    pub alpha: f64,
    /// Precision.
    pub dtype: Dtype,
}

impl DenseFit<'_> {
    /// Floating-point operations (for `auto`).
    pub fn flops(&self) -> f64 {
        let (n, f, u) = (
            self.x.nrows() as f64,
            self.x.ncols() as f64,
            self.y.ncols() as f64,
        );
        n * f * f + f * f * f / 3.0 + 2.0 * n * f * u
    }
}

/// `Aᵀ B` for resident `a` and host `b`, in column chunks planned against the budget left after
/// `fixed` bytes.
fn cross_chunked<B: Backend>(
    be: &B,
    a: &B::Features,
    b: ArrayView2<f64>,
    p: usize,
    fixed: &Stage,
    dtype: Dtype,
) -> Result<Array2<f64>> {
    let (rows, q) = b.dim();
    let mut per = be.plan(Op::Cross { q, rows, p }, dtype);
    // errors name the caller's stage (a predict, a dense fit), not the product
    per.name = fixed.name;
    per.fixed += fixed.fixed;
    per.fixed_binding = per.fixed_binding.max(fixed.fixed_binding);
    let chunk = planner::items_per_chunk(&per, &be.limits())? as usize;
    let mut out = Array2::<f64>::zeros((p, q));
    for range in planner::ranges(q, chunk) {
        let t = be.upload_targets(b.slice(s![.., range.clone()]), dtype)?;
        out.slice_mut(s![.., range]).assign(&be.cross(a, &t)?);
    }
    Ok(out)
}

impl Job for DenseFit<'_> {
    type Output = (Array2<f64>, Array1<f64>);

    fn run<B: Backend>(&self, be: &B) -> Result<(Array2<f64>, Array1<f64>)> {
        be.check_dtype(self.dtype)?;
        let (n, f) = self.x.dim();
        let units = self.y.ncols();
        let p = f + 1;
        let stage = plan_dense(be, n, f, units, self.dtype)?;
        planner::items_per_chunk(&stage, &be.limits())?;
        let fixed = Stage {
            per_item: 0,
            ..stage
        };
        let theta = if n > p {
            let layout = FeatureLayout {
                bias: true,
                correlations: false,
                low_precision_gram: false,
            };
            let x1 = be.upload_features(self.x, layout, self.dtype)?;
            let mut g = be.gram_to_host(be.gram(&x1)?)?;
            g.add_diag(self.alpha);
            let rhs = cross_chunked(be, &x1, self.y, p, &fixed, self.dtype)?;
            linalg::spd_solve(g, rhs.view(), "ridge primal system X1'X1 + alpha I")?
        } else {
            let x1 = linalg::with_bias(self.x);
            let layout = FeatureLayout {
                bias: false,
                correlations: false,
                low_precision_gram: false,
            };
            let kt = be.upload_features(x1.t(), layout, self.dtype)?;
            let mut kern = be.gram_to_host(be.gram(&kt)?)?;
            drop(kt);
            kern.add_diag(self.alpha);
            let z = linalg::spd_solve(kern, self.y, "ridge dual system X1 X1' + alpha I")?;
            let x1d = be.upload_features(
                self.x,
                FeatureLayout {
                    bias: true,
                    ..layout
                },
                self.dtype,
            )?;
            cross_chunked(be, &x1d, z.view(), p, &fixed, self.dtype)?
        };
        Ok((
            theta.slice(s![0..f, ..]).to_owned(),
            theta.row(f).to_owned(),
        ))
    }
}

/// `X W + 1 bᵀ` (`n' × U`) on a backend, chunked over units.
pub struct Predict<'a> {
    /// `n' × F`.
    pub x: ArrayView2<'a, f64>,
    /// `F × U`.
    pub w: ArrayView2<'a, f64>,
    /// `U`.
    pub b: ArrayView1<'a, f64>,
    /// Precision.
    pub dtype: Dtype,
}

impl Predict<'_> {
    /// Floating-point operations (for `auto`).
    pub fn flops(&self) -> f64 {
        2.0 * (self.x.nrows() * self.x.ncols() * self.w.ncols()) as f64
    }
}

impl Job for Predict<'_> {
    type Output = Array2<f64>;

    fn run<B: Backend>(&self, be: &B) -> Result<Array2<f64>> {
        be.check_dtype(self.dtype)?;
        let (rows, f) = self.x.dim();
        let layout = FeatureLayout {
            bias: false,
            correlations: false,
            low_precision_gram: false,
        };
        let mut fixed = be.plan(
            Op::Features {
                rows: f,
                cols: rows,
                layout,
            },
            self.dtype,
        );
        // W as given and the output
        let host = bytes(f * self.w.ncols() + rows * self.w.ncols());
        fixed = with_host(be, fixed, host, "predict")?;
        fixed.name = "predict";
        let xt = be.upload_features(self.x.t(), layout, self.dtype)?;
        let mut out = cross_chunked(be, &xt, self.w, rows, &fixed, self.dtype)?;
        out += &self.b.insert_axis(Axis(0));
        Ok(out)
    }
}
