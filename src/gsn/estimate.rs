//! The covariance estimates of `perform_gsn`: the pooled (even and uneven `fast`) path
//! (spec §6, §10) and the per-unit missing-data path (spec §11), then signal, ncsnr, biconvex and
//! eig returns.

use super::psd::{self, NoiseScale};
use super::rng::{randperm, split};
use super::shrink::{select_level, selection_peak_bytes, shrink, Rows, Scorer};
use super::{GsnOptions, GsnResult, ReturnItem, Uneven};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::linalg;
use ndarray::{Array1, Array2, ArrayView2, ArrayView3, Axis};
use std::time::Instant;

/// `Σ rowsᵀ rows` for a row-stacked matrix.
fn gram(rows: &Array2<f64>) -> Array2<f64> {
    linalg::at_b(rows.view(), rows.view())
}

fn stack(rows: Vec<Array1<f64>>, n: usize) -> Array2<f64> {
    let mut a = Array2::zeros((rows.len(), n));
    for (i, r) in rows.into_iter().enumerate() {
        a.row_mut(i).assign(&r);
    }
    a
}

/// The trials of condition `c` listed in `trials`, as rows.
fn trial(data: ArrayView3<f64>, c: usize, t: usize) -> Array1<f64> {
    data.slice(ndarray::s![.., c, t]).to_owned()
}

/// Per-condition noise parts: residuals of the valid trials about their mean.
struct CondNoise {
    residuals: Vec<Array1<f64>>,
}

fn cond_noise(data: ArrayView3<f64>, c: usize, trials: &[usize]) -> CondNoise {
    let n = data.dim().0;
    let mut mean = Array1::<f64>::zeros(n);
    for &t in trials {
        mean += &trial(data, c, t);
    }
    mean /= trials.len() as f64;
    CondNoise {
        residuals: trials.iter().map(|&t| trial(data, c, t) - &mean).collect(),
    }
}

/// A covariance formed as `rowsᵀ rows / divisor`, with rows for the level scorer: its own, or
/// fewer rows with the same Gram matrix (`contrasts`).
struct Gram {
    rows: Array2<f64>,
    contrasts: Option<Array2<f64>>,
    divisor: f64,
}

impl Gram {
    fn cov(&self) -> Array2<f64> {
        gram(&self.rows) / self.divisor
    }
    fn rows(&self) -> Rows<'_> {
        Rows {
            rows: self.contrasts.as_ref().unwrap_or(&self.rows).view(),
            scale: 1.0 / self.divisor,
        }
    }
}

/// `T − 1` rows with the Gram matrix of `T` residuals about their mean (Helmert contrasts:
/// `h_j = (r_1 + … + r_j − j·r_{j+1}) / √(j(j+1))`), each times `s`: a condition's `T` residual
/// rows span `T − 1` dimensions only.
fn helmert(residuals: &[Array1<f64>], s: f64) -> Vec<Array1<f64>> {
    let mut sum = Array1::<f64>::zeros(residuals[0].len());
    let mut out = Vec::with_capacity(residuals.len() - 1);
    for j in 1..residuals.len() {
        sum += &residuals[j - 1];
        let jf = j as f64;
        let h = (&sum - &(&residuals[j] * jf)) * (s / (jf * (jf + 1.0)).sqrt());
        out.push(h);
    }
    out
}

/// Mean over the conditions `conds` (each with ≥ 2 trials) of their within-condition
/// covariance, as scaled residual rows; with `contrasts`, also as Helmert rows ([`helmert`]).
fn pooled(noise: &[Option<CondNoise>], conds: &[usize], n: usize, contrasts: bool) -> Option<Gram> {
    let mut rows = Vec::new();
    let mut fewer = Vec::new();
    let mut count = 0usize;
    for &c in conds {
        if let Some(cn) = &noise[c] {
            let s = 1.0 / ((cn.residuals.len() - 1) as f64).sqrt();
            rows.extend(cn.residuals.iter().map(|r| r * s));
            if contrasts {
                fewer.extend(helmert(&cn.residuals, s));
            }
            count += 1;
        }
    }
    if count == 0 {
        return None;
    }
    Some(Gram {
        rows: stack(rows, n),
        contrasts: contrasts.then(|| stack(fewer, n)),
        divisor: count as f64,
    })
}

