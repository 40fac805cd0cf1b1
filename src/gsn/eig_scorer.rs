//! Every shrinkage level from one eigendecomposition (issue 10).
//!
//! A level λ keeps the diagonal and scales the off-diagonal: `C_λ = D^½ (λR + (1−λ)I) D^½`
//! with `D = diag(C)` and `R = D^-½ C D^-½`. With `R = V Λ Vᵀ` the eigenvalues of the middle
//! factor are `μ_i(λ) = λ·Λ_i + (1 − λ)`, so for held-out points `p_m` and `z_m = Vᵀ D^-½ p_m`
//!
//! * `log det C_λ = Σ log D_i + Σ log μ_i(λ)`,
//! * `p_mᵀ C_λ⁻¹ p_m = Σ_i z_mi² / μ_i(λ)`:
//!
//! one `O(N³)` eigendecomposition and one `M × N × N` product replace a Cholesky factorisation
//! and triangular solve per level, and each level then costs `O(N)`.
//!
//! The reference decides a level is NaN by Cholesky failure (no tolerance). The eigenvalues say
//! that too, except near the boundary: a level whose smallest `μ` lies within a margin of 0
//! (rounding in the eigensolver and in Cholesky both matter there), and the levels whose NLL ties
//! the minimum within a relative 1e-9, are left undecided and scored by the Cholesky scorer, the
//! arbiter. Zero or non-finite variances, one unit and no points are not handled here at all.

use crate::error::Result;
use crate::linalg;
use ndarray::ArrayView2;

/// Relative gap under which two NLLs tie at the minimum (then Cholesky decides).
pub const TIE_REL: f64 = 1e-9;

/// An NLL curve from the eigendecomposition; `undecided` lists the levels the Cholesky scorer
/// must score (their `nll` entries are placeholders).
#[derive(Debug, Clone)]
pub struct EigCurve {
    /// NLL per level (NaN = not positive definite).
    pub nll: Vec<f64>,
    /// Levels near the positive-definite boundary: to be scored by Cholesky.
    pub undecided: Vec<usize>,
}

/// Rows whose Gram matrix is the training covariance: `cov = scale · rowsᵀ rows` with `rows`
/// `r × N`. When `r` is well below `N` the spectrum of the correlation matrix comes from an
/// `r × r` problem (see [`eig_nll`]).
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    /// The `r × N` rows.
    pub rows: ArrayView2<'a, f64>,
    /// The factor in front of `rowsᵀ rows`.
    pub scale: f64,
}

/// Use the rows when `r ≤ N · ROWS_MAX_FRACTION`: a thin QR (`2Nr²`) and an `r × r`
/// eigendecomposition then cost less than the `N × N` eigendecomposition (~`9N³`).
pub const ROWS_MAX_FRACTION: f64 = 0.75;

/// The correlation matrix's spectrum as the scorer needs it: eigenvalues `lam` with the
/// held-out points' summed squared coordinates `w` along their eigenvectors, and `null_dim`
/// further eigenvalues that are exactly 0 (the complement of the rows' span) with `null_w`.
struct Spectrum {
    lam: Vec<f64>,
    w: Vec<f64>,
    null_dim: usize,
    null_w: f64,
}

/// `R = V Λ Vᵀ` in full: `w_i = Σ_m (p̃_m · v_i)²` with `p̃ = D^-½ p`.
fn full_spectrum(cov: ArrayView2<f64>, pts: ArrayView2<f64>, s: &[f64]) -> Option<Spectrum> {
    let (n, m) = (cov.nrows(), pts.nrows());
    // the lower triangle, as the Cholesky scorer reads it
    let r = linalg::mat_from_fn(n, n, |i, j| {
        if i == j {
            1.0
        } else {
            let (a, b) = if i > j { (i, j) } else { (j, i) };
            cov[(a, b)] * s[a] * s[b]
        }
    });
    let (lam, u) = linalg::eigh(r.as_ref())?;
    let ps = linalg::mat_from_fn(m, n, |i, j| pts[(i, j)] * s[j]);
    let z = linalg::mul(ps.as_ref(), u.as_ref());
    Some(Spectrum {
        lam,
        w: col_sumsq(z.as_ref()),
        null_dim: 0,
        null_w: 0.0,
    })
}

