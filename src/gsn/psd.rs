//! Nearest-PSD projection (spec §7), Pearson correlation over matrices, the biconvex refinement
//! (spec §8) and the sorted, sign-fixed eigendecompositions of the eig returns.

use crate::error::{Error, Result};
use crate::linalg;
use faer::Mat;
use ndarray::{Array1, Array2, ArrayView2};

fn to_faer(a: ArrayView2<f64>) -> Mat<f64> {
    crate::linalg::mat_from_fn(a.nrows(), a.ncols(), |i, j| a[(i, j)])
}

/// Whether the Cholesky factorisation of `a` succeeds (LAPACK potrf semantics: every pivot > 0).
pub fn is_pd(a: ArrayView2<f64>) -> bool {
    let n = a.nrows();
    let mut m = to_faer(a);
    let mut mem = linalg::cholesky_scratch(n);
    linalg::cholesky_raw(
        m.as_mut(),
        linalg::par_for_order(n),
        faer::dyn_stack::MemStack::new(&mut mem),
    )
    .is_ok()
}

fn sym(a: ArrayView2<f64>) -> Array2<f64> {
    (&a + &a.t()) * 0.5
}

/// Symmetric eigendecomposition, eigenvalues ascending.
pub fn eigh(a: ArrayView2<f64>) -> Result<(Array1<f64>, Array2<f64>)> {
    let m = to_faer(a);
    let (s, u) = linalg::eigh(m.as_ref())
        .ok_or_else(|| Error::Singular("eigendecomposition did not converge".into()))?;
    let n = a.nrows();
    let vals = Array1::from(s);
    let vecs = Array2::from_shape_fn((n, n), |(i, j)| u[(i, j)]);
    Ok((vals, vecs))
}

/// `P(M)`: symmetrise; if not PD, clamp negative eigenvalues to 0, rebuild and symmetrise; if
/// that is still not PD, add `1e-10·I`. The rebuild `V·diag(max(d, 0))·Vᵀ` sums over the
/// eigenvectors whose eigenvalue is positive only (the others add exact zeros).
pub fn nearest_psd(m: ArrayView2<f64>) -> Result<Array2<f64>> {
    let s = sym(m);
    if is_pd(s.view()) {
        return Ok(s);
    }
    let (d, v) = linalg::eigh(to_faer(s.view()).as_ref())
        .ok_or_else(|| Error::Singular("eigendecomposition did not converge".into()))?;
    let n = d.len();
    let pos: Vec<usize> = (0..n).filter(|&i| d[i] > 0.0).collect();
    let vp = linalg::mat_from_fn(n, pos.len(), |i, j| v[(i, pos[j])]);
    let vd = linalg::mat_from_fn(n, pos.len(), |i, j| vp[(i, j)] * d[pos[j]]);
    let rebuilt = linalg::mul(vd.as_ref(), vp.transpose());
    let mut out = Array2::from_shape_fn((n, n), |(i, j)| (rebuilt[(i, j)] + rebuilt[(j, i)]) * 0.5);
    if !is_pd(out.view()) {
        for i in 0..out.nrows() {
            out[(i, i)] += 1e-10;
        }
    }
    Ok(out)
}

/// Pearson correlation of all entries of two equally shaped matrices (NaN when constant).
pub fn pearson(a: ArrayView2<f64>, b: ArrayView2<f64>) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.sum() / n, b.sum() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b.iter()) {
        let (dx, dy) = (x - ma, y - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    sab / (saa * sbb).sqrt()
}

/// How the noise term is scaled in the biconvex loop: by `1/n` (even and uneven data) or
/// element-wise by `alpha` (missing-units mode).
pub enum NoiseScale<'a> {
    /// Divide by the trial count `n`.
    Divisor(f64),
    /// Multiply element-wise by the per-entry bias factor.
    Elementwise(ArrayView2<'a, f64>),
}

impl NoiseScale<'_> {
    /// `cD − scale(nb)`.
    pub fn signal(&self, cd: ArrayView2<f64>, nb: ArrayView2<f64>) -> Array2<f64> {
        match self {
            NoiseScale::Divisor(n) => &cd - &(&nb / *n),
            NoiseScale::Elementwise(a) => &cd - &(&nb * a),
        }
    }
}

/// Result of the biconvex loop.
pub struct Biconvex {
    /// Final signal covariance.
    pub csb: Array2<f64>,
    /// Final noise covariance.
    pub cnb: Array2<f64>,
    /// Passes that did not converge (100 when the cap was hit).
    pub numiters: usize,
}

/// The biconvex refinement with cap 100 (spec §8). `k` is the effective trial count; `cancel`
/// is polled before each pass.
pub fn biconvex(
    cn: ArrayView2<f64>,
    cd: ArrayView2<f64>,
    c: usize,
    scale: &NoiseScale,
    k: f64,
    cancel: Option<&crate::Cancel>,
) -> Result<Biconvex> {
    let cf = c as f64;
    let d = cf * k * k * (k - 1.0) + cf - 1.0;
    let a = cf * (k - 1.0) * k * k / d;
    let b = (cf - 1.0) / d;
    let n_units = cn.nrows();
    let mut nb = cn.to_owned();
    let mut s_prev = scale.signal(cd, cn);
    let mut n_prev = cn.to_owned();
    const CAP: usize = 100;
    for it in 0..CAP {
        crate::cancel::check(cancel, "in the biconvex refinement")?;
        let sb = nearest_psd(scale.signal(cd, nb.view()).view())?;
        let target = &cn * a + &((&cd - &sb) * (b * k));
        nb = nearest_psd(target.view())?;
        let converged = if n_units == 1 {
            (s_prev[(0, 0)] - sb[(0, 0)]).abs() < 1e-5 && (n_prev[(0, 0)] - nb[(0, 0)]).abs() < 1e-5
        } else {
            pearson(s_prev.view(), sb.view()) > 0.999 && pearson(n_prev.view(), nb.view()) > 0.999
        };
        if converged {
            return Ok(Biconvex {
                csb: sb,
                cnb: nb,
                numiters: it,
            });
        }
        s_prev = sb;
        n_prev = nb.clone();
    }
    // never converged: the last iterate, numiters = the cap
    Ok(Biconvex {
        csb: s_prev,
        cnb: nb,
        numiters: CAP,
    })
}

/// Eigenvalues descending and eigenvectors (columns) with each column's largest-|·| entry made
/// positive.
pub fn sorted_eig(a: ArrayView2<f64>) -> Result<(Array1<f64>, Array2<f64>)> {
    let (vals, vecs) = eigh(a)?;
    let n = vals.len();
    let mut ov = Array1::zeros(n);
    let mut oe = Array2::zeros((n, n));
    for (dst, src) in (0..n).rev().enumerate() {
        ov[dst] = vals[src];
        let col = vecs.column(src);
        let mut big = 0usize;
        for i in 0..n {
            if col[i].abs() > col[big].abs() {
                big = i;
            }
        }
        let sign = if col[big] < 0.0 { -1.0 } else { 1.0 };
        for i in 0..n {
            oe[(i, dst)] = sign * col[i];
        }
    }
    Ok((ov, oe))
}
