//! The selection path's operands on the CPU, centred (issue 10).
//!
//! `X₁ᵀX₁` of fMRI-like data is dominated by the voxels' baselines (`n·x̄x̄ᵀ`, ~10⁴ times the
//! centred part), so forming it in f32 loses the digits that matter. The CPU therefore keeps
//! one copy of `X` centred (`Xc = X − 1x̄ᵀ`, f32 for f32 fits) that serves the correlations, the
//! Gram matrix `XcᵀXc` and the cross products `YcᵀXc`, and restores the bias terms exactly, in
//! f64, when it gathers each unit's system:
//!
//! * `XᵀX = XcᵀXc + n·x̄x̄ᵀ`, `Xᵀ1 = n·x̄`, `1ᵀ1 = n`;
//! * `Xᵀy = Xcᵀyc + n·x̄·ȳ`, `1ᵀy = n·ȳ`.
//!
//! The systems are the reference's (α on every diagonal entry, the bias included) and are
//! solved in f64 as the reference does. `YcᵀXc` is both the numerator of the correlations and
//! the right-hand sides, so it is computed once per chunk.

use super::recycle::{Recyclable, Recycler};
use super::{cross_rows, rows_independent};
use crate::backend::{LOW_VARIANCE, UNDEFINED_CORR};
use crate::linalg::{par, Gram, Real};
use faer::{Accum, MatMut, MatRef};
use ndarray::{Array2, ArrayView2, ShapeBuilder};
use rayon::prelude::*;

/// A matrix centred per variable, in `T`, with the means and the sums of squares after
/// centring (both f64). Features are stored samples × variables (each variable's samples
/// contiguous: the layout faer's Gram tiles run fastest on, ~60 against ~54 GFLOP/s measured at
/// F = 15000), targets variables × samples (as uploaded); [`Centred::ct`] is the variables ×
/// samples view of either.
pub struct Centred<T: Real> {
    /// Column-major from `offset` (64-byte aligned), `rows × cols` in columns of `stride` (rows
    /// rounded up to whole 64-byte lines, the padding zero: see [`crate::linalg::mat_from_fn`]).
    data: Vec<T>,
    offset: usize,
    rows: usize,
    cols: usize,
    stride: usize,
    by_columns: bool,
    /// Mean of each variable.
    pub mean: Vec<f64>,
    /// Σ (a − mean)² of each variable.
    pub ss: Vec<f64>,
}

impl<T: Real> Drop for Centred<T> {
    fn drop(&mut self) {
        crate::linalg::release_pages(&mut self.data);
    }
}

/// Columns of 64 bytes' worth of rows: the stride of `rows` elements of `T`.
fn padded_stride<T>(rows: usize) -> usize {
    let lanes = (64 / std::mem::size_of::<T>().max(1)).max(1);
    rows.div_ceil(lanes).max(1) * lanes
}

/// A zero buffer of `len` elements starting at a 64-byte boundary: the buffer and where the
/// aligned part starts. Faulted in by every thread when large.
fn aligned_zeros<T: Real>(len: usize) -> (Vec<T>, usize) {
    let lanes = 64 / T::BYTES;
    let mut data = vec![T::default(); len + lanes];
    crate::linalg::populate_small_pages(&mut data);
    let offset = data.as_ptr().align_offset(64).min(lanes - 1);
    (data, offset)
}