fn pooled_cov(noise: &[Option<CondNoise>], conds: &[usize], n: usize) -> Option<Array2<f64>> {
    pooled(noise, conds, n, false).map(|g| g.cov())
}

/// Covariance (divisor m − 1) of the rows `means[conds]` about their mean, and that mean.
fn means_gram(means: &Array2<f64>, conds: &[usize]) -> (Gram, Array1<f64>) {
    let n = means.ncols();
    let sel = means.select(Axis(0), conds);
    let mu = sel.mean_axis(Axis(0)).unwrap_or_else(|| Array1::zeros(n));
    let centred = &sel - &mu.view().insert_axis(Axis(0));
    let g = Gram {
        rows: centred,
        contrasts: None,
        divisor: conds.len() as f64 - 1.0,
    };
    (g, mu)
}

fn cov_of_means(means: &Array2<f64>, conds: &[usize]) -> (Array2<f64>, Array1<f64>) {
    let (g, mu) = means_gram(means, conds);
    (g.cov(), mu)
}

/// Runs `a` and `b`: side by side on two rayon threads, each with faer on its own thread
/// ([`linalg::sequential`]), or one after the other.
fn both<A: Send, B: Send>(
    side_by_side: bool,
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    if side_by_side {
        rayon::join(|| linalg::sequential(a), || linalg::sequential(b))
    } else {
        (a(), b())
    }
}

/// Each condition's mean over `n_min` of its valid trials (the smallest count; conditions with
/// more take the first `n_min` of a deterministic permutation), conditions × units.
fn trial_means(data: ArrayView3<f64>, valid: &[Vec<usize>], cnt: &[usize]) -> Array2<f64> {
    let (n, c, _) = data.dim();
    let n_min = *cnt.iter().min().expect("c ≥ 2");
    let mut means = Array2::<f64>::zeros((c, n));
    for ci in 0..c {
        let chosen: Vec<usize> = if cnt[ci] == n_min {
            valid[ci].clone()
        } else {
            randperm(cnt[ci])[..n_min]
                .iter()
                .map(|&q| valid[ci][q])
                .collect()
        };
        let mut m = Array1::<f64>::zeros(n);
        for &ti in &chosen {
            m += &trial(data, ci, ti);
        }
        means.row_mut(ci).assign(&(m / n_min as f64));
    }
    means
}

/// The trials of each condition in which no unit is NaN (ascending).
fn complete_trials(data: ArrayView3<f64>) -> Vec<Vec<usize>> {
    let (n, c, t) = data.dim();
    (0..c)
        .map(|ci| {
            (0..t)
                .filter(|&ti| (0..n).all(|i| !data[(i, ci, ti)].is_nan()))
                .collect()
        })
        .collect()
}

/// Noise residuals of the conditions with at least two of the given trials.
fn noise_parts(data: ArrayView3<f64>, trials: &[Vec<usize>]) -> Vec<Option<CondNoise>> {
    trials
        .iter()
        .enumerate()
        .map(|(ci, tr)| (tr.len() >= 2).then(|| cond_noise(data, ci, tr)))
        .collect()
}

/// How the noise covariance enters the signal estimate.
enum NoiseModel {
    /// Trial-count scaling (even and uneven data): `cD − N/n` in the signal and biconvex steps,
    /// `cSb − cNb/difference` for the difference eigendecomposition (the mean valid-trial count).
    Trials { n: f64, difference: f64 },
    /// Per-entry bias factor of the missing-units mode: `cD − N∘alpha` everywhere.
    Alpha(Array2<f64>),
}

impl NoiseModel {
    fn scale(&self) -> NoiseScale<'_> {
        match self {
            NoiseModel::Trials { n, .. } => NoiseScale::Divisor(*n),
            NoiseModel::Alpha(a) => NoiseScale::Elementwise(a.view()),
        }
    }
}

/// Everything the common tail (signal, ncsnr, biconvex, eig) needs.
struct Estimates {
    cn: Array2<f64>,
    cd: Array2<f64>,
    mn_s: Array1<f64>,
    level_n: f64,
    level_d: f64,
    nll_n: Vec<f64>,
    nll_d: Vec<f64>,
    noise: NoiseModel,
    k: f64,
}

