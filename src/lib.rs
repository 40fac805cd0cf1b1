//! # neurofit
//!
//! FastL2LiR (ridge regression with per-unit top-k feature selection) and GSN (generative
//! modeling of signal and noise) on any GPU through WGSL compute shaders (`wgpu`: Vulkan, Metal,
//! DX12), with a rayon + faer CPU fallback chosen by a `device = "auto"` resolver.
//!
//! ```no_run
//! use ndarray::Array2;
//! use neurofit::ridge::{FitParams, fit};
//! let x = Array2::<f64>::zeros((100, 50));
//! let y = Array2::<f64>::zeros((100, 4)).into_dyn();
//! let params = FitParams { alpha: 1.0, n_feat: 10, ..FitParams::default() };
//! let fitted = fit(x.view(), y.view(), &params)?;
//! let y_hat = fitted.model.predict(x.view(), &neurofit::Device::Cpu)?;
//! # Ok::<(), neurofit::Error>(())
//! ```
//!
//! Layers, each importing only those below it:
//!
//! * models: [`ridge`] (FastL2LiR) and [`gsn`], written once, generic over the backend;
//! * [`dispatch`]: a [`Device`] request resolved to a backend, with the CPU fall-back;
//! * [`backend`]: the trait of primitives on device-resident data, implemented by [`cpu`]
//!   and (cargo feature `gpu`, default) [`gpu`];
//! * [`device`] (requests, memory budgets, the chunk planner), [`linalg`], [`io`] (files) and
//!   [`error`] at the bottom. [`simulate`] makes data for the demo, benchmarks and tests.

pub mod backend;
pub mod cancel;
pub mod cpu;
pub mod device;
pub mod dispatch;
pub mod error;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod gsn;
pub mod io;
pub mod linalg;
pub mod ridge;
pub mod simulate;

pub use cancel::Cancel;
pub use device::{Device, GpuSelector};
pub use error::{Error, Result};

use std::fmt;
use std::str::FromStr;

/// Floating-point precision of a fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dtype {
    /// IEEE single precision.
    F32,
    /// IEEE double precision (the default, as in the Python packages).
    #[default]
    F64,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }
    /// Rounds a value to this precision (identity for f64).
    pub fn round(self, v: f64) -> f64 {
        match self {
            Dtype::F32 => v as f32 as f64,
            Dtype::F64 => v,
        }
    }
}

impl FromStr for Dtype {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "float32" | "single" => Ok(Dtype::F32),
            "f64" | "float64" | "double" => Ok(Dtype::F64),
            _ => Err(Error::UnknownOption(format!(
                "dtype '{s}': expected f32 or f64"
            ))),
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dtype::F32 => "f32",
            Dtype::F64 => "f64",
        })
    }
}
