//! Dense linear algebra on the host (faer), shared by the CPU backend and the host-side parts of
//! the models: row-major ndarray ↔ faer views, Gram matrices, products, SPD solves, and the two
//! small formulas several layers share (Pearson correlation, the Gaussian NLL).

use crate::error::{Error, Result};
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use ndarray::{concatenate, Array2, ArrayView1, ArrayView2, Axis};

/// `[X | 1]`.
pub fn with_bias(x: ArrayView2<f64>) -> Array2<f64> {
    let ones = Array2::<f64>::ones((x.nrows(), 1));
    concatenate(Axis(1), &[x, ones.view()]).expect("same row count")
}

/// Pearson correlation of two equally long series; `None` when either has zero variance.
pub fn pearson(a: ArrayView1<f64>, b: ArrayView1<f64>) -> Option<f64> {
    let n = a.len() as f64;
    let (am, bm) = (a.sum() / n, b.sum() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b.iter()) {
        sab += (x - am) * (y - bm);
        saa += (x - am) * (x - am);
        sbb += (y - bm) * (y - bm);
    }
    (saa > 0.0 && sbb > 0.0).then(|| sab / (saa * sbb).sqrt())
}

/// The mean held-out Gaussian NLL from its parts: `½·Σ‖L⁻¹p‖²/M + Σ log L_ii + ½·N·log 2π`;
/// NaN when not finite (or when there are no points).
pub fn gaussian_nll(sumsq: f64, points: usize, logdet: f64, n: usize) -> f64 {
    if points == 0 {
        return f64::NAN;
    }
    let v =
        0.5 * sumsq / points as f64 + logdet + 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln();
    if v.is_finite() {
        v
    } else {
        f64::NAN
    }
}

thread_local! {
    static SEQUENTIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Parallelism for faer calls: every rayon thread, or one inside [`sequential`].
pub fn par() -> Par {
    let n = rayon::current_num_threads();
    if n <= 1 || SEQUENTIAL.with(|s| s.get()) {
        Par::Seq
    } else {
        Par::rayon(n)
    }
}

/// Runs `f` with [`par`] answering `Par::Seq` on this thread: for independent tasks run side
/// by side (`rayon::join`), each of which is too small for faer's threads to pay (on two
/// threads a 1000 × 1000 tridiagonalisation takes 62 ms alone and 76 ms split).
pub fn sequential<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SEQUENTIAL.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SEQUENTIAL.with(|s| s.replace(true)));
    f()
}