/// Runs the whole pipeline with `ops` as the scorer.
pub fn run<B: Backend>(
    data: ArrayView3<f64>,
    opt: &GsnOptions,
    levels: &[f64],
    ops: &Scorer<'_, B>,
) -> Result<GsnResult> {
    let (n, c, _) = data.dim();
    let mut warnings = Vec::new();
    let mut timings = Vec::new();
    let t0 = Instant::now();
    let has_nan = data.iter().any(|v| v.is_nan());
    let est = if has_nan && opt.uneven == Uneven::Missing {
        missing_path(data, levels, ops, &mut warnings)?
    } else {
        pooled_path(data, levels, ops, &mut warnings)?
    };
    timings.push((
        "covariances + shrinkage selection".to_string(),
        t0.elapsed(),
    ));
    crate::cancel::check(opt.cancel.as_ref(), "after the shrinkage selection")?;
    if est.cn.iter().chain(est.cd.iter()).any(|v| !v.is_finite()) {
        let big = data
            .iter()
            .filter(|v| v.is_finite())
            .fold(0.0f64, |m, v| m.max(v.abs()));
        return Err(Error::NonFinite(format!(
            "the noise or data covariance overflows the float64 range (data values up to {big:e}); rescale the data (ncsnr is scale-free)"
        )));
    }
    let t1 = Instant::now();
    let scale = est.noise.scale();
    let cs = scale.signal(est.cd.view(), est.cn.view());
    let ncsnr = Array1::from_shape_fn(n, |i| {
        let s = cs[(i, i)].max(0.0).sqrt();
        let d = est.cn[(i, i)].max(0.0).sqrt();
        if d == 0.0 {
            0.0
        } else {
            s / d
        }
    });
    let bc = psd::biconvex(
        est.cn.view(),
        est.cd.view(),
        c,
        &scale,
        est.k,
        opt.cancel.as_ref(),
    )?;
    if ncsnr.iter().chain(bc.csb.iter()).any(|v| !v.is_finite()) {
        return Err(Error::NonFinite(
            "the signal covariance or ncsnr is not finite (the data's scale exceeds the float64 range); rescale the data".into(),
        ));
    }
    timings.push(("biconvex".to_string(), t1.elapsed()));
    let want = |i: ReturnItem| opt.returns.contains(&i);
    let mut r = GsnResult {
        mn_n: Array2::zeros((1, n)),
        mn_s: est.mn_s.insert_axis(Axis(0)),
        ncsnr,
        shrinklevel_n: est.level_n,
        shrinklevel_d: est.level_d,
        numiters: bc.numiters,
        nll_n: est.nll_n,
        nll_d: est.nll_d,
        ..GsnResult::default()
    };
    if want(ReturnItem::EigvalsSignal) || want(ReturnItem::EigvecsSignal) {
        let (v, e) = psd::sorted_eig(bc.csb.view())?;
        r.eigvals_signal = want(ReturnItem::EigvalsSignal).then_some(v);
        r.eigvecs_signal = want(ReturnItem::EigvecsSignal).then_some(e);
    }
    if want(ReturnItem::EigvalsDifference) || want(ReturnItem::EigvecsDifference) {
        let diff = match &est.noise {
            NoiseModel::Alpha(a) => &bc.csb - &(&bc.cnb * a),
            NoiseModel::Trials { difference, .. } => &bc.csb - &(&bc.cnb / *difference),
        };
        let (v, e) = psd::sorted_eig(diff.view())?;
        r.eigvals_difference = want(ReturnItem::EigvalsDifference).then_some(v);
        r.eigvecs_difference = want(ReturnItem::EigvecsDifference).then_some(e);
    }
    r.c_n = want(ReturnItem::CN).then(|| est.cn.clone());
    r.c_s = want(ReturnItem::CS).then_some(cs);
    r.c_nb = want(ReturnItem::CNb).then_some(bc.cnb);
    r.c_sb = want(ReturnItem::CSb).then_some(bc.csb);
    r.warnings = warnings;
    r.timings = timings;
    Ok(r)
}

