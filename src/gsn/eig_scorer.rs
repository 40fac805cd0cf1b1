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
use faer::Side;
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

/// The curve of every level of `cov` (`N × N`) on `pts` (`M × N`, centred), or `None` when the
/// route does not apply (`N < 2`, `M = 0`, a variance that is not positive and finite).
pub fn eig_nll(
    cov: ArrayView2<f64>,
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
    // the lower triangle, as the Cholesky scorer reads it
    let r = crate::linalg::mat_from_fn(n, n, |i, j| {
        if i == j {
            1.0
        } else {
            let (a, b) = if i > j { (i, j) } else { (j, i) };
            cov[(a, b)] * s[a] * s[b]
        }
    });
    let Ok(e) = r.self_adjoint_eigen(Side::Lower) else {
        return Ok(None);
    };
    let lam: Vec<f64> = (0..n).map(|i| e.S()[i]).collect();
    let ps = crate::linalg::mat_from_fn(m, n, |i, j| pts[(i, j)] * s[j]);
    let z = &ps * e.U();
    let w: Vec<f64> = (0..n)
        .map(|j| (0..m).map(|i| z[(i, j)] * z[(i, j)]).sum())
        .collect();
    let log_d: f64 = d.iter().map(|v| v.ln()).sum();
    let lam_min = lam.iter().cloned().fold(f64::INFINITY, f64::min);
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
        for i in 0..n {
            let mu = l * lam[i] + (1.0 - l);
            quad += w[i] / mu;
            log_mu += mu.ln();
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
