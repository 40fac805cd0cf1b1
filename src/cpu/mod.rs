//! The CPU backend: faer for the dense products and factorisations, rayon across units and
//! shrinkage levels. The selection path runs on one centred copy of X ([`centred`]) in the fit's
//! precision (f32 products at f32 speed for f32 fits; the small systems are solved in f64, as
//! the reference does); the dense paths and predictions compute in f64 (an f32 fit's inputs
//! are rounded to f32 by the model layer first and its outputs rounded back).
//!
//! Matrices are held transposed (`Aᵀ`, column-major, SIMD-aligned columns): the operand layout
//! faer's products run fastest on.

pub mod blocks;
pub mod centred;
pub mod recycle;
pub mod solve;

use crate::backend::{Backend, FeatureLayout, Op, Solved};
use crate::device::planner::{self, Limits, Stage};
use crate::error::Result;
use crate::linalg::{self, cholesky_scratch, Real};
use crate::Dtype;
use centred::Centred;
use faer::dyn_stack::MemStack;
use faer::{Mat, MatMut, Par};
use ndarray::{Array2, ArrayView1, ArrayView2, Axis};
use rayon::prelude::*;
use solve::{CentredSystem, SolveWork};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// The CPU backend with a memory budget in bytes.
#[derive(Debug, Clone)]
pub struct CpuBackend {
    budget: u64,
    /// The chunk loop's large buffers, kept from one chunk for the next.
    recycler: Arc<recycle::Recycler>,
}

impl CpuBackend {
    /// A backend that plans against `budget` bytes.
    pub fn new(budget: u64) -> Self {
        CpuBackend {
            budget,
            recycler: Arc::default(),
        }
    }
}

/// A features matrix on the CPU: `Aᵀ` (with the bias row when asked for), or for the
/// correlations layout (the selection path) one centred copy in the fit's precision instead.
pub struct CpuFeatures {
    form: Form,
    rows: usize,
    /// An f64 selection path whose Gram matrix is held in f32, the solves refined against the
    /// data ([`FeatureLayout::low_precision_gram`], taken unless `NEUROFIT_CPU_SOLVE=f64`).
    low_gram: bool,
}

/// How the features are held.
enum Form {
    /// `Aᵀ` as uploaded (f64).
    Plain(Mat<f64>),
    /// Centred, f64.
    C64(Centred<f64>),
    /// Centred, f32.
    C32(Centred<f32>),
}

/// A chunk of targets on the CPU: `Yᵀ`, and (made on first use by the selection path) its
/// centred copy and the centred cross products `YcᵀXc`, shared by the correlations and the
/// right-hand sides.
pub struct CpuTargets {
    yt: Mat<f64>,
    c64: OnceLock<Centred<f64>>,
    c32: OnceLock<Centred<f32>>,
    h64: OnceLock<Array2<f64>>,
    h32: OnceLock<Array2<f32>>,
    /// Where the cross products go back when the chunk is done.
    recycler: Arc<recycle::Recycler>,
}

impl Drop for CpuTargets {
    fn drop(&mut self) {
        if let Some(h) = self.h64.take() {
            recycle_array(&self.recycler, h);
        }
        if let Some(h) = self.h32.take() {
            recycle_array(&self.recycler, h);
        }
    }
}

/// Hands an owned array's buffer to `r` (only a whole, unsliced one).
fn recycle_array<T: recycle::Recyclable>(r: &recycle::Recycler, a: Array2<T>) {
    let len = a.len();
    let (v, offset) = a.into_raw_vec_and_offset();
    if offset == Some(0) && v.len() == len {
        r.keep(v);
    }
}

