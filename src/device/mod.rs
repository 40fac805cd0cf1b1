//! The device layer: what the user asked for ([`Device`]), what exists ([`list_devices`]),
//! how `auto` decides ([`resolve`]), how much memory a fit may use ([`memory`]) and how work is cut
//! into chunks that fit ([`planner`]).

pub mod memory;
pub mod planner;

use crate::error::{Error, Result};
use crate::gpu::{self, AdapterSummary, GpuContext};
use crate::Dtype;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Which GPU an explicit `gpu` request means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuSelector {
    /// The first adapter in the order `neurofit devices` prints (hardware before software).
    Any,
    /// The adapter with this index in `neurofit devices`.
    Index(usize),
    /// The first adapter whose name contains this text (case-insensitive).
    Name(String),
}

/// A device request: `"auto" | "cpu" | "gpu" | "gpu:N" | "gpu:NAME"`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Device {
    /// A hardware GPU when one exists and the problem is large enough, else the CPU.
    #[default]
    Auto,
    /// The rayon/faer CPU backend.
    Cpu,
    /// A GPU through wgpu; software adapters (lavapipe) are allowed when chosen explicitly.
    Gpu(GpuSelector),
}

impl FromStr for Device {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        let lower = t.to_ascii_lowercase();
        match lower.as_str() {
            "auto" => return Ok(Device::Auto),
            "cpu" => return Ok(Device::Cpu),
            "gpu" => return Ok(Device::Gpu(GpuSelector::Any)),
            _ => {}
        }
        if let Some(rest) = lower.strip_prefix("gpu:") {
            let rest_orig = &t[4..];
            if rest.is_empty() {
                return Err(Error::UnknownOption(format!(
                    "device '{s}': expected gpu:N or gpu:NAME after 'gpu:'"
                )));
            }
            if let Ok(i) = rest.parse::<usize>() {
                return Ok(Device::Gpu(GpuSelector::Index(i)));
            }
            return Ok(Device::Gpu(GpuSelector::Name(rest_orig.to_string())));
        }
        Err(Error::UnknownOption(format!(
            "device '{s}': expected auto, cpu, gpu, gpu:N or gpu:NAME"
        )))
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Auto => write!(f, "auto"),
            Device::Cpu => write!(f, "cpu"),
            Device::Gpu(GpuSelector::Any) => write!(f, "gpu"),
            Device::Gpu(GpuSelector::Index(i)) => write!(f, "gpu:{i}"),
            Device::Gpu(GpuSelector::Name(n)) => write!(f, "gpu:{n}"),
        }
    }
}

/// Problems below this many floating-point operations run on the CPU under `auto`, even when a
/// hardware GPU exists: below it the adapter start-up (~0.1–0.3 s for instance, device and
/// pipeline creation) and the transfers cost more than the CPU needs for the whole fit. The CPU
/// backend sustains ~60 GFLOP/s on a 2-core AVX-512 machine (README, benchmarks), so 2e10 FLOP is
/// ~0.3 s of CPU work: the break-even against the fixed GPU start-up cost.
pub const AUTO_GPU_MIN_FLOPS: f64 = 2.0e10;

/// The backend a fit runs on, after resolution.
#[derive(Clone)]
pub enum Resolved {
    /// The CPU backend.
    Cpu,
    /// A GPU context (shared, cheap to clone).
    Gpu(Arc<GpuContext>),
}

impl Resolved {
    /// A short human-readable name ("cpu" or the adapter name and backend).
    pub fn describe(&self) -> String {
        match self {
            Resolved::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
            Resolved::Gpu(g) => g.describe(),
        }
    }
    /// True for the CPU backend.
    pub fn is_cpu(&self) -> bool {
        matches!(self, Resolved::Cpu)
    }
}

impl fmt::Debug for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.describe())
    }
}

/// One line of the device listing.
#[derive(Debug, Clone)]
pub struct DeviceListing {
    /// GPU adapters in index order (hardware first).
    pub adapters: Vec<AdapterSummary>,
    /// Threads of the CPU backend.
    pub cpu_threads: usize,
    /// Memory the CPU backend may use by default (bytes).
    pub cpu_memory: u64,
}

