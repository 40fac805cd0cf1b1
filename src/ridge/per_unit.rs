//! The per-unit path (spec §6): each unit selects its features on its own rows, normalises them
//! (§7) and solves its own primal ridge system. Runs on the CPU (rayon across units) whatever
//! the device: every unit has its own rows and Gram matrix, so there is no shared matrix for a
//! GPU kernel to amortise.

use super::normalize::normalize_row;
use super::params::{SelectSample, SpatialNorm};
use super::select::{top_k, TieBreak};
use crate::error::{Error, Result};
use crate::linalg::{cholesky_scratch, cholesky_solve_in_place};
use faer::dyn_stack::MemStack;
use faer::{Accum, Par};
use ndarray::{Array1, Array2, ArrayView2};
use rayon::prelude::*;

/// What the per-unit path returns: `W` (`F × U`), `b` (`U`), `S` (`F × U`).
pub struct PerUnitFit {
    /// Weights, zero outside each unit's selection.
    pub w: Array2<f64>,
    /// Biases.
    pub b: Array1<f64>,
    /// Selection mask.
    pub s: Array2<bool>,
}

/// |r| of every column of `x` with `y` (no low-variance zeroing; NaN where a variance is 0).
fn unit_abs_corr(x: ArrayView2<f64>, y: &[f64]) -> Vec<f64> {
    let n = y.len() as f64;
    let ym = y.iter().sum::<f64>() / n;
    let yc: Vec<f64> = y.iter().map(|v| v - ym).collect();
    let ssy: f64 = yc.iter().map(|v| v * v).sum();
    (0..x.ncols())
        .map(|j| {
            let col = x.column(j);
            let xm = col.sum() / n;
            let (mut sxy, mut sxx) = (0.0, 0.0);
            for (xv, yv) in col.iter().zip(&yc) {
                let d = xv - xm;
                sxy += d * yv;
                sxx += d * d;
            }
            if sxx == 0.0 || ssy == 0.0 {
                f64::NAN
            } else {
                (sxy / (sxx * ssy).sqrt()).abs()
            }
        })
        .collect()
}

/// Applies `spatial_norm` to the columns `cols` of every row of `x` into a new `rows × |cols|`
/// matrix. Errors when a row's normalisation is not finite.
pub fn normalized_columns(
    x: ArrayView2<f64>,
    cols: &[usize],
    norm: Option<SpatialNorm>,
    unit: usize,
) -> Result<Array2<f64>> {
    let mut z = Array2::<f64>::zeros((x.nrows(), cols.len()));
    for (i, mut row) in z.rows_mut().into_iter().enumerate() {
        for (m, &j) in cols.iter().enumerate() {
            row[m] = x[(i, j)];
        }
        if let Some(method) = norm {
            let s = row.as_slice_mut().expect("row of a standard-layout array");
            normalize_row(s, method);
            if s.iter().any(|v| !v.is_finite()) {
                return Err(Error::NonFinite(format!(
                    "spatial_norm '{method}' of sample {i} over the {} features selected for unit {unit} divides by zero (zero norm or spread)",
                    cols.len()
                )));
            }
        }
    }
    Ok(z)
}

/// Refuses a per-unit fit whose memory exceeds `budget`: X and Y, the outputs W and S, each
/// unit's selection and solution, and per thread the copy of X a row selection makes, the
/// normalised features and the small system.
pub fn check_budget(
    n: usize,
    f: usize,
    units: usize,
    k: usize,
    row_selection: bool,
    budget: u64,
) -> Result<()> {
    let m = k + 1;
    let threads = rayon::current_num_threads();
    let per_thread = if row_selection { n * f } else { 0 } + 2 * n * m + m * m;
    let need = 8 * (n * f + n * units + f * units + threads * per_thread + units * 2 * m) as u64
        + (f * units) as u64;
    if need > budget {
        return Err(Error::OutOfMemory(format!(
            "the per-unit path needs {} but the memory budget is {}; raise max_memory",
            crate::device::memory::format_size(need),
            crate::device::memory::format_size(budget)
        )));
    }
    Ok(())
}