/// `a · b` with [`par`].
pub fn mul(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> Mat<f64> {
    let mut out = mat_zeros(a.nrows(), b.ncols());
    faer::linalg::matmul::matmul(out.as_mut(), Accum::Replace, a, b, 1.0, par());
    out
}

/// Below this order a tridiagonalisation or Cholesky factorisation runs on one thread: faer's
/// split of them over two threads costs more than it saves there (measured on this project's
/// 2-core machine: at n = 1000 a tridiagonalisation takes 62–69 ms alone against 76–84 ms
/// split, a Cholesky factorisation 7.8 against 9.5 ms; at n = 2000 the split tridiagonalisation
/// wins, 0.42 against 0.55 s).
pub const SPLIT_MIN_ORDER: usize = 1536;

/// [`par`] for a tridiagonalisation or Cholesky factorisation of order `n`: one thread below
/// [`SPLIT_MIN_ORDER`].
pub fn par_for_order(n: usize) -> Par {
    if n < SPLIT_MIN_ORDER {
        Par::Seq
    } else {
        par()
    }
}

/// The Householder tridiagonalisation `a = Q T Qᵀ` of a symmetric matrix (its lower triangle is
/// read), run with [`par_for_order`]: `T`'s diagonal and subdiagonal, and `Q` kept as faer's
/// block reflectors to apply to other matrices.
pub struct Tridiagonal {
    /// The reflectors below the subdiagonal, `T` on its diagonal and subdiagonal.
    t: Mat<f64>,
    /// The reflectors' block coefficients.
    coeff: Mat<f64>,
}

impl Tridiagonal {
    /// Tridiagonalises `a` (`n × n`).
    pub fn of(a: MatRef<'_, f64>) -> Self {
        use faer::linalg::evd::tridiag;
        let n = a.nrows();
        let mut t = mat_from_fn(n, n, |i, j| if i >= j { a[(i, j)] } else { 0.0 });
        let bs = faer::linalg::qr::no_pivoting::factor::recommended_block_size::<f64>(n, n);
        let mut coeff = mat_zeros(bs.max(1), n.saturating_sub(1));
        if n > 1 {
            let par = par_for_order(n);
            let mut mem = MemBuffer::new(tridiag::tridiag_in_place_scratch::<f64>(
                n,
                par,
                Default::default(),
            ));
            tridiag::tridiag_in_place(
                t.as_mut(),
                coeff.as_mut(),
                par,
                MemStack::new(&mut mem),
                Default::default(),
            );
        }
        Tridiagonal { t, coeff }
    }
    /// The order `n`.
    pub fn dim(&self) -> usize {
        self.t.nrows()
    }
    /// `T`'s diagonal.
    pub fn diag(&self) -> Vec<f64> {
        (0..self.dim()).map(|i| self.t[(i, i)]).collect()
    }
    /// `T`'s subdiagonal (`n − 1` entries).
    pub fn sub(&self) -> Vec<f64> {
        (0..self.dim().saturating_sub(1))
            .map(|i| self.t[(i + 1, i)])
            .collect()
    }
    /// `b ← Q b` (`transpose`: `b ← Qᵀ b`) for `b` with `n` rows, with [`par`].
    pub fn apply(&self, b: MatMut<'_, f64>, transpose: bool) {
        use faer::linalg::householder;
        let n = self.dim();
        if n < 2 {
            return;
        }
        let bs = self.coeff.nrows();
        let reflectors = self.t.as_ref().submatrix(1, 0, n - 1, n - 1);
        let rows = b.subrows_mut(1, n - 1);
        let k = rows.ncols();
        if transpose {
            let mut mem = MemBuffer::new(
                householder::apply_block_householder_sequence_transpose_on_the_left_in_place_scratch::<
                    f64,
                >(n - 1, bs, k),
            );
            householder::apply_block_householder_sequence_transpose_on_the_left_in_place_with_conj(
                reflectors,
                self.coeff.as_ref(),
                faer::Conj::No,
                rows,
                par(),
                MemStack::new(&mut mem),
            );
        } else {
            let mut mem = MemBuffer::new(
                householder::apply_block_householder_sequence_on_the_left_in_place_scratch::<f64>(
                    n - 1,
                    bs,
                    k,
                ),
            );
            householder::apply_block_householder_sequence_on_the_left_in_place_with_conj(
                reflectors,
                self.coeff.as_ref(),
                faer::Conj::No,
                rows,
                par(),
                MemStack::new(&mut mem),
            );
        }
    }
}

/// Symmetric eigendecomposition of `a` (its lower triangle is read): the eigenvalues ascending
/// and the eigenvectors as columns; `None` when it does not converge. faer's steps with their
/// own parallelism: the tridiagonalisation ([`Tridiagonal`]) with [`par_for_order`], the
/// tridiagonal eigendecomposition (divide and conquer) and the back-transformation with [`par`].
pub fn eigh(a: MatRef<'_, f64>) -> Option<(Vec<f64>, Mat<f64>)> {
    use faer::linalg::evd;
    let n = a.nrows();
    if n == 0 {
        return Some((Vec::new(), mat_zeros(0, 0)));
    }
    let tri = Tridiagonal::of(a);
    let mut diag = faer::diag::Diag::<f64>::zeros(n);
    let mut sub = faer::diag::Diag::<f64>::zeros(n);
    for (i, d) in tri.diag().into_iter().enumerate() {
        diag[i] = d;
    }
    for (i, e) in tri.sub().into_iter().enumerate() {
        sub[i] = e;
    }
    let p = par();
    // faer's scratch for the whole decomposition covers the tridiagonal step's
    let mut mem = MemBuffer::new(evd::self_adjoint_evd_scratch::<f64>(
        n,
        evd::ComputeEigenvectors::Yes,
        p,
        Default::default(),
    ));
    let mut s = faer::diag::Diag::<f64>::zeros(n);
    let mut u = mat_zeros(n, n);
    evd::tridiagonal_self_adjoint_evd(
        diag.as_ref(),
        sub.as_ref(),
        s.as_mut(),
        Some(u.as_mut()),
        p,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .ok()?;
    tri.apply(u.as_mut(), false);
    Some(((0..n).map(|i| s[i]).collect(), u))
}

/// Thin QR of `a` (`m × k`, `m ≥ k`) with [`par`]: `Q₁` (`m × k`, orthonormal columns) and the
/// upper-triangular `R₁` (`k × k`).
pub fn thin_qr(mut a: Mat<f64>) -> (Mat<f64>, Mat<f64>) {
    use faer::linalg::{householder, qr::no_pivoting::factor};
    let (m, k) = a.shape();
    let p = par();
    let bs = factor::recommended_block_size::<f64>(m, k);
    let mut coeff = mat_zeros(bs, k.min(m));
    let mut mem = MemBuffer::new(factor::qr_in_place_scratch::<f64>(
        m,
        k,
        bs,
        p,
        Default::default(),
    ));
    factor::qr_in_place(
        a.as_mut(),
        coeff.as_mut(),
        p,
        MemStack::new(&mut mem),
        Default::default(),
    );
    let size = k.min(m);
    let r = mat_from_fn(size, k, |i, j| if i <= j { a[(i, j)] } else { 0.0 });
    let mut q = mat_from_fn(m, size, |i, j| if i == j { 1.0 } else { 0.0 });
    let mut mem = MemBuffer::new(
        householder::apply_block_householder_sequence_on_the_left_in_place_scratch::<f64>(
            m, bs, size,
        ),
    );
    householder::apply_block_householder_sequence_on_the_left_in_place_with_conj(
        a.as_ref().get(.., ..size),
        coeff.as_ref(),
        faer::Conj::No,
        q.as_mut(),
        p,
        MemStack::new(&mut mem),
    );
    (q, r)
}

/// A faer view of a standard-layout (row-major) ndarray matrix; copies when the layout differs.
pub fn faer_view<'a>(
    a: &'a ArrayView2<'a, f64>,
    tmp: &'a mut Option<Array2<f64>>,
) -> MatRef<'a, f64> {
    let (r, c) = a.dim();
    if let Some(s) = a.as_slice() {
        MatRef::from_row_major_slice(s, r, c)
    } else {
        *tmp = Some(a.as_standard_layout().into_owned());
        MatRef::from_row_major_slice(tmp.as_ref().unwrap().as_slice().unwrap(), r, c)
    }
}