/// `R = B̃ᵀB̃` with `B̃ = √scale · rows · D^-½` (`r × N`, `r < N`): the thin QR `B̃ᵀ = Q₁R₁`
/// gives `R = Q₁ (R₁R₁ᵀ) Q₁ᵀ`, so the eigenpairs of the `r × r` matrix `R₁R₁ᵀ = W Λ Wᵀ` with
/// vectors `Q₁W` are the spectrum on the rows' span, and its complement (dimension `N − r`)
/// has eigenvalue 0. Householder QR keeps `Q₁` orthonormal when the rows are linearly
/// dependent (their dependent directions get eigenvalues ≈ 0, as in the full problem).
fn rows_spectrum(rows: Rows, pts: ArrayView2<f64>, s: &[f64]) -> Option<Spectrum> {
    let (r, n) = rows.rows.dim();
    let m = pts.nrows();
    let c = rows.scale.sqrt();
    let bt = linalg::mat_from_fn(n, r, |j, i| c * rows.rows[(i, j)] * s[j]);
    let (q, r1) = linalg::thin_qr(bt);
    let small = linalg::mul(r1.as_ref(), r1.transpose());
    let (lam, u) = linalg::eigh(small.as_ref())?;
    let ps = linalg::mat_from_fn(m, n, |i, j| pts[(i, j)] * s[j]);
    let y = linalg::mul(ps.as_ref(), q.as_ref());
    let z = linalg::mul(y.as_ref(), u.as_ref());
    // the points' parts outside the span, formed explicitly (no cancellation)
    let outside = &ps - linalg::mul(y.as_ref(), q.transpose());
    let null_w = col_sumsq(outside.as_ref()).iter().sum();
    Some(Spectrum {
        lam,
        w: col_sumsq(z.as_ref()),
        null_dim: n - r,
        null_w,
    })
}

fn col_sumsq(z: faer::MatRef<f64>) -> Vec<f64> {
    (0..z.ncols())
        .map(|j| (0..z.nrows()).map(|i| z[(i, j)] * z[(i, j)]).sum())
        .collect()
}

/// The curve of every level of `cov` (`N × N`) on `pts` (`M × N`, centred), or `None` when the
/// route does not apply (`N < 2`, `M = 0`, a variance that is not positive and finite). With
/// `rows` (`cov = scale · rowsᵀ rows`) of at most [`ROWS_MAX_FRACTION`]`· N` rows, the
/// spectrum comes from the rows ([`Rows`]); the variances are always `cov`'s diagonal.
pub fn eig_nll(
    cov: ArrayView2<f64>,
    rows: Option<Rows>,
    pts: ArrayView2<f64>,
    levels: &[f64],
) -> Result<Option<EigCurve>> {
    let n = cov.nrows();
    let m = pts.nrows();
    if n < 2 || m == 0 {
        return Ok(None);
    }
    let d: Vec<f64> = (0..n).map(|i| cov[(i, i)]).collect();
    if d.iter().any(|&v| !(v > 0.0 && v.is_finite())) {
        return Ok(None);
    }
    let s: Vec<f64> = d.iter().map(|v| 1.0 / v.sqrt()).collect();
    let spectrum = match rows {
        Some(b)
            if b.rows.ncols() == n && (b.rows.nrows() as f64) <= ROWS_MAX_FRACTION * n as f64 =>
        {
            rows_spectrum(b, pts, &s)
        }
        _ => full_spectrum(cov, pts, &s),
    };
    let Some(Spectrum {
        lam,
        w,
        null_dim,
        null_w,
    }) = spectrum
    else {
        return Ok(None);
    };
    let log_d: f64 = d.iter().map(|v| v.ln()).sum();
    let zero = if null_dim > 0 { 0.0 } else { f64::INFINITY };
    let lam_min = lam.iter().cloned().fold(zero, f64::min);
    let lam_max = lam.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    // eigenvalue errors are ~ N·ε·‖R‖; Cholesky's failure threshold is of the same order
    let margin = 1e3 * n as f64 * f64::EPSILON * lam_max.abs().max(1.0);
    let mut nll = vec![f64::NAN; levels.len()];
    let mut undecided = Vec::new();
    for (k, &l) in levels.iter().enumerate() {
        let mu_min = l * lam_min + (1.0 - l);
        if mu_min.abs() <= margin {
            undecided.push(k);
            continue;
        }
        if mu_min < 0.0 {
            continue;
        }
        let mut quad = 0.0;
        let mut log_mu = 0.0;
        for (&li, &wi) in lam.iter().zip(&w) {
            let mu = l * li + (1.0 - l);
            quad += wi / mu;
            log_mu += mu.ln();
        }
        if null_dim > 0 {
            quad += null_w / (1.0 - l);
            log_mu += null_dim as f64 * (1.0 - l).ln();
        }
        nll[k] = linalg::gaussian_nll(quad, m, 0.5 * (log_d + log_mu), n);
    }
    Ok(Some(EigCurve { nll, undecided }))
}