/// The Gram matrix on the CPU: of `Aᵀ` as uploaded, or centred (`XcᵀXc`, the bias terms
/// restored per system).
pub enum CpuGram {
    /// `A Aᵀ` of the uploaded `Aᵀ` (lower triangle).
    Plain(linalg::Gram),
    /// `XcᵀXc` in f64.
    Centred64(linalg::Gram<f64>, Vec<f64>, usize),
    /// `XcᵀXc` in f32.
    Centred32(linalg::Gram<f32>, Vec<f64>, usize),
    /// An f64 fit's `XcᵀXc` rounded to f32: the per-unit solves factor it and refine against
    /// the f64 data (it is never handed to the host).
    Centred64Low(linalg::Gram<f32>),
}

/// Picks the per-precision members of the CPU's containers.
trait Prec: Real + recycle::Recyclable {
    fn targets(t: &CpuTargets) -> (&OnceLock<Centred<Self>>, &OnceLock<Array2<Self>>);
}

impl Prec for f64 {
    fn targets(t: &CpuTargets) -> (&OnceLock<Centred<f64>>, &OnceLock<Array2<f64>>) {
        (&t.c64, &t.h64)
    }
}

impl Prec for f32 {
    fn targets(t: &CpuTargets) -> (&OnceLock<Centred<f32>>, &OnceLock<Array2<f32>>) {
        (&t.c32, &t.h32)
    }
}

/// The centred targets and `YcᵀXc` of `y` against `x` (computed once per chunk).
fn centred_cross<'a, T: Prec>(
    x: &Centred<T>,
    y: &'a CpuTargets,
) -> (&'a Centred<T>, &'a Array2<T>) {
    let (c, h) = T::targets(y);
    let yc = c.get_or_init(|| Centred::of_rows(y.yt.as_ref()));
    let h = h.get_or_init(|| centred::cross(yc, x, &y.recycler));
    (yc, h)
}

/// Each row of `idx` (`units × m`) in ascending order (each column of G is then read front to
/// back; the bias, index F, stays last), and for each sorted entry its position in the row.
fn ascending_rows(idx: ArrayView2<u32>) -> (Vec<u32>, Vec<u32>) {
    let (units, m) = idx.dim();
    let mut sorted = vec![0u32; units * m];
    let mut from = vec![0u32; units * m];
    sorted
        .par_chunks_mut(m.max(1))
        .zip(from.par_chunks_mut(m.max(1)))
        .enumerate()
        .for_each(|(u, (s, o))| {
            let mut pairs: Vec<(u32, u32)> = idx
                .row(u)
                .iter()
                .enumerate()
                .map(|(r, &j)| (j, r as u32))
                .collect();
            pairs.sort_unstable();
            for ((sj, oj), (j, r)) in s.iter_mut().zip(o.iter_mut()).zip(pairs) {
                *sj = j;
                *oj = r;
            }
        });
    (sorted, from)
}

/// A unit's solution `x` (in ascending order of its indices) put back in the order of its row
/// (`from`: each sorted entry's position in the row, from [`ascending_rows`]).
fn in_row_order(from: &[u32], x: &[f64]) -> Vec<f64> {
    let mut theta = vec![0.0; from.len()];
    for (&r, &v) in from.iter().zip(x) {
        theta[r as usize] = v;
    }
    theta
}

/// Solves every unit's system in parallel: `solve(u, idx, work)` gathers unit `u`'s system for
/// the feature indices `idx` into `work` and solves it there; `idx` is the unit's row of `idx`
/// in ascending order ([`ascending_rows`]). The solutions come back in the order of `idx`'s row;
/// a failed factorisation names the pivot's position in that row.
fn solve_units<F>(
    idx: ArrayView2<u32>,
    work: impl Fn() -> SolveWork + Sync + Send,
    solve: F,
) -> Vec<std::result::Result<Vec<f64>, usize>>
where
    F: Fn(usize, &[u32], &mut SolveWork) -> std::result::Result<(), usize> + Sync,
{
    let m = idx.ncols();
    let (sorted, from) = ascending_rows(idx);
    (0..idx.nrows())
        .into_par_iter()
        .map_init(work, |work, u| {
            let from = &from[u * m..(u + 1) * m];
            solve(u, &sorted[u * m..(u + 1) * m], work).map_err(|p| from[p] as usize)?;
            Ok(in_row_order(from, work.solution()))
        })
        .collect()
}