/// Copies a faer matrix into a row-major ndarray.
pub fn to_ndarray(m: MatRef<'_, f64>) -> Array2<f64> {
    Array2::from_shape_fn((m.nrows(), m.ncols()), |(i, j)| m[(i, j)])
}

/// `aᵀ b` for row-major `a` (`n × p`) and `b` (`n × q`), a `p × q` row-major result.
pub fn at_b(a: ArrayView2<f64>, b: ArrayView2<f64>) -> Array2<f64> {
    let (mut ta, mut tb) = (None, None);
    let fa = faer_view(&a, &mut ta);
    let fb = faer_view(&b, &mut tb);
    let mut out = Array2::<f64>::zeros((a.ncols(), b.ncols()));
    {
        let (p, q) = out.dim();
        let dst = MatMut::from_row_major_slice_mut(out.as_slice_mut().unwrap(), p, q);
        faer::linalg::matmul::matmul(dst, Accum::Replace, fa.transpose(), fb, 1.0, par());
    }
    out
}

/// `bt · atᵀ` (`q × p`, row-major) for `bt = bᵀ` and `at = aᵀ` from [`transposed`]: the cross
/// product `bᵀa` of the original row-major matrices, e.g. `YᵀX₁`.
pub fn cross_t<T: Real>(bt: MatRef<'_, T>, at: MatRef<'_, T>) -> Array2<T> {
    let (q, p) = (bt.nrows(), at.nrows());
    let mut out = Array2::<T>::default((q, p));
    let dst = MatMut::from_row_major_slice_mut(out.as_slice_mut().expect("standard layout"), q, p);
    // the row-major q × p result is the column-major p × q matrix at · btᵀ
    faer::linalg::matmul::matmul(
        dst.transpose_mut(),
        Accum::Replace,
        at,
        bt.transpose(),
        T::of(1.0),
        par(),
    );
    out
}

/// `a b` for row-major `a` (`n × p`) and `b` (`p × q`).
pub fn a_b(a: ArrayView2<f64>, b: ArrayView2<f64>) -> Array2<f64> {
    let (mut ta, mut tb) = (None, None);
    let fa = faer_view(&a, &mut ta);
    let fb = faer_view(&b, &mut tb);
    let mut out = Array2::<f64>::zeros((a.nrows(), b.ncols()));
    {
        let (p, q) = out.dim();
        let dst = MatMut::from_row_major_slice_mut(out.as_slice_mut().unwrap(), p, q);
        faer::linalg::matmul::matmul(dst, Accum::Replace, fa, fb, 1.0, par());
    }
    out
}

/// The element types the CPU computes in: `f64`, and `f32` for f32 fits.
pub trait Real: faer::traits::RealField + Copy + Default + Send + Sync + 'static {
    /// Bytes per element.
    const BYTES: usize;
    /// Rounds an f64 to this type.
    fn of(v: f64) -> Self;
    /// Widens to f64.
    fn f64(self) -> f64;
}

impl Real for f64 {
    const BYTES: usize = 8;
    #[inline]
    fn of(v: f64) -> Self {
        v
    }
    #[inline]
    fn f64(self) -> f64 {
        self
    }
}

impl Real for f32 {
    const BYTES: usize = 4;
    #[inline]
    fn of(v: f64) -> Self {
        v as f32
    }
    #[inline]
    fn f64(self) -> f64 {
        self as f64
    }
}

/// A symmetric matrix of which only the lower triangle is stored and meaningful, column-major
/// with SIMD-aligned columns. Built in a `vec![0.0; …]` buffer, whose zeroed pages the kernel
/// then faults in on every thread ([`populate_small_pages`]), where `Mat::zeros` spent 1–3 s
/// writing zeros into a 1.8 GB Gram matrix (measured, F = 15000) before the product even
/// started.
///
/// Two layouts: **square** (`dim × dim`, what faer's factorisations take, [`Gram::zeros`]) and
/// **packed** ([`Gram::packed_zeros`]): panels of [`GRAM_TILE`] columns, each stored from its
/// first diagonal row down, so that the never-read upper triangle takes no memory, about half
/// the square's (F = 15000, f64: 0.96 GB against 1.8 GB), and costs no page faults.
pub struct Gram<T: Real = f64> {
    data: Vec<T>,
    dim: usize,
    /// Square: the column stride. Packed: unused (see `panels`).
    stride: usize,
    /// Packed: per panel of `GRAM_TILE` columns, where it starts in `data` and its column
    /// stride; empty for the square layout.
    panels: Vec<(usize, usize)>,
}