/// Even data and uneven `fast` mode: a trial is valid when no unit is NaN.
fn pooled_path<B: Backend>(
    data: ArrayView3<f64>,
    levels: &[f64],
    ops: &Scorer<'_, B>,
    warnings: &mut Vec<String>,
) -> Result<Estimates> {
    let (n, c, _) = data.dim();
    let valid = complete_trials(data);
    if let Some(ci) = valid.iter().position(|v| v.is_empty()) {
        return Err(Error::InsufficientData(format!(
            "all conditions must have at least 1 valid trial (condition {ci} has none: a NaN in any unit invalidates a trial in uneven='fast' mode; try uneven='missing')"
        )));
    }
    let cnt: Vec<usize> = valid.iter().map(|v| v.len()).collect();
    let noise = noise_parts(data, &valid);
    let (held, train) = split(c);
    let g_n = pooled(&noise, &train, n, true).ok_or_else(|| {
        Error::InsufficientData(
            "no condition with at least two valid observations in the training split".into(),
        )
    })?;
    let mut pts = Vec::new();
    for &ci in &held {
        if let Some(cn) = &noise[ci] {
            pts.extend(cn.residuals.iter().cloned());
        }
    }
    if pts.is_empty() && !held.is_empty() {
        return Err(Error::InsufficientData(
            "validation data did not have any conditions with at least two observations".into(),
        ));
    }
    let pts_n = stack(pts, n);
    let all: Vec<usize> = (0..c).collect();
    let means = trial_means(data, &valid, &cnt);
    let (g_d, mu_r) = means_gram(&means, &train);
    let pts_d = &means.select(Axis(0), &held) - &mu_r.view().insert_axis(Axis(0));
    // the two level selections and the two full covariances are independent: side by side when
    // both selections' working sets and the two full covariances fit the budget together (each
    // selection alone is planned against it)
    let side_by_side = ops.backend.shares_host_memory()
        && selection_peak_bytes(n, pts_n.nrows(), Some(&g_n.rows()))
            + selection_peak_bytes(n, pts_d.nrows(), Some(&g_d.rows()))
            + 8 * 2 * (n * n) as u64
            <= ops.backend.limits().budget;
    let select = |g: &Gram, pts: &Array2<f64>, w: &mut Vec<String>| {
        let train = g.cov();
        select_level(ops, train.view(), Some(g.rows()), pts.view(), levels, w)
    };
    let (mut warn_n, mut warn_d) = (Vec::new(), Vec::new());
    let ((sel_n, full_n), (sel_d, (full_d, mu))) = both(
        side_by_side,
        || {
            both(
                side_by_side,
                || select(&g_n, &pts_n, &mut warn_n),
                || pooled_cov(&noise, &all, n).expect("the training split has one"),
            )
        },
        || {
            both(
                side_by_side,
                || select(&g_d, &pts_d, &mut warn_d),
                || cov_of_means(&means, &all),
            )
        },
    );
    warnings.append(&mut warn_n);
    let (kn, nll_n) = sel_n?;
    warnings.append(&mut warn_d);
    let (kd, nll_d) = sel_d?;
    let cn = shrink(full_n.view(), levels[kn]);
    let cd = shrink(full_d.view(), levels[kd]);
    let mut k = cnt.iter().filter(|&&v| v > 1).sum::<usize>() as f64 / c as f64;
    if k < 1.0 {
        let w = "ntrialBC is lopsided! setting to 1".to_string();
        log::warn!("{w}");
        warnings.push(w);
        k = 1.0;
    }
    Ok(Estimates {
        cn,
        cd,
        mn_s: mu,
        level_n: levels[kn],
        level_d: levels[kd],
        nll_n,
        nll_d,
        noise: NoiseModel::Trials {
            n: *cnt.iter().min().expect("c ≥ 2") as f64,
            difference: cnt.iter().sum::<usize>() as f64 / c as f64,
        },
        k,
    })
}

