//! From a [`Device`] request to a running backend: resolution (`auto`, `cpu`, `gpu…`), the
//! process-wide GPU contexts, and the CPU fall-back under `auto`. The models hand their work to
//! [`run`] as a [`Job`] whose `run` is generic over [`Backend`], so the same model code runs on
//! whichever backend was chosen.

use crate::backend::Backend;
use crate::cpu::CpuBackend;
#[cfg(feature = "gpu")]
use crate::device::GpuSelector;
use crate::device::{auto_gpu_min_flops, memory, Device};
use crate::error::{Error, Result};
#[cfg(feature = "gpu")]
use crate::gpu::{AdapterSummary, GpuBackend, GpuContext};
use crate::Dtype;

/// Work that can run on any backend.
pub trait Job {
    /// What the work produces.
    type Output;
    /// Runs the work on `backend`.
    fn run<B: Backend>(&self, backend: &B) -> Result<Self::Output>;
}

/// A resolved backend.
#[derive(Clone)]
pub enum Chosen {
    /// The CPU backend.
    Cpu(CpuBackend),
    /// A GPU backend.
    #[cfg(feature = "gpu")]
    Gpu(GpuBackend),
}

impl Chosen {
    /// Runs `job` on this backend.
    pub fn run<J: Job>(&self, job: &J) -> Result<J::Output> {
        match self {
            Chosen::Cpu(b) => job.run(b),
            #[cfg(feature = "gpu")]
            Chosen::Gpu(b) => job.run(b),
        }
    }

    /// A short human-readable name.
    pub fn describe(&self) -> String {
        match self {
            Chosen::Cpu(b) => b.describe(),
            #[cfg(feature = "gpu")]
            Chosen::Gpu(b) => b.describe(),
        }
    }

    /// True for the CPU backend.
    pub fn is_cpu(&self) -> bool {
        matches!(self, Chosen::Cpu(_))
    }
}

impl std::fmt::Debug for Chosen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The CPU backend with `max_memory` or the platform's default budget.
pub fn cpu(max_memory: Option<u64>) -> Chosen {
    Chosen::Cpu(CpuBackend::new(
        max_memory.unwrap_or_else(memory::default_cpu_budget),
    ))
}

/// Every GPU adapter wgpu can see (empty without the `gpu` feature).
#[cfg(feature = "gpu")]
pub fn adapters() -> Vec<AdapterSummary> {
    crate::gpu::enumerate()
}

#[cfg(feature = "gpu")]
fn open_gpu(a: &AdapterSummary, max_memory: Option<u64>) -> Result<Chosen> {
    Ok(Chosen::Gpu(GpuBackend::new(
        GpuContext::shared(a.index)?,
        max_memory,
    )))
}

/// Resolves a request for a problem of `flops` floating-point operations in `dtype`.
///
/// * `cpu` → the CPU.
/// * `gpu…` → that adapter, or an error listing what exists; f64 on an adapter without
///   `SHADER_F64` is an error.
/// * `auto` → the first hardware adapter (never a software one) when `flops ≥`
///   [`auto_gpu_min_flops`] (a number per CPU thread) and the dtype is supported; otherwise the
///   CPU.
pub fn resolve(
    device: &Device,
    dtype: Dtype,
    flops: f64,
    max_memory: Option<u64>,
) -> Result<Chosen> {
    match device {
        Device::Cpu => Ok(cpu(max_memory)),
        Device::Auto => {
            if flops < auto_gpu_min_flops() {
                log::info!(
                    "auto: problem of {flops:.2e} FLOP is below the GPU crossover; using the CPU"
                );
                return Ok(cpu(max_memory));
            }
            resolve_auto_gpu(dtype, max_memory)
        }
        Device::Gpu(sel) => resolve_gpu(device, sel, dtype, max_memory),
    }
}

#[cfg(feature = "gpu")]
fn resolve_auto_gpu(dtype: Dtype, max_memory: Option<u64>) -> Result<Chosen> {
    let adapters = adapters();
    let pick = adapters
        .iter()
        .find(|a| !a.is_software && (dtype == Dtype::F32 || a.shader_f64));
    match pick {
        None => {
            log::info!("auto: no hardware GPU adapter suitable for {dtype}; using the CPU");
            Ok(cpu(max_memory))
        }
        Some(a) => open_gpu(a, max_memory).or_else(|e| {
            log::warn!("auto: could not open {}: {e}; using the CPU", a.name);
            Ok(cpu(max_memory))
        }),
    }
}