impl<T: Real> Drop for Gram<T> {
    fn drop(&mut self) {
        release_pages(&mut self.data);
    }
}

impl<T: Real> Gram<T> {
    /// A zero matrix of size `dim`, square layout.
    pub fn zeros(dim: usize) -> Self {
        let stride = dim.div_ceil(16) * 16;
        let mut data = vec![T::default(); stride * dim];
        populate_small_pages(&mut data);
        Gram {
            data,
            dim,
            stride,
            panels: Vec::new(),
        }
    }
    /// A zero matrix of size `dim`, packed layout.
    pub fn packed_zeros(dim: usize) -> Self {
        let mut panels = Vec::with_capacity(dim.div_ceil(GRAM_TILE));
        let mut len = 0;
        for j0 in (0..dim).step_by(GRAM_TILE) {
            let stride = (dim - j0).div_ceil(16) * 16;
            panels.push((len, stride));
            len += stride * GRAM_TILE.min(dim - j0);
        }
        let mut data = vec![T::default(); len];
        populate_small_pages(&mut data);
        Gram {
            data,
            dim,
            stride: 0,
            panels,
        }
    }
    /// Bytes a packed matrix of size `dim` holds (elements of `bytes` each).
    pub fn packed_bytes(dim: usize, bytes: usize) -> u64 {
        (0..dim)
            .step_by(GRAM_TILE)
            .map(|j0| ((dim - j0).div_ceil(16) * 16 * GRAM_TILE.min(dim - j0) * bytes) as u64)
            .sum()
    }
    /// Size of the matrix.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Where column `j`'s diagonal element lies in `data` (its rows below follow contiguously).
    #[inline]
    fn diag_index(&self, j: usize) -> usize {
        if self.panels.is_empty() {
            j * self.stride + j
        } else {
            let (start, stride) = self.panels[j / GRAM_TILE];
            let jj = j % GRAM_TILE;
            start + jj * stride + jj
        }
    }
    /// Column `j` from its diagonal down: element `(i, j)`, `i ≥ j`, is `[i - j]`.
    #[inline]
    pub fn lower_col(&self, j: usize) -> &[T] {
        let d = self.diag_index(j);
        &self.data[d..d + (self.dim - j)]
    }
    /// Element `(i, j)` with `i ≥ j` (lower triangle).
    #[inline]
    pub fn lower(&self, i: usize, j: usize) -> T {
        self.data[self.diag_index(j) + (i - j)]
    }
    /// Element `(i, j)` of the symmetric matrix.
    #[inline]
    pub fn sym(&self, i: usize, j: usize) -> T {
        if i >= j {
            self.lower(i, j)
        } else {
            self.lower(j, i)
        }
    }
    /// Sets lower element `(i, j)`, `i ≥ j`.
    #[inline]
    pub fn set_lower(&mut self, i: usize, j: usize, v: T) {
        let d = self.diag_index(j);
        self.data[d + (i - j)] = v;
    }
    /// A mutable faer view of the square matrix (a packed matrix is first copied into the
    /// square layout).
    pub fn as_mut(&mut self) -> MatMut<'_, T> {
        if !self.panels.is_empty() {
            let mut square = Gram::zeros(self.dim);
            for j in 0..self.dim {
                let d = square.diag_index(j);
                square.data[d..d + (self.dim - j)].copy_from_slice(self.lower_col(j));
            }
            *self = square;
        }
        MatMut::from_column_major_slice_with_stride_mut(
            &mut self.data,
            self.dim,
            self.dim,
            self.stride,
        )
    }
}

impl Gram<f64> {
    /// Adds `alpha` to the diagonal.
    pub fn add_diag(&mut self, alpha: f64) {
        for i in 0..self.dim {
            let d = self.diag_index(i);
            self.data[d] += alpha;
        }
    }
}