/// Pairwise-complete covariance of the columns of `x` (`N × S`, NaN = absent) over samples:
/// entry (i, j) uses the samples where both are present (divisor K − 1, K ≥ 2), else `None`.
fn pairwise(x: ArrayView2<f64>) -> (Array2<f64>, Array2<f64>) {
    let b = x.mapv(|v| if v.is_nan() { 0.0 } else { 1.0 });
    let x0 = x.mapv(|v| if v.is_nan() { 0.0 } else { v });
    let k = linalg::a_b(b.view(), b.t());
    let s2 = linalg::a_b(x0.view(), x0.t());
    let si = linalg::a_b(x0.view(), b.t());
    let n = x.nrows();
    let cov = Array2::from_shape_fn((n, n), |(i, j)| {
        let kk = k[(i, j)];
        if kk >= 2.0 {
            (s2[(i, j)] - si[(i, j)] * si[(j, i)] / kk) / (kk - 1.0)
        } else {
            0.0
        }
    });
    (cov, k)
}

/// Per-unit missing data (spec §11).
fn missing_path<B: Backend>(
    data: ArrayView3<f64>,
    levels: &[f64],
    ops: &Scorer<'_, B>,
    warnings: &mut Vec<String>,
) -> Result<Estimates> {
    let (n, c, t) = data.dim();
    let mut cn_sum = Array2::<f64>::zeros((n, n));
    let mut cn_count = Array2::<f64>::zeros((n, n));
    let mut alpha_sum = Array2::<f64>::zeros((n, n));
    let mut alpha_count = Array2::<f64>::zeros((n, n));
    let mut cm = Array2::<f64>::from_elem((n, c), f64::NAN);
    let mut present = Array2::<f64>::zeros((n, c));
    for ci in 0..c {
        let x = data.slice(ndarray::s![.., ci, ..]);
        let (cov, k) = pairwise(x);
        let nic: Vec<f64> = (0..n)
            .map(|i| (0..t).filter(|&ti| !x[(i, ti)].is_nan()).count() as f64)
            .collect();
        for i in 0..n {
            present[(i, ci)] = nic[i];
            if nic[i] >= 1.0 {
                let s: f64 = (0..t)
                    .filter(|&ti| !x[(i, ti)].is_nan())
                    .map(|ti| x[(i, ti)])
                    .sum();
                cm[(i, ci)] = s / nic[i];
            }
            for j in 0..n {
                if k[(i, j)] >= 2.0 {
                    cn_sum[(i, j)] += cov[(i, j)];
                    cn_count[(i, j)] += 1.0;
                }
                if nic[i] >= 1.0 && nic[j] >= 1.0 {
                    alpha_sum[(i, j)] += k[(i, j)] / (nic[i] * nic[j]);
                    alpha_count[(i, j)] += 1.0;
                }
            }
        }
    }
    let div = |s: &Array2<f64>, cnt: &Array2<f64>| {
        Array2::from_shape_fn((n, n), |(i, j)| {
            if cnt[(i, j)] > 0.0 {
                s[(i, j)] / cnt[(i, j)]
            } else {
                0.0
            }
        })
    };
    let cn_raw = div(&cn_sum, &cn_count);
    let alpha = div(&alpha_sum, &alpha_count);
    let (cd_raw, _) = pairwise(cm.view());
    // λ_N: the fast-mode noise selection on complete trials only
    let single = levels.len() == 1;
    let level_n;
    let mut nll_n = Vec::new();
    if single {
        level_n = levels[0];
    } else {
        let complete = complete_trials(data);
        let noise = noise_parts(data, &complete);
        let (held, train) = split(c);
        let mut pts = Vec::new();
        for &ci in &held {
            if let Some(cnz) = &noise[ci] {
                pts.extend(cnz.residuals.iter().cloned());
            }
        }
        match pooled(&noise, &train, n, true) {
            Some(g_n) if !pts.is_empty() => {
                let a_n = g_n.cov();
                let pts = stack(pts, n);
                let (k, curve) = select_level(
                    ops,
                    a_n.view(),
                    Some(g_n.rows()),
                    pts.view(),
                    levels,
                    warnings,
                )?;
                level_n = levels[k];
                nll_n = curve;
            }
            _ => {
                let w = "missing-units: cN shrink level fell back to 1.0 (too few complete trials)"
                    .to_string();
                log::warn!("{w}");
                warnings.push(w);
                level_n = 1.0;
            }
        }
    }
    // λ_D: §6.2 selection on the conditions where every unit is defined
    let defined: Vec<usize> = (0..c)
        .filter(|&ci| (0..n).all(|i| present[(i, ci)] >= 1.0))
        .collect();
    let level_d;
    let mut nll_d = Vec::new();
    if single {
        level_d = levels[0];
    } else if defined.len() < 5 {
        let w = "missing-units: cD shrink level fell back to 1.0 (too few complete conditions)"
            .to_string();
        log::warn!("{w}");
        warnings.push(w);
        level_d = 1.0;
    } else {
        let means = cm.t().select(Axis(0), &defined);
        let (held, train) = split(defined.len());
        let (g_d, mu_r) = means_gram(&means, &train);
        let a_d = g_d.cov();
        let pts_d = &means.select(Axis(0), &held) - &mu_r.view().insert_axis(Axis(0));
        let mut scratch = Vec::new();
        let (k, curve) = select_level(
            ops,
            a_d.view(),
            Some(g_d.rows()),
            pts_d.view(),
            levels,
            &mut scratch,
        )?;
        level_d = if curve.iter().all(|v| v.is_nan()) {
            1.0
        } else {
            levels[k]
        };
        nll_d = curve;
    }
    let cn = shrink(cn_raw.view(), level_n);
    let cd = shrink(cd_raw.view(), level_d);
    let mn_s = Array1::from_shape_fn(n, |i| {
        let vals: Vec<f64> = (0..c)
            .filter(|&ci| present[(i, ci)] >= 1.0)
            .map(|ci| cm[(i, ci)])
            .collect();
        vals.iter().sum::<f64>() / vals.len().max(1) as f64
    });
    let defined_cells: Vec<f64> = present.iter().copied().filter(|&v| v >= 1.0).collect();
    let k = defined_cells.iter().sum::<f64>() / defined_cells.len().max(1) as f64;
    Ok(Estimates {
        cn,
        cd,
        mn_s,
        level_n,
        level_d,
        nll_n,
        nll_d,
        noise: NoiseModel::Alpha(alpha),
        k,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::Rng;

    #[test]
    fn helmert_rows_have_the_residual_rows_gram_and_score_alike() {
        let (n, c, t) = (40, 10, 4);
        let mut r = Rng::new(11);
        let mut data = ndarray::Array3::from_shape_fn((n, c, t), |_| r.normal());
        // uneven: conditions with 2, 3 and 4 valid trials
        for ci in 0..c {
            for ti in (2 + ci % 3)..t {
                for i in 0..n {
                    data[(i, ci, ti)] = f64::NAN;
                }
            }
        }
        let valid = complete_trials(data.view());
        let noise = noise_parts(data.view(), &valid);
        let conds: Vec<usize> = (0..8).collect();
        let g = pooled(&noise, &conds, n, true).unwrap();
        let h = g.contrasts.as_ref().unwrap();
        let expect_rows: usize = conds.iter().map(|&ci| valid[ci].len() - 1).sum();
        assert_eq!(h.nrows(), expect_rows);
        assert!(h.nrows() < g.rows.nrows());
        let cov = g.cov();
        let from_h = gram(h) / g.divisor;
        let scale = cov.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let diff = (&cov - &from_h).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(diff <= 1e-13 * scale, "{diff} vs {scale}");
        // the scorer's curve from the contrasts (a route of r = 18 rows < 0.75·N) and in full
        let pts = ndarray::Array2::from_shape_fn((9, n), |_| r.normal());
        let levels = super::super::shrink::default_levels();
        let a = super::super::eig_scorer::eig_nll(cov.view(), Some(g.rows()), pts.view(), &levels)
            .unwrap()
            .unwrap();
        let b = super::super::eig_scorer::eig_nll(cov.view(), None, pts.view(), &levels)
            .unwrap()
            .unwrap();
        assert_eq!(a.undecided, b.undecided);
        for (k, (x, y)) in a.nll.iter().zip(&b.nll).enumerate() {
            assert_eq!(x.is_nan(), y.is_nan(), "level {k}");
            if !y.is_nan() {
                assert!((x - y).abs() <= 1e-10 * y.abs(), "level {k}: {x} vs {y}");
            }
        }
    }
}
