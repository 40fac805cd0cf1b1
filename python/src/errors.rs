//! neurofit errors as Python exceptions of the references' types (ValueError, AssertionError,
//! numpy's LinAlgError, ...) plus neurofit's own kinds, importable from `neurofit`.

use neurofit::Error;
use pyo3::create_exception;
use pyo3::exceptions::{
    PyAssertionError, PyKeyboardInterrupt, PyMemoryError, PyOSError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;

create_exception!(
    neurofit,
    OutOfMemoryError,
    PyMemoryError,
    "The problem does not fit the memory budget (host or GPU) and cannot be chunked to fit."
);
create_exception!(
    neurofit,
    GpuError,
    PyRuntimeError,
    "The GPU reported an error: validation, device loss, out of device memory, time-out."
);
create_exception!(
    neurofit,
    DeviceUnavailableError,
    PyRuntimeError,
    "No device matches the request, or the device cannot run this problem."
);

/// Adds the exception classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("OutOfMemoryError", py.get_type::<OutOfMemoryError>())?;
    m.add("GpuError", py.get_type::<GpuError>())?;
    m.add(
        "DeviceUnavailableError",
        py.get_type::<DeviceUnavailableError>(),
    )?;
    Ok(())
}

/// numpy.linalg.LinAlgError (a ValueError subclass), as the reference raises for singular
/// systems; ValueError if numpy cannot be imported.
fn lin_alg_error(py: Python<'_>, msg: String) -> PyErr {
    match py
        .import("numpy.linalg")
        .and_then(|m| m.getattr("LinAlgError"))
    {
        Ok(t) => PyErr::from_type(t.cast_into().expect("LinAlgError is a type"), msg),
        Err(_) => PyValueError::new_err(msg),
    }
}

/// Maps a neurofit error to the Python exception a user of the references expects.
pub fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::InvalidInput(_) | Error::UnknownOption(_) | Error::NonFinite(_) => {
            PyValueError::new_err(msg)
        }
        Error::Singular(_) => Python::attach(|py| lin_alg_error(py, msg)),
        Error::InsufficientData(_) => PyAssertionError::new_err(msg),
        Error::DeviceUnavailable(_) => DeviceUnavailableError::new_err(msg),
        Error::OutOfMemory(_) => OutOfMemoryError::new_err(msg),
        Error::Gpu(_) => GpuError::new_err(msg),
        Error::Interrupted(_) => PyKeyboardInterrupt::new_err(msg),
        Error::Io { .. } => PyOSError::new_err(msg),
    }
}
