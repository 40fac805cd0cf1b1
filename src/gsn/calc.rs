//! The stand-alone `calc_shrunken_covariance` (spec §14).

use super::rng::{held_out_count, randperm};
use super::shrink::{select_level, shrink, Rows, Scorer};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::linalg;
use ndarray::{Array1, Array2, ArrayView2, ArrayViewD, Axis, Ix2, Ix3};

/// Output of [`super::calc_shrunken_covariance`].
#[derive(Debug, Clone)]
pub struct ShrunkCov {
    /// Mean (`1 × variables`; zeros for 3-D input).
    pub mn: Array2<f64>,
    /// Shrunk covariance.
    pub c: Array2<f64>,
    /// Chosen level.
    pub shrinklevel: f64,
    /// NLL per level.
    pub nll: Vec<f64>,
    /// Warnings.
    pub warnings: Vec<String>,
}

fn cov_rows(x: ArrayView2<f64>) -> (Array2<f64>, Array1<f64>) {
    let (cov, mu, _) = cov_centred(x);
    (cov, mu)
}

/// The covariance (divisor rows − 1), the mean and the centred rows.
fn cov_centred(x: ArrayView2<f64>) -> (Array2<f64>, Array1<f64>, Array2<f64>) {
    let mu = x.mean_axis(Axis(0)).expect("rows");
    let c = &x - &mu.view().insert_axis(Axis(0));
    let cov = linalg::at_b(c.view(), c.view()) / (x.nrows() as f64 - 1.0);
    (cov, mu, c)
}

