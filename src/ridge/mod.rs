//! FastL2LiR: ridge regression where every output unit keeps its top-k input features by |r|
//! (spec: `fastl2lir-spec.md`). [`fit`] validates, resolves the device, runs the chosen path on
//! the backend ([`crate::ops::RidgeOps`]) and returns a [`RidgeModel`].

pub mod model;
pub mod normalize;
pub mod params;
pub mod per_unit;
pub mod select;
pub mod shape;

pub use model::RidgeModel;
pub use params::{FitParams, Progress, SelectSample, SpatialNorm};

use crate::cpu::CpuOps;
use crate::device::{self, memory, Device, Resolved};
use crate::error::{Error, Result};
use crate::gpu::GpuOps;
use crate::ops::RidgeOps;
use crate::Dtype;
use ndarray::{Array1, Array2, ArrayView2, ArrayViewD, Axis, CowArray, Ix2};
use select::TieBreak;
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
    /// Main selection path: |r| as `F × U` (low-variance features 0, undefined NaN).
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

fn check_finite(a: ArrayView2<f64>, what: &str, allow_nan: bool) -> Result<()> {
    for ((i, j), v) in a.indexed_iter() {
        if v.is_infinite() || (!allow_nan && v.is_nan()) {
            return Err(Error::NonFinite(format!(
                "{what} has {v} at [{i}, {j}]; {}",
                if allow_nan {
                    "Inf is never allowed"
                } else {
                    "NaN/Inf are allowed only in Y with select_sample=remove_nan"
                }
            )));
        }
    }
    Ok(())
}

/// The backend for a resolved device.
pub fn backend(
    resolved: &Resolved,
    max_memory: Option<u64>,
    chunk_cap: usize,
) -> Box<dyn RidgeOps> {
    match resolved {
        Resolved::Cpu => {
            let mut c = CpuOps::new(max_memory.unwrap_or_else(memory::default_cpu_budget));
            c.unit_chunk_cap = chunk_cap;
            Box::new(c)
        }
        Resolved::Gpu(ctx) => {
            let mut g = GpuOps::new(ctx.clone(), max_memory);
            g.unit_chunk_cap = chunk_cap;
            Box::new(g)
        }
    }
}

