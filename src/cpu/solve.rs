//! The per-unit SPD solves of the selection path: one reusable workspace per worker thread.
//!
//! **Centred systems, mixed precision.** A unit's system (spec: `(X₁ᵀX₁ + αI) θ = X₁ᵀy` on its
//! `k` selected features and the bias) is dominated by the voxels' baselines: `X₁ᵀX₁` has an
//! eigenvalue near `n·k·x̄²` (~10¹⁰ at fc8) next to ones near α, so it cannot be factored in f32.
//! Eliminating the bias exactly gives the `k × k` Schur complement
//! `S = B + c·x̄x̄ᵀ` with `B = XcᵀXc + αI` (centred, eigenvalues between α and a few 10⁵) and
//! `c = nα/(n+α)`, right-hand side `r = Xcᵀyc + c·x̄·ȳ`, and afterwards
//! `θ_bias = n(ȳ − x̄ᵀθ)/(n+α)`. `B` is rounded to f32 and factored there (faer's f32
//! Cholesky, ~1.7× the f64 rate at k = 500), and `θ` is refined in f64: `d = P⁻¹(r − Sθ)`
//! with `P = B̂ + c·x̄x̄ᵀ` applied through the f32 factor and the Sherman–Morrison formula, the
//! residual computed with the f64 `B`, until the backward error
//! `‖r − Sθ‖∞ ≤ √k · ‖S‖∞ · ‖θ‖∞ · ε₆₄` (the stopping rule of LAPACK's `dsposv`), at most
//! [`MAX_REFINE`] steps. The result is then as accurate as a backward-stable f64 solve of `S`.
//!
//! **The block comes packed** ([`super::blocks`]): `XcᵀXc` on the unit's features, the lower
//! triangle by columns, in the Gram matrix's precision, as the batch gather left it. The f32
//! factor's copy is rounded from it and the residuals read it in place (an f32 Gram matrix's
//! entries widened to f64: the f32 fit's `B` is exactly the f32 Gram matrix's, as the reference
//! solves its f32 Gram matrix in f64).
//!
//! **Residuals from the data (f64 fits with an f32 Gram matrix).** Where the fit's cost rule
//! ([`crate::backend::low_precision_gram_pays`]) holds the Gram matrix in f32, there is no f64
//! `B`: the block is the f32 Gram matrix's, and the residual's
//! `XcᵀXc·θ` is computed from the unit's selected centred f64 columns, read in place
//! (`Xsᵀ(Xs θ)` per block of samples, one pass over the columns a step). The stopping rule is the
//! same, so the solution is as accurate as a backward-stable f64 solve of the system of the
//! data. Where this does not converge, `XsᵀXs` is formed in f64 from the columns and the full
//! system factored in f64, with the f64 path's singular-system verdict.
//!
//! **The f64 path decides otherwise.** When the f32 factorisation fails or meets a pivot
//! `l² ≤ k · ε₃₂ · b_jj`, when refinement does not converge (condition numbers of `B` beyond
//! ~10⁷), for systems gathered uncentred, and when `NEUROFIT_CPU_SOLVE=f64` asks for it, the
//! full `(k+1) × (k+1)` system is assembled exactly as before and factored in f64: its result
//! and its singular-system verdict are those of the f64 path, bit for bit. A system the mixed
//! path solves is positive definite up to the f32 rounding of `B` (the full system is PD exactly
//! when `S` is, `S ⪰ B`, and `B`'s f32 factor met no small pivot), so the two paths disagree on singularity only at the
//! f64 tolerance's edge: with α = 0 and baselines so large that the uncentred bias pivot falls
//! below `m·ε₆₄` of its diagonal (≳ 10⁵ × the features' spread), the f64 path reports a singular
//! system where the mixed path returns the (well-determined) solution.
//!
//! **Padding.** faer's kernels read and write the padding rows of a column-major matrix (the
//! rows between `m` and the column stride) and of their scratch. Left alone, those never-read
//! values drift into subnormal numbers over successive factorisations, and every SIMD
//! operation touching them then takes a microcode assist (measured at conv4 size, 501 × 501
//! and 245 systems per worker: 9 ms per system instead of 2 ms). The workspace owns padded,
//! 64-byte aligned buffers and clears the padding and the scratch before every factorisation.

use super::blocks::{packed_col, packed_len};
use crate::linalg::{cholesky_solve_in_place, singular_pivot_tolerance, with_simd, Real};
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt;
use faer::{MatMut, MatRef, Par};
use std::sync::OnceLock;