/// The options of a per-unit fit.
pub struct PerUnitOptions {
    /// Ridge penalty.
    pub alpha: f64,
    /// Features per unit.
    pub k: usize,
    /// Keep every feature (`k ≥ F`).
    pub no_selection: bool,
    /// Row-wise normalisation of the selected features.
    pub norm: Option<SpatialNorm>,
    /// Row selection per unit.
    pub select_sample: Option<SelectSample>,
    /// Polled before each unit.
    pub cancel: Option<crate::Cancel>,
}

/// Fits every unit of `y` (`n × U`, NaN allowed when `select_sample` is set).
pub fn fit_per_unit(
    x: ArrayView2<f64>,
    y: ArrayView2<f64>,
    opt: &PerUnitOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<PerUnitFit> {
    let PerUnitOptions {
        alpha,
        k,
        no_selection,
        norm,
        select_sample,
        ref cancel,
    } = *opt;
    let (n, f) = x.dim();
    let units = y.ncols();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<(Vec<usize>, Vec<f64>)>> = (0..units)
        .into_par_iter()
        .map(|u| {
            crate::cancel::check(cancel.as_ref(), "between units")?;
            let rows: Vec<usize> = match select_sample {
                Some(SelectSample::RemoveNan) => (0..n).filter(|&i| !y[(i, u)].is_nan()).collect(),
                None => (0..n).collect(),
            };
            let need = if no_selection { 1 } else { 2 };
            if rows.len() < need {
                return Err(Error::InvalidInput(format!(
                    "unit {u} has {} usable sample(s); at least {need} are needed",
                    rows.len()
                )));
            }
            // copy the rows only when some are dropped
            let xr: ndarray::CowArray<f64, ndarray::Ix2> = if rows.len() == n {
                x.into()
            } else {
                x.select(ndarray::Axis(0), &rows).into()
            };
            let yr: Vec<f64> = rows.iter().map(|&i| y[(i, u)]).collect();
            let sel: Vec<usize> = if no_selection {
                (0..f).collect()
            } else {
                let a = unit_abs_corr(xr.view(), &yr);
                top_k(&a, k, TieBreak::LowerIndex)
                    .into_iter()
                    .map(|i| i as usize)
                    .collect()
            };
            let z = normalized_columns(xr.view(), &sel, norm, u)?;
            let m = sel.len() + 1;
            let mut z1 = crate::linalg::mat_zeros::<f64>(rows.len(), m);
            for i in 0..rows.len() {
                for c in 0..m - 1 {
                    z1[(i, c)] = z[(i, c)];
                }
                z1[(i, m - 1)] = 1.0;
            }
            let mut a = crate::linalg::mat_zeros::<f64>(m, m);
            faer::linalg::matmul::matmul(a.as_mut(), Accum::Replace, z1.transpose(), z1.as_ref(), 1.0, Par::Seq);
            for d in 0..m {
                a[(d, d)] += alpha;
            }
            let ycol = crate::linalg::mat_from_fn(rows.len(), 1, |i, _| yr[i]);
            let mut rhs = crate::linalg::mat_zeros::<f64>(m, 1);
            faer::linalg::matmul::matmul(rhs.as_mut(), Accum::Replace, z1.transpose(), ycol.as_ref(), 1.0, Par::Seq);
            let mut mem = cholesky_scratch(m);
            cholesky_solve_in_place(a.as_mut(), rhs.as_mut(), Par::Seq, MemStack::new(&mut mem))
                .map_err(|p| {
                    Error::Singular(format!(
                        "unit {u}: its {m}x{m} per-unit system is not positive definite (Cholesky pivot {p}); use alpha > 0"
                    ))
                })?;
            let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress(d);
            Ok((sel, (0..m).map(|r| rhs[(r, 0)]).collect()))
        })
        .collect();
    let mut w = Array2::<f64>::zeros((f, units));
    let mut b = Array1::<f64>::zeros(units);
    let mut s = Array2::<bool>::from_elem((f, units), false);
    for (u, r) in results.into_iter().enumerate() {
        let (sel, th) = r?;
        for (m, &j) in sel.iter().enumerate() {
            w[(j, u)] = th[m];
            s[(j, u)] = true;
        }
        b[u] = th[sel.len()];
    }
    Ok(PerUnitFit { w, b, s })
}