/// Solves every unit's centred system, a batch of `batch` units at a time: each unit's row of
/// `idx` is put in ascending order ([`ascending_rows`]), the batch's blocks are gathered from `g`
/// ([`blocks::gather_blocks`], into the scratch buffer kept by `recycler`), and the units are
/// solved in parallel: `solve(u, sorted, block, work)` fills unit `u`'s vectors for its sorted
/// indices and solves with its packed block. The solutions come back in the order of `idx`'s
/// row; a failed factorisation names the pivot's position in that row.
fn solve_batched<T: Prec, F>(
    g: &linalg::Gram<T>,
    idx: ArrayView2<u32>,
    batch: usize,
    recycler: &recycle::Recycler,
    work: impl Fn() -> SolveWork + Sync + Send,
    solve: F,
) -> Vec<std::result::Result<Vec<f64>, usize>>
where
    F: Fn(usize, &[u32], &[T], &mut SolveWork) -> std::result::Result<(), usize> + Sync,
{
    let (units, m) = idx.dim();
    if units == 0 {
        return Vec::new();
    }
    let k = m - 1;
    let (sorted, order) = ascending_rows(idx);
    let batch = batch.clamp(1, units);
    let len = blocks::packed_len(k);
    let mut buffer = recycler.take_scratch::<T>(batch * len);
    let pool = std::sync::Mutex::new(Vec::<SolveWork>::new());
    let mut results = Vec::with_capacity(units);
    for u0 in (0..units).step_by(batch) {
        let u1 = (u0 + batch).min(units);
        blocks::gather_blocks(g, &sorted[u0 * m..u1 * m], m, k, &mut buffer);
        let buffer = &buffer;
        let solved: Vec<_> = (u0..u1)
            .into_par_iter()
            .map_init(
                || Pooled::take(&pool, &work),
                |pooled, u| {
                    let work = pooled.get();
                    let row = &sorted[u * m..(u + 1) * m];
                    let from = &order[u * m..(u + 1) * m];
                    let block = &buffer[(u - u0) * len..(u - u0 + 1) * len];
                    solve(u, row, block, work).map_err(|p| from[p] as usize)?;
                    Ok(in_row_order(from, work.solution()))
                },
            )
            .collect();
        results.extend(solved);
    }
    recycler.keep_scratch(buffer);
    results
}

/// A workspace taken from a pool for one rayon job, and put back when the job is done: the
/// batches' parallel loops reuse a few workspaces instead of allocating (and faulting in) new
/// ones for every split of every batch.
struct Pooled<'a> {
    work: Option<SolveWork>,
    pool: &'a std::sync::Mutex<Vec<SolveWork>>,
}

impl<'a> Pooled<'a> {
    fn take(pool: &'a std::sync::Mutex<Vec<SolveWork>>, make: &impl Fn() -> SolveWork) -> Self {
        let kept = pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        Pooled {
            work: Some(kept.unwrap_or_else(make)),
            pool,
        }
    }

    fn get(&mut self) -> &mut SolveWork {
        self.work.as_mut().expect("held until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.work.take() {
            self.pool.lock().unwrap_or_else(|e| e.into_inner()).push(w);
        }
    }
}

/// Units per batch of [`solve_batched`] for this backend, blocks of `T`.
fn batch_for<T: Real>(budget: u64, units: usize, m: usize) -> usize {
    blocks::batch_units(
        units,
        m.saturating_sub(1),
        T::BYTES as u64,
        budget,
        rayon::current_num_threads(),
    )
}

