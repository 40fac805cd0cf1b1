//! The GPU backend: wgpu host code. [`context`] owns the adapter, device, buffers, pipelines
//! and error capture; [`ridge`] runs the FastL2LiR kernels in `shaders/`.

pub mod context;
pub mod gsn;
pub mod kernels;
pub mod ridge;

pub use context::{enumerate, AdapterSummary, GpuContext};
pub use ridge::GpuOps;
