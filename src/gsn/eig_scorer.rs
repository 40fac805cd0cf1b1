//! Every shrinkage level from one tridiagonalisation (issue 10).
//!
//! A level λ keeps the diagonal and scales the off-diagonal: `C_λ = D^½ (λR + (1−λ)I) D^½`
//! with `D = diag(C)` and `R = D^-½ C D^-½`. With the Householder tridiagonalisation
//! `R = Q T Qᵀ` (`T` symmetric tridiagonal), `λR + (1−λ)I = Q T_λ Qᵀ` with
//! `T_λ = λT + (1−λ)I`, so for held-out points `p_m` and `z_m = Qᵀ D^-½ p_m`
//!
//! * `log det C_λ = Σ log D_i + Σ log δ_i(λ)`, with `δ_i` the pivots of `T_λ = L Δ Lᵀ`,
//! * `p_mᵀ C_λ⁻¹ p_m = Σ_i y_mi² / δ_i(λ)`, with `y_m = L⁻¹ z_m` (one forward recurrence):
//!
//! one `O(N³)` tridiagonalisation (no eigenvectors: a third to a half of an eigendecomposition's
//! cost here) and one application of `Qᵀ` to the points replace a Cholesky factorisation and
//! triangular solve per level, and each level then costs `O(N·M)`.
//!
//! The reference decides a level is NaN by Cholesky failure (no tolerance). The extreme
//! eigenvalues of `T` (bisection on Sturm counts) say that too, except near the boundary: a
//! level whose smallest eigenvalue `μ_min = λ·Λ_min + 1 − λ` lies within a margin of 0
//! (rounding in the tridiagonalisation and in Cholesky both matter there), and the levels whose
//! NLL ties the minimum within a relative 1e-9, are left undecided and scored by the Cholesky
//! scorer, the arbiter; so is a level whose `T_λ` pivots disagree with its `μ_min`. Zero or
//! non-finite variances, one unit and no points are not handled here at all.

use crate::error::Result;
use crate::linalg;
use ndarray::ArrayView2;

/// Relative gap under which two NLLs tie at the minimum (then Cholesky decides).
pub const TIE_REL: f64 = 1e-9;

/// An NLL curve from the tridiagonalisation; `undecided` lists the levels the Cholesky scorer
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

/// Use the rows when `r ≤ N · ROWS_MAX_FRACTION`: a thin QR (`~4Nr²` with `Q₁`) and an
/// `r × r` tridiagonalisation then cost no more than the `N × N` tridiagonalisation, which runs
/// at matrix–vector speed. Measured (perform_gsn, C = 200, T = 3, noise rows r = 320): 0.5,
/// 0.75 and 0.9 within the noise at N = 500 and 1000; 0.3 (the full route at N = 1000) 15 %
/// slower.
pub const ROWS_MAX_FRACTION: f64 = 0.75;

/// The number of rows the scorer works from for `n` units: `Some(r)` when `rows` takes the rows
/// route ([`ROWS_MAX_FRACTION`]), `None` for the full `n × n` route.
pub fn rows_route(n: usize, rows: Option<&Rows>) -> Option<usize> {
    rows.map(|b| b.rows.nrows()).filter(|&r| {
        rows.is_some_and(|b| b.rows.ncols() == n) && r as f64 <= ROWS_MAX_FRACTION * n as f64
    })
}

/// Bytes [`eig_nll`] holds at once for `n` units and `m` points, on the rows route with `r`
/// rows or on the full route: the full route the scaled correlation matrix and its
/// tridiagonal form (`2n²`) and the points twice (`2nm`); the rows route the scaled rows and
/// `Q₁` (`2nr`), `R₁`, `R₁R₁ᵀ` and its tridiagonal form (`3r²`), the scaled points and their
/// part outside the span (`2nm`) and their coordinates twice (`2rm`).
pub fn working_bytes(n: usize, m: usize, r: Option<usize>) -> u64 {
    let words = match r {
        None => 2 * n * n + 2 * n * m,
        Some(r) => 2 * n * r + 3 * r * r + 2 * n * m + 2 * r * m,
    };
    8 * words as u64
}

/// The correlation matrix as the scorer needs it: `T`'s diagonal `diag` and subdiagonal `sub`,
/// the held-out points' coordinates `z` (`dim × m`, row-major: row `i` holds coordinate `i` of
/// every point), and `null_dim` further eigenvalues that are exactly 0 (the complement of the
/// rows' span) with the points' summed squares there, `null_w`.
struct Reduced {
    diag: Vec<f64>,
    sub: Vec<f64>,
    z: Vec<f64>,
    null_dim: usize,
    null_w: f64,
}