impl<T: Real> Centred<T> {
    /// Centres the columns of `a` (`n × p`, any layout), each value first rounded to `T`, into a
    /// column-major `n × p` copy.
    ///
    /// Blocks of 64 variables in parallel, each: its means (summed in ascending sample order
    /// whatever `a`'s layout — C, Fortran, a view —, so the same bits for the same values), its
    /// centred values (64 × 64 tiles, as `linalg::transposed`: neither side strides a whole row
    /// at a time) and its sums of squares. The copy is faulted in by every thread
    /// ([`crate::linalg::populate_small_pages`]). At fc8 size (1000 × 15000, f32) this took
    /// ~0.05 s on one thread for the means and sums and a zeroing pass.
    pub fn of_columns(a: ArrayView2<f64>) -> Self {
        let (n, p) = a.dim();
        // an f32 fit's X is rounded here, as it is read (no rounded copy of X is made)
        let rounded = |v: f64| T::of(v).f64();
        const TILE: usize = 64;
        let stride = padded_stride::<T>(n);
        let (mut data, offset) = aligned_zeros::<T>(stride * p);
        let mut mean = vec![0.0; p];
        let mut ss = vec![0.0; p];
        data[offset..offset + stride * p]
            .par_chunks_mut(TILE * stride)
            .zip(mean.par_chunks_mut(TILE))
            .zip(ss.par_chunks_mut(TILE))
            .enumerate()
            .for_each(|(b, ((block, mb), sb))| {
                let j0 = b * TILE;
                for i in 0..n {
                    for (dj, m) in mb.iter_mut().enumerate() {
                        *m += rounded(a[(i, j0 + dj)]);
                    }
                }
                mb.iter_mut().for_each(|m| *m /= n as f64);
                for i0 in (0..n).step_by(TILE) {
                    for (dj, col) in block.chunks_exact_mut(stride).enumerate() {
                        for (i, c) in col.iter_mut().enumerate().take((i0 + TILE).min(n)).skip(i0) {
                            *c = T::of(rounded(a[(i, j0 + dj)]) - mb[dj]);
                        }
                    }
                }
                for (col, s) in block.chunks_exact(stride).zip(sb.iter_mut()) {
                    *s = sum_of_squares(col[..n].iter().copied());
                }
            });
        Centred {
            data,
            offset,
            rows: n,
            cols: p,
            stride,
            by_columns: true,
            mean,
            ss,
        }
    }

    /// Centres the rows of `bt` (`q × n`: a variable per row) into a copy in `T`.
    pub fn of_rows(bt: faer::MatRef<'_, f64>) -> Self {
        let (q, n) = (bt.nrows(), bt.ncols());
        let mut mean = vec![0.0; q];
        for i in 0..n {
            for (j, m) in mean.iter_mut().enumerate() {
                *m += bt[(j, i)];
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let stride = padded_stride::<T>(q);
        let (mut data, offset) = aligned_zeros::<T>(stride * n);
        for (i, col) in data[offset..offset + stride * n]
            .chunks_exact_mut(stride)
            .enumerate()
        {
            for (j, c) in col[..q].iter_mut().enumerate() {
                *c = T::of(bt[(j, i)] - mean[j]);
            }
        }
        let mut out = Centred {
            data,
            offset,
            rows: q,
            cols: n,
            stride,
            by_columns: false,
            mean,
            ss: Vec::new(),
        };
        out.ss = sums_of_squares(out.ct());
        out
    }

    /// The stored matrix (samples × variables for features, variables × samples for targets).
    fn stored(&self) -> MatRef<'_, T> {
        MatRef::from_column_major_slice_with_stride(
            &self.data[self.offset..self.offset + self.stride * self.cols],
            self.rows,
            self.cols,
            self.stride,
        )
    }

    /// Variable `j`'s centred samples, contiguous: `Some` for features (stored samples ×
    /// variables), `None` for targets.
    pub fn column(&self, j: usize) -> Option<&[T]> {
        if !self.by_columns {
            return None;
        }
        let start = self.offset + j * self.stride;
        Some(&self.data[start..start + self.rows])
    }

    /// `XcᵀXc` of this copy rounded to f32 (the f32 copy, formed in the storage layout by every
    /// thread, lives only while the product runs).
    pub fn gram_f32(&self) -> Gram<f32> {
        let (rows, cols) = (self.rows, self.cols);
        let stride = padded_stride::<f32>(rows);
        let (mut copy, offset) = aligned_zeros::<f32>(stride * cols);
        let copy = &mut copy[offset..offset + stride * cols];
        let src = &self.data[self.offset..self.offset + self.stride * cols];
        copy.par_chunks_mut(stride)
            .zip(src.par_chunks(self.stride))
            .for_each(|(dst, src)| {
                for (d, s) in dst.iter_mut().zip(&src[..rows]) {
                    *d = s.f64() as f32;
                }
            });
        let view = MatRef::from_column_major_slice_with_stride(&*copy, rows, cols, stride);
        if self.by_columns {
            crate::linalg::gram_lower_packed_t(view.transpose())
        } else {
            crate::linalg::gram_lower_packed_t(view)
        }
    }

    /// The centred matrix as variables × samples.
    pub fn ct(&self) -> MatRef<'_, T> {
        if self.by_columns {
            self.stored().transpose()
        } else {
            self.stored()
        }
    }
}

