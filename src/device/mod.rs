//! The device layer, at the bottom of the crate: what the user asked for ([`Device`]), the
//! `auto` crossover, how much memory a fit may use ([`memory`]) and how work is cut into chunks
//! that fit ([`planner`]). Resolving a request to a backend is [`crate::dispatch`]'s job.

pub mod memory;
pub mod planner;

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

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

/// The environment variable that sets the default device (`auto` when unset).
pub const DEVICE_ENV: &str = "NEUROFIT_DEVICE";

impl Device {
    /// The default device: [`DEVICE_ENV`] (`NEUROFIT_DEVICE`) when set and not empty, else
    /// `auto`. An unparsable value is an error naming the variable.
    pub fn from_env() -> Result<Device> {
        match std::env::var(DEVICE_ENV) {
            Ok(v) if !v.trim().is_empty() => v
                .parse()
                .map_err(|e: Error| Error::UnknownOption(format!("{DEVICE_ENV}: {e}"))),
            _ => Ok(Device::Auto),
        }
    }
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

/// Problems below this many floating-point operations **per CPU thread** run on the CPU under
/// `auto`, even when a hardware GPU exists ([`auto_gpu_min_flops`]): below it the adapter
/// start-up (~0.6 s measured on an H100 for instance, device and pipeline creation) and the
/// transfers cost more than the CPU needs for the whole fit, and the CPU's rate grows with its
/// threads. Measured (README, "On a hardware GPU"): an fc8-like fit (~3.3e11 FLOP by
/// `SelectedFit::flops`) took 0.83 s on 16 CPU threads against 1.45 s on the H100 in a fresh
/// process, a conv4-like one (~6.3e11) 1.90 against 1.88 s; on this project's 2-core machine the
/// CPU needs 4.6 s for fc8. 2.5e10 per thread puts the crossover at 5e10 FLOP with 2 threads
/// and 4e11 with 16.
pub const AUTO_GPU_MIN_FLOPS_PER_THREAD: f64 = 2.5e10;

/// The crossover of `auto` in this process: [`AUTO_GPU_MIN_FLOPS_PER_THREAD`] × the CPU
/// backend's threads.
pub fn auto_gpu_min_flops() -> f64 {
    AUTO_GPU_MIN_FLOPS_PER_THREAD * rayon::current_num_threads() as f64
}

/// GSN's shrinkage scorers run on the CPU under `auto` below this many of their FLOP (51
/// Cholesky factorisations, `2·levels·N³/3`) per CPU thread. The CPU scores every level from
/// one eigendecomposition and its rate grows with its threads; the GPU factors every level.
/// Measured (README, "On a hardware GPU"): an H100 was slower than 16 CPU threads at every N up
/// to 3000 (N = 1000: 0.96 vs 0.56 s; N = 2000: 3.6 vs 2.5 s; N = 3000: 9.9 vs 5.5 s, device
/// opening included) and about even with this 2-core machine at N = 1000. So the GPU is chosen
/// from N ≈ 1800 with 2 threads and N ≈ 3600 with 16.
pub const AUTO_GSN_GPU_MIN_FLOPS_PER_THREAD: f64 = 1.0e11;

/// The device GSN's scorers run on for `device` and a problem of `flops` (see
/// [`AUTO_GSN_GPU_MIN_FLOPS_PER_THREAD`]): `auto` becomes the CPU below the crossover; any other
/// request is kept.
pub fn gsn_device(device: &Device, flops: f64) -> Device {
    if *device == Device::Auto {
        let threads = rayon::current_num_threads() as f64;
        if flops < AUTO_GSN_GPU_MIN_FLOPS_PER_THREAD * threads {
            log::info!(
                "auto: GSN problem of {flops:.2e} FLOP is below the GPU crossover for {threads} CPU threads; using the CPU"
            );
            return Device::Cpu;
        }
    }
    device.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_auto_crossover_grows_with_the_cpu_threads() {
        let threads = rayon::current_num_threads() as f64;
        assert_eq!(
            auto_gpu_min_flops(),
            AUTO_GPU_MIN_FLOPS_PER_THREAD * threads
        );
        // fc8-like (n 1000, F 15000, 1000 units, k 500) stays on 16 threads' CPU, not on 2
        let fc8 = 1e3 * 1.5e4 * 1.5e4 + 4.0 * 1e3 * 1.5e4 * 1e3 + 1e3 * 501f64.powi(3) / 3.0;
        assert!(fc8 < AUTO_GPU_MIN_FLOPS_PER_THREAD * 16.0);
        assert!(fc8 > AUTO_GPU_MIN_FLOPS_PER_THREAD * 2.0);
    }

    #[test]
    fn gsn_auto_takes_the_gpu_only_past_the_per_thread_crossover() {
        let threads = rayon::current_num_threads() as f64;
        let at = AUTO_GSN_GPU_MIN_FLOPS_PER_THREAD * threads;
        assert_eq!(gsn_device(&Device::Auto, at * 0.99), Device::Cpu);
        assert_eq!(gsn_device(&Device::Auto, at), Device::Auto);
        // explicit requests are kept whatever the size
        let gpu: Device = "gpu:0".parse().unwrap();
        assert_eq!(gsn_device(&gpu, 1.0), gpu);
        assert_eq!(gsn_device(&Device::Cpu, 1e20), Device::Cpu);
        // N = 1000 with 51 levels stays on 2 threads' CPU; N = 2000 does not
        let flops = |n: f64| 2.0 * 51.0 * n.powi(3) / 3.0;
        assert!(flops(1000.0) < AUTO_GSN_GPU_MIN_FLOPS_PER_THREAD * 2.0);
        assert!(flops(2000.0) > AUTO_GSN_GPU_MIN_FLOPS_PER_THREAD * 2.0);
    }

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
}
