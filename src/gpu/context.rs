//! Adapter discovery and the GPU context: device creation, error capture (validation errors,
//! out-of-memory and device loss become [`Error::Gpu`] values instead of panics), buffer
//! upload/download and a pipeline cache.

use crate::device::memory;
use crate::error::{Error, Result};
use crate::Dtype;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wgpu::util::DeviceExt;

/// What `neurofit devices` prints about one adapter.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    /// Index used by `gpu:N`.
    pub index: usize,
    /// Adapter name as the driver reports it.
    pub name: String,
    /// Graphics API backend.
    pub backend: wgpu::Backend,
    /// Discrete, integrated, virtual, CPU (software) or other.
    pub device_type: wgpu::DeviceType,
    /// Driver name and version.
    pub driver: String,
    /// Whether WGSL f64 is available (`SHADER_F64`).
    pub shader_f64: bool,
    /// Whether timestamp queries are available.
    pub timestamp_query: bool,
    /// A software rasteriser (llvmpipe/lavapipe, SwiftShader, WARP): never picked by `auto`.
    pub is_software: bool,
    /// `max_storage_buffer_binding_size`.
    pub max_binding: u64,
    /// `max_buffer_size`.
    pub max_buffer: u64,
}

fn is_software(info: &wgpu::AdapterInfo) -> bool {
    let n = info.name.to_lowercase();
    info.device_type == wgpu::DeviceType::Cpu
        || [
            "llvmpipe",
            "lavapipe",
            "swiftshader",
            "basic render",
            "warp",
            "softpipe",
        ]
        .iter()
        .any(|s| n.contains(s))
}

/// The whole message of a wgpu error (its Display already includes the cause chain), on one line.
fn describe_error(e: &wgpu::Error) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

fn sorted_adapters(inst: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    let mut adapters = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()));
    adapters.sort_by_key(|a| {
        let info = a.get_info();
        (
            is_software(&info),
            info.backend == wgpu::Backend::Gl,
            !a.features().contains(wgpu::Features::SHADER_F64),
        )
    });
    adapters
}

fn summary(index: usize, a: &wgpu::Adapter) -> AdapterSummary {
    let info = a.get_info();
    let limits = a.limits();
    let features = a.features();
    AdapterSummary {
        index,
        name: info.name.clone(),
        backend: info.backend,
        device_type: info.device_type,
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
        shader_f64: features.contains(wgpu::Features::SHADER_F64),
        timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
        is_software: is_software(&info),
        max_binding: limits.max_storage_buffer_binding_size,
        max_buffer: limits.max_buffer_size,
    }
}

/// Every adapter wgpu finds: hardware before software, Vulkan/Metal/DX12 before GL.
pub fn enumerate() -> Vec<AdapterSummary> {
    let inst = instance();
    sorted_adapters(&inst)
        .iter()
        .enumerate()
        .map(|(i, a)| summary(i, a))
        .collect()
}

/// Timestamp capacity of the profiler's query set (wgpu's maximum): 2048 passes per submit.
const TIMESTAMP_QUERIES: u32 = 4096;

/// GPU kernel timing with timestamp queries: each compute pass writes a begin and an end
/// timestamp; at every submit the pass durations are summed.
struct Profiler {
    queries: wgpu::QuerySet,
    next: u32,
    passes: u64,
    total_ns: f64,
    overflow: bool,
}

/// Contexts opened so far, one per adapter index, shared by every fit in the process.
static SHARED: std::sync::OnceLock<Mutex<HashMap<usize, Arc<GpuContext>>>> =
    std::sync::OnceLock::new();

/// An open GPU: device, queue, captured errors and cached pipelines.
pub struct GpuContext {
    /// The adapter this context runs on.
    pub info: AdapterSummary,
    device: wgpu::Device,
    queue: wgpu::Queue,
    errors: Arc<Mutex<Vec<String>>>,
    lost: Arc<Mutex<Option<String>>>,
    pipelines: Mutex<HashMap<String, Arc<wgpu::ComputePipeline>>>,
    profiler: Mutex<Option<Profiler>>,
}

/// A device buffer with its element type and length.
pub struct DevBuf {
    /// The wgpu buffer.
    pub buf: wgpu::Buffer,
    /// Number of elements.
    pub len: usize,
    /// Bytes per element.
    pub elem: u64,
}