/// Most refinement steps before the f64 factorisation takes over.
pub const MAX_REFINE: usize = 30;

/// The environment variable that forces the f64 factorisation (`f64`) or allows the mixed one
/// (`mixed`, the default).
pub const SOLVE_ENV: &str = "NEUROFIT_CPU_SOLVE";

/// Whether the mixed-precision solve is allowed (read once per process).
pub fn mixed_allowed() -> bool {
    static MIXED: OnceLock<bool> = OnceLock::new();
    *MIXED.get_or_init(|| std::env::var(SOLVE_ENV).map_or(true, |v| v.trim() != "f64"))
}

/// A padded, 64-byte aligned column-major buffer of `rows × cols` elements.
struct Padded<T> {
    buf: Vec<T>,
    offset: usize,
    rows: usize,
    cols: usize,
    stride: usize,
}

impl<T: Copy + Default> Padded<T> {
    fn new(rows: usize, cols: usize) -> Self {
        let lanes = 64 / std::mem::size_of::<T>();
        let stride = rows.next_multiple_of(lanes).max(lanes);
        let buf = vec![T::default(); stride * cols + lanes];
        let offset = buf.as_ptr().align_offset(64).min(lanes - 1);
        Padded {
            buf,
            offset,
            rows,
            cols,
            stride,
        }
    }

    fn data(&mut self) -> &mut [T] {
        let len = self.stride * self.cols;
        &mut self.buf[self.offset..self.offset + len]
    }

    /// Sets the padding rows to zero.
    fn clear_padding(&mut self) {
        let (rows, stride) = (self.rows, self.stride);
        for col in self.data().chunks_exact_mut(stride) {
            col[rows..].fill(T::default());
        }
    }

    fn view(&self) -> MatRef<'_, T> {
        let len = self.stride * self.cols;
        MatRef::from_column_major_slice_with_stride(
            &self.buf[self.offset..self.offset + len],
            self.rows,
            self.cols,
            self.stride,
        )
    }

    fn view_mut(&mut self) -> MatMut<'_, T> {
        let (rows, cols, stride) = (self.rows, self.cols, self.stride);
        MatMut::from_column_major_slice_with_stride_mut(self.data(), rows, cols, stride)
    }
}

fn zeroed(mem: &mut MemBuffer) -> &mut MemStack {
    for b in mem.iter_mut() {
        *b = std::mem::MaybeUninit::new(0);
    }
    MemStack::new(mem)
}

/// Reusable workspace for solving many `m × m` SPD systems with one right-hand side each, one
/// after another on one thread.
pub struct SolveWork {
    m: usize,
    a: Padded<f64>,
    b: Padded<f64>,
    x: Vec<f64>,
    xbar: Vec<f64>,
    r: Vec<f64>,
    r0: Vec<f64>,
    u: Vec<f64>,
    w: Vec<f64>,
    a32: Padded<f32>,
    d32: Padded<f32>,
    diag: Vec<f64>,
    /// A block of `Xs θ` for residuals computed from the data ([`SolveWork::with_data`]).
    v: Vec<f64>,
    scratch: MemBuffer,
    scratch32: MemBuffer,
    mixed: bool,
    refined: usize,
}

/// What [`SolveWork::solve_packed`] needs besides the gathered block.
#[derive(Debug, Clone, Copy)]
pub struct CentredSystem {
    /// Number of samples.
    pub n: f64,
    /// The unit's mean response.
    pub mean_y: f64,
    /// Ridge penalty (on every diagonal entry, the bias included).
    pub alpha: f64,
}

impl SolveWork {
    /// A workspace for `m × m` systems; centred systems are tried in mixed precision unless
    /// `NEUROFIT_CPU_SOLVE=f64`.
    pub fn new(m: usize) -> Self {
        Self::with_mixed(m, mixed_allowed())
    }

    /// A workspace for `m × m` systems that tries mixed precision on centred systems when
    /// `mixed` is set.
    pub fn with_mixed(m: usize, mixed: bool) -> Self {
        let mixed = mixed && m > 1;
        let k = if mixed { m - 1 } else { 0 };
        let req64 = llt::factor::cholesky_in_place_scratch::<f64>(m, Par::Seq, Default::default())
            .or(llt::solve::solve_in_place_scratch::<f64>(m, 1, Par::Seq));
        let req32 = llt::factor::cholesky_in_place_scratch::<f32>(k, Par::Seq, Default::default())
            .or(llt::solve::solve_in_place_scratch::<f32>(k, 1, Par::Seq));
        SolveWork {
            m,
            a: Padded::new(m, m),
            b: Padded::new(m, 1),
            x: vec![0.0; m],
            xbar: vec![0.0; m],
            r: vec![0.0; k],
            r0: vec![0.0; k],
            u: vec![0.0; k],
            w: vec![0.0; k],
            a32: Padded::new(k, k),
            d32: Padded::new(k, 1),
            diag: vec![0.0; k],
            v: Vec::new(),
            scratch: MemBuffer::new(req64),
            scratch32: MemBuffer::new(req32),
            mixed,
            refined: 0,
        }
    }

