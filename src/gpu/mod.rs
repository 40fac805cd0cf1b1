//! The GPU backend (cargo feature `gpu`): wgpu host code for the WGSL kernels in `shaders/`.
//!
//! * [`adapters`]: what exists (listing, device-local memory).
//! * [`GpuContext`] (context.rs): an open device with failure capture; `buffers.rs` (upload,
//!   allocation, read-back), `pipelines.rs` (compilation cache, dispatch) and `profiler.rs`
//!   (timestamp queries) extend it.
//! * [`KernelParams`] (params.rs): the constants shared by host and kernels, per adapter.
//! * `kernels.rs`: typed wrappers of the shaders.
//! * `refine.rs`: mixed-precision per-unit solves (f32 factor, f64 refinement).
//! * [`GpuBackend`] (backend.rs, nll.rs): the [`crate::backend::Backend`] implementation.

pub mod adapters;
mod backend;
mod buffers;
mod context;
mod kernels;
mod nll;
mod params;
mod pipelines;
mod profiler;
mod refine;
pub mod trace;

pub use adapters::{enumerate, AdapterSummary};
pub use backend::{GpuBackend, GpuFeatures, GpuGram, GpuTargets};
pub use buffers::DevBuf;
pub use context::GpuContext;
pub use kernels::MAX_SYSTEM;
pub use params::KernelParams;
pub use refine::SOLVE_ENV;