/// `a = W T Wᵀ` (the lower triangle of `a` is read) and `Wᵀ pts_t` for the points as columns
/// (`dim × m`), returned row-major.
fn tridiagonalise(
    a: faer::MatRef<f64>,
    mut pts_t: faer::Mat<f64>,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let tri = linalg::Tridiagonal::of(a);
    tri.apply(pts_t.as_mut(), true);
    let (n, m) = (tri.dim(), pts_t.ncols());
    let mut z = Vec::with_capacity(n * m);
    for i in 0..n {
        z.extend((0..m).map(|j| pts_t[(i, j)]));
    }
    (tri.diag(), tri.sub(), z)
}

/// `R` in full, tridiagonalised.
fn full_reduced(cov: ArrayView2<f64>, pts: ArrayView2<f64>, s: &[f64]) -> Reduced {
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
    let pts_t = linalg::mat_from_fn(n, m, |i, j| pts[(j, i)] * s[i]);
    let (diag, sub, z) = tridiagonalise(r.as_ref(), pts_t);
    Reduced {
        diag,
        sub,
        z,
        null_dim: 0,
        null_w: 0.0,
    }
}

/// `R = B̃ᵀB̃` with `B̃ = √scale · rows · D^-½` (`r × N`, `r < N`): the thin QR `B̃ᵀ = Q₁R₁`
/// gives `R = Q₁ (R₁R₁ᵀ) Q₁ᵀ`, so `R` acts on the rows' span as the `r × r` matrix `R₁R₁ᵀ` (in
/// the basis `Q₁`, tridiagonalised here) and is 0 on its complement (dimension `N − r`).
/// Householder QR keeps `Q₁` orthonormal when the rows are linearly dependent (their dependent
/// directions get eigenvalues ≈ 0, as in the full problem).
fn rows_reduced(rows: Rows, pts: ArrayView2<f64>, s: &[f64]) -> Reduced {
    let (r, n) = rows.rows.dim();
    let m = pts.nrows();
    let c = rows.scale.sqrt();
    let bt = linalg::mat_from_fn(n, r, |j, i| c * rows.rows[(i, j)] * s[j]);
    let (q, r1) = linalg::thin_qr(bt);
    let small = linalg::mul(r1.as_ref(), r1.transpose());
    let ps = linalg::mat_from_fn(m, n, |i, j| pts[(i, j)] * s[j]);
    // the points' coordinates in the basis Q₁ (as columns), and their parts outside the span,
    // formed explicitly (no cancellation)
    let yt = linalg::mul(q.transpose(), ps.transpose());
    let outside = &ps - linalg::mul(yt.transpose(), q.transpose());
    let null_w = sum_sq(outside.as_ref());
    let (diag, sub, z) = tridiagonalise(small.as_ref(), yt);
    Reduced {
        diag,
        sub,
        z,
        null_dim: n - r,
        null_w,
    }
}

/// The sum of the squares of every entry.
fn sum_sq(z: faer::MatRef<f64>) -> f64 {
    (0..z.ncols())
        .map(|j| (0..z.nrows()).map(|i| z[(i, j)] * z[(i, j)]).sum::<f64>())
        .sum()
}

/// The number of eigenvalues of the symmetric tridiagonal `(diag, sub)` below `x` (Sturm
/// count; a zero pivot is replaced by `-pivmin`, as LAPACK's bisection does).
fn count_below(diag: &[f64], sub: &[f64], x: f64, pivmin: f64) -> usize {
    let mut count = 0;
    let mut q = 1.0;
    for i in 0..diag.len() {
        let off = if i > 0 {
            sub[i - 1] * sub[i - 1] / q
        } else {
            0.0
        };
        q = diag[i] - x - off;
        if q.abs() < pivmin {
            q = -pivmin;
        }
        if q < 0.0 {
            count += 1;
        }
    }
    count
}

/// The smallest and the largest eigenvalue of the symmetric tridiagonal `(diag, sub)`, by
/// bisection from the Gershgorin bounds to about `ε·‖T‖`.
fn extreme_eigenvalues(diag: &[f64], sub: &[f64]) -> (f64, f64) {
    let n = diag.len();
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for i in 0..n {
        let r =
            if i > 0 { sub[i - 1].abs() } else { 0.0 } + if i + 1 < n { sub[i].abs() } else { 0.0 };
        lo = lo.min(diag[i] - r);
        hi = hi.max(diag[i] + r);
    }
    let big = sub.iter().fold(1.0f64, |m, e| m.max(e * e));
    let pivmin = f64::MIN_POSITIVE * big;
    let tol = 4.0 * f64::EPSILON * lo.abs().max(hi.abs()) + pivmin;
    // the eigenvalue of index `k` (ascending) lies in [a, b]: shrink to within `tol`
    let find = |k: usize| {
        let (mut a, mut b) = (lo - tol, hi + tol);
        for _ in 0..200 {
            if b - a <= tol {
                break;
            }
            let mid = 0.5 * (a + b);
            if count_below(diag, sub, mid, pivmin) > k {
                b = mid;
            } else {
                a = mid;
            }
        }
        0.5 * (a + b)
    };
    (find(0), find(n - 1))
}