#[cfg(not(feature = "gpu"))]
fn resolve_auto_gpu(_dtype: Dtype, max_memory: Option<u64>) -> Result<Chosen> {
    Ok(cpu(max_memory))
}

#[cfg(feature = "gpu")]
fn resolve_gpu(
    device: &Device,
    sel: &GpuSelector,
    dtype: Dtype,
    max_memory: Option<u64>,
) -> Result<Chosen> {
    let adapters = adapters();
    let found = || {
        if adapters.is_empty() {
            "no GPU adapter was found (is a Vulkan/Metal/DX12 driver installed?)".to_string()
        } else {
            let names: Vec<String> = adapters
                .iter()
                .map(|a| format!("gpu:{} {} ({:?})", a.index, a.name, a.backend))
                .collect();
            format!("adapters found: {}", names.join("; "))
        }
    };
    let chosen = match sel {
        GpuSelector::Any => adapters.first(),
        GpuSelector::Index(i) => adapters.iter().find(|a| a.index == *i),
        GpuSelector::Name(n) => {
            let n = n.to_lowercase();
            adapters.iter().find(|a| a.name.to_lowercase().contains(&n))
        }
    };
    let a = chosen.ok_or_else(|| {
        Error::DeviceUnavailable(format!("no adapter matches '{device}': {}", found()))
    })?;
    if dtype == Dtype::F64 && !a.shader_f64 {
        return Err(Error::DeviceUnavailable(format!(
            "adapter '{}' has no SHADER_F64: use dtype f32 or device cpu",
            a.name
        )));
    }
    open_gpu(a, max_memory)
}

#[cfg(not(feature = "gpu"))]
fn resolve_gpu(
    device: &Device,
    _sel: &crate::device::GpuSelector,
    _dtype: Dtype,
    _max_memory: Option<u64>,
) -> Result<Chosen> {
    Err(Error::DeviceUnavailable(format!(
        "'{device}': this neurofit was built without the `gpu` feature"
    )))
}

/// What [`run`] returns: the job's output, the backend that produced it, and the warning of a
/// fall-back to the CPU, if one happened.
#[derive(Debug)]
pub struct Ran<T> {
    /// The job's output.
    pub output: T,
    /// The backend that produced it.
    pub device: String,
    /// Set when the GPU failed under `auto` and the CPU ran the job instead.
    pub fallback: Option<String>,
}

/// Runs `job` on `chosen`. When it fails with a device error (GPU validation error, device
/// loss, out of memory, unavailable device) and the request was `auto` on a GPU, logs a warning
/// and runs `job` again on the CPU.
pub fn run_on<J: Job>(
    requested: &Device,
    chosen: &Chosen,
    max_memory: Option<u64>,
    what: &str,
    job: &J,
) -> Result<Ran<J::Output>> {
    match chosen.run(job) {
        Err(e) if e.is_device_error() && *requested == Device::Auto && !chosen.is_cpu() => {
            let warning = format!("GPU {what} failed ({e}); fell back to the CPU");
            log::warn!("{warning}");
            let cpu = cpu(max_memory);
            Ok(Ran {
                output: cpu.run(job)?,
                device: cpu.describe(),
                fallback: Some(warning),
            })
        }
        r => r.map(|output| Ran {
            output,
            device: chosen.describe(),
            fallback: None,
        }),
    }
}

/// Resolves `device` and runs `job` there (see [`resolve`] and [`run_on`]).
pub fn run<J: Job>(
    device: &Device,
    dtype: Dtype,
    flops: f64,
    max_memory: Option<u64>,
    what: &str,
    job: &J,
) -> Result<Ran<J::Output>> {
    let chosen = resolve(device, dtype, flops, max_memory)?;
    run_on(device, &chosen, max_memory, what, job)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fails;
    impl Job for Fails {
        type Output = ();
        fn run<B: Backend>(&self, _b: &B) -> Result<()> {
            Err(Error::Gpu("boom".into()))
        }
    }

    #[test]
    fn cpu_errors_are_not_retried() {
        assert!(run_on(&Device::Auto, &cpu(None), None, "fit", &Fails).is_err());
    }

    #[test]
    fn small_auto_problem_uses_cpu() {
        assert!(resolve(&Device::Auto, Dtype::F64, 1e6, None)
            .unwrap()
            .is_cpu());
    }
}