/// The selection path's solves on centred operands. Every row of `idx` must be feature
/// indices below F followed by the bias index F ([`Backend::solve_selected`]'s contract);
/// anything else is refused before any system is solved.
#[allow(clippy::too_many_arguments)]
fn solve_centred<T: Prec>(
    g: &linalg::Gram<T>,
    mean_x: &[f64],
    rows: usize,
    x: &Centred<T>,
    y: &CpuTargets,
    idx: ArrayView2<u32>,
    alpha: f64,
    (budget, recycler): (u64, &recycle::Recycler),
) -> Result<UnitResults> {
    check_selection(idx, mean_x.len())?;
    let m = idx.ncols();
    let (yc, h) = centred_cross(x, y);
    let refined = AtomicUsize::new(0);
    let results = solve_batched(
        g,
        idx,
        batch_for::<T>(budget, idx.nrows(), m),
        recycler,
        || SolveWork::new(m),
        |u, iu, block, work| {
            // ascending order keeps the bias, index F, last
            let features = &iu[..iu.len() - 1];
            let (xbar, rhs) = work.centred_vectors();
            for ((xb, r), &j) in xbar.iter_mut().zip(rhs.iter_mut()).zip(features) {
                *xb = mean_x[j as usize];
                *r = h[(u, j as usize)].f64();
            }
            let sys = CentredSystem {
                n: rows as f64,
                mean_y: yc.mean[u],
                alpha,
            };
            counted(&refined, work, |w| w.solve_packed(block, sys, None))
        },
    );
    Ok((results, refined.into_inner()))
}

/// One unit's solve, counting it in `refined` when the workspace solved it in mixed precision.
fn counted(
    refined: &AtomicUsize,
    work: &mut SolveWork,
    solve: impl FnOnce(&mut SolveWork) -> std::result::Result<(), usize>,
) -> std::result::Result<(), usize> {
    let before = work.refined();
    let r = solve(work);
    if work.refined() > before {
        refined.fetch_add(1, Ordering::Relaxed);
    }
    r
}

/// Per-unit solutions (or the failed pivot) and how many units were refined in mixed precision.
type UnitResults = (Vec<std::result::Result<Vec<f64>, usize>>, usize);

/// The environment variable that overrides [`FeatureLayout::low_precision_gram`] for f64
/// selection fits on the CPU: `f32` (always hold the Gram matrix in f32 and refine against the
/// data), `f64` (never); anything else leaves the choice to the fit's cost rule.
pub const GRAM_ENV: &str = "NEUROFIT_CPU_GRAM";

/// `Some(low)` when [`GRAM_ENV`] forces the choice (read at every upload).
fn gram_override() -> Option<bool> {
    match std::env::var(GRAM_ENV).ok()?.trim() {
        "f32" => Some(true),
        "f64" => Some(false),
        _ => None,
    }
}

/// Refuses index rows other than feature indices below `f` followed by the bias index `f`
/// ([`Backend::solve_selected`]'s contract), before any system is solved.
fn check_selection(idx: ArrayView2<u32>, f: usize) -> Result<()> {
    if let Some(u) = idx.rows().into_iter().position(|row| {
        row.iter().last() != Some(&(f as u32)) || row.iter().rev().skip(1).any(|&j| j as usize >= f)
    }) {
        return Err(crate::Error::InvalidInput(format!(
            "solve_selected: row {u} of the index matrix must hold feature indices below {f} followed by the bias index {f}"
        )));
    }
    Ok(())
}

/// The f64 selection path's solves on the f32 Gram matrix, refined against the f64 data.
fn solve_centred_data(
    g: &linalg::Gram<f32>,
    x: &Centred<f64>,
    rows: usize,
    y: &CpuTargets,
    idx: ArrayView2<u32>,
    alpha: f64,
    (budget, recycler): (u64, &recycle::Recycler),
) -> Result<UnitResults> {
    check_selection(idx, x.mean.len())?;
    let m = idx.ncols();
    let (yc, h) = centred_cross(x, y);
    let refined = AtomicUsize::new(0);
    let results = solve_batched(
        g,
        idx,
        batch_for::<f32>(budget, idx.nrows(), m),
        recycler,
        || SolveWork::with_data(m, rows),
        |u, iu, block, work| {
            let features = &iu[..iu.len() - 1];
            let (xbar, rhs) = work.centred_vectors();
            for ((xb, r), &j) in xbar.iter_mut().zip(rhs.iter_mut()).zip(features) {
                *xb = x.mean[j as usize];
                *r = h[(u, j as usize)];
            }
            let cols: Vec<&[f64]> = features
                .iter()
                .map(|&j| {
                    x.column(j as usize)
                        .expect("features are stored a variable per column")
                })
                .collect();
            let sys = CentredSystem {
                n: rows as f64,
                mean_y: yc.mean[u],
                alpha,
            };
            counted(&refined, work, |w| w.solve_packed(block, sys, Some(&cols)))
        },
    );
    Ok((results, refined.into_inner()))
}

