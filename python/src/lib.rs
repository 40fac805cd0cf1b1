//! `neurofit._neurofit`: the compiled core of the `neurofit` Python package. The Python layer
//! (`python/neurofit/`) holds the reference-compatible API; this module converts arrays, maps
//! errors to the references' exception types, releases the GIL and polls Ctrl-C.

use pyo3::prelude::*;

mod errors;
mod gsn;
mod ridge;
mod wait;

#[pymodule]
fn _neurofit(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Mesa's Vulkan drivers complain on stderr without XDG_RUNTIME_DIR (see the library)
    neurofit::gpu::adapters::quiet_runtime_dir();
    errors::register(m)?;
    m.add_function(wrap_pyfunction!(ridge::fit, m)?)?;
    m.add_function(wrap_pyfunction!(ridge::predict, m)?)?;
    m.add_function(wrap_pyfunction!(gsn::perform_gsn, m)?)?;
    m.add_function(wrap_pyfunction!(gsn::calc_shrunken_covariance, m)?)?;
    m.add_function(wrap_pyfunction!(gsn::shrinkage_nll, m)?)?;
    m.add_function(wrap_pyfunction!(devices, m)?)?;
    m.add_function(wrap_pyfunction!(default_device, m)?)?;
    m.add_function(wrap_pyfunction!(parse_size, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

/// The devices neurofit can use, as `neurofit devices` lists them: GPU adapters first
/// (`gpu:N`), then the CPU.
#[pyfunction]
fn devices(py: Python<'_>) -> PyResult<Vec<Bound<'_, pyo3::types::PyDict>>> {
    use pyo3::types::PyDict;
    let mut out = Vec::new();
    let adapters = py.detach(neurofit::dispatch::adapters);
    for a in adapters {
        let d = PyDict::new(py);
        d.set_item("id", format!("gpu:{}", a.index))?;
        d.set_item("kind", "gpu")?;
        d.set_item("name", &a.name)?;
        d.set_item("backend", format!("{:?}", a.backend))?;
        d.set_item("device_type", format!("{:?}", a.device_type))?;
        d.set_item("software", a.is_software)?;
        d.set_item("shader_f64", a.shader_f64)?;
        d.set_item("timestamp_query", a.timestamp_query)?;
        d.set_item("max_binding", a.max_binding)?;
        d.set_item("max_buffer", a.max_buffer)?;
        d.set_item("memory", a.device_memory)?;
        d.set_item("driver", &a.driver)?;
        out.push(d);
    }
    let d = PyDict::new(py);
    d.set_item("id", "cpu")?;
    d.set_item("kind", "cpu")?;
    d.set_item("name", "CPU (rayon + faer)")?;
    d.set_item("threads", rayon_threads())?;
    d.set_item("shader_f64", true)?;
    d.set_item("memory", neurofit::device::memory::default_cpu_budget())?;
    out.push(d);
    Ok(out)
}

fn rayon_threads() -> usize {
    rayon::current_num_threads()
}

/// The default device string: `NEUROFIT_DEVICE` when set, else `auto` (ValueError when the
/// variable does not parse).
#[pyfunction]
fn default_device() -> PyResult<String> {
    Ok(neurofit::Device::from_env()
        .map_err(errors::to_py)?
        .to_string())
}

/// Parses a memory size (`"2GiB"`, `"512MB"`, `"1000000"`) into bytes.
#[pyfunction]
fn parse_size(s: &str) -> PyResult<u64> {
    neurofit::device::memory::parse_size(s).map_err(errors::to_py)
}
