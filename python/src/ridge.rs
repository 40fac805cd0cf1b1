//! FastL2LiR fit and predict on numpy arrays (float64; the Python layer converts other dtypes).

use crate::errors::to_py;
use crate::wait::{self, Counter};
use ndarray::ArrayD;
use neurofit::ridge::{fit as fit_model, FitParams, RidgeModel};
use neurofit::{Cancel, Device, Dtype};
use numpy::{IntoPyArray, PyReadonlyArray2, PyReadonlyArrayDyn};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

/// Parses a device string (None: `NEUROFIT_DEVICE`, else auto).
pub fn device(s: Option<&str>) -> PyResult<Device> {
    match s {
        Some(s) => s.parse().map_err(to_py),
        None => Device::from_env().map_err(to_py),
    }
}

/// An array of f64 values as float64, or rounded to float32 for an f32 result.
pub fn to_numpy<'py>(py: Python<'py>, a: ArrayD<f64>, dtype: Dtype) -> Bound<'py, PyAny> {
    match dtype {
        Dtype::F64 => a.into_pyarray(py).into_any(),
        Dtype::F32 => a.mapv(|v| v as f32).into_pyarray(py).into_any(),
    }
}

/// Fits FastL2LiR: returns `(W, b, S or None, warnings, device)`; W `(F, s1..sk)` and b
/// `(1, s1..sk)` in `dtype`.
#[pyfunction]
#[pyo3(signature = (x, y, alpha, n_feat, chunk_size, dtype, save_select_feat, spatial_norm, select_sample, device, max_memory, progress))]
#[allow(clippy::too_many_arguments)]
pub fn fit<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f64>,
    y: PyReadonlyArrayDyn<'py, f64>,
    alpha: f64,
    n_feat: usize,
    chunk_size: usize,
    dtype: &str,
    save_select_feat: bool,
    spatial_norm: Option<&str>,
    select_sample: Option<&str>,
    device: Option<&str>,
    max_memory: Option<u64>,
    progress: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let dtype: Dtype = dtype.parse().map_err(to_py)?;
    let cancel = Cancel::new();
    let counter = Counter::default();
    let params = FitParams {
        alpha,
        n_feat,
        chunk_size,
        dtype,
        save_select_feat,
        spatial_norm: spatial_norm.map(str::parse).transpose().map_err(to_py)?,
        select_sample: select_sample.map(str::parse).transpose().map_err(to_py)?,
        device: self::device(device)?,
        max_memory,
        keep_corr: false,
        progress: Some(counter.callback()),
        cancel: Some(cancel.clone()),
    };
    let (xv, yv) = (x.as_array(), y.as_array());
    let out = wait::run(py, &cancel, Some(&counter), progress.as_ref(), || {
        fit_model(xv, yv, &params)
    })?;
    let m = out.model;
    let s = m.s.map(|s| s.into_pyarray(py).into_any());
    (
        to_numpy(py, m.w, dtype),
        to_numpy(py, m.b, dtype),
        s,
        out.warnings,
        out.device,
    )
        .into_pyobject(py)
}

/// Predicts `(n', s1..sk)` from `x` with W `(F, s1..sk)`, b `(1, s1..sk)`, in `dtype`; with
/// `spatial_norm`, S selects and each sample's selected features are normalised first.
#[pyfunction]
#[pyo3(signature = (x, w, b, s, spatial_norm, dtype, device, max_memory))]
#[allow(clippy::too_many_arguments)]
pub fn predict<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f64>,
    w: PyReadonlyArrayDyn<'py, f64>,
    b: PyReadonlyArrayDyn<'py, f64>,
    s: Option<PyReadonlyArrayDyn<'py, bool>>,
    spatial_norm: Option<&str>,
    dtype: &str,
    device: Option<&str>,
    max_memory: Option<u64>,
) -> PyResult<Bound<'py, PyAny>> {
    let dtype: Dtype = dtype.parse().map_err(to_py)?;
    let device = self::device(device)?;
    // the model is copied into Rust (W, b, S) next to the output: refuse what the host budget
    // cannot hold instead of letting the allocation fail
    let budget = max_memory.unwrap_or_else(neurofit::device::memory::default_cpu_budget);
    let (wv, bv) = (w.as_array(), b.as_array());
    let units = bv.len() as u64;
    let need = 8 * (wv.len() as u64 + units + x.as_array().nrows() as u64 * units)
        + s.as_ref().map_or(0, |s| s.as_array().len() as u64);
    if need > budget {
        return Err(to_py(neurofit::Error::OutOfMemory(format!(
            "predict: the model copy and the output need {need} bytes but the memory budget is {budget} bytes; raise max_memory or predict fewer units at a time"
        ))));
    }
    let model = RidgeModel {
        w: wv.to_owned(),
        b: bv.to_owned(),
        s: s.map(|s| s.as_array().to_owned()),
        dtype,
        spatial_norm: spatial_norm.map(str::parse).transpose().map_err(to_py)?,
    };
    let xv = x.as_array();
    let cancel = Cancel::new();
    let y = wait::run(py, &cancel, None, None, || model.predict(xv, &device))?;
    Ok(to_numpy(py, y, dtype))
}