/// One level: `T_λ = L Δ Lᵀ`; `None` when a pivot is not positive, else
/// `(Σ_m y_mᵀ Δ⁻¹ y_m, Σ log δ_i)` with `y_m = L⁻¹ z_m`. `acc` and `y` are `m`-long scratch.
fn level_terms(
    red: &Reduced,
    l: f64,
    m: usize,
    y: &mut [f64],
    acc: &mut [f64],
) -> Option<(f64, f64)> {
    let dim = red.diag.len();
    acc.fill(0.0);
    let mut log_det = 0.0;
    let mut delta = 0.0;
    for i in 0..dim {
        let a = l * red.diag[i] + (1.0 - l);
        let zi = &red.z[i * m..(i + 1) * m];
        if i == 0 {
            delta = a;
            y.copy_from_slice(zi);
        } else {
            let b = l * red.sub[i - 1];
            let ell = b / delta;
            delta = a - ell * b;
            for (yj, &zj) in y.iter_mut().zip(zi) {
                *yj = zj - ell * *yj;
            }
        }
        if delta.is_nan() || delta <= 0.0 {
            return None;
        }
        log_det += delta.ln();
        let inv = 1.0 / delta;
        for (s, &yj) in acc.iter_mut().zip(y.iter()) {
            *s += yj * yj * inv;
        }
    }
    Some((acc.iter().sum(), log_det))
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
    let red = match (rows_route(n, rows.as_ref()), rows) {
        (Some(_), Some(b)) => rows_reduced(b, pts, &s),
        _ => full_reduced(cov, pts, &s),
    };
    if red
        .diag
        .iter()
        .chain(&red.sub)
        .chain(&red.z)
        .any(|v| !v.is_finite())
    {
        return Ok(None);
    }
    let log_d: f64 = d.iter().map(|v| v.ln()).sum();
    let (mut lam_min, mut lam_max) = if red.diag.is_empty() {
        (f64::INFINITY, f64::NEG_INFINITY)
    } else {
        extreme_eigenvalues(&red.diag, &red.sub)
    };
    if red.null_dim > 0 {
        lam_min = lam_min.min(0.0);
        lam_max = lam_max.max(0.0);
    }
    // eigenvalue errors are ~ N·ε·‖R‖; Cholesky's failure threshold is of the same order
    let margin = 1e3 * n as f64 * f64::EPSILON * lam_max.abs().max(1.0);
    let mut nll = vec![f64::NAN; levels.len()];
    let mut undecided = Vec::new();
    let (mut y, mut acc) = (vec![0.0; m], vec![0.0; m]);
    for (k, &l) in levels.iter().enumerate() {
        let mu_min = l * lam_min + (1.0 - l);
        if mu_min.abs() <= margin {
            undecided.push(k);
            continue;
        }
        if mu_min < 0.0 {
            continue;
        }
        // μ_min > margin: T_λ's pivots are positive; where rounding says otherwise, Cholesky
        // decides
        let Some((mut quad, mut log_mu)) = level_terms(&red, l, m, &mut y, &mut acc) else {
            undecided.push(k);
            continue;
        };
        if red.null_dim > 0 {
            quad += red.null_w / (1.0 - l);
            log_mu += red.null_dim as f64 * (1.0 - l).ln();
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
    fn bisection_finds_the_extreme_eigenvalues() {
        let mut rng = Rng::new(9);
        for n in [1usize, 2, 7, 60] {
            let diag: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
            let mut sub: Vec<f64> = (0..n.saturating_sub(1)).map(|_| rng.normal()).collect();
            if n > 3 {
                sub[2] = 0.0; // a split into two blocks
            }
            let t = faer::Mat::from_fn(n, n, |i, j| {
                if i == j {
                    diag[i]
                } else if i == j + 1 {
                    sub[j]
                } else if j == i + 1 {
                    sub[i]
                } else {
                    0.0
                }
            });
            let ev = t.self_adjoint_eigenvalues(Side::Lower).unwrap();
            let (lo, hi) = extreme_eigenvalues(&diag, &sub);
            let scale = ev[0].abs().max(ev[n - 1].abs());
            assert!(
                (lo - ev[0]).abs() <= 1e-13 * scale,
                "n {n}: {lo} vs {}",
                ev[0]
            );
            assert!(
                (hi - ev[n - 1]).abs() <= 1e-13 * scale,
                "n {n}: {hi} vs {}",
                ev[n - 1]
            );
        }
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