/// Lists every adapter wgpu can see, plus the CPU.
pub fn list_devices() -> DeviceListing {
    DeviceListing {
        adapters: gpu::enumerate(),
        cpu_threads: rayon::current_num_threads(),
        cpu_memory: memory::default_cpu_budget(),
    }
}

/// Resolves a request for a problem of `flops` floating-point operations in `dtype`.
///
/// * `cpu` → the CPU.
/// * `gpu…` → that adapter, or an error listing what exists; f64 on an adapter without
///   `SHADER_F64` is an error.
/// * `auto` → the first hardware adapter (never a software one) when `flops ≥`
///   [`AUTO_GPU_MIN_FLOPS`] and the dtype is supported; otherwise the CPU.
pub fn resolve(device: &Device, dtype: Dtype, flops: f64) -> Result<Resolved> {
    match device {
        Device::Cpu => Ok(Resolved::Cpu),
        Device::Auto => {
            if flops < AUTO_GPU_MIN_FLOPS {
                log::info!(
                    "auto: problem of {flops:.2e} FLOP is below the GPU crossover; using the CPU"
                );
                return Ok(Resolved::Cpu);
            }
            let adapters = gpu::enumerate();
            let pick = adapters
                .iter()
                .find(|a| !a.is_software && (dtype == Dtype::F32 || a.shader_f64));
            match pick {
                None => {
                    log::info!("auto: no hardware GPU adapter suitable for {dtype}; using the CPU");
                    Ok(Resolved::Cpu)
                }
                Some(a) => match GpuContext::shared(a.index) {
                    Ok(ctx) => Ok(Resolved::Gpu(ctx)),
                    Err(e) => {
                        log::warn!("auto: could not open {}: {e}; using the CPU", a.name);
                        Ok(Resolved::Cpu)
                    }
                },
            }
        }
        Device::Gpu(sel) => {
            let adapters = gpu::enumerate();
            let found = || {
                if adapters.is_empty() {
                    "no GPU adapter was found (is a Vulkan/Metal/DX12 driver installed?)"
                        .to_string()
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
            Ok(Resolved::Gpu(GpuContext::shared(a.index)?))
        }
    }
}

/// Runs `work` on `resolved`. When it fails with a device error (GPU validation error, device
/// loss, out of memory, unavailable device) and the request was `auto` on a GPU, logs a warning
/// and runs `work` again on the CPU. Returns the result and that warning, if any.
pub fn with_cpu_fallback<T>(
    requested: &Device,
    resolved: &Resolved,
    what: &str,
    work: impl Fn(&Resolved) -> Result<T>,
) -> Result<(T, Option<String>)> {
    match work(resolved) {
        Err(e) if e.is_device_error() && *requested == Device::Auto && !resolved.is_cpu() => {
            let warning = format!("GPU {what} failed ({e}); fell back to the CPU");
            log::warn!("{warning}");
            Ok((work(&Resolved::Cpu)?, Some(warning)))
        }
        r => r.map(|v| (v, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!("auto".parse::<Device>().unwrap(), Device::Auto);
        assert_eq!("CPU".parse::<Device>().unwrap(), Device::Cpu);
        assert_eq!(
            "gpu".parse::<Device>().unwrap(),
            Device::Gpu(GpuSelector::Any)
        );
        assert_eq!(
            "gpu:1".parse::<Device>().unwrap(),
            Device::Gpu(GpuSelector::Index(1))
        );
        assert_eq!(
            "gpu:LLVMpipe".parse::<Device>().unwrap(),
            Device::Gpu(GpuSelector::Name("LLVMpipe".into()))
        );
        assert!("tpu".parse::<Device>().is_err());
        assert!("gpu:".parse::<Device>().is_err());
    }

    #[test]
    fn display_round_trips() {
        for s in ["auto", "cpu", "gpu", "gpu:3", "gpu:nvidia"] {
            assert_eq!(s.parse::<Device>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn cpu_errors_are_not_retried() {
        let r = with_cpu_fallback(&Device::Auto, &Resolved::Cpu, "fit", |_| -> Result<()> {
            Err(Error::Gpu("boom".into()))
        });
        assert!(r.is_err());
    }

    #[test]
    fn small_auto_problem_uses_cpu() {
        assert!(resolve(&Device::Auto, Dtype::F64, 1e6).unwrap().is_cpu());
    }
}