impl GpuContext {
    /// Opens adapter `index` (as listed by [`enumerate`]).
    pub fn open(index: usize) -> Result<Self> {
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
            errs.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(e.to_string());
        }));
        let lost = Arc::new(Mutex::new(None));
        let l2 = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            *l2.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{reason:?}: {msg}"));
        });
        Ok(GpuContext {
            info,
            device,
            queue,
            errors,
            lost,
            pipelines: Mutex::new(HashMap::new()),
            profiler: Mutex::new(None),
        })
    }

    /// The process-wide context of adapter `index`, opened on first use: device creation and
    /// pipeline compilation are paid once, not per fit. A context whose device was lost is
    /// replaced.
    pub fn shared(index: usize) -> Result<Arc<GpuContext>> {
        let map = SHARED.get_or_init(|| Mutex::new(HashMap::new()));
        let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(&index) {
            if c.lost.lock().unwrap_or_else(|p| p.into_inner()).is_none() {
                return Ok(c.clone());
            }
        }
        let c = Arc::new(GpuContext::open(index)?);
        map.insert(index, c.clone());
        Ok(c)
    }

    /// Starts summing kernel time from timestamp queries (no-op without `TIMESTAMP_QUERY`).
    pub fn start_kernel_timing(&self) {
        if !self.info.timestamp_query {
            return;
        }
        let queries = self.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("kernel timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: TIMESTAMP_QUERIES,
        });
        *self.profiler.lock().unwrap_or_else(|p| p.into_inner()) = Some(Profiler {
            queries,
            next: 0,
            passes: 0,
            total_ns: 0.0,
            overflow: false,
        });
    }

    /// Stops timing and returns the summed kernel time in seconds, or `None` without timestamp
    /// support or when a submit had more passes than the query set holds.
    pub fn stop_kernel_timing(&self) -> Option<f64> {
        let p = self
            .profiler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        (!p.overflow && p.passes > 0).then_some(p.total_ns * 1e-9)
    }

    fn resolve_timestamps(&self) -> Result<()> {
        let mut guard = self.profiler.lock().unwrap_or_else(|p| p.into_inner());
        let Some(prof) = guard.as_mut() else {
            return Ok(());
        };
        if prof.next == 0 {
            return Ok(());
        }
        let count = prof.next;
        let bytes = (count as u64 * 8).div_ceil(256) * 256;
        let resolve = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamp resolve"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let mut enc = self.encoder();
        enc.resolve_query_set(&prof.queries, 0..count, &resolve, 0);
        self.queue.submit(Some(enc.finish()));
        prof.next = 0;
        let period = self.queue.get_timestamp_period() as f64;
        drop(guard);
        let ticks: Vec<u64> = self.read_back(&resolve, count as u64 * 8, "timestamps", |raw| {
            bytemuck::pod_collect_to_vec(raw)
        })?;
        let ns: f64 = ticks
            .chunks(2)
            .map(|c| c[1].saturating_sub(c[0]) as f64 * period)
            .sum();
        if let Some(prof) = self
            .profiler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            prof.total_ns += ns;
        }
        Ok(())
    }

    /// "name (backend, type)".
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

    /// Default memory budget: 2 GiB on discrete GPUs, 1 GiB otherwise (wgpu exposes no
    /// free-memory query), never above `max_buffer_size` × 8.
    pub fn default_budget(&self) -> u64 {
        let base = if self.info.device_type == wgpu::DeviceType::DiscreteGpu {
            memory::DEFAULT_GPU_BUDGET_DISCRETE
        } else {
            memory::DEFAULT_GPU_BUDGET_OTHER
        };
        base.min(self.info.max_buffer.saturating_mul(8))
    }

    /// Largest storage binding in bytes (also capped by `max_buffer_size`).
    pub fn max_binding(&self) -> u64 {
        self.info.max_binding.min(self.info.max_buffer)
    }

    /// Returns (and clears) errors reported since the last check, and device loss.
    pub fn check(&self, what: &str) -> Result<()> {
        if let Some(l) = self.lost.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(Error::Gpu(format!("device lost during {what}: {l}")));
        }
        let mut errs = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if !errs.is_empty() {
            let msg = errs.join("; ");
            errs.clear();
            return Err(Error::Gpu(format!("{what}: {msg}")));
        }
        Ok(())
    }

    /// Compiles (once) and returns the pipeline of `entry` in `source` with the given
    /// precisions. Validation errors become [`Error::Gpu`].
    pub fn pipeline(
        &self,
        name: &str,
        source: &str,
        entry: &str,
        real: Dtype,
        sreal: Dtype,
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        let key = format!("{name}/{entry}/{real}/{sreal}");
        if let Some(p) = self
            .pipelines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(p.clone());
        }
        let ty = |d: Dtype| if d == Dtype::F64 { "f64" } else { "f32" };
        let code = format!(
            "alias real = {};\nalias sreal = {};\n{source}",
            ty(real),
            ty(sreal)
        );
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(code.into()),
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&key),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!(
                "compiling {key}: {}",
                describe_error(&e)
            )));
        }
        let p = Arc::new(pipeline);
        self.pipelines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, p.clone());
        Ok(p)
    }

    fn alloc_checked(&self, bytes: u64, what: &str) -> Result<()> {
        if bytes > self.info.max_buffer {
            return Err(Error::OutOfMemory(format!(
                "{what}: {bytes} bytes exceed the adapter's max_buffer_size of {} bytes",
                self.info.max_buffer
            )));
        }
        Ok(())
    }

    /// Uploads f64 host data as `dtype` elements into a storage buffer.
    pub fn upload(&self, data: &[f64], dtype: Dtype, what: &str) -> Result<DevBuf> {
        match dtype {
            Dtype::F64 => self.upload_bytes(bytemuck::cast_slice(data), data.len(), 8, what),
            Dtype::F32 => {
                let v: Vec<f32> = data.iter().map(|&x| x as f32).collect();
                self.upload_bytes(bytemuck::cast_slice(&v), data.len(), 4, what)
            }
        }
    }

    /// Uploads a matrix in row-major order; copies on the host only when the view is not already
    /// contiguous in that order.
    pub fn upload_matrix(
        &self,
        a: ndarray::ArrayView2<f64>,
        dtype: Dtype,
        what: &str,
    ) -> Result<DevBuf> {
        match a.as_slice() {
            Some(s) => self.upload(s, dtype, what),
            None => self.upload(&a.iter().copied().collect::<Vec<f64>>(), dtype, what),
        }
    }

    /// Uploads u32 data.
    pub fn upload_u32(&self, data: &[u32], what: &str) -> Result<DevBuf> {
        self.upload_bytes(bytemuck::cast_slice(data), data.len(), 4, what)
    }

    fn upload_bytes(&self, bytes: &[u8], len: usize, elem: u64, what: &str) -> Result<DevBuf> {
        self.alloc_checked(bytes.len() as u64, what)?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let contents: &[u8] = if bytes.is_empty() { &[0u8; 8] } else { bytes };
        let buf = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(what),
                contents,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::OutOfMemory(format!(
                "{what}: {}",
                describe_error(&e)
            )));
        }
        Ok(DevBuf { buf, len, elem })
    }

    /// A zero-filled storage buffer of `len` elements of `elem` bytes.
    pub fn zeros(&self, len: usize, elem: u64, what: &str) -> Result<DevBuf> {
        let bytes = (len as u64 * elem).max(8);
        self.alloc_checked(bytes, what)?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size: bytes.div_ceil(4) * 4,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::OutOfMemory(format!(
                "{what}: {}",
                describe_error(&e)
            )));
        }
        Ok(DevBuf { buf, len, elem })
    }

    /// A uniform buffer holding `data`.
    pub fn uniform<T: bytemuck::Pod>(&self, data: &T) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytemuck::bytes_of(data),
                usage: wgpu::BufferUsages::UNIFORM,
            })
    }

    /// Records one dispatch of `pipeline` with `bindings` (binding i = bindings[i]).
    pub fn dispatch(
        &self,
        enc: &mut wgpu::CommandEncoder,
        pipeline: &wgpu::ComputePipeline,
        bindings: &[&wgpu::Buffer],
        groups: (u32, u32, u32),
    ) -> Result<()> {
        let indexed: Vec<(u32, &wgpu::Buffer)> = bindings
            .iter()
            .enumerate()
            .map(|(i, b)| (i as u32, *b))
            .collect();
        self.dispatch_indexed(enc, pipeline, &indexed, groups)
    }

    /// Like [`GpuContext::dispatch`] with explicit binding numbers (for entry points that use a
    /// subset of a shader's bindings).
    pub fn dispatch_indexed(
        &self,
        enc: &mut wgpu::CommandEncoder,
        pipeline: &wgpu::ComputePipeline,
        bindings: &[(u32, &wgpu::Buffer)],
        groups: (u32, u32, u32),
    ) -> Result<()> {
        let layout = pipeline.get_bind_group_layout(0);
        let entries: Vec<wgpu::BindGroupEntry> = bindings
            .iter()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: *i,
                resource: b.as_entire_binding(),
            })
            .collect();
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &layout,
            entries: &entries,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("bind group: {}", describe_error(&e))));
        }
        let mut prof = self.profiler.lock().unwrap_or_else(|p| p.into_inner());
        let timestamp_writes = match prof.as_mut() {
            Some(p) if p.next + 2 <= TIMESTAMP_QUERIES => {
                p.next += 2;
                p.passes += 1;
                Some(wgpu::ComputePassTimestampWrites {
                    query_set: &p.queries,
                    beginning_of_pass_write_index: Some(p.next - 2),
                    end_of_pass_write_index: Some(p.next - 1),
                })
            }
            Some(p) => {
                p.overflow = true;
                None
            }
            None => None,
        };
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: None,
            timestamp_writes,
        });
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &bg, &[]);
        pass.dispatch_workgroups(groups.0, groups.1, groups.2);
        drop(pass);
        drop(prof);
        Ok(())
    }

    /// A new command encoder.
    pub fn encoder(&self) -> wgpu::CommandEncoder {
        self.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor::default())
    }

    /// Submits `enc`, waits for it and checks for errors.
    pub fn submit(&self, enc: wgpu::CommandEncoder, what: &str) -> Result<()> {
        let idx = self.queue.submit(Some(enc.finish()));
        self.wait(Some(idx), what)?;
        self.resolve_timestamps()
    }

    fn wait(&self, idx: Option<wgpu::SubmissionIndex>, what: &str) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: idx,
                timeout: Some(Duration::from_secs(600)),
            })
            .map_err(|e| Error::Gpu(format!("{what}: waiting for the GPU failed: {e}")))?;
        self.check(what)
    }

    /// Copies `src` back to the host as f64 values.
    pub fn download(&self, src: &DevBuf, what: &str) -> Result<Vec<f64>> {
        let elem = src.elem;
        if elem != 4 && elem != 8 {
            return Err(Error::Gpu(format!("{what}: unexpected element size")));
        }
        self.read_back(&src.buf, src.len as u64 * elem, what, |bytes| match elem {
            8 => bytemuck::pod_collect_to_vec::<u8, f64>(bytes),
            _ => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect(),
        })
    }

    /// Copies a u32 buffer back to the host.
    pub fn download_u32(&self, src: &DevBuf, what: &str) -> Result<Vec<u32>> {
        self.read_back(&src.buf, src.len as u64 * 4, what, |bytes| {
            bytemuck::pod_collect_to_vec::<u8, u32>(bytes)
        })
    }

    /// Copies the first `bytes` of `src` into a staging buffer, maps it and hands the mapped
    /// bytes to `convert` (no intermediate host copy).
    fn read_back<T>(
        &self,
        src: &wgpu::Buffer,
        bytes: u64,
        what: &str,
        convert: impl FnOnce(&[u8]) -> T,
    ) -> Result<T> {
        if bytes == 0 {
            return Ok(convert(&[]));
        }
        let size = bytes.div_ceil(4) * 4;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("staging"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.encoder();
        enc.copy_buffer_to_buffer(src, 0, &staging, 0, size);
        let idx = self.queue.submit(Some(enc.finish()));
        let slice = staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait(Some(idx), what)?;
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Error::Gpu(format!("{what}: mapping failed: {e}"))),
            Err(_) => return Err(Error::Gpu(format!("{what}: mapping timed out"))),
        }
        let data = slice
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("{what}: {e}")))?;
        let out = convert(&data[..bytes as usize]);
        drop(data);
        staging.unmap();
        Ok(out)
    }
}