/// Σ v² in f64, in order.
fn sum_of_squares<T: Real>(v: impl IntoIterator<Item = T>) -> f64 {
    let mut s = 0.0;
    for x in v {
        let x = x.f64();
        s += x * x;
    }
    s
}

/// Σ over samples of each variable's squared (centred, rounded) values, in f64, summed in
/// ascending sample order.
fn sums_of_squares<T: Real>(ct: MatRef<'_, T>) -> Vec<f64> {
    (0..ct.nrows())
        .map(|j| {
            let row = ct.row(j);
            sum_of_squares((0..ct.ncols()).map(|i| row[i]))
        })
        .collect()
}

/// `YcᵀXc` (`q × p`, column-major) for centred targets and features.
///
/// Computed straight into a column-major `q × p` result: faer's GEMM runs at ~54 (q = 62) and
/// ~65 GFLOP/s (q = 245) in that orientation against ~31 and ~42–50 for the transposed one
/// (measured at F = 15000, n = 1000, f64, 2 threads). Each row does not depend on how many
/// rows the chunk has (the sharded fits compare bit for bit); a single row is computed as two,
/// because faer takes a matrix-vector path, with other rounding, for one row.
pub fn cross<T: Real + Recyclable>(y: &Centred<T>, x: &Centred<T>, r: &Recycler) -> Array2<T> {
    rows_independent(y.ct(), x.ct(), |bt, at| cross_cols(bt, at, r))
}

/// `bt · atᵀ` into a column-major array (its buffer from `r`).
fn cross_cols<T: Real + Recyclable>(
    bt: MatRef<'_, T>,
    at: MatRef<'_, T>,
    r: &Recycler,
) -> Array2<T> {
    let (q, p) = (bt.nrows(), at.nrows());
    let mut out = Array2::from_shape_vec((q, p).f(), r.zeros(q * p)).expect("q × p elements");
    let dst = MatMut::from_column_major_slice_mut(
        out.as_slice_memory_order_mut().expect("contiguous"),
        q,
        p,
    );
    faer::linalg::matmul::matmul(dst, Accum::Replace, bt, at.transpose(), T::of(1.0), par());
    out
}

/// Units per block in [`abs_correlations`]: eight f64 of one column of the (column-major)
/// cross products are one cache line.
const CORR_BLOCK: usize = 8;

/// How many features ahead [`abs_correlations`] prefetches the cross products: each feature's
/// block of units is one cache line `q` elements after the last, a stride the hardware
/// prefetchers do not follow across pages (measured at q = 245, F = 15000: 27–31 → 16–20 ms
/// per chunk with the prefetch and the block computed branch-free).
const CORR_PREFETCH: usize = 16;

