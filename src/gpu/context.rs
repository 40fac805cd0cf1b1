//! An open GPU: device, queue and the capture of its failures (validation errors, out of memory
//! and device loss become [`Error::Gpu`] values instead of panics). Buffers, pipelines and
//! timing live in their own modules as further `impl GpuContext` blocks.

use super::adapters::{instance, sorted_adapters, summary, AdapterSummary};
use super::params::KernelParams;
use super::pipelines::PipelineCache;
use super::profiler::Profiler;
use crate::device::memory;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Contexts opened so far, one per adapter index, shared by every fit in the process.
static SHARED: std::sync::OnceLock<Mutex<HashMap<usize, Arc<GpuContext>>>> =
    std::sync::OnceLock::new();

/// An open GPU.
pub struct GpuContext {
    /// The adapter this context runs on.
    pub info: AdapterSummary,
    /// The kernel constants of this adapter.
    pub params: KernelParams,
    pub(super) device: wgpu::Device,
    pub(super) queue: wgpu::Queue,
    errors: Arc<Mutex<Vec<String>>>,
    lost: Arc<Mutex<Option<String>>>,
    pub(super) pipelines: PipelineCache,
    pub(super) profiler: Mutex<Option<Profiler>>,
}

/// The whole message of a wgpu error on one line.
pub(super) fn describe_error(e: &wgpu::Error) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Locks a mutex, ignoring poisoning (the data are plain values).
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl GpuContext {
    /// Opens adapter `index` (as listed by [`super::enumerate`]).
    pub fn open(index: usize) -> Result<Self> {
        let start = std::time::Instant::now();
        let inst = instance();
        let adapters = sorted_adapters(&inst);
        let adapter = adapters.get(index).ok_or_else(|| {
            Error::DeviceUnavailable(format!("no GPU adapter with index {index}"))
        })?;
        let info = summary(index, adapter);
        let mut features = wgpu::Features::empty();
        if info.shader_f64 {
            features |= wgpu::Features::SHADER_F64;
        }
        if info.timestamp_query {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        let desc = wgpu::DeviceDescriptor {
            label: Some("neurofit"),
            required_features: features,
            required_limits: adapter.limits(),
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| Error::DeviceUnavailable(format!("{}: {e}", info.name)))?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let errs = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            lock(&errs).push(describe_error(&e));
        }));
        let lost = Arc::new(Mutex::new(None));
        let l2 = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            *lock(&l2) = Some(format!("{reason:?}: {msg}"));
        });
        Ok(GpuContext {
            params: KernelParams::for_adapter(info.is_software),
            info,
            device,
            queue,
            errors,
            lost,
            pipelines: PipelineCache::default(),
            profiler: Mutex::new(None),
        })
        .inspect(|c| super::trace::span("open", &c.info.name, start, 0))
    }

    /// The process-wide context of adapter `index`, opened on first use: device creation and
    /// pipeline compilation are paid once, not per fit. A context whose device was lost is
    /// replaced.
    pub fn shared(index: usize) -> Result<Arc<GpuContext>> {
        let map = SHARED.get_or_init(|| Mutex::new(HashMap::new()));
        let mut map = lock(map);
        if let Some(c) = map.get(&index) {
            if lock(&c.lost).is_none() {
                return Ok(c.clone());
            }
        }
        let c = Arc::new(GpuContext::open(index)?);
        map.insert(index, c.clone());
        Ok(c)
    }

    /// "gpu:N name (backend, type)".
    pub fn describe(&self) -> String {
        format!(
            "gpu:{} {} ({:?}, {:?})",
            self.info.index, self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// Whether kernels can use f64.
    pub fn has_f64(&self) -> bool {
        self.info.shader_f64
    }

    /// Default memory budget: 80 % of the device-local memory the platform reports (the Vulkan
    /// memory budget or heap size); where it reports nothing, 2 GiB on discrete GPUs and 1 GiB
    /// otherwise.
    pub fn default_budget(&self) -> u64 {
        match self.info.device_memory {
            Some(m) if m > 0 => m / 10 * 8,
            _ if self.info.device_type == wgpu::DeviceType::DiscreteGpu => {
                memory::DEFAULT_GPU_BUDGET_DISCRETE
            }
            _ => memory::DEFAULT_GPU_BUDGET_OTHER,
        }
    }

    /// Largest storage binding in bytes (also capped by `max_buffer_size`).
    pub fn max_binding(&self) -> u64 {
        self.info.max_binding.min(self.info.max_buffer)
    }

    /// Returns (and clears) errors reported since the last check, and device loss.
    pub fn check(&self, what: &str) -> Result<()> {
        if let Some(l) = lock(&self.lost).clone() {
            return Err(Error::Gpu(format!("device lost during {what}: {l}")));
        }
        let mut errs = lock(&self.errors);
        if !errs.is_empty() {
            let msg = errs.join("; ");
            errs.clear();
            return Err(Error::Gpu(format!("{what}: {msg}")));
        }
        Ok(())
    }

    /// A new command encoder.
    pub fn encoder(&self) -> wgpu::CommandEncoder {
        self.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor::default())
    }

    /// Submits `enc`, waits for it and checks for errors.
    pub fn submit(&self, enc: wgpu::CommandEncoder, what: &str) -> Result<()> {
        let start = std::time::Instant::now();
        let idx = self.queue.submit(Some(enc.finish()));
        self.wait(Some(idx), what)?;
        super::trace::span("submit", what, start, 0);
        self.resolve_timestamps()
    }

    pub(super) fn wait(&self, idx: Option<wgpu::SubmissionIndex>, what: &str) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: idx,
                timeout: Some(Duration::from_secs(600)),
            })
            .map_err(|e| Error::Gpu(format!("{what}: waiting for the GPU failed: {e}")))?;
        self.check(what)
    }
}