/// Faults a large, not yet touched buffer in on every thread, on 4 KiB pages
/// (`MADV_NOHUGEPAGE`, then `MADV_POPULATE_WRITE` in 16 MiB pieces in parallel; where the
/// kernel lacks that, one write per page). The Gram matrix's first touch otherwise happened
/// inside the product, and, where transparent huge pages are on (`always` here), on 2 MiB pages:
/// on this project's VMs memory the host has taken back costs 2.2–2.6 s per GB to fault in as
/// huge pages against 0.25–0.35 s as 4 KiB pages (measured in fresh processes, 512 MiB), and
/// warm 0.12 against 0.25–0.34. In whole fits (fresh processes, interleaved, host memory cold)
/// G and W on 4 KiB pages took fc8 f32 from 2.57–2.68 to 1.96–2.00 s, fc8 f64 from 3.19–3.31 to
/// 2.44–2.60 s and conv4 from 7.43–7.47 to 6.00–6.43 s (the fits' kernel time 1.6–4.0 → 0.25–1.2
/// s); the gathers from G showed no cost from the smaller pages. Buffers under 8 MiB are left
/// alone; no-op off Linux.
pub fn populate_small_pages<T: Copy + Default + Send>(data: &mut [T]) {
    #[cfg(target_os = "linux")]
    {
        use rayon::prelude::*;
        const PAGE: usize = 4096;
        const PIECE: usize = 16 << 20;
        let bytes = std::mem::size_of_val(data);
        if bytes < 8 << 20 || std::mem::size_of::<T>() == 0 {
            return;
        }
        let start = data.as_ptr() as usize;
        let aligned = start.div_ceil(PAGE) * PAGE;
        let len = (start + bytes - aligned) / PAGE * PAGE;
        // SAFETY: the range lies inside `data`'s allocation, which `data` borrows mutably;
        // madvise changes how the kernel backs those pages, never their contents.
        unsafe {
            libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_NOHUGEPAGE);
        }
        let per_piece = PIECE / std::mem::size_of::<T>();
        let per_page = (PAGE / std::mem::size_of::<T>()).max(1);
        data.par_chunks_mut(per_piece).for_each(|piece| {
            let p = piece.as_mut_ptr() as usize;
            let a = p.div_ceil(PAGE) * PAGE;
            let end = (p + std::mem::size_of_val(piece)) / PAGE * PAGE;
            // SAFETY: as above, within this piece of the borrowed buffer.
            let populated = end <= a
                || unsafe {
                    libc::madvise(a as *mut libc::c_void, end - a, MADV_POPULATE_WRITE) == 0
                };
            if !populated {
                for i in (0..piece.len()).step_by(per_page) {
                    // the buffer is all zeros (`vec![0; …]`): this write only faults the page in
                    piece[i] = T::default();
                }
            }
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = data;
}

/// Runs `f` compiled for AVX-512 (F) or else AVX2 where the CPU has them, else as built
/// (x86-64's baseline is SSE2): element-wise f64 loops then vectorise eight or four lanes wide
/// instead of two. The arithmetic is the same either way (Rust never contracts a multiply and an
/// add into an FMA, IEEE division and square root round alike at every width, and the callers'
/// summation orders are written out), so results do not depend on the CPU. Pass an
/// `#[inline(always)]` closure, so that its body is compiled inside the wider function.
#[inline(always)]
pub(crate) fn with_simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            #[target_feature(enable = "avx512f")]
            unsafe fn run512<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            // SAFETY: AVX-512 F was detected on this CPU just above.
            return unsafe { run512(f) };
        }
        if std::is_x86_feature_detected!("avx2") {
            #[target_feature(enable = "avx2")]
            unsafe fn run256<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            // SAFETY: AVX2 was detected on this CPU just above.
            return unsafe { run256(f) };
        }
    }
    f()
}