/// Fits FastL2LiR. `x` is `n × F`; `y` is `n × U` or `n × s1 × … × sk`.
///
/// Errors (never panics) on: Y with fewer than 2 dimensions, mismatched rows, empty inputs,
/// NaN/Inf (NaN in Y is allowed with `select_sample = remove_nan`), negative or non-finite
/// alpha, fewer than 2 samples with selection, singular systems, and device failures (under
/// `auto` a device failure falls back to the CPU with a logged warning).
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
    let dtype = params.dtype;
    // f32 fits round their inputs first; f64 fits use X as given (no copy)
    let x: CowArray<f64, Ix2> = match dtype {
        Dtype::F64 => x.into(),
        Dtype::F32 => x.mapv(|v| dtype.round(v)).into(),
    };
    let mut y2 = shape::flatten_units(y);
    if dtype == Dtype::F32 {
        y2.mapv_inplace(|v| dtype.round(v));
    }
    check_finite(x.view(), "X", false)?;
    check_finite(y2.view(), "Y", params.select_sample.is_some())?;
    let units = y2.ncols();
    let mut warnings = Vec::new();
    let k = if params.n_feat == 0 { f } else { params.n_feat };
    if k > f {
        let w = "X has less features than n_feat (X.shape[1] < n_feat). Feature selection is not applied.".to_string();
        log::warn!("{w}");
        warnings.push(w);
    }
    let no_selection = k >= f;
    let per_unit = params.per_unit_path();
    if !per_unit && !no_selection && n < 2 {
        return Err(Error::InvalidInput(format!(
            "feature selection needs at least 2 samples for correlations, got {n}"
        )));
    }
    let (nf, ff, uf, kf) = (n as f64, f as f64, units as f64, k as f64);
    let flops = if per_unit {
        0.0
    } else if no_selection {
        nf * ff * ff + ff * ff * ff / 3.0 + 2.0 * nf * ff * uf
    } else {
        nf * ff * ff + 4.0 * nf * ff * uf + uf * (kf + 1.0).powi(3) / 3.0
    };
    let resolved = if per_unit {
        if matches!(params.device, Device::Gpu(_)) {
            log::info!(
                "the per-unit path (save_select_feat/spatial_norm/select_sample) runs on the CPU"
            );
        }
        Resolved::Cpu
    } else {
        device::resolve(&params.device, dtype, flops)?
    };
    let run = |res: &Resolved| -> Result<FitOutput> {
        run_fit(
            x.view(),
            y2.view(),
            params,
            k,
            no_selection,
            per_unit,
            res,
            &unit_shape,
            warnings.clone(),
        )
    };
    let (mut out, fell_back) = device::with_cpu_fallback(&params.device, &resolved, "fit", run)?;
    out.warnings.extend(fell_back);
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn run_fit(
    x: ArrayView2<f64>,
    y: ArrayView2<f64>,
    params: &FitParams,
    k: usize,
    no_selection: bool,
    per_unit: bool,
    resolved: &Resolved,
    unit_shape: &[usize],
    warnings: Vec<String>,
) -> Result<FitOutput> {
    let (n, f) = x.dim();
    let units = y.ncols();
    let dtype = params.dtype;
    let ops = backend(resolved, params.max_memory, params.chunk_size);
    let report = |d: usize| {
        if let Some(p) = &params.progress {
            p(d, units)
        }
    };
    let mut timings = Vec::new();
    let mut selected = None;
    let mut corr_abs = None;
    let mut s_mask = None;
    let t0 = Instant::now();
    let (w, b, path): (Array2<f64>, Array1<f64>, FitPath) = if per_unit {
        let r = per_unit::fit_per_unit(
            x,
            y,
            params.alpha,
            k,
            no_selection,
            params.spatial_norm,
            params.select_sample,
            &report,
        )?;
        timings.push(("per-unit fit".to_string(), t0.elapsed()));
        s_mask = Some(r.s);
        (r.w, r.b, FitPath::PerUnit)
    } else if no_selection {
        let (w, b) = ops.solve_dense(x, y, params.alpha, dtype)?;
        timings.push(("dense solve".to_string(), t0.elapsed()));
        report(units);
        let path = if n > f + 1 {
            FitPath::DensePrimal
        } else {
            FitPath::DenseDual
        };
        (w, b, path)
    } else {
        let corr = ops.abs_correlations(x, y, dtype)?;
        timings.push(("correlations".to_string(), t0.elapsed()));
        let t1 = Instant::now();
        let sel = select::top_k_rows(corr.view(), k, TieBreak::HigherIndex);
        timings.push(("top-k selection".to_string(), t1.elapsed()));
        let t2 = Instant::now();
        let (w, b) = ops.solve_selected(x, y, sel.view(), params.alpha, dtype, 0, &report)?;
        timings.push(("gram + per-unit solves".to_string(), t2.elapsed()));
        report(units);
        corr_abs = Some(corr.reversed_axes()); // F × U without a copy
        selected = Some(sel);
        (w, b, FitPath::Selected)
    };
    let w = w.mapv(|v| dtype.round(v));
    let b = b.mapv(|v| dtype.round(v));
    let model = RidgeModel::from_flat(
        w.view(),
        b.view(),
        s_mask.as_ref().map(|s| s.view()),
        unit_shape,
        dtype,
        params.spatial_norm,
    )?;
    Ok(FitOutput {
        model,
        selected,
        corr_abs,
        path,
        device: resolved.describe(),
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
        let (pm, om) = (p.mean().unwrap_or(0.0), o.mean().unwrap_or(0.0));
        let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
        for (a, b) in p.iter().zip(o.iter()) {
            sxy += (a - pm) * (b - om);
            sxx += (a - pm) * (a - pm);
            syy += (b - om) * (b - om);
        }
        if sxx > 0.0 && syy > 0.0 {
            total += sxy / (sxx * syy).sqrt();
            count += 1;
        }
    }
    if count == 0 {
        f64::NAN
    } else {
        total / count as f64
    }
}