/// 2-D input (observations × variables) or 3-D (observations × variables × cases, NaN rows
/// allowed with ≥ 2 cases). `wantfull` re-estimates on all data.
pub fn calc_shrunken_covariance_on<B: Backend>(
    data: ArrayViewD<f64>,
    leaveout: usize,
    levels: &[f64],
    wantfull: bool,
    ops: &Scorer<'_, B>,
) -> Result<ShrunkCov> {
    if leaveout == 0 {
        return Err(Error::InvalidInput("leaveout must be ≥ 1".into()));
    }
    let mut warnings = Vec::new();
    // a training covariance with the rows it was formed from, scored on held-out points
    let select = |ct: ArrayView2<f64>, rows: Rows, pts: ArrayView2<f64>, w: &mut Vec<String>| {
        select_level(ops, ct, Some(rows), pts, levels, w)
    };
    match data.ndim() {
        2 => {
            let x = data.into_dimensionality::<Ix2>().expect("2-D");
            if x.iter().any(|v| v.is_infinite()) {
                return Err(Error::NonFinite("2-D input has Inf".into()));
            }
            if x.iter().any(|v| v.is_nan()) {
                return Err(Error::InsufficientData(
                    "2-D input has NaN (NaN is allowed only for 3-D input)".into(),
                ));
            }
            let nobs = x.nrows();
            if nobs < 3 {
                return Err(Error::InvalidInput("need at least 3 observations".into()));
            }
            let p = randperm(nobs);
            let v = held_out_count(nobs, leaveout);
            if nobs - v < 2 {
                return Err(Error::InsufficientData(format!(
                    "leaveout = {leaveout} holds out {v} of the {nobs} observations, leaving {} to estimate the training covariance from (at least 2 are needed)",
                    nobs - v
                )));
            }
            let train = x.select(Axis(0), &p[v..]);
            let (ct, mu, centred) = cov_centred(train.view());
            let pts = &x.select(Axis(0), &p[..v]) - &mu.view().insert_axis(Axis(0));
            let rows = Rows {
                rows: centred.view(),
                scale: 1.0 / (centred.nrows() as f64 - 1.0),
            };
            let (k, nll) = select(ct.view(), rows, pts.view(), &mut warnings)?;
            let (mn, c) = if wantfull {
                let (cf, mf) = cov_rows(x);
                (mf, shrink(cf.view(), levels[k]))
            } else {
                (mu, shrink(ct.view(), levels[k]))
            };
            Ok(ShrunkCov {
                mn: mn.insert_axis(Axis(0)),
                c,
                shrinklevel: levels[k],
                nll,
                warnings,
            })
        }
        3 => {
            let x = data.into_dimensionality::<Ix3>().expect("3-D");
            let (nobs, nvar, ncase) = x.dim();
            if x.iter().any(|v| v.is_infinite()) {
                return Err(Error::NonFinite("input has Inf".into()));
            }
            if ncase < 2 && x.iter().any(|v| v.is_nan()) {
                return Err(Error::InsufficientData(
                    "NaN rows need at least 2 cases".into(),
                ));
            }
            // per case: valid rows, residuals about the case mean scaled by 1/sqrt(rows − 1)
            let mut resid: Vec<Option<Array2<f64>>> = Vec::with_capacity(ncase);
            for ci in 0..ncase {
                let rows: Vec<usize> = (0..nobs)
                    .filter(|&o| (0..nvar).all(|j| !x[(o, j, ci)].is_nan()))
                    .collect();
                if rows.is_empty() {
                    return Err(Error::InsufficientData(format!(
                        "case {ci} has no valid observation"
                    )));
                }
                if rows.len() < 2 {
                    resid.push(None);
                    continue;
                }
                let m = Array2::from_shape_fn((rows.len(), nvar), |(r, j)| x[(rows[r], j, ci)]);
                let mu = m.mean_axis(Axis(0)).expect("rows");
                resid.push(Some(&m - &mu.view().insert_axis(Axis(0))));
            }
            let pooled = |cases: &[usize]| -> Option<Array2<f64>> {
                let mut acc = Array2::<f64>::zeros((nvar, nvar));
                let mut count = 0;
                for &ci in cases {
                    if let Some(r) = &resid[ci] {
                        acc += &(linalg::at_b(r.view(), r.view()) / (r.nrows() as f64 - 1.0));
                        count += 1;
                    }
                }
                (count > 0).then(|| acc / count as f64)
            };
            let p = randperm(ncase);
            let v = held_out_count(ncase, leaveout);
            let ct = pooled(&p[v..]).ok_or_else(|| {
                Error::InsufficientData(
                    "no training case with at least two valid observations".into(),
                )
            })?;
            let held: Vec<Array2<f64>> =
                p[..v].iter().filter_map(|&ci| resid[ci].clone()).collect();
            if held.is_empty() && v > 0 {
                return Err(Error::InsufficientData(
                    "validation data did not have any cases with at least two observations".into(),
                ));
            }
            let views: Vec<_> = held.iter().map(|a| a.view()).collect();
            let pts = if views.is_empty() {
                Array2::zeros((0, nvar))
            } else {
                ndarray::concatenate(Axis(0), &views).expect("same width")
            };
            // the training cases' residuals scaled by 1/sqrt(rows − 1): ct = rowsᵀ rows / count
            let scaled: Vec<Array2<f64>> = p[v..]
                .iter()
                .filter_map(|&ci| resid[ci].as_ref())
                .map(|r| r / (r.nrows() as f64 - 1.0).sqrt())
                .collect();
            let views: Vec<_> = scaled.iter().map(|a| a.view()).collect();
            let stacked = ndarray::concatenate(Axis(0), &views).expect("same width");
            let rows = Rows {
                rows: stacked.view(),
                scale: 1.0 / scaled.len() as f64,
            };
            let (k, nll) = select(ct.view(), rows, pts.view(), &mut warnings)?;
            let base = if wantfull {
                let all: Vec<usize> = (0..ncase).collect();
                pooled(&all).expect("training cases exist")
            } else {
                ct
            };
            Ok(ShrunkCov {
                mn: Array2::zeros((1, nvar)),
                c: shrink(base.view(), levels[k]),
                shrinklevel: levels[k],
                nll,
                warnings,
            })
        }
        d => Err(Error::InvalidInput(format!(
            "calc_shrunken_covariance needs 2-D or 3-D input, got {d}-D"
        ))),
    }
}
