//! The CPU backend: faer for the dense products and factorisations, rayon across units.
//! Always computes in f64; an f32 fit's inputs are rounded to f32 by the model layer first and
//! its outputs rounded back, so the CPU twin of an f32 GPU fit is its f64-accurate reference.

use crate::device::planner::{self, Limits, Stage};
use crate::error::{Error, Result};
use crate::linalg::{self, cholesky_scratch, cholesky_solve_in_place};
use crate::ops::{GsnOps, RidgeOps, UNDEFINED_CORR};
use crate::Dtype;
use faer::dyn_stack::MemStack;
use faer::{Mat, Par};
use ndarray::{concatenate, s, Array1, Array2, ArrayView1, ArrayView2, Axis};
use rayon::prelude::*;

/// Population variance below which a feature's correlations are set to 0 (reference rule).
pub const LOW_VARIANCE: f64 = 1e-8;

/// The CPU implementation of [`RidgeOps`].
#[derive(Debug, Clone)]
pub struct CpuOps {
    /// Bytes the backend may hold at once.
    pub budget: u64,
    /// Upper bound on units per chunk (the user's `chunk_size`; 0 = none).
    pub unit_chunk_cap: usize,
}

impl CpuOps {
    /// A backend with this memory budget.
    pub fn new(budget: u64) -> Self {
        CpuOps {
            budget,
            unit_chunk_cap: 0,
        }
    }
}

/// `[X | 1]`.
pub fn with_bias(x: ArrayView2<f64>) -> Array2<f64> {
    let ones = Array2::<f64>::ones((x.nrows(), 1));
    concatenate(Axis(1), &[x, ones.view()]).expect("same row count")
}

/// Turns raw cross products `Σ xc·yc` (U × F) and sums of squares into |r| with the reference's
/// low-variance and zero-variance rules.
pub fn finish_correlations(num: &mut Array2<f64>, ssx: &[f64], ssy: &[f64], n: usize) {
    num.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(u, mut row)| {
            for (j, v) in row.iter_mut().enumerate() {
                *v = if ssx[j] / (n as f64) < LOW_VARIANCE {
                    0.0
                } else if ssy[u] == 0.0 {
                    UNDEFINED_CORR
                } else {
                    (*v / (ssx[j] * ssy[u]).sqrt()).abs()
                };
            }
        });
}

/// Gathers the `(k+1)²` system of one unit from the lower triangle of `g` (column-major), adding
/// `alpha` on the diagonal, into `a` (column-major `m × m`).
fn gather_system(g: &linalg::Gram, idx: &[usize], alpha: f64, a: &mut Mat<f64>) {
    let m = idx.len();
    for bcol in 0..m {
        let jb = idx[bcol];
        for arow in bcol..m {
            let ia = idx[arow];
            let v = g.sym(ia, jb);
            a[(arow, bcol)] = if arow == bcol { v + alpha } else { v };
        }
    }
}

impl CpuOps {
    /// The memory plan of [`RidgeOps::solve_selected`] for `n × f` inputs, `units` units and `k`
    /// selected features: G, X₁, W and per-thread scratch are fixed; H rows are per unit.
    pub fn solve_stage(n: usize, f: usize, units: usize, k: usize) -> Stage {
        let m = (k + 1) as u64;
        let p = (f + 1) as u64;
        let threads = rayon::current_num_threads() as u64;
        Stage {
            name: "ridge solve (cpu)",
            items: units as u64,
            fixed: 8 * (p * p + n as u64 * p + f as u64 * units as u64 + threads * (m * m + m)),
            fixed_binding: 0,
            per_item: 8 * p,
            per_item_binding: 0,
        }
    }
}

impl RidgeOps for CpuOps {
    fn abs_correlations(
        &self,
        x: ArrayView2<f64>,
        y: ArrayView2<f64>,
        _dtype: Dtype,
    ) -> Result<Array2<f64>> {
        let n = x.nrows();
        let mut xt = linalg::transposed(x);
        let ssx = linalg::centre_rows(&mut xt);
        let mut yt = linalg::transposed(y);
        let ssy = linalg::centre_rows(&mut yt);
        let mut num = linalg::cross_t(yt.as_ref(), xt.as_ref());
        finish_correlations(&mut num, &ssx, &ssy, n);
        Ok(num)
    }

