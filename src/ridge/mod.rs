//! FastL2LiR: ridge regression where every output unit keeps its top-k input features by |r|
//! (spec: `fastl2lir-spec.md`). [`fit`] validates, plans memory, resolves the device and runs the
//! chosen path. The paths are written once here, generic over [`crate::backend::Backend`]: the
//! selection path ([`paths::SelectedFit`]), the dense path ([`paths::DenseFit`]) and prediction;
//! the per-unit path ([`per_unit`]) runs on the CPU.

pub mod model;
pub mod normalize;
pub mod params;
pub mod paths;
pub mod per_unit;
pub mod select;
pub mod shape;
pub mod stream;
pub mod targets;

pub use model::RidgeModel;
pub use params::{FitParams, Progress, SelectSample, SpatialNorm};
pub use paths::{plan_dense, plan_selected, ChunkFn, SelectedShape};

use crate::device::memory;
use crate::dispatch;
use crate::error::{Error, Result};
use crate::Dtype;
use ndarray::{Array2, ArrayView2, ArrayViewD, Axis, CowArray, Ix2};
use std::time::{Duration, Instant};

/// Which algorithm a fit ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FitPath {
    /// One multi-RHS ridge solve, primal form (spec §4).
    DensePrimal,
    /// One multi-RHS ridge solve, dual form (spec §4).
    DenseDual,
    /// Shared Gram matrix, per-unit selected sub-systems (spec §5).
    Selected,
    /// Per-unit rows, selection, normalisation and Gram (spec §6).
    PerUnit,
}

/// A fitted model plus what the fit learned on the way.
#[derive(Debug, Clone)]
pub struct FitOutput {
    /// The model.
    pub model: RidgeModel,
    /// Main selection path: the selected features per flat unit, `U × k`, best first.
    pub selected: Option<Array2<u32>>,
    /// Main selection path with [`FitParams::keep_corr`]: |r| as `F × U` (low-variance
    /// features 0, undefined NaN).
    pub corr_abs: Option<Array2<f64>>,
    /// The path taken.
    pub path: FitPath,
    /// The backend that ran it.
    pub device: String,
    /// Wall time of each stage.
    pub timings: Vec<(String, Duration)>,
    /// Warnings the fit emitted (also logged).
    pub warnings: Vec<String>,
}

/// Checks that `a` is finite (NaN allowed when `allow_nan`) and, for an f32 fit, that every
/// value is representable in f32.
pub(crate) fn check_values(
    a: ArrayView2<f64>,
    what: &str,
    allow_nan: bool,
    dtype: Dtype,
) -> Result<()> {
    check_values_from(a, what, allow_nan, dtype, 0)
}

/// [`check_values`] for a block of columns starting at column `col0` of the whole array (the
/// message names the whole array's column).
pub(crate) fn check_values_from(
    a: ArrayView2<f64>,
    what: &str,
    allow_nan: bool,
    dtype: Dtype,
    col0: usize,
) -> Result<()> {
    let non_finite = |v: f64| v.is_infinite() || (!allow_nan && v.is_nan());
    let overflows = |v: f64| dtype == Dtype::F32 && v.is_finite() && (v as f32).is_infinite();
    let bad = |v: f64| non_finite(v) || overflows(v);
    // the common case, every value fine, checked by all threads; only then is the first bad
    // value's position looked for, in row-major order as the message names it
    let any_bad = match a.as_slice_memory_order() {
        Some(s) => {
            use rayon::prelude::*;
            s.par_chunks(1 << 16).any(|c| c.iter().any(|&v| bad(v)))
        }
        None => a.iter().any(|&v| bad(v)),
    };
    if !any_bad {
        return Ok(());
    }
    let Some(((i, j), &v)) = a.indexed_iter().find(|(_, &v)| bad(v)) else {
        return Ok(());
    };
    let j = j + col0;
    if non_finite(v) {
        return Err(Error::NonFinite(format!(
            "{what} has {v} at [{i}, {j}]; {}",
            if allow_nan {
                "Inf is never allowed"
            } else {
                "NaN/Inf are allowed only in Y with select_sample=remove_nan"
            }
        )));
    }
    Err(Error::NonFinite(format!(
        "{what} has {v:e} at [{i}, {j}], which overflows float32 (largest {:e}); use dtype f64 or rescale",
        f32::MAX
    )))
}