/// `bt · atᵀ` (`q × p`), computed so that each row of the result does not depend on how many
/// rows `bt` has: faer takes a matrix-vector path for a single row, whose rounding differs from
/// its matrix-matrix kernel, so a single row is computed as two (measured: with one unit per
/// chunk, YᵀX₁ differed by up to 1.3e-10 absolute at fc8 size; every width from 2 up agrees
/// bitwise).
fn cross_rows<T: Real>(bt: faer::MatRef<'_, T>, at: faer::MatRef<'_, T>) -> Array2<T> {
    rows_independent(bt, at, linalg::cross_t)
}

/// `product(bt, at)` for a product whose rows are computed independently by faer's
/// matrix-matrix kernel: a single row of `bt` goes through it as two (see [`cross_rows`]).
fn rows_independent<T: Real>(
    bt: faer::MatRef<'_, T>,
    at: faer::MatRef<'_, T>,
    product: impl Fn(faer::MatRef<'_, T>, faer::MatRef<'_, T>) -> Array2<T>,
) -> Array2<T> {
    if bt.nrows() == 1 {
        let twice = linalg::mat_from_fn(2, bt.ncols(), |_, j| bt[(0, j)]);
        let out = product(twice.as_ref(), at);
        return out.slice(ndarray::s![0..1, ..]).to_owned();
    }
    product(bt, at)
}

/// The solves on the uploaded (uncentred) `X₁ᵀ` and its Gram matrix.
fn solve_plain(
    g: &linalg::Gram,
    at: &Mat<f64>,
    y: &CpuTargets,
    idx: ArrayView2<u32>,
    alpha: f64,
) -> Vec<std::result::Result<Vec<f64>, usize>> {
    let h = cross_rows(y.yt.as_ref(), at.as_ref());
    let m = idx.ncols();
    solve_units(
        idx,
        || SolveWork::new(m),
        |u, iu, work| {
            let (a, rhs) = work.parts();
            gather_system(g, iu, alpha, a);
            for (r, &i) in iu.iter().enumerate() {
                rhs[r] = h[(u, i as usize)];
            }
            work.solve()
        },
    )
}