    fn solve_selected(
        &self,
        x: ArrayView2<f64>,
        y: ArrayView2<f64>,
        sel: ArrayView2<u32>,
        alpha: f64,
        dtype: Dtype,
        unit_offset: usize,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<(Array2<f64>, Array1<f64>)> {
        let _ = dtype; // the CPU computes in f64
        let (n, f) = x.dim();
        let units = y.ncols();
        let m = sel.ncols() + 1;
        let done = std::sync::atomic::AtomicUsize::new(0);
        let stage = CpuOps::solve_stage(n, f, units, sel.ncols());
        let mut chunk = planner::items_per_chunk(&stage, &Limits::cpu(self.budget))? as usize;
        if self.unit_chunk_cap > 0 {
            chunk = chunk.min(self.unit_chunk_cap);
        }
        let x1t = linalg::transposed_with_bias(x);
        let g = linalg::gram_lower_t(x1t.as_ref());
        let mut w = Array2::<f64>::zeros((f, units));
        let mut b = Array1::<f64>::zeros(units);
        for range in planner::ranges(units, chunk) {
            let yt = linalg::transposed(y.slice(s![.., range.clone()]));
            let h = linalg::cross_t(yt.as_ref(), x1t.as_ref());
            let thetas: Vec<std::result::Result<Vec<f64>, usize>> = range
                .clone()
                .into_par_iter()
                .map_init(
                    || {
                        (
                            Mat::<f64>::zeros(m, m),
                            Mat::<f64>::zeros(m, 1),
                            cholesky_scratch(m),
                        )
                    },
                    |(a, rhs, mem), u| {
                        let mut idx: Vec<usize> = sel.row(u).iter().map(|&i| i as usize).collect();
                        idx.push(f);
                        gather_system(&g, &idx, alpha, a);
                        let hu = h.row(u - range.start);
                        for (r, &i) in idx.iter().enumerate() {
                            rhs[(r, 0)] = hu[i];
                        }
                        let stack = MemStack::new(mem);
                        cholesky_solve_in_place(a.as_mut(), rhs.as_mut(), Par::Seq, stack)?;
                        let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                        if d.is_multiple_of(64) {
                            progress(d);
                        }
                        Ok((0..m).map(|r| rhs[(r, 0)]).collect())
                    },
                )
                .collect();
            for (u, th) in range.clone().zip(thetas) {
                let th = th.map_err(|pivot| {
                    Error::Singular(format!(
                        "unit {} (flat index, Fortran order): its {m}x{m} selected system is not positive definite (Cholesky pivot {pivot}); use alpha > 0 or avoid collinear features",
                        u + unit_offset
                    ))
                })?;
                for (r, &i) in sel.row(u).iter().enumerate() {
                    w[(i as usize, u)] = th[r];
                }
                b[u] = th[m - 1];
            }
        }
        Ok((w, b))
    }

    fn solve_dense(
        &self,
        x: ArrayView2<f64>,
        y: ArrayView2<f64>,
        alpha: f64,
        _dtype: Dtype,
    ) -> Result<(Array2<f64>, Array1<f64>)> {
        let (n, f) = x.dim();
        let theta = if n > f + 1 {
            let x1t = linalg::transposed_with_bias(x);
            let mut g = linalg::gram_lower_t(x1t.as_ref());
            g.add_diag(alpha);
            let rhs = linalg::cross_t(x1t.as_ref(), linalg::transposed(y).as_ref());
            linalg::spd_solve(g, rhs.view(), "ridge primal system X1'X1 + alpha I")?
        } else {
            let x1 = with_bias(x);
            let mut k = linalg::gram_lower(x1.t());
            k.add_diag(alpha);
            let z = linalg::spd_solve(k, y, "ridge dual system X1 X1' + alpha I")?;
            linalg::at_b(x1.view(), z.view())
        };
        let w = theta.slice(s![0..f, ..]).to_owned();
        let b = theta.row(f).to_owned();
        Ok((w, b))
    }

    fn predict(
        &self,
        x: ArrayView2<f64>,
        w: ArrayView2<f64>,
        b: ArrayView1<f64>,
        _dtype: Dtype,
    ) -> Result<Array2<f64>> {
        let mut out = linalg::a_b(x, w);
        out += &b.insert_axis(Axis(0));
        Ok(out)
    }
}

impl CpuOps {
    /// The memory plan of the CPU NLL scorer: the points are fixed; each level in flight holds its
    /// shrunk matrix/factor (N²) and its solved points (N·M).
    pub fn nll_stage(n: usize, m: usize, levels: usize) -> Stage {
        Stage {
            name: "shrinkage NLL (cpu)",
            items: levels as u64,
            fixed: 8 * (n * m + n * n) as u64,
            fixed_binding: 0,
            per_item: 8 * (n * n + n * m) as u64,
            per_item_binding: 0,
        }
    }
}

/// NLL of one level: shrink, factor, solve the points, reduce.
fn level_nll(cov: ArrayView2<f64>, pts_t: &Mat<f64>, level: f64) -> f64 {
    let n = cov.nrows();
    let m = pts_t.ncols();
    if m == 0 {
        return f64::NAN;
    }
    let mut a = Mat::<f64>::from_fn(n, n, |i, j| {
        if i == j {
            cov[(i, j)]
        } else {
            level * cov[(i, j)]
        }
    });
    let mut mem = cholesky_scratch(n);
    if linalg::cholesky_raw(a.as_mut(), Par::Seq, MemStack::new(&mut mem)).is_err() {
        return f64::NAN;
    }
    let mut y = pts_t.clone();
    faer::linalg::triangular_solve::solve_lower_triangular_in_place(
        a.as_ref(),
        y.as_mut(),
        Par::Seq,
    );
    let mut sumsq = 0.0;
    for j in 0..m {
        for i in 0..n {
            sumsq += y[(i, j)] * y[(i, j)];
        }
    }
    let logdet: f64 = (0..n).map(|i| a[(i, i)].ln()).sum();
    crate::gsn::shrink::nll_value(sumsq, m, logdet, n)
}

impl GsnOps for CpuOps {
    fn shrinkage_nll(
        &self,
        cov: ArrayView2<f64>,
        pts: ArrayView2<f64>,
        levels: &[f64],
    ) -> Result<Vec<f64>> {
        let (m, n) = pts.dim();
        let chunk = planner::items_per_chunk(
            &CpuOps::nll_stage(n, m, levels.len()),
            &Limits::cpu(self.budget),
        )? as usize;
        let pts_t = Mat::<f64>::from_fn(n, m, |i, j| pts[(j, i)]);
        let mut out = Vec::with_capacity(levels.len());
        for range in planner::ranges(levels.len(), chunk) {
            let part: Vec<f64> = levels[range]
                .par_iter()
                .map(|&l| level_nll(cov, &pts_t, l))
                .collect();
            out.extend(part);
        }
        Ok(out)
    }
}