    /// A workspace for `m × m` centred systems over `n` samples whose block comes from an f32
    /// Gram matrix and whose residuals are computed from the f64 data (solved by
    /// [`SolveWork::solve_packed`] with the data columns).
    pub fn with_data(m: usize, n: usize) -> Self {
        let mut w = Self::with_mixed(m, true);
        w.v = vec![0.0; sample_block(m.saturating_sub(1)).min(n).max(1)];
        w
    }

    /// The system matrix (only the lower triangle is read) and the right-hand side, for
    /// filling; solve with [`SolveWork::solve`].
    pub fn parts(&mut self) -> (MatMut<'_, f64>, &mut [f64]) {
        let m = self.m;
        (self.a.view_mut(), &mut self.b.data()[..m])
    }

    /// For a centred system (`m = k + 1`, the bias last): the features' means `x̄` and the
    /// right-hand side `Xcᵀyc`, for filling; the block comes to [`SolveWork::solve_packed`].
    pub fn centred_vectors(&mut self) -> (&mut [f64], &mut [f64]) {
        let k = self.m - 1;
        (&mut self.xbar[..k], &mut self.b.data()[..k])
    }

    /// Solves a centred system: `block` is `XcᵀXc` on the `k` features (without α), packed
    /// ([`super::blocks::packed_col`]), and [`SolveWork::centred_vectors`] holds `x̄` and
    /// `Xcᵀyc`. Mixed precision first (see the module documentation), with residuals from the
    /// block, or from the features' centred f64 columns `cols` (`n` samples each) where given;
    /// where that is not allowed or does not converge, the full system is solved in f64 (its
    /// `XcᵀXc` from `cols`, formed in f64, else the block widened). On success
    /// [`SolveWork::solution`] holds `θ`, the bias last; `Err(pivot)` as [`SolveWork::solve`].
    ///
    /// # Panics
    /// When `block` is shorter than `k(k+1)/2` or `cols` does not hold one column a feature.
    pub fn solve_packed<T: Real>(
        &mut self,
        block: &[T],
        sys: CentredSystem,
        cols: Option<&[&[f64]]>,
    ) -> std::result::Result<(), usize> {
        let k = self.m - 1;
        assert!(block.len() >= packed_len(k), "solve_packed: a whole block");
        if let Some(c) = cols {
            assert_eq!(c.len(), k, "solve_packed: one column a selected feature");
        }
        if k > 0 && self.mixed && self.solve_mixed(sys, block, cols) {
            self.refined += 1;
            return Ok(());
        }
        let mut a = self.a.view_mut().submatrix_mut(0, 0, k, k);
        match cols {
            Some(cols) if k > 0 => {
                let n = cols[0].len();
                let mut xs = crate::linalg::mat_zeros::<f64>(n, k);
                for (j, c) in cols.iter().enumerate() {
                    for (i, &v) in c.iter().enumerate() {
                        xs[(i, j)] = v;
                    }
                }
                faer::linalg::matmul::matmul(
                    a,
                    faer::Accum::Replace,
                    xs.transpose(),
                    xs.as_ref(),
                    1.0,
                    Par::Seq,
                );
            }
            _ => {
                for j in 0..k {
                    for (t, &v) in packed_col(block, k, j).iter().enumerate() {
                        a[(j + t, j)] = v.f64();
                    }
                }
            }
        }
        self.solve_full(sys)
    }

    /// Solves the system filled through [`SolveWork::parts`] in f64; on success
    /// [`SolveWork::solution`] holds `x`. `Err(pivot)` when the Cholesky finds the system not
    /// positive definite (see [`cholesky_solve_in_place`]).
    pub fn solve(&mut self) -> std::result::Result<(), usize> {
        self.a.clear_padding();
        self.b.clear_padding();
        let m = self.m;
        let rhs = MatMut::from_column_major_slice_mut(&mut self.b.data()[..m], m, 1);
        let stack = zeroed(&mut self.scratch);
        cholesky_solve_in_place(self.a.view_mut(), rhs, Par::Seq, stack)?;
        self.x.copy_from_slice(&self.b.data()[..m]);
        Ok(())
    }

