//! The one error type of the crate.

use thiserror::Error;

/// Every failure neurofit reports. User input never panics: it becomes one of these.
#[derive(Debug, Error)]
pub enum Error {
    /// An argument has the wrong shape, type or value.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// An option name or value that neurofit does not know.
    #[error("unknown option: {0}")]
    UnknownOption(String),
    /// NaN or Inf where finite values are required.
    #[error("non-finite value: {0}")]
    NonFinite(String),
    /// A symmetric system that should be positive definite is not (Cholesky met a non-positive pivot).
    #[error("singular system: {0}")]
    Singular(String),
    /// No device matches the request, or the device cannot run this problem.
    #[error("device unavailable: {0}")]
    DeviceUnavailable(String),
    /// The problem does not fit into the memory budget or a binding limit.
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    /// The GPU reported an error (validation, device loss, mapping failure, time-out).
    #[error("GPU error: {0}")]
    Gpu(String),
    /// The data do not meet a requirement of the algorithm (e.g. too few valid trials or
    /// observations); the Python references `assert` these.
    #[error("insufficient data: {0}")]
    InsufficientData(String),
    /// The run was cancelled through its [`crate::Cancel`] flag.
    #[error("interrupted: {0}")]
    Interrupted(String),
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {msg}")]
    Io {
        /// The file concerned.
        path: String,
        /// What went wrong.
        msg: String,
    },
}

impl Error {
    /// True for errors after which `device = "auto"` may retry on the CPU.
    pub fn is_device_error(&self) -> bool {
        matches!(
            self,
            Error::Gpu(_) | Error::DeviceUnavailable(_) | Error::OutOfMemory(_)
        )
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
