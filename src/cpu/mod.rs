//! The CPU backend: faer for the dense products and factorisations, rayon across units and
//! shrinkage levels. Always computes in f64; an f32 fit's inputs are rounded to f32 by the
//! model layer first and its outputs rounded back, so the CPU twin of an f32 GPU fit is its
//! f64-accurate reference.
//!
//! Matrices are held transposed (`Aᵀ`, column-major, SIMD-aligned columns): the operand layout
//! faer's products run fastest on.

use crate::backend::{Backend, FeatureLayout, Op, Solved, LOW_VARIANCE, UNDEFINED_CORR};
use crate::device::planner::{self, Limits, Stage};
use crate::error::Result;
use crate::linalg::{self, cholesky_scratch, cholesky_solve_in_place};
use crate::Dtype;
use faer::dyn_stack::MemStack;
use faer::{Mat, Par};
use ndarray::{Array2, ArrayView1, ArrayView2, Axis};
use rayon::prelude::*;

/// The CPU backend with a memory budget in bytes.
#[derive(Debug, Clone)]
pub struct CpuBackend {
    budget: u64,
}

impl CpuBackend {
    /// A backend that plans against `budget` bytes.
    pub fn new(budget: u64) -> Self {
        CpuBackend { budget }
    }
}

/// A features matrix on the CPU: `Aᵀ` (with the bias row when asked for) and, for
/// correlations, the centred `Aᵀ` without bias and its row sums of squares.
pub struct CpuFeatures {
    at: Mat<f64>,
    centred: Option<(Mat<f64>, Vec<f64>)>,
    rows: usize,
}

/// A chunk of targets on the CPU: `Yᵀ`.
pub struct CpuTargets {
    yt: Mat<f64>,
}

/// `bt · atᵀ` (`q × p`), computed so that each row of the result does not depend on how many
/// rows `bt` has: faer takes a matrix-vector path for a single row, whose rounding differs from
/// its matrix-matrix kernel, so a single row is computed as two (measured: with one unit per
/// chunk, YᵀX₁ differed by up to 1.3e-10 absolute at fc8 size; every width from 2 up agrees
/// bitwise).
fn cross_rows(bt: faer::MatRef<'_, f64>, at: faer::MatRef<'_, f64>) -> Array2<f64> {
    if bt.nrows() == 1 {
        let twice = Mat::<f64>::from_fn(2, bt.ncols(), |_, j| bt[(0, j)]);
        let out = linalg::cross_t(twice.as_ref(), at);
        return out.slice(ndarray::s![0..1, ..]).to_owned();
    }
    linalg::cross_t(bt, at)
}

/// Turns raw cross products `Σ xc·yc` (`q × c`) and sums of squares into |r| with the
/// reference's low-variance and zero-variance rules.
fn finish_correlations(num: &mut Array2<f64>, ssx: &[f64], ssy: &[f64], n: usize) {
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

/// Gathers the `m × m` system of one unit from the lower triangle of `g`, adding `alpha` on the
/// diagonal, into `a` (column-major).
fn gather_system(g: &linalg::Gram, idx: &[u32], alpha: f64, a: &mut Mat<f64>) {
    let m = idx.len();
    for bcol in 0..m {
        let jb = idx[bcol] as usize;
        for arow in bcol..m {
            let v = g.sym(idx[arow] as usize, jb);
            a[(arow, bcol)] = if arow == bcol { v + alpha } else { v };
        }
    }
}

/// NLL of one level: shrink, factor (potrf semantics), solve the points, reduce.
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
    linalg::gaussian_nll(sumsq, m, logdet, n)
}

impl Backend for CpuBackend {
    type Features = CpuFeatures;
    type Targets = CpuTargets;
    type Gram = linalg::Gram;