    /// Assembles the full `(k+1) × (k+1)` system from the centred block in `a` (lower
    /// triangle), `x̄` and `Xcᵀyc`, and solves it in f64.
    fn solve_full(&mut self, sys: CentredSystem) -> std::result::Result<(), usize> {
        // X₁ᵀX₁ + αI and X₁ᵀy with the bias terms restored: XᵀX = XcᵀXc + n·x̄x̄ᵀ,
        // Xᵀ1 = n·x̄, 1ᵀ1 = n; Xᵀy = Xcᵀyc + n·x̄·ȳ, 1ᵀy = n·ȳ
        let (m, k, n) = (self.m, self.m - 1, sys.n);
        let xbar = &self.xbar;
        let mut a = self.a.view_mut();
        for j in 0..k {
            for i in j..k {
                let v = a[(i, j)] + n * xbar[i] * xbar[j];
                a[(i, j)] = if i == j { v + sys.alpha } else { v };
            }
            a[(k, j)] = n * xbar[j];
        }
        a[(k, k)] = n + sys.alpha;
        let b = &mut self.b.data()[..m];
        for j in 0..k {
            b[j] += n * xbar[j] * sys.mean_y;
        }
        b[k] = n * sys.mean_y;
        self.solve()
    }

    /// The solution after a successful solve.
    pub fn solution(&self) -> &[f64] {
        &self.x
    }

    /// How many systems this workspace solved in mixed precision.
    pub fn refined(&self) -> usize {
        self.refined
    }

    /// The mixed-precision attempt on the packed `block`; `false` leaves `x̄` and the
    /// right-hand side untouched. With `cols` the residuals come from the data columns, else
    /// from the block.
    fn solve_mixed<T: Real>(
        &mut self,
        sys: CentredSystem,
        block: &[T],
        cols: Option<&[&[f64]]>,
    ) -> bool {
        let k = self.m - 1;
        if k == 0 {
            return false;
        }
        let (n, alpha) = (sys.n, sys.alpha);
        let c = n * alpha / (n + alpha);
        let xbar = &self.xbar[..k];
        // B = XcᵀXc + αI in f32, its diagonal in f64, and ‖S‖∞ ≤ ‖B‖∞ + c·max|x̄|·Σ|x̄|
        let row_sums = &mut self.w;
        let stride = self.a32.stride;
        let (a32, diag) = (self.a32.data(), &mut self.diag[..k]);
        row_sums.fill(0.0);
        with_simd(
            #[inline(always)]
            || round_block(block, (a32, stride), diag, row_sums, alpha),
        );
        let xmax = xbar.iter().fold(0.0f64, |acc, &v| acc.max(v.abs()));
        let bnorm = row_sums.iter().fold(0.0f64, |acc, &v| acc.max(v));
        let snorm = bnorm + c * xmax * abs_sum(xbar);
        if !snorm.is_finite() {
            return false;
        }
        self.a32.clear_padding();
        self.d32.clear_padding();
        let stack = zeroed(&mut self.scratch32);
        if llt::factor::cholesky_in_place(
            self.a32.view_mut(),
            Default::default(),
            Par::Seq,
            stack,
            Default::default(),
        )
        .is_err()
        {
            return false;
        }
        let tol = singular_pivot_tolerance(k, f32::EPSILON as f64);
        {
            let l32 = self.a32.view();
            for j in 0..k {
                let l = l32[(j, j)] as f64;
                // NaN pivots fail too
                if (l * l).partial_cmp(&(tol * self.diag[j])) != Some(std::cmp::Ordering::Greater) {
                    return false;
                }
            }
        }
        // w = B̂⁻¹x̄ and the Sherman–Morrison factor γ = c / (1 + c·x̄ᵀw)
        let w = &mut self.w;
        apply_f32_factor(&self.a32, &mut self.d32, &mut self.scratch32, xbar, w);
        let gamma = c / (1.0 + c * dot(xbar, w));
        if !gamma.is_finite() {
            return false;
        }
        // r₀ = Xcᵀyc + c·x̄·ȳ
        let b = &self.b.buf[self.b.offset..self.b.offset + k];
        let r0 = &mut self.r0;
        for ((r, &bj), &xj) in r0.iter_mut().zip(b).zip(xbar) {
            *r = bj + c * xj * sys.mean_y;
        }
        let r = &mut self.r;
        r.copy_from_slice(r0);
        let u = &mut self.u;
        let theta = &mut self.x[..k];
        theta.fill(0.0);
        let thresh = (k as f64).sqrt() * snorm * f64::EPSILON;
        let mut converged = false;
        for _ in 0..MAX_REFINE {
            // θ += P⁻¹r = B̂⁻¹r − w·γ·(x̄ᵀB̂⁻¹r)
            apply_f32_factor(&self.a32, &mut self.d32, &mut self.scratch32, r, u);
            let s = gamma * dot(xbar, u);
            for ((t, &uj), &wj) in theta.iter_mut().zip(u.iter()).zip(w.iter()) {
                *t += uj - wj * s;
            }
            // r = r₀ − αθ − c·x̄(x̄ᵀθ) − XcᵀXc·θ (the f64 lower triangle, or the data)
            let xt = c * dot(xbar, theta);
            for (((rj, &r0j), &xj), &tj) in r.iter_mut().zip(r0.iter()).zip(xbar).zip(theta.iter())
            {
                *rj = r0j - xt * xj - alpha * tj;
            }
            if let Some(cols) = cols {
                subtract_data_product(cols, theta, &mut self.v, u, r);
            } else {
                let theta = &*theta;
                with_simd(
                    #[inline(always)]
                    || subtract_lower_product(block, theta, r),
                );
            }
            let rnorm = r.iter().fold(0.0f64, |acc, &v| acc.max(v.abs()));
            let tnorm = theta.iter().fold(0.0f64, |acc, &v| acc.max(v.abs()));
            if !rnorm.is_finite() || !tnorm.is_finite() {
                break;
            }
            if rnorm <= thresh * tnorm {
                converged = true;
                break;
            }
        }
        if converged {
            let xt = dot(xbar, theta);
            self.x[k] = n * (sys.mean_y - xt) / (n + alpha);
        }
        converged
    }
}