/// Gathers the `m × m` system of one unit from the lower triangle of `g`, adding `alpha` on the
/// diagonal, into `a` (column-major).
fn gather_system(g: &linalg::Gram, idx: &[u32], alpha: f64, mut a: MatMut<'_, f64>) {
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
    let mut a = linalg::mat_from_fn(n, n, |i, j| {
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
    type Gram = CpuGram;

    fn describe(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn limits(&self) -> Limits {
        Limits::cpu(self.budget)
    }

    fn plan(&self, op: Op, dtype: Dtype) -> Stage {
        let threads = rayon::current_num_threads() as u64;
        let b = |x: usize| x as u64 * 8;
        // elements of the selection path's centred operands, in the fit's precision
        let t = |x: usize| x as u64 * dtype.size();
        match op {
            Op::Features { rows, cols, layout } => Stage::fixed(
                "features (cpu)",
                if layout.correlations {
                    // one centred copy, its means and sums of squares
                    t(rows * cols) + b(2 * cols)
                } else {
                    b(rows * (cols + usize::from(layout.bias)))
                },
            ),
            // f64 (or f32 and, while it is formed, an f32 copy of the centred features)
            // the selection path's is packed (the lower triangle only)
            Op::Gram {
                rows,
                dim,
                selection: true,
            } => Stage::fixed(
                "gram (cpu)",
                linalg::Gram::<f64>::packed_bytes(dim, 8)
                    .max(linalg::Gram::<f32>::packed_bytes(dim, 4) + 4 * (rows * dim) as u64),
            ),
            Op::Gram { rows, dim, .. } => Stage::fixed(
                "gram (cpu)",
                b(dim.div_ceil(8) * 8 * dim)
                    .max(4 * (dim.div_ceil(16) * 16 * dim + rows * dim) as u64),
            ),
            Op::SelectedUnits {
                units,
                rows,
                features,
                m,
            } => Stage {
                name: "per-unit solves (cpu)",
                items: units as u64,
                // per thread: the solve workspace (f64 system, its f32 copy, right-hand sides,
                // Cholesky scratch: within 2m² + m f64), the selected data columns an f32 Gram
                // matrix's fall-back copies (rows · m f64) and the top-k keys (16 bytes a
                // feature); one batch of gathered blocks (in the fit's precision, the most an
                // f32 Gram matrix's take) with its feature-ordered index
                fixed: threads * (b(2 * m * m + m + rows * m) + 16 * features as u64) + {
                    let k = m.saturating_sub(1);
                    let batch =
                        blocks::batch_units(units, k, dtype.size(), self.budget, threads as usize);
                    batch as u64 * blocks::unit_bytes(k, dtype.size())
                },
                fixed_binding: 0,
                // Yᵀ, |r|, the centred Yᵀ and YcᵀXc rows, the selection and the solution, and
                // the sorted selection with where each entry came from
                per_item: b(rows + features + 1 + 2 * m) + t(rows + features) + 8 * m as u64,
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
        dtype: Dtype,
    ) -> Result<CpuFeatures> {
        if layout.correlations {
            // the selection path: one centred copy serves correlations, Gram and cross products
            let form = match dtype {
                Dtype::F64 => Form::C64(Centred::of_columns(a)),
                Dtype::F32 => Form::C32(Centred::of_columns(a)),
            };
            return Ok(CpuFeatures {
                form,
                rows: a.nrows(),
                low_gram: gram_override().unwrap_or(layout.low_precision_gram)
                    && dtype == Dtype::F64
                    && solve::mixed_allowed(),
            });
        }
        // an f32 fit's values rounded as they are copied (the trait's contract)
        let at = match dtype {
            Dtype::F64 => linalg::transposed_rounded(a, layout.bias, |v| v),
            Dtype::F32 => linalg::transposed_rounded(a, layout.bias, |v| dtype.round(v)),
        };
        Ok(CpuFeatures {
            form: Form::Plain(at),
            rows: a.nrows(),
            low_gram: false,
        })
    }

    fn upload_targets(&self, y: ArrayView2<f64>, _dtype: Dtype) -> Result<CpuTargets> {
        Ok(CpuTargets {
            yt: linalg::transposed(y),
            c64: OnceLock::new(),
            c32: OnceLock::new(),
            h64: OnceLock::new(),
            h32: OnceLock::new(),
            recycler: self.recycler.clone(),
        })
    }

    fn gram(&self, a: &CpuFeatures) -> Result<CpuGram> {
        Ok(match &a.form {
            Form::C64(c) if a.low_gram => CpuGram::Centred64Low(c.gram_f32()),
            Form::C64(c) => {
                CpuGram::Centred64(linalg::gram_lower_packed_t(c.ct()), c.mean.clone(), a.rows)
            }
            Form::C32(c) => {
                CpuGram::Centred32(linalg::gram_lower_packed_t(c.ct()), c.mean.clone(), a.rows)
            }
            Form::Plain(at) => CpuGram::Plain(linalg::gram_lower_t(at.as_ref())),
        })
    }

    fn gram_to_host(&self, g: CpuGram) -> Result<linalg::Gram> {
        Ok(match g {
            CpuGram::Plain(g) => g,
            CpuGram::Centred64(g, mean, n) => centred::uncentred_gram(&g, &mean, n),
            CpuGram::Centred32(g, mean, n) => centred::uncentred_gram(&g, &mean, n),
            CpuGram::Centred64Low(_) => {
                return Err(crate::Error::InvalidInput(
                    "the Gram matrix of a selection-path upload with low_precision_gram is held in f32 for the per-unit solves; upload without it to read the Gram matrix".into(),
                ))
            }
        })
    }

    fn cross(&self, a: &CpuFeatures, b: &CpuTargets) -> Result<Array2<f64>> {
        Ok(match &a.form {
            Form::C64(c) => centred::uncentred_cross(c, b.yt.as_ref()),
            Form::C32(c) => centred::uncentred_cross(c, b.yt.as_ref()),
            Form::Plain(at) => cross_rows(b.yt.as_ref(), at.as_ref()).reversed_axes(),
        })
    }

    fn abs_correlations(&self, x: &CpuFeatures, y: &CpuTargets) -> Result<Array2<f64>> {
        match &x.form {
            Form::C64(c) => {
                let (yc, h) = centred_cross(c, y);
                Ok(centred::abs_correlations(h, c, yc, x.rows, &self.recycler))
            }
            Form::C32(c) => {
                let (yc, h) = centred_cross(c, y);
                Ok(centred::abs_correlations(h, c, yc, x.rows, &self.recycler))
            }
            Form::Plain(_) => Err(crate::Error::InvalidInput(
                "features uploaded without correlation statistics".into(),
            )),
        }
    }

    fn recycle(&self, a: Array2<f64>) {
        recycle_array(&self.recycler, a);
    }

    fn solve_selected(
        &self,
        g: &CpuGram,
        x: &CpuFeatures,
        y: &CpuTargets,
        idx: ArrayView2<u32>,
        alpha: f64,
    ) -> Result<Solved> {
        let m = idx.ncols();
        let (results, refined) = match (g, &x.form) {
            (CpuGram::Centred64(g, mean, n), Form::C64(c)) => {
                solve_centred(g, mean, *n, c, y, idx, alpha, (self.budget, &self.recycler))?
            }
            (CpuGram::Centred32(g, mean, n), Form::C32(c)) => {
                solve_centred(g, mean, *n, c, y, idx, alpha, (self.budget, &self.recycler))?
            }
            (CpuGram::Centred64Low(g), Form::C64(c)) => {
                solve_centred_data(g, c, x.rows, y, idx, alpha, (self.budget, &self.recycler))?
            }
            (CpuGram::Plain(g), Form::Plain(at)) => (solve_plain(g, at, y, idx, alpha), 0),
            _ => {
                return Err(crate::Error::InvalidInput(
                    "the Gram matrix and the features come from different uploads".into(),
                ))
            }
        };
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
        Ok(Solved {
            theta,
            failed,
            refined,
        })
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
        let Form::Plain(at) = &x.form else {
            return Err(crate::Error::InvalidInput(
                "sparse predict needs features uploaded as given".into(),
            ));
        };
        let (rows, units) = (x.rows, idx.nrows());
        let mut out_t = Array2::<f64>::zeros((units, rows));
        out_t
            .axis_iter_mut(Axis(0))
            .into_par_iter()
            .enumerate()
            .for_each(|(u, mut col)| {
                for (r, o) in col.iter_mut().enumerate() {
                    let xr = at.col(r);
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
        let pts_t = linalg::mat_from_fn(n, m, |i, j| pts[(j, i)]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn an_f32_gram_with_data_residuals_solves_like_the_f64_gram() {
        let be = CpuBackend::new(1 << 30);
        let (n, f, units, k) = (120, 90, 6, 12);
        // baselines ~100 as in fMRI data, and a correlated pair of features
        let x = Array2::from_shape_fn((n, f), |(i, j)| {
            let h = ((i * 7919 + j * 104_729) % 1009) as f64 / 1009.0;
            100.0
                + j as f64
                + h
                + if j == 1 {
                    ((i * 31) % 17) as f64 * 0.3
                } else {
                    0.0
                }
        });
        let y = Array2::from_shape_fn((n, units), |(i, u)| {
            x[(i, u)] - 0.5 * x[(i, u + 3)] + ((i * 13 + u) % 7) as f64 * 0.1
        });
        let idx = Array2::from_shape_fn((units, k + 1), |(u, r)| {
            if r == k {
                f as u32
            } else {
                ((u * 5 + r * 7) % f) as u32
            }
        });
        let solve = |low: bool| {
            let layout = FeatureLayout {
                bias: true,
                correlations: true,
                low_precision_gram: low,
            };
            let x1 = be.upload_features(x.view(), layout, Dtype::F64).unwrap();
            let g = be.gram(&x1).unwrap();
            assert_eq!(matches!(g, CpuGram::Centred64Low(_)), low);
            let t = be.upload_targets(y.view(), Dtype::F64).unwrap();
            let mut sorted = idx.clone();
            for mut row in sorted.rows_mut() {
                row.as_slice_mut().unwrap().sort_unstable();
            }
            be.solve_selected(&g, &x1, &t, sorted.view(), 2.0).unwrap()
        };
        let (low, full) = (solve(true), solve(false));
        assert!(low.failed.iter().chain(&full.failed).all(Option::is_none));
        let scale = full.theta.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        for (i, (a, b)) in low.theta.iter().zip(&full.theta).enumerate() {
            assert!((a - b).abs() <= 1e-9 * scale, "entry {i}: {a} vs {b}");
        }
        // the f32 Gram matrix is not handed to the host
        let layout = FeatureLayout {
            bias: true,
            correlations: true,
            low_precision_gram: true,
        };
        let x1 = be.upload_features(x.view(), layout, Dtype::F64).unwrap();
        let g = be.gram(&x1).unwrap();
        assert!(matches!(
            be.gram_to_host(g),
            Err(crate::Error::InvalidInput(_))
        ));
    }

    #[test]
    fn selected_solves_refuse_rows_without_the_bias_last() {
        let be = CpuBackend::new(1 << 30);
        let x = Array2::from_shape_fn((20, 5), |(i, j)| ((i * 7 + j * 3) % 11) as f64 + j as f64);
        let y = Array2::from_shape_fn((20, 2), |(i, u)| ((i * 5 + u) % 7) as f64);
        let layout = FeatureLayout {
            bias: true,
            correlations: true,
            low_precision_gram: false,
        };
        let x1 = be.upload_features(x.view(), layout, Dtype::F64).unwrap();
        let g = be.gram(&x1).unwrap();
        let t = be.upload_targets(y.view(), Dtype::F64).unwrap();
        let good = ndarray::arr2(&[[0u32, 3, 5], [4, 1, 5]]);
        let solved = be.solve_selected(&g, &x1, &t, good.view(), 1.0).unwrap();
        assert!(solved.failed.iter().all(Option::is_none));
        for bad in [
            ndarray::arr2(&[[0u32, 3, 5], [5, 1, 4]]), // bias not last
            ndarray::arr2(&[[0u32, 3, 5], [4, 1, 2]]), // no bias
            ndarray::arr2(&[[0u32, 6, 5], [4, 1, 5]]), // feature index out of range
        ] {
            match be.solve_selected(&g, &x1, &t, bad.view(), 1.0) {
                Err(crate::Error::InvalidInput(msg)) => {
                    assert!(msg.contains("bias index"), "{msg}")
                }
                other => panic!(
                    "{bad:?}: expected InvalidInput, got {:?}",
                    other.map(|s| s.failed)
                ),
            }
        }
    }
}