    fn describe(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn limits(&self) -> Limits {
        Limits::cpu(self.budget)
    }

    fn plan(&self, op: Op, _dtype: Dtype) -> Stage {
        let threads = rayon::current_num_threads() as u64;
        let b = |x: usize| x as u64 * 8;
        match op {
            Op::Features { rows, cols, layout } => Stage::fixed(
                "features (cpu)",
                b(rows * (cols + usize::from(layout.bias)))
                    + if layout.correlations {
                        b(rows * cols + cols)
                    } else {
                        0
                    },
            ),
            Op::Gram { dim, .. } => Stage::fixed("gram (cpu)", b(dim.div_ceil(8) * 8 * dim)),
            Op::SelectedUnits {
                units,
                rows,
                features,
                m,
            } => Stage {
                name: "per-unit solves (cpu)",
                items: units as u64,
                // per-thread system, right-hand side and Cholesky scratch
                fixed: threads * b(2 * m * m + m),
                fixed_binding: 0,
                // Yᵀ, |r| and YᵀX₁ rows, the selection and the solution
                per_item: b(rows + 2 * features + 1 + 2 * m),
                per_item_binding: 0,
            },
            Op::Cross { q, rows, p } => Stage {
                name: "cross products (cpu)",
                items: q as u64,
                fixed: 0,
                fixed_binding: 0,
                per_item: b(rows + p),
                per_item_binding: 0,
            },
            Op::SparsePredict { units, rows, k } => Stage {
                name: "sparse predict (cpu)",
                items: units as u64,
                fixed: 0,
                fixed_binding: 0,
                per_item: b(2 * rows + k),
                per_item_binding: 0,
            },
            Op::ShrinkageNll { levels, n, m } => Stage {
                name: "shrinkage NLL (cpu)",
                items: levels as u64,
                fixed: b(n * m + n * n),
                fixed_binding: 0,
                per_item: b(n * n + n * m),
                per_item_binding: 0,
            },
        }
    }

    fn shares_host_memory(&self) -> bool {
        true
    }

    fn check_dtype(&self, _dtype: Dtype) -> Result<()> {
        Ok(())
    }

    fn upload_features(
        &self,
        a: ArrayView2<f64>,
        layout: FeatureLayout,
        _dtype: Dtype,
    ) -> Result<CpuFeatures> {
        let at = if layout.bias {
            linalg::transposed_with_bias(a)
        } else {
            linalg::transposed(a)
        };
        let centred = layout.correlations.then(|| {
            let mut xt = linalg::transposed(a);
            let ss = linalg::centre_rows(&mut xt);
            (xt, ss)
        });
        Ok(CpuFeatures {
            at,
            centred,
            rows: a.nrows(),
        })
    }

    fn upload_targets(&self, y: ArrayView2<f64>, _dtype: Dtype) -> Result<CpuTargets> {
        Ok(CpuTargets {
            yt: linalg::transposed(y),
        })
    }

    fn gram(&self, a: &CpuFeatures) -> Result<linalg::Gram> {
        Ok(linalg::gram_lower_t(a.at.as_ref()))
    }

    fn gram_to_host(&self, g: linalg::Gram) -> Result<linalg::Gram> {
        Ok(g)
    }

    fn cross(&self, a: &CpuFeatures, b: &CpuTargets) -> Result<Array2<f64>> {
        Ok(cross_rows(b.yt.as_ref(), a.at.as_ref()).reversed_axes())
    }

    fn abs_correlations(&self, x: &CpuFeatures, y: &CpuTargets) -> Result<Array2<f64>> {
        let (xc, ssx) = x.centred.as_ref().ok_or_else(|| {
            crate::Error::InvalidInput("features uploaded without correlation statistics".into())
        })?;
        let mut yt = y.yt.clone();
        let ssy = linalg::centre_rows(&mut yt);
        let mut num = cross_rows(yt.as_ref(), xc.as_ref());
        finish_correlations(&mut num, ssx, &ssy, x.rows);
        Ok(num)
    }

    fn solve_selected(
        &self,
        g: &linalg::Gram,
        x: &CpuFeatures,
        y: &CpuTargets,
        idx: ArrayView2<u32>,
        alpha: f64,
    ) -> Result<Solved> {
        let m = idx.ncols();
        let h = cross_rows(y.yt.as_ref(), x.at.as_ref());
        let results: Vec<std::result::Result<Vec<f64>, usize>> = (0..idx.nrows())
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
                    let iu = idx.row(u);
                    let iu = iu.as_slice().expect("row-major indices");
                    gather_system(g, iu, alpha, a);
                    for (r, &i) in iu.iter().enumerate() {
                        rhs[(r, 0)] = h[(u, i as usize)];
                    }
                    cholesky_solve_in_place(
                        a.as_mut(),
                        rhs.as_mut(),
                        Par::Seq,
                        MemStack::new(mem),
                    )?;
                    Ok((0..m).map(|r| rhs[(r, 0)]).collect())
                },
            )
            .collect();
        let mut theta = Vec::with_capacity(idx.nrows() * m);
        let mut failed = Vec::with_capacity(idx.nrows());
        for r in results {
            match r {
                Ok(t) => {
                    theta.extend(t);
                    failed.push(None);
                }
                Err(p) => {
                    theta.extend(std::iter::repeat_n(f64::NAN, m));
                    failed.push(Some(p));
                }
            }
        }
        Ok(Solved { theta, failed })
    }

    fn sparse_predict(
        &self,
        x: &CpuFeatures,
        idx: ArrayView2<u32>,
        w: ArrayView2<f64>,
        b: ArrayView1<f64>,
        _dtype: Dtype,
    ) -> Result<Array2<f64>> {
        // `x.at` is Xᵀ column-major: column r is sample r, contiguous
        let (rows, units) = (x.rows, idx.nrows());
        let mut out_t = Array2::<f64>::zeros((units, rows));
        out_t
            .axis_iter_mut(Axis(0))
            .into_par_iter()
            .enumerate()
            .for_each(|(u, mut col)| {
                for (r, o) in col.iter_mut().enumerate() {
                    let xr = x.at.col(r);
                    let mut acc = 0.0;
                    for (m, &j) in idx.row(u).iter().enumerate() {
                        acc += xr[j as usize] * w[(u, m)];
                    }
                    *o = acc + b[u];
                }
            });
        Ok(out_t.reversed_axes().as_standard_layout().into_owned())
    }

    fn shrinkage_nll(
        &self,
        cov: ArrayView2<f64>,
        pts: ArrayView2<f64>,
        levels: &[f64],
        dtype: Dtype,
    ) -> Result<Vec<f64>> {
        let (m, n) = pts.dim();
        let stage = self.plan(
            Op::ShrinkageNll {
                levels: levels.len(),
                n,
                m,
            },
            dtype,
        );
        let chunk = planner::items_per_chunk(&stage, &self.limits())? as usize;
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
