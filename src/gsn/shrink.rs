//! Shrinkage levels, the shrink operator and the held-out Gaussian NLL level choice (spec §5).

pub use super::eig_scorer::Rows;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::Dtype;
use ndarray::{Array2, ArrayView2};

/// The default grid: numpy's `linspace(0, 1, 51)` (`i · 0.02`, last exactly 1.0).
pub fn default_levels() -> Vec<f64> {
    let step = 1.0 / 50.0;
    (0..51)
        .map(|i| if i == 50 { 1.0 } else { i as f64 * step })
        .collect()
}

/// Checks explicit levels: a non-empty list of numbers in [0, 1].
pub fn check_levels(levels: &[f64]) -> Result<()> {
    if levels.is_empty() {
        return Err(Error::InvalidInput(
            "shrink_levels must be a non-empty list of numbers in [0, 1]".into(),
        ));
    }
    if let Some(v) = levels.iter().find(|v| !(0.0..=1.0).contains(*v)) {
        return Err(Error::InvalidInput(format!(
            "shrink level {v} is outside [0, 1] (a level scales the off-diagonal covariances: 0 keeps the diagonal, 1 the full matrix)"
        )));
    }
    Ok(())
}

/// `Sh_λ(A)`: off-diagonal entries times λ, diagonal unchanged. For N = 1 the variance is kept
/// (MATLAB and the reference's torch path; the numpy path's scaling is a quirk, see README).
pub fn shrink(a: ArrayView2<f64>, level: f64) -> Array2<f64> {
    let n = a.nrows();
    Array2::from_shape_fn(
        (n, n),
        |(i, j)| if i == j { a[(i, j)] } else { level * a[(i, j)] },
    )
}

/// The backend that scores shrinkage levels, and the precision asked for.
pub struct Scorer<'a, B: Backend> {
    /// The backend.
    pub backend: &'a B,
    /// The precision of the fit (a GPU scores in f32 when f32 is asked for).
    pub dtype: Dtype,
}

/// Index of the first smallest non-NaN value; all NaN → `None`.
pub fn choose(nll: &[f64]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, &v) in nll.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        match best {
            Some(b) if nll[b] <= v => {}
            _ => best = Some(i),
        }
    }
    best
}

/// Fewest levels for which the one-decomposition scorer is used instead of a Cholesky
/// factorisation per level (a level's Cholesky costs N³/3 + N²M flops; the scorer's
/// tridiagonalisation 4N³/3, half of them in matrix–vector products, plus N·M per level).
/// Measured (`shrinkage_nll` on the CPU, M = 120, 2 threads): 15 levels by Cholesky against 16
/// by the scorer took 2.1 / 2.4 ms at N = 200, 15.2 / 15.0 ms at N = 500 and 85 / 81 ms at
/// N = 1000; 51 levels by the scorer 3.9, 18 and 80 ms.
pub const EIG_MIN_LEVELS: usize = 16;

/// Bytes [`score`]'s one-decomposition route holds at once for `n` units and `m` points (see
/// [`super::eig_scorer::working_bytes`]).
pub fn one_decomposition_bytes(n: usize, m: usize, rows: Option<&Rows>) -> u64 {
    let r = super::eig_scorer::rows_route(n, rows);
    super::eig_scorer::working_bytes(n, m, r)
}

/// The most a [`select_level`] on the CPU holds at once: the one-decomposition route, or one
/// level of the Cholesky scorer (the arbiter after it, or every level when the route does not
/// apply: the backend's stage chunks levels to the budget, one level at least).
pub fn selection_peak_bytes(n: usize, m: usize, rows: Option<&Rows>) -> u64 {
    let one_level = 8 * (2 * (n * n + n * m)) as u64;
    one_decomposition_bytes(n, m, rows).max(one_level)
}

/// The NLL curve: on the CPU with at least [`EIG_MIN_LEVELS`] levels from one
/// tridiagonalisation ([`super::eig_scorer`]; of the `r × r` problem when `rows`, with
/// `train = scale · rowsᵀ rows`, has few rows) with the Cholesky scorer as the arbiter of levels
/// near the positive-definite boundary and of near-ties at the minimum; otherwise (GPUs, few
/// levels, a zero variance, over the budget) the Cholesky scorer for every level.
pub fn score<B: Backend>(
    scorer: &Scorer<'_, B>,
    train: ArrayView2<f64>,
    rows: Option<Rows>,
    pts: ArrayView2<f64>,
    levels: &[f64],
) -> Result<Vec<f64>> {
    let eig = scorer.backend.shares_host_memory()
        && levels.len() >= EIG_MIN_LEVELS
        && one_decomposition_bytes(train.nrows(), pts.nrows(), rows.as_ref())
            <= scorer.backend.limits().budget;
    let curve = if eig {
        super::eig_scorer::eig_nll(train, rows, pts, levels)?
    } else {
        None
    };
    let Some(curve) = curve else {
        return scorer
            .backend
            .shrinkage_nll(train, pts, levels, scorer.dtype);
    };
    let mut nll = curve.nll;
    let mut by_cholesky = vec![false; levels.len()];
    let mut todo = curve.undecided;
    while !todo.is_empty() {
        let sub: Vec<f64> = todo.iter().map(|&k| levels[k]).collect();
        let v = scorer
            .backend
            .shrinkage_nll(train, pts, &sub, scorer.dtype)?;
        for (&k, x) in todo.iter().zip(v) {
            nll[k] = x;
            by_cholesky[k] = true;
        }
        todo = super::eig_scorer::near_ties(&nll, &by_cholesky);
    }
    Ok(nll)
}

/// Scores the levels ([`score`]) and picks one. Returns (index, nll curve); all-NaN curves give
/// index 0 and the warning "All covariance matrices were singular." pushed onto `warnings`.
pub fn select_level<B: Backend>(
    scorer: &Scorer<'_, B>,
    train: ArrayView2<f64>,
    rows: Option<Rows>,
    pts: ArrayView2<f64>,
    levels: &[f64],
    warnings: &mut Vec<String>,
) -> Result<(usize, Vec<f64>)> {
    if train.iter().chain(pts.iter()).any(|v| !v.is_finite()) {
        return Err(Error::NonFinite(
            "the covariance overflows the float64 range (the data are too large in magnitude); rescale the data (ncsnr is scale-free)".into(),
        ));
    }
    let nll = score(scorer, train, rows, pts, levels)?;
    let k = match choose(&nll) {
        Some(k) => k,
        None => {
            let w = "All covariance matrices were singular.".to_string();
            log::warn!("{w}");
            warnings.push(w);
            0
        }
    };
    Ok((k, nll))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_matches_numpy() {
        let l = default_levels();
        assert_eq!(l.len(), 51);
        assert_eq!(l[47], 0.9400000000000001);
        assert_eq!(l[50], 1.0);
    }

    #[test]
    fn choose_skips_nan_and_takes_first_minimum() {
        assert_eq!(choose(&[f64::NAN, 2.0, 1.0, 1.0]), Some(2));
        assert_eq!(choose(&[f64::NAN, f64::NAN]), None);
    }
}
