//! GSN: perform_gsn, calc_shrunken_covariance and the shrinkage-NLL scorer on numpy arrays.

use crate::errors::to_py;
use crate::ridge::{device, to_numpy};
use crate::wait;
use neurofit::gsn::{self, GsnOptions, ReturnItem, Uneven};
use neurofit::{Cancel, Dtype};
use numpy::{IntoPyArray, PyReadonlyArray2, PyReadonlyArray3, PyReadonlyArrayDyn};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

/// Runs GSN; returns `(result dict, warnings, device)`. `dtype` f32 gives the reference's
/// float32 policy (mnN mnS ncsnr cN cS float32, the rest float64).
#[pyfunction]
#[pyo3(signature = (data, wantshrinkage, shrinklevels, uneven, returns, dtype, device, max_memory))]
#[allow(clippy::too_many_arguments)]
pub fn perform_gsn<'py>(
    py: Python<'py>,
    data: PyReadonlyArray3<'py, f64>,
    wantshrinkage: bool,
    shrinklevels: Option<Vec<f64>>,
    uneven: &str,
    returns: Vec<String>,
    dtype: &str,
    device: Option<&str>,
    max_memory: Option<u64>,
) -> PyResult<Bound<'py, PyTuple>> {
    let dtype: Dtype = dtype.parse().map_err(to_py)?;
    let cancel = Cancel::new();
    let returns = returns
        .iter()
        .map(|r| r.parse::<ReturnItem>())
        .collect::<neurofit::Result<Vec<_>>>()
        .map_err(to_py)?;
    let opt = GsnOptions {
        wantshrinkage,
        shrink_levels: shrinklevels,
        uneven: uneven.parse::<Uneven>().map_err(to_py)?,
        returns,
        device: self::device(device)?,
        dtype,
        max_memory,
        cancel: Some(cancel.clone()),
    };
    let view = data.as_array();
    let r = wait::run(py, &cancel, None, None, || gsn::perform_gsn(view, &opt))?;
    let small = |a: ndarray::ArrayD<f64>| to_numpy(py, a, dtype);
    let d = PyDict::new(py);
    d.set_item("mnN", small(r.mn_n.into_dyn()))?;
    d.set_item("mnS", small(r.mn_s.into_dyn()))?;
    d.set_item("ncsnr", small(r.ncsnr.into_dyn()))?;
    d.set_item("shrinklevelN", r.shrinklevel_n)?;
    d.set_item("shrinklevelD", r.shrinklevel_d)?;
    d.set_item("numiters", r.numiters)?;
    if let Some(a) = r.c_n {
        d.set_item("cN", small(a.into_dyn()))?;
    }
    if let Some(a) = r.c_s {
        d.set_item("cS", small(a.into_dyn()))?;
    }
    let big = [
        ("cNb", r.c_nb.map(|a| a.into_dyn())),
        ("cSb", r.c_sb.map(|a| a.into_dyn())),
        ("eigvecs_signal", r.eigvecs_signal.map(|a| a.into_dyn())),
        ("eigvals_signal", r.eigvals_signal.map(|a| a.into_dyn())),
        (
            "eigvecs_difference",
            r.eigvecs_difference.map(|a| a.into_dyn()),
        ),
        (
            "eigvals_difference",
            r.eigvals_difference.map(|a| a.into_dyn()),
        ),
    ];
    for (k, v) in big {
        if let Some(a) = v {
            d.set_item(k, a.into_pyarray(py))?;
        }
    }
    (d, r.warnings, r.device).into_pyobject(py)
}

/// The stand-alone shrunken covariance: returns `(mn, c, shrinklevel, nll, warnings)`.
#[pyfunction]
#[pyo3(signature = (data, leaveout, shrinklevels, wantfull, device))]
pub fn calc_shrunken_covariance<'py>(
    py: Python<'py>,
    data: PyReadonlyArrayDyn<'py, f64>,
    leaveout: usize,
    shrinklevels: Vec<f64>,
    wantfull: bool,
    device: Option<&str>,
) -> PyResult<Bound<'py, PyTuple>> {
    let dev = self::device(device)?;
    let view = data.as_array();
    let cancel = Cancel::new();
    let r = wait::run(py, &cancel, None, None, || {
        gsn::calc_shrunken_covariance(view, leaveout, &shrinklevels, wantfull, &dev)
    })?;
    (
        r.mn.into_pyarray(py),
        r.c.into_pyarray(py),
        r.shrinklevel,
        ndarray::Array1::from(r.nll).into_pyarray(py),
        r.warnings,
    )
        .into_pyobject(py)
}

/// The held-out NLL of every shrinkage level: `cov` N × N, `pts` M × N (centred).
#[pyfunction]
#[pyo3(signature = (cov, pts, shrinklevels, device))]
pub fn shrinkage_nll<'py>(
    py: Python<'py>,
    cov: PyReadonlyArray2<'py, f64>,
    pts: PyReadonlyArray2<'py, f64>,
    shrinklevels: Vec<f64>,
    device: Option<&str>,
) -> PyResult<Bound<'py, PyAny>> {
    let dev = self::device(device)?;
    let (c, p) = (cov.as_array(), pts.as_array());
    let cancel = Cancel::new();
    let nll = wait::run(py, &cancel, None, None, || {
        gsn::shrinkage_nll(c, p, &shrinklevels, &dev)
    })?;
    Ok(ndarray::Array1::from(nll).into_pyarray(py).into_any())
}