/// Hands the pages of a large buffer that is about to be freed back to the kernel from every
/// thread (`MADV_DONTNEED` on pieces of 16 MiB), so that the free that follows has nothing left
/// to unmap: unmapping the fc8 Gram matrix (0.48 GB) took ~0.033 s on one thread at the end of
/// each fit. The contents must not be read afterwards (they read as zeros). Buffers under 8 MiB
/// are left alone; no-op off Linux.
pub fn release_pages<T: Copy + Send>(data: &mut [T]) {
    #[cfg(target_os = "linux")]
    {
        use rayon::prelude::*;
        const PAGE: usize = 4096;
        const PIECE: usize = 16 << 20;
        if std::mem::size_of_val(data) < 8 << 20 || std::mem::size_of::<T>() == 0 {
            return;
        }
        data.par_chunks_mut(PIECE / std::mem::size_of::<T>())
            .for_each(|piece| {
                let p = piece.as_mut_ptr() as usize;
                let a = p.div_ceil(PAGE) * PAGE;
                let end = (p + std::mem::size_of_val(piece)) / PAGE * PAGE;
                if end > a {
                    // SAFETY: the range lies inside this piece of the borrowed buffer, whose
                    // owner frees it next without reading it; discarding the pages of private
                    // anonymous memory leaves them mapped (reading as zeros), never invalid.
                    unsafe {
                        libc::madvise(a as *mut libc::c_void, end - a, libc::MADV_DONTNEED);
                    }
                }
            });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = data;
}

/// A zero `rows × cols` row-major array faulted in by every thread on 4 KiB pages
/// ([`populate_small_pages`]).
pub fn zeros_populated(rows: usize, cols: usize) -> Array2<f64> {
    let mut data = vec![0.0; rows * cols];
    populate_small_pages(&mut data);
    Array2::from_shape_vec((rows, cols), data).expect("rows × cols elements")
}

/// `MADV_POPULATE_WRITE` (Linux 5.14; not in every libc crate version).
#[cfg(target_os = "linux")]
const MADV_POPULATE_WRITE: libc::c_int = 23;

/// `aᵀ` as a column-major faer matrix (columns SIMD-aligned): the operand layout faer's
/// products run fastest on.
pub fn transposed(a: ArrayView2<f64>) -> Mat<f64> {
    transposed_impl(a, false, |v| v)
}

/// [`transposed`] with every value passed through `round` as it is copied (an f32 fit's values
/// rounded to f32 without a rounded copy of `a`) and, where `bias`, a final row of ones:
/// `X₁ᵀ = [X | 1]ᵀ` built directly, without materialising `X₁`.
pub fn transposed_rounded(a: ArrayView2<f64>, bias: bool, round: impl Fn(f64) -> f64) -> Mat<f64> {
    transposed_impl(a, bias, round)
}

fn transposed_impl(a: ArrayView2<f64>, bias: bool, round: impl Fn(f64) -> f64) -> Mat<f64> {
    let (n, p) = a.dim();
    let rows = p + usize::from(bias);
    let mut at = mat_zeros::<f64>(rows, n);
    // 64 × 64 tiles: whatever a's layout (C, Fortran or a column slice of either), neither the
    // reads nor the writes stride through memory a whole row at a time
    const T: usize = 64;
    for i0 in (0..n).step_by(T) {
        for j0 in (0..p).step_by(T) {
            for i in i0..(i0 + T).min(n) {
                let mut col = at.col_mut(i);
                for j in j0..(j0 + T).min(p) {
                    col[j] = round(a[(i, j)]);
                }
            }
        }
        if bias {
            for i in i0..(i0 + T).min(n) {
                at[(p, i)] = 1.0;
            }
        }
    }
    at
}

/// `Mat::from_fn` with the padding zeroed. faer stores each column of a `Mat` padded to a
/// multiple of 64 bytes, and its SIMD kernels compute on the padding rows; `Mat::from_fn` and
/// `Mat::zeros` write only the logical elements, so the padding holds whatever the heap held
/// before. Where those bits form subnormal floats, every SIMD operation touching them takes a
/// microcode assist: the f32 cross product of a fit's last, 40-unit chunk (1000 samples, 15000
/// features) took 360 ms instead of 20. The matrix is built with its rows rounded up to whole
/// 64-byte columns, zeros below `nrows`, then truncated: the stride stays, the padding is zero.
pub fn mat_from_fn<T: Copy + Default>(
    nrows: usize,
    ncols: usize,
    mut f: impl FnMut(usize, usize) -> T,
) -> Mat<T> {
    let lanes = (64 / std::mem::size_of::<T>().max(1)).max(1);
    let padded = nrows.div_ceil(lanes) * lanes;
    let mut m = Mat::from_fn(padded, ncols, |i, j| {
        if i < nrows {
            f(i, j)
        } else {
            T::default()
        }
    });
    m.truncate(nrows, ncols);
    m
}

/// A zero matrix whose padding is zero too (see [`mat_from_fn`]).
pub fn mat_zeros<T: Copy + Default>(nrows: usize, ncols: usize) -> Mat<T> {
    mat_from_fn(nrows, ncols, |_, _| T::default())
}

/// Edge of the square tiles [`gram_lower_t`] computes the Gram matrix in.
pub const GRAM_TILE: usize = 1024;

/// Diagonal pieces up to this size are computed whole (see `diagonal_pieces`).
const GRAM_DIAGONAL_LEAF: usize = 256;

/// The lower triangle of `at · atᵀ` for `at = aᵀ` from [`transposed`] (any strides).
///
/// Computed tile by tile (`GRAM_TILE`² blocks on and below the diagonal, each a full GEMM;
/// the diagonal tiles split in halves down to pieces of 256, whose upper halves are written but
/// never read): faer's triangular product runs at ~36 GFLOP/s on this 2-core machine where its
/// plain GEMM on the same tiles runs at ~55–60 (measured at F = 15000, n = 1000, f64). Splitting
/// the diagonal tiles instead of computing them whole (~7 % of the work at F = 15000, half of it
/// wasted) took the f32 Gram matrix from 0.66–0.69 to 0.61–0.66 s (five runs each, interleaved,
/// allocation included). With enough tiles (at least 4 per thread) the tiles run in parallel, each a
/// single-threaded GEMM: faer's own threading within a 1024² tile left a third of the machine's
/// rate unused (F = 15000, n = 1000 on 2 threads: f32 2.0–2.3 s → 1.4 s, f64 3.7–4.6 s → 3.0 s).
/// Each element is one GEMM dot product whose value does not depend on the tiling of the other
/// elements or on the schedule, so the result is the same on every run.
pub fn gram_lower_t<T: Real>(at: MatRef<'_, T>) -> Gram<T> {
    gram_lower_into(at, Gram::zeros(at.nrows()))
}

/// [`gram_lower_t`] into the packed layout ([`Gram::packed_zeros`]): the same values, half
/// the memory.
pub fn gram_lower_packed_t<T: Real>(at: MatRef<'_, T>) -> Gram<T> {
    gram_lower_into(at, Gram::packed_zeros(at.nrows()))
}

fn gram_lower_into<T: Real>(at: MatRef<'_, T>, mut g: Gram<T>) -> Gram<T> {
    use rayon::prelude::*;
    let p = at.nrows();
    let mut tiles = Vec::new();
    // each panel of GRAM_TILE columns from its first diagonal row down
    let mut panels: Vec<(MatMut<'_, T>, usize)> = Vec::new();
    if g.panels.is_empty() {
        let stride = g.stride;
        for (tj, block) in g.data.chunks_mut(GRAM_TILE * stride).enumerate() {
            let j0 = tj * GRAM_TILE;
            let nj = GRAM_TILE.min(p - j0);
            let column = MatMut::from_column_major_slice_with_stride_mut(block, p, nj, stride);
            panels.push((column.split_at_row_mut(j0).1, j0));
        }
    } else {
        let mut rest: &mut [T] = &mut g.data;
        for (tj, &(_, stride)) in g.panels.iter().enumerate() {
            let j0 = tj * GRAM_TILE;
            let nj = GRAM_TILE.min(p - j0);
            let (block, tail) = rest.split_at_mut(stride * nj);
            rest = tail;
            panels.push((
                MatMut::from_column_major_slice_with_stride_mut(block, p - j0, nj, stride),
                j0,
            ));
        }
    }
    for (mut rest, j0) in panels {
        let mut i0 = j0;
        while i0 < p {
            let ni = GRAM_TILE.min(p - i0);
            let (tile, below) = rest.split_at_row_mut(ni);
            if i0 == j0 {
                diagonal_pieces(tile, i0, &mut tiles);
            } else {
                tiles.push((tile, i0, j0));
            }
            rest = below;
            i0 += ni;
        }
    }
    let product = |(tile, i0, j0): (MatMut<'_, T>, usize, usize), par: Par| {
        let (ni, nj) = (tile.nrows(), tile.ncols());
        faer::linalg::matmul::matmul(
            tile,
            Accum::Replace,
            at.subrows(i0, ni),
            at.subrows(j0, nj).transpose(),
            T::of(1.0),
            par,
        );
    };
    if tiles.len() >= 4 * rayon::current_num_threads() {
        tiles.into_par_iter().for_each(|t| product(t, Par::Seq));
    } else {
        for t in tiles {
            product(t, par());
        }
    }
    g
}

/// The pieces of a diagonal tile (`tile`, rows and columns from `d0`) on and below its
/// diagonal: halves split recursively down to [`GRAM_DIAGONAL_LEAF`], each off-diagonal
/// quarter one rectangular product.
fn diagonal_pieces<'a, T>(
    tile: MatMut<'a, T>,
    d0: usize,
    out: &mut Vec<(MatMut<'a, T>, usize, usize)>,
) {
    let n = tile.nrows().min(tile.ncols());
    if n <= GRAM_DIAGONAL_LEAF {
        out.push((tile, d0, d0));
        return;
    }
    let h = (n / 2).next_multiple_of(16);
    let (top_left, _, bottom_left, bottom_right) = tile.split_at_mut(h, h);
    diagonal_pieces(top_left, d0, out);
    out.push((bottom_left, d0 + h, d0));
    diagonal_pieces(bottom_right, d0 + h, out);
}

/// Scratch memory for [`cholesky_solve_in_place`] on systems up to `dim`.
pub fn cholesky_scratch(dim: usize) -> MemBuffer {
    MemBuffer::new(llt::factor::cholesky_in_place_scratch::<f64>(
        dim,
        Par::Seq,
        Default::default(),
    ))
}

/// A pivot `d_j` counts as singular when `d_j ≤ m · ε · a_jj` (`a_jj` the original diagonal):
/// with exactly collinear columns the eliminated pivot is rounding noise of that size, where
/// LAPACK's LU in the reference raised `Singular matrix`.
pub fn singular_pivot_tolerance(m: usize, eps: f64) -> f64 {
    m as f64 * eps
}

/// Solves `A x = b` for SPD `A` (lower triangle read, overwritten by the factor) in place of `rhs`
/// (`m × r`, column-major). `Err(pivot)` when the Cholesky meets a non-positive or numerically
/// zero pivot (see [`singular_pivot_tolerance`]).
pub fn cholesky_solve_in_place(
    a: MatMut<'_, f64>,
    rhs: MatMut<'_, f64>,
    par: Par,
    stack: &mut MemStack,
) -> std::result::Result<(), usize> {
    let mut a = a;
    let m = a.nrows();
    let diag: Vec<f64> = (0..m).map(|j| a[(j, j)]).collect();
    cholesky_raw(a.as_mut(), par, stack)?;
    let tol = singular_pivot_tolerance(m, f64::EPSILON);
    for (j, d) in diag.iter().enumerate() {
        let l = a[(j, j)];
        if l * l <= tol * d {
            return Err(j);
        }
    }
    llt::solve::solve_in_place(a.as_ref(), rhs, par, stack);
    Ok(())
}

/// Cholesky factorisation in place with LAPACK `potrf` semantics: fails (`Err(pivot)`) only
/// when a pivot is not positive (or NaN); no tolerance. Used where the reference's own
/// success/failure decides a result (GSN's NaN levels and PSD test).
pub fn cholesky_raw(
    a: MatMut<'_, f64>,
    par: Par,
    stack: &mut MemStack,
) -> std::result::Result<(), usize> {
    let mut a = a;
    let n = a.nrows();
    match llt::factor::cholesky_in_place(
        a.as_mut(),
        Default::default(),
        par,
        stack,
        Default::default(),
    ) {
        Ok(_) => {}
        Err(llt::factor::LltError::NonPositivePivot { index }) => return Err(index),
    }
    for j in 0..n {
        let d = a[(j, j)];
        if !(d > 0.0 && d.is_finite()) {
            return Err(j);
        }
    }
    Ok(())
}

/// Solves the SPD system `a x = rhs` (a square, rhs `m × r`), returning `x` row-major, or a
/// [`Error::Singular`] naming `what`.
pub fn spd_solve(mut a: Gram, rhs: ArrayView2<f64>, what: &str) -> Result<Array2<f64>> {
    let m = a.dim();
    let r = rhs.ncols();
    let mut x = mat_from_fn(m, r, |i, j| rhs[(i, j)]);
    let mut mem = cholesky_scratch(m);
    let stack = MemStack::new(&mut mem);
    cholesky_solve_in_place(a.as_mut(), x.as_mut(), par(), stack).map_err(|p| {
        Error::Singular(format!(
            "{what}: the {m}x{m} system is not positive definite (Cholesky pivot {p} ≤ 0); use alpha > 0 or remove collinear features"
        ))
    })?;
    Ok(to_ndarray(x.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn populated_buffers_stay_zero_and_whole() {
        // 24 MiB + a partial page: several pieces, an unaligned end
        let mut v = vec![0.0f64; (24 << 20) / 8 + 37];
        populate_small_pages(&mut v);
        assert!(v.iter().all(|&x| x == 0.0));
        let w = zeros_populated(1000, 3001);
        assert_eq!(w.dim(), (1000, 3001));
        assert!(w.iter().all(|&x| x == 0.0));
        // small buffers are left as they are
        let mut s = vec![1.5f32; 100];
        populate_small_pages(&mut s);
        assert!(s.iter().all(|&x| x == 1.5));
    }

    /// The padding rows between `nrows` and the column stride are zero (faer's kernels read
    /// them), for the sizes where faer pads.
    #[test]
    fn matrices_are_built_with_zero_padding() {
        // leave non-zero garbage on the heap for the next allocations to reuse
        for _ in 0..4 {
            let junk = vec![f32::from_bits(1); 48 * 1000];
            std::hint::black_box(&junk);
        }
        fn check<T: Copy + Default + PartialEq + std::fmt::Debug>(nrows: usize, value: T) {
            let m = mat_from_fn::<T>(nrows, 7, |_, _| value);
            let stride = m.col_stride() as usize;
            assert_eq!(stride % (64 / std::mem::size_of::<T>()), 0);
            assert!(stride >= nrows);
            for j in 0..7 {
                for i in 0..stride {
                    // SAFETY: within the allocation (stride × ncols), every element initialised
                    // by mat_from_fn before truncation
                    let v = unsafe { *m.as_ptr().add(j * stride + i) };
                    let want = if i < nrows { value } else { T::default() };
                    assert_eq!(v, want, "({i}, {j}) of a {nrows}-row matrix");
                }
            }
        }
        for n in [1, 40, 41, 63, 1000] {
            check::<f32>(n, 2.5);
            check::<f64>(n, -1.5);
        }
        assert_eq!(mat_zeros::<f64>(3, 2)[(2, 1)], 0.0);
    }

    /// The packed Gram matrix holds the square one's values bit for bit, across panel edges
    /// (a last panel narrower than the rest), converts to the square layout for factorising,
    /// and takes about half the memory.
    #[test]
    fn packed_gram_matches_the_square_one() {
        let (rows, p) = (7, GRAM_TILE + 77);
        let at = mat_from_fn::<f64>(p, rows, |i, j| {
            ((i * 31 + j * 17) % 23) as f64 - 11.0 + 0.1 * j as f64
        });
        let square = gram_lower_t(at.as_ref());
        let mut packed = gram_lower_packed_t(at.as_ref());
        for j in 0..p {
            assert_eq!(packed.lower_col(j).len(), p - j);
            for i in j..p {
                assert_eq!(
                    packed.lower(i, j).to_bits(),
                    square.lower(i, j).to_bits(),
                    "({i}, {j})"
                );
                assert_eq!(
                    packed.lower_col(j)[i - j].to_bits(),
                    square.lower(i, j).to_bits()
                );
                assert_eq!(packed.sym(j, i).to_bits(), square.lower(i, j).to_bits());
            }
        }
        let bytes = Gram::<f64>::packed_bytes(p, 8);
        assert_eq!(bytes, (packed.data.len() * 8) as u64);
        assert!(bytes < (p * p * 8) as u64);
        // fc8's 15000 features: 0.96 GB against the square's 1.8 GB
        let (big, sq) = (Gram::<f64>::packed_bytes(15000, 8), 15008u64 * 15000 * 8);
        assert!(big < sq * 54 / 100, "{big} of {sq} bytes");
        packed.set_lower(p - 1, 3, 42.0);
        packed.add_diag(1.0);
        let view = packed.as_mut();
        assert_eq!(view[(p - 1, 3)], 42.0);
        assert_eq!(view[(5, 5)], square.lower(5, 5) + 1.0);
        assert_eq!(
            view[(p - 2, GRAM_TILE + 3)],
            square.lower(p - 2, GRAM_TILE + 3)
        );
    }
}