/// Runs a fit job on the requested device (falling back to the CPU under `auto`), recording a
/// fall-back in `warnings`; returns the output and the backend that produced it.
fn run_job<J: dispatch::Job>(
    params: &FitParams,
    flops: f64,
    job: &J,
    warnings: &mut Vec<String>,
) -> Result<(J::Output, String)> {
    let ran = dispatch::run(
        &params.device,
        params.dtype,
        flops,
        params.max_memory,
        "fit",
        job,
    )?;
    warnings.extend(ran.fallback);
    Ok((ran.output, ran.device))
}

/// Fits FastL2LiR. `x` is `n × F`; `y` is `n × U` or `n × s1 × … × sk`.
///
/// Errors (never panics) on: Y with fewer than 2 dimensions, mismatched rows, empty inputs,
/// NaN/Inf (NaN in Y is allowed with `select_sample = remove_nan`), values that overflow f32 in
/// an f32 fit, negative or non-finite alpha, fewer than 2 samples with selection, a problem
/// that does not fit the memory budget, singular systems, and device failures (under `auto` a
/// device failure falls back to the CPU with a logged warning).
pub fn fit(x: ArrayView2<f64>, y: ArrayViewD<f64>, params: &FitParams) -> Result<FitOutput> {
    params.validate()?;
    if y.ndim() < 2 {
        return Err(Error::InvalidInput(format!(
            "Y must have at least 2 dimensions (samples × units…), got shape {:?}",
            y.shape()
        )));
    }
    let (n, f) = x.dim();
    if y.shape()[0] != n {
        return Err(Error::InvalidInput(format!(
            "X has {n} samples (rows) but Y has {}",
            y.shape()[0]
        )));
    }
    if n == 0 || f == 0 || y.is_empty() {
        return Err(Error::InvalidInput(format!(
            "empty input: X {:?}, Y {:?}",
            x.shape(),
            y.shape()
        )));
    }
    let unit_shape: Vec<usize> = y.shape()[1..].to_vec();
    let units: usize = unit_shape.iter().product();
    let dtype = params.dtype;
    let k = if params.n_feat == 0 { f } else { params.n_feat };
    let per_unit = params.per_unit_path();
    let no_selection = k >= f;
    // the backends round an f32 fit's X as they upload it (selection and dense paths); the
    // per-unit path, which reads X on the host, gets a rounded copy
    let round_x = dtype == Dtype::F32 && per_unit;
    // memory of the inputs neurofit copies (flattened Y; a rounded X) is planned before the
    // copies are made
    let copies = 8 * (n * units) as u64 + if round_x { 8 * (n * f) as u64 } else { 0 };
    // on an explicit GPU, max_memory is the device's budget; the host's is what the OS has
    let host_budget = match (&params.device, params.max_memory) {
        (crate::Device::Gpu(_), _) | (_, None) => memory::default_cpu_budget(),
        (_, Some(m)) => m,
    };
    if copies > host_budget {
        return Err(Error::OutOfMemory(format!(
            "the working copies of X and Y need {} but the memory budget is {}; raise max_memory",
            memory::format_size(copies),
            memory::format_size(host_budget)
        )));
    }
    check_values(x, "X", false, dtype)?;
    let x: CowArray<f64, Ix2> = if round_x {
        // rounded by all threads, which also share the fresh copy's page faults
        let mut r = Array2::<f64>::zeros(x.raw_dim());
        ndarray::Zip::from(&mut r)
            .and(x)
            .par_for_each(|r, &v| *r = dtype.round(v));
        r.into()
    } else {
        x.into()
    };
    let mut y2 = shape::flatten_units(y);
    check_values(y2.view(), "Y", params.select_sample.is_some(), dtype)?;
    if dtype == Dtype::F32 {
        y2.par_mapv_inplace(|v| dtype.round(v));
    }
    let mut warnings = Vec::new();
    if k > f {
        let w = "X has less features than n_feat (X.shape[1] < n_feat). Feature selection is not applied.".to_string();
        log::warn!("{w}");
        warnings.push(w);
    }
    if !per_unit && !no_selection && n < 2 {
        return Err(Error::InvalidInput(format!(
            "feature selection needs at least 2 samples for correlations, got {n}"
        )));
    }
    let report = |d: usize| {
        if let Some(p) = &params.progress {
            p(d, units)
        }
    };
    let t0 = Instant::now();
    let (w, b, s, path, device, mut timings, selected, corr_abs) = if per_unit {
        if matches!(params.device, crate::Device::Gpu(_)) {
            log::info!(
                "the per-unit path (save_select_feat/spatial_norm/select_sample) runs on the CPU"
            );
        }
        // the per-unit path runs on the CPU: max_memory is its budget whatever the device
        let budget = params.max_memory.unwrap_or(host_budget);
        let rows_selected = params.select_sample.is_some();
        per_unit::check_budget(n, f, units, k.min(f), rows_selected, budget)?;
        let opt = per_unit::PerUnitOptions {
            alpha: params.alpha,
            k,
            no_selection,
            norm: params.spatial_norm,
            select_sample: params.select_sample,
            cancel: params.cancel.clone(),
        };
        let r = per_unit::fit_per_unit(x.view(), y2.view(), &opt, &report)?;
        let t = vec![("per-unit fit".to_string(), t0.elapsed())];
        let dev = dispatch::cpu(params.max_memory).describe();
        (r.w, r.b, Some(r.s), FitPath::PerUnit, dev, t, None, None)
    } else if no_selection {
        let job = paths::DenseFit {
            x: x.view(),
            y: y2.view(),
            alpha: params.alpha,
            dtype,
        };
        let ((w, b), device) = run_job(params, job.flops(), &job, &mut warnings)?;
        report(units);
        let path = if n > f + 1 {
            FitPath::DensePrimal
        } else {
            FitPath::DenseDual
        };
        let t = vec![("dense solve".to_string(), t0.elapsed())];
        (w, b, None, path, device, t, None, None)
    } else {
        let targets = targets::FlatTargets::new(y2.view(), &unit_shape);
        let job = paths::SelectedFit {
            x: x.view(),
            y: &targets,
            units: 0..units,
            k,
            alpha: params.alpha,
            dtype,
            chunk_cap: params.chunk_size,
            dense_w: true,
            keep_values: false,
            keep_corr: params.keep_corr,
            progress: &report,
            cancel: params.cancel.as_ref(),
            on_chunk: None,
        };
        let (o, device) = run_job(params, job.flops(), &job, &mut warnings)?;
        let w = o.w.expect("dense form");
        (
            w,
            o.b,
            None,
            FitPath::Selected,
            device,
            o.timings,
            Some(o.selected),
            o.corr_abs,
        )
    };
    let t1 = Instant::now();
    let (mut w, mut b) = (w, b);
    if dtype == Dtype::F32 {
        w.par_mapv_inplace(|v| dtype.round(v));
        b.mapv_inplace(|v| dtype.round(v));
    }
    let model = RidgeModel::from_flat_owned(w, b, s, &unit_shape, dtype, params.spatial_norm)?;
    timings.push(("model".to_string(), t1.elapsed()));
    Ok(FitOutput {
        model,
        selected,
        corr_abs,
        path,
        device,
        timings,
        warnings,
    })
}

/// Mean over units of the Pearson correlation between predicted and observed columns (units
/// with zero variance on either side are skipped): the "decoding accuracy" the demo prints.
pub fn mean_unit_correlation(pred: ArrayView2<f64>, obs: ArrayView2<f64>) -> f64 {
    let mut total = 0.0;
    let mut count = 0usize;
    for (p, o) in pred.axis_iter(Axis(1)).zip(obs.axis_iter(Axis(1))) {
        if let Some(r) = crate::linalg::pearson(p, o) {
            total += r;
            count += 1;
        }
    }
    if count == 0 {
        f64::NAN
    } else {
        total / count as f64
    }
}