/// Samples per block of [`subtract_data_product`]: the block of every selected column
/// (`k × block` f64) stays within ~1 MiB, inside L2.
fn sample_block(k: usize) -> usize {
    (131_072 / k.max(1)).clamp(16, 2048) / 8 * 8
}

/// `r −= XsᵀXs·θ` for the selected centred columns `cols` (each `n` samples, read in place),
/// in f64: per block of samples, `v = Xs θ` on the block, then each column's dot product with
/// `v` added to `acc`, and `r −= acc` at the end. One pass over the columns from memory; the
/// block's second use comes from cache. The arithmetic (eight partial sums per dot product, no
/// fused multiply-add) is the same whichever instruction set runs it.
fn subtract_data_product(
    cols: &[&[f64]],
    theta: &[f64],
    v: &mut [f64],
    acc: &mut [f64],
    r: &mut [f64],
) {
    with_simd(
        #[inline(always)]
        || data_product(cols, theta, v, acc),
    );
    for (ri, a) in r.iter_mut().zip(acc.iter()) {
        *ri -= a;
    }
}

/// Forms the f32 block `B̂` for the mixed-precision solve: rounds the packed lower triangle
/// `block` (`k × k`, [`packed_col`]) into `a32` (`(buffer, column stride)`) with α added on the
/// diagonal, keeps the f64 diagonal (`diag`, `k` long) and adds each row's Σ|B| into
/// `row_sums` (for `‖B‖∞`).
#[inline(always)]
fn round_block<T: Real>(
    block: &[T],
    (a32, stride): (&mut [f32], usize),
    diag: &mut [f64],
    row_sums: &mut [f64],
    alpha: f64,
) {
    let k = diag.len();
    for j in 0..k {
        let dst = &mut a32[j * stride + j..j * stride + k];
        let src = packed_col(block, k, j);
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s.f64() as f32;
        }
        let d = src[0].f64() + alpha;
        diag[j] = d;
        dst[0] = d as f32;
        let below = &src[1..];
        for (rs, s) in row_sums[j + 1..].iter_mut().zip(below) {
            *rs += s.f64().abs();
        }
        row_sums[j] += d.abs() + abs_sum(below);
    }
}