/// |r| (`q × p`, f64, row-major) from the centred cross products (as [`cross`] makes them,
/// column-major), with the reference's low-variance and zero-variance rules.
///
/// Each value is `|h / √(ssx·ssy)|` rounded exactly as written (IEEE division and square
/// root), whichever instruction set computes it.
pub fn abs_correlations<T: Real>(
    num: &Array2<T>,
    x: &Centred<T>,
    y: &Centred<T>,
    n: usize,
    r: &Recycler,
) -> Array2<f64> {
    let (q, p) = num.dim();
    let mut out = Array2::from_shape_vec((q, p), r.zeros(q * p)).expect("q × p elements");
    if q == 0 || p == 0 {
        return out;
    }
    let num_f = num.t();
    let cols = num_f.as_slice();
    let low: Vec<bool> = x.ss.iter().map(|s| s / (n as f64) < LOW_VARIANCE).collect();
    let out_rows = out.as_slice_mut().expect("standard layout");
    out_rows
        .par_chunks_mut(CORR_BLOCK * p)
        .enumerate()
        .for_each(|(blk, rows)| {
            // compiled for the widest vectors the CPU has (the same values)
            crate::linalg::with_simd(
                #[inline(always)]
                || {
                    let u0 = blk * CORR_BLOCK;
                    let bs = rows.len() / p;
                    // padding lanes get ssy = 1 and h = 0: computed, never stored
                    let mut ssy = [1.0f64; CORR_BLOCK];
                    ssy[..bs].copy_from_slice(&y.ss[u0..u0 + bs]);
                    let mut col = [0.0f64; CORR_BLOCK];
                    for (j, (&low_j, &ssx)) in low.iter().zip(&x.ss).enumerate() {
                        match cols {
                            Some(data) => {
                                prefetch(data, (j + CORR_PREFETCH) * q + u0);
                                for (c, v) in col.iter_mut().zip(&data[j * q + u0..j * q + u0 + bs])
                                {
                                    *c = v.f64();
                                }
                            }
                            None => {
                                for (du, c) in col[..bs].iter_mut().enumerate() {
                                    *c = num[(u0 + du, j)].f64();
                                }
                            }
                        }
                        let mut r = [0.0f64; CORR_BLOCK];
                        for ((r, &c), &s) in r.iter_mut().zip(&col).zip(&ssy) {
                            *r = (c / (ssx * s).sqrt()).abs();
                        }
                        for du in 0..bs {
                            rows[du * p + j] = if low_j {
                                0.0
                            } else if ssy[du] == 0.0 {
                                UNDEFINED_CORR
                            } else {
                                r[du]
                            };
                        }
                    }
                },
            )
        });
    out
}

/// Asks the CPU to fetch the cache line holding `data[i]` (nothing past the end, nothing on
/// other architectures).
#[inline(always)]
fn prefetch<T>(data: &[T], i: usize) {
    #[cfg(target_arch = "x86_64")]
    if i < data.len() {
        // SAFETY: `i` is in bounds; a prefetch reads nothing architecturally.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(data.as_ptr().add(i) as *const i8);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (data, i);
}

/// The uncentred `X₁ᵀX₁` (`(p+1)²`, f64, bias last) from a centred Gram matrix.
pub fn uncentred_gram<T: Real>(g: &Gram<T>, mean: &[f64], n: usize) -> Gram {
    let p = mean.len();
    let nf = n as f64;
    let mut out = Gram::<f64>::zeros(p + 1);
    for j in 0..p {
        for i in j..p {
            out.set_lower(i, j, g.lower(i, j).f64() + nf * mean[i] * mean[j]);
        }
        out.set_lower(p, j, nf * mean[j]);
    }
    out.set_lower(p, p, nf);
    out
}

/// `X₁ᵀB` (`(p+1) × q`) for centred features and a host `Bᵀ` (`q × n`, f64): `XcᵀB + x̄·1ᵀB`
/// and the bias row `1ᵀB`.
pub fn uncentred_cross<T: Real>(x: &Centred<T>, bt: faer::MatRef<'_, f64>) -> Array2<f64> {
    let b32 = crate::linalg::mat_from_fn(bt.nrows(), bt.ncols(), |i, j| T::of(bt[(i, j)]));
    let c = cross_rows(b32.as_ref(), x.ct());
    let (q, p) = c.dim();
    let sums: Vec<f64> = (0..q)
        .map(|u| (0..bt.ncols()).map(|i| bt[(u, i)]).sum())
        .collect();
    let mut out = Array2::<f64>::zeros((p + 1, q));
    for u in 0..q {
        for j in 0..p {
            out[(j, u)] = c[(u, j)].f64() + x.mean[j] * sums[u];
        }
        out[(p, u)] = sums[u];
    }
    out
}