/// The levels other than `exclude` whose NLL is within [`TIE_REL`] of the curve's minimum, and
/// the minimum's index; empty when the minimum is clear.
pub fn near_ties(nll: &[f64], exclude: &[bool]) -> Vec<usize> {
    let Some(best) = super::shrink::choose(nll) else {
        return Vec::new();
    };
    let v = nll[best];
    let tied: Vec<usize> = (0..nll.len())
        .filter(|&k| k != best && !nll[k].is_nan() && (nll[k] - v).abs() <= TIE_REL * v.abs())
        .collect();
    if tied.is_empty() {
        return Vec::new();
    }
    std::iter::once(best)
        .chain(tied)
        .filter(|&k| !exclude[k])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::Rng;
    use faer::Side;
    use ndarray::Array2;

    /// Each level's NLL by a Cholesky factorisation of the shrunk matrix (NaN when it fails).
    fn cholesky_curve(cov: &Array2<f64>, pts: &Array2<f64>, levels: &[f64]) -> Vec<f64> {
        let n = cov.nrows();
        levels
            .iter()
            .map(|&l| {
                let a =
                    faer::Mat::from_fn(
                        n,
                        n,
                        |i, j| {
                            if i == j {
                                cov[(i, j)]
                            } else {
                                l * cov[(i, j)]
                            }
                        },
                    );
                let Ok(f) = a.llt(Side::Lower) else {
                    return f64::NAN;
                };
                let lf = f.L();
                let logdet: f64 = (0..n).map(|i| lf[(i, i)].ln()).sum();
                let mut y = faer::Mat::from_fn(n, pts.nrows(), |i, m| pts[(m, i)]);
                lf.solve_lower_triangular_in_place(y.as_mut());
                let sumsq: f64 = (0..y.ncols())
                    .map(|m| (0..n).map(|i| y[(i, m)] * y[(i, m)]).sum::<f64>())
                    .sum();
                linalg::gaussian_nll(sumsq, pts.nrows(), logdet, n)
            })
            .collect()
    }

    #[test]
    fn the_rows_route_agrees_with_the_full_route_and_cholesky() {
        let levels = super::super::shrink::default_levels();
        let mut rng = Rng::new(5);
        let n = 60;
        // rows in general position (r = 40) and residual-like rows whose groups of three sum to
        // zero (r = 30, rank 20), as the noise covariance's are
        let general = Array2::from_shape_fn((40, n), |_| rng.normal());
        let mut grouped = Array2::from_shape_fn((30, n), |_| rng.normal());
        for g in 0..10 {
            for j in 0..n {
                let m = (0..3).map(|t| grouped[(3 * g + t, j)]).sum::<f64>() / 3.0;
                for t in 0..3 {
                    grouped[(3 * g + t, j)] -= m;
                }
            }
        }
        for (name, rows, divisor) in [("general", general, 39.0), ("grouped", grouped, 10.0)] {
            let cov = rows.t().dot(&rows) / divisor;
            let pts = Array2::from_shape_fn((17, n), |_| 0.8 * rng.normal());
            let b = Rows {
                rows: rows.view(),
                scale: 1.0 / divisor,
            };
            let fact = eig_nll(cov.view(), Some(b), pts.view(), &levels)
                .unwrap()
                .unwrap();
            let full = eig_nll(cov.view(), None, pts.view(), &levels)
                .unwrap()
                .unwrap();
            let chol = cholesky_curve(&cov, &pts, &levels);
            // λ = 1 is singular (r < N): left to the arbiter by both routes
            assert_eq!(fact.undecided, vec![50], "{name}");
            assert_eq!(full.undecided, vec![50], "{name}");
            assert!(chol[50].is_nan(), "{name}");
            for (k, &c) in chol.iter().enumerate().take(50) {
                let (a, b) = (fact.nll[k], full.nll[k]);
                assert!(!a.is_nan() && !c.is_nan(), "{name} level {k}");
                assert!(
                    (a - b).abs() <= 1e-10 * b.abs(),
                    "{name} level {k}: {a} vs {b}"
                );
                assert!(
                    (a - c).abs() <= 1e-10 * c.abs(),
                    "{name} level {k}: {a} vs {c}"
                );
            }
        }
    }
}