/// `r −= A·θ` for the symmetric `A` whose lower triangle (`k × k`) `block` holds packed
/// ([`packed_col`]), in f64: per column, an axpy below the diagonal and a dot product above it.
#[inline(always)]
fn subtract_lower_product<T: Real>(block: &[T], theta: &[f64], r: &mut [f64]) {
    let k = theta.len();
    for j in 0..k {
        let col = packed_col(block, k, j);
        let tj = theta[j];
        for (ri, &v) in r[j + 1..].iter_mut().zip(&col[1..]) {
            *ri -= v.f64() * tj;
        }
        r[j] -= col[0].f64() * tj + dot_widened(&col[1..], &theta[j + 1..]);
    }
}

/// `acc = XsᵀXs·θ` over blocks of `v.len()` samples (see [`subtract_data_product`]).
#[inline(always)]
fn data_product(cols: &[&[f64]], theta: &[f64], v: &mut [f64], acc: &mut [f64]) {
    acc.fill(0.0);
    let n = cols.first().map_or(0, |c| c.len());
    let block = v.len().max(1);
    for i0 in (0..n).step_by(block) {
        let sb = block.min(n - i0);
        let v = &mut v[..sb];
        v.fill(0.0);
        for (c, &t) in cols.iter().zip(theta) {
            for (vi, &x) in v.iter_mut().zip(&c[i0..i0 + sb]) {
                *vi += t * x;
            }
        }
        for (c, a) in cols.iter().zip(acc.iter_mut()) {
            *a += dot(&c[i0..i0 + sb], v);
        }
    }
}

/// Σ|v| in f64, eight partial sums (so that it vectorises).
#[inline(always)]
fn abs_sum<T: Real>(v: &[T]) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = v.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&x| x.f64().abs()).sum();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x.f64().abs();
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// `aᵀb` with `a` widened to f64, eight partial sums (so that it vectorises).
#[inline(always)]
fn dot_widened<T: Real>(a: &[T], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x.f64() * y)
        .sum();
    for (x8, y8) in ca.zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(x8).zip(y8) {
            *s += x.f64() * y;
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// `aᵀb`, eight partial sums (so that it vectorises).
#[inline(always)]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    dot_widened(a, b)
}

/// `out = L⁻ᵀL⁻¹v` for the f32 Cholesky factor held in `l`, through the f32 vector `d`.
fn apply_f32_factor(
    l: &Padded<f32>,
    d: &mut Padded<f32>,
    scratch: &mut MemBuffer,
    v: &[f64],
    out: &mut [f64],
) {
    let k = v.len();
    for (di, vi) in d.data().iter_mut().zip(v) {
        *di = *vi as f32;
    }
    let stack = zeroed(scratch);
    let dm = MatMut::from_column_major_slice_mut(&mut d.data()[..k], k, 1);
    llt::solve::solve_in_place(l.view(), dm, Par::Seq, stack);
    for (o, di) in out.iter_mut().zip(d.data().iter()) {
        *o = *di as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The centred system of the data `x + base` (`n × k`) and a response: its packed block
    /// `XcᵀXc`, with `x̄` and `Xcᵀyc` filled into `work`.
    fn fill(
        work: &mut SolveWork,
        x: &[Vec<f64>],
        y: &[f64],
        base: f64,
    ) -> (Vec<f64>, CentredSystem) {
        let (n, k) = (x.len(), x[0].len());
        let mean = |j: usize| x.iter().map(|r| r[j]).sum::<f64>() / n as f64;
        let my = y.iter().sum::<f64>() / n as f64;
        let (xbar, rhs) = work.centred_vectors();
        let mut block = Vec::with_capacity(packed_len(k));
        for j in 0..k {
            let mj = mean(j);
            for i in j..k {
                let mi = mean(i);
                block.push(x.iter().map(|r| (r[i] - mi) * (r[j] - mj)).sum());
            }
            xbar[j] = mj + base;
            rhs[j] = x.iter().zip(y).map(|(r, yv)| (r[j] - mj) * (yv - my)).sum();
        }
        let sys = CentredSystem {
            n: n as f64,
            mean_y: my,
            alpha: 0.0,
        };
        (block, sys)
    }

    fn lcg(state: &mut u64) -> f64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*state >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    }

    fn data(n: usize, k: usize, seed: u64) -> (Vec<Vec<f64>>, Vec<f64>) {
        let mut s = seed;
        let x: Vec<Vec<f64>> = (0..n)
            .map(|_| (0..k).map(|_| lcg(&mut s)).collect())
            .collect();
        let y = (0..n).map(|_| lcg(&mut s)).collect();
        (x, y)
    }

    fn solve_both(
        x: &[Vec<f64>],
        y: &[f64],
        base: f64,
        alpha: f64,
    ) -> [(std::result::Result<Vec<f64>, usize>, usize); 2] {
        [true, false].map(|mixed| {
            let mut w = SolveWork::with_mixed(x[0].len() + 1, mixed);
            let (block, mut sys) = fill(&mut w, x, y, base);
            sys.alpha = alpha;
            let r = w
                .solve_packed(&block, sys, None)
                .map(|_| w.solution().to_vec());
            (r, w.refined())
        })
    }

    /// Max |A θ − b| / (‖A‖∞ ‖θ‖∞) for the uncentred system `X₁ᵀX₁ + αI`, `X₁ᵀy`.
    fn backward_error(x: &[Vec<f64>], y: &[f64], base: f64, alpha: f64, theta: &[f64]) -> f64 {
        let k = x[0].len();
        let row = |r: &Vec<f64>| -> Vec<f64> {
            let mut v: Vec<f64> = r.iter().map(|v| v + base).collect();
            v.push(1.0);
            v
        };
        let x1: Vec<Vec<f64>> = x.iter().map(row).collect();
        let (mut worst, mut anorm) = (0.0f64, 0.0f64);
        for i in 0..=k {
            let mut res = -x1.iter().zip(y).map(|(r, yv)| r[i] * yv).sum::<f64>();
            let mut rs = 0.0;
            for (j, t) in theta.iter().enumerate() {
                let aij =
                    x1.iter().map(|r| r[i] * r[j]).sum::<f64>() + if i == j { alpha } else { 0.0 };
                res += aij * t;
                rs += aij.abs();
            }
            worst = worst.max(res.abs());
            anorm = anorm.max(rs);
        }
        let tnorm = theta.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        worst / (anorm * tnorm)
    }

    /// A block of f32 entries solves bit for bit as the same entries held in f64, in mixed
    /// precision and in f64, and a workspace reused for another system is unaffected by the
    /// first.
    #[test]
    fn f32_blocks_solve_as_their_values_in_f64_and_workspaces_carry_nothing_over() {
        let (x, y) = data(200, 40, 11);
        let bits = |t: &[f64]| t.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for mixed in [true, false] {
            let mut w = SolveWork::with_mixed(41, mixed);
            let (block, sys) = fill(&mut w, &x, &y, 100.0);
            let sys = CentredSystem { alpha: 5.0, ..sys };
            let block32: Vec<f32> = block.iter().map(|&v| v as f32).collect();
            let widened: Vec<f64> = block32.iter().map(|&v| v as f64).collect();
            w.solve_packed(&widened, sys, None)
                .expect("solved from f64");
            let from64 = w.solution().to_vec();
            let mut v = SolveWork::with_mixed(41, mixed);
            fill(&mut v, &x, &y, 100.0);
            v.solve_packed(&block32, sys, None)
                .expect("solved from f32");
            assert_eq!(v.refined(), w.refined());
            assert_eq!(v.refined(), usize::from(mixed));
            assert_eq!(bits(v.solution()), bits(&from64), "mixed = {mixed}");
            // another system in the same workspace, then the first again
            let (other, _) = fill(&mut v, &x[..150], &y[..150], 3.0);
            v.solve_packed(&other, sys, None).expect("another system");
            fill(&mut v, &x, &y, 100.0);
            v.solve_packed(&block32, sys, None)
                .expect("the first again");
            assert_eq!(bits(v.solution()), bits(&from64));
        }
    }

    #[test]
    fn mixed_precision_matches_the_f64_solve() {
        for (base, agree) in [(0.0, 1e-12), (100.0, 1e-9)] {
            let (x, y) = data(300, 60, 7);
            let [(mixed, refined), (direct, none)] = solve_both(&x, &y, base, 10.0);
            assert_eq!(
                (refined, none),
                (1, 0),
                "the mixed path must have been taken"
            );
            let (mixed, direct) = (mixed.unwrap(), direct.unwrap());
            // the f64 solve of the uncentred system loses ~cond·ε to the baselines (the
            // fixtures' f64 tolerance is 1e-9 × max|θ|); without baselines both agree closely
            let scale = direct.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            for (i, (a, b)) in mixed.iter().zip(&direct).enumerate() {
                assert!(
                    (a - b).abs() <= agree * scale,
                    "base {base}, entry {i}: mixed {a} vs f64 {b}"
                );
            }
            // and the mixed solution is backward stable for the reference's own system
            let be = backward_error(&x, &y, base, 10.0, &mixed);
            assert!(be < 1e-14, "base {base}: backward error {be:e}");
        }
    }

    /// Solves the centred system of `x + base` with the f32 block and data residuals.
    fn solve_from_data(
        x: &[Vec<f64>],
        y: &[f64],
        base: f64,
        alpha: f64,
    ) -> (std::result::Result<Vec<f64>, usize>, usize) {
        let (n, k) = (x.len(), x[0].len());
        let mut w = SolveWork::with_data(k + 1, n);
        let (block, mut sys) = fill(&mut w, x, y, base);
        sys.alpha = alpha;
        let block32: Vec<f32> = block.iter().map(|&v| v as f32).collect();
        let cols: Vec<Vec<f64>> = (0..k)
            .map(|j| {
                let m = x.iter().map(|r| r[j]).sum::<f64>() / n as f64;
                x.iter().map(|r| r[j] - m).collect()
            })
            .collect();
        let refs: Vec<&[f64]> = cols.iter().map(|c| c.as_slice()).collect();
        let r = w
            .solve_packed(&block32, sys, Some(&refs))
            .map(|_| w.solution().to_vec());
        (r, w.refined())
    }

    #[test]
    fn data_residuals_reach_f64_accuracy_from_an_f32_block() {
        for (base, agree) in [(0.0, 1e-12), (100.0, 1e-9)] {
            let (x, y) = data(300, 60, 5);
            let (mixed, refined) = solve_from_data(&x, &y, base, 10.0);
            assert_eq!(refined, 1, "the mixed path must have been taken");
            let [_, (direct, _)] = solve_both(&x, &y, base, 10.0);
            let (mixed, direct) = (mixed.unwrap(), direct.unwrap());
            let scale = direct.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            for (i, (a, b)) in mixed.iter().zip(&direct).enumerate() {
                assert!(
                    (a - b).abs() <= agree * scale,
                    "base {base}, entry {i}: from data {a} vs f64 {b}"
                );
            }
            let be = backward_error(&x, &y, base, 10.0, &mixed);
            assert!(be < 1e-14, "base {base}: backward error {be:e}");
        }
    }

    #[test]
    fn data_residuals_fall_back_to_an_f64_system_formed_from_the_data() {
        // ill-conditioned (cond ~1e12): no convergence, the f64 solve of XsᵀXs takes over
        let (mut x, y) = data(200, 20, 11);
        let mut s = 99;
        for r in x.iter_mut() {
            r[1] = r[0] + 1e-6 * lcg(&mut s);
        }
        // (no baselines: with them the f64 pivot test calls this system singular, see
        // `ill_conditioned_systems_fall_back_to_the_f64_result_bit_for_bit`)
        let (from_data, refined) = solve_from_data(&x, &y, 0.0, 0.0);
        assert_eq!(refined, 0, "refinement cannot converge here");
        let be = backward_error(&x, &y, 0.0, 0.0, &from_data.unwrap());
        assert!(be < 1e-13, "backward error {be:e}");
        let (with_base, _) = solve_from_data(&x, &y, 50.0, 0.0);
        let [_, (direct, _)] = solve_both(&x, &y, 50.0, 0.0);
        assert_eq!(with_base.is_err(), direct.is_err());
        // exactly collinear: singular, as on the f64 path
        let (mut x, y) = data(100, 10, 3);
        for r in x.iter_mut() {
            r[4] = r[2];
        }
        let (from_data, refined) = solve_from_data(&x, &y, 100.0, 0.0);
        assert_eq!(refined, 0);
        assert!(from_data.is_err(), "{from_data:?}");
    }

    #[test]
    fn ill_conditioned_systems_fall_back_to_the_f64_result_bit_for_bit() {
        // two nearly collinear columns, no ridge: B's condition number ~1e12
        let (mut x, y) = data(200, 20, 11);
        let mut s = 99;
        for r in x.iter_mut() {
            r[1] = r[0] + 1e-6 * lcg(&mut s);
        }
        let [(mixed, refined), (direct, _)] = solve_both(&x, &y, 50.0, 0.0);
        assert_eq!(refined, 0, "refinement cannot converge here");
        assert_eq!(mixed, direct);
    }

    #[test]
    fn singular_systems_keep_the_f64_verdict() {
        let (mut x, y) = data(100, 10, 3);
        for r in x.iter_mut() {
            r[4] = r[2];
        }
        let [(mixed, refined), (direct, _)] = solve_both(&x, &y, 100.0, 0.0);
        assert_eq!(refined, 0);
        assert!(direct.is_err(), "{direct:?}");
        assert_eq!(mixed, direct);
    }
}
