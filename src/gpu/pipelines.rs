//! Compiled pipelines (one per shader, entry point and precision pair, compiled once per
//! context) and recording dispatches, with validation errors captured as [`Error::Gpu`].

use super::context::{describe_error, lock, GpuContext};
use crate::error::{Error, Result};
use crate::Dtype;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// A pipeline once compiled (or the compiler's error), shared by every thread that asks.
type Slot = Arc<OnceLock<std::result::Result<Arc<wgpu::ComputePipeline>, String>>>;

/// The pipelines compiled so far, or being compiled: a thread asking for one that another
/// thread is compiling waits for that compilation instead of repeating it.
#[derive(Default)]
pub struct PipelineCache {
    map: Mutex<HashMap<String, Slot>>,
    /// Compilations run (each pipeline once, however many threads asked for it).
    compiled: AtomicUsize,
}

/// One pipeline to compile: shader, entry point, storage and solve precision.
pub type PipelineKey = (Shader, &'static str, Dtype, Dtype);

/// A WGSL source and the name it is cached under.
#[derive(Clone, Copy)]
pub struct Shader {
    /// Cache and label name.
    pub name: &'static str,
    /// The WGSL text (without the prelude).
    pub source: &'static str,
}

/// The name a pipeline is cached and labelled under.
fn cache_key(shader: Shader, entry: &str, real: Dtype, sreal: Dtype) -> String {
    format!("{}/{entry}/{real}/{sreal}", shader.name)
}

impl GpuContext {
    /// Compiles (once) and returns the pipeline of `entry` in `shader` with storage precision
    /// `real` and solve precision `sreal`.
    pub fn pipeline(
        &self,
        shader: Shader,
        entry: &str,
        real: Dtype,
        sreal: Dtype,
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        let key = cache_key(shader, entry, real, sreal);
        let slot = lock(&self.pipelines.map)
            .entry(key.clone())
            .or_default()
            .clone();
        slot.get_or_init(|| self.compile(shader, entry, (real, sreal), &key))
            .clone()
            .map_err(Error::Gpu)
    }

    /// Compiles `key`'s pipeline (validation errors captured in this thread's error scope).
    fn compile(
        &self,
        shader: Shader,
        entry: &str,
        (real, sreal): (Dtype, Dtype),
        key: &str,
    ) -> std::result::Result<Arc<wgpu::ComputePipeline>, String> {
        let start = std::time::Instant::now();
        self.pipelines.compiled.fetch_add(1, Ordering::Relaxed);
        let code = format!("{}{}", self.params.prelude(real, sreal), shader.source);
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(shader.name),
                source: wgpu::ShaderSource::Wgsl(code.into()),
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(key),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(format!("compiling {key}: {}", describe_error(&e)));
        }
        super::trace::span("compile", key, start, 0);
        Ok(Arc::new(pipeline))
    }

    /// How many pipeline compilations this context has run.
    pub fn compiled_pipelines(&self) -> usize {
        self.pipelines.compiled.load(Ordering::Relaxed)
    }

    /// Starts compiling `keys` on background threads, one each, and returns at once: a fit
    /// that will need them overlaps their compilation (each 15–200 ms on an H100's driver,
    /// ~0.45 s for the selection path's ten one after another) with its uploads and with each
    /// other. A pipeline asked for while its compilation runs waits for it; an error reaches
    /// whoever asks for that pipeline.
    pub fn precompile(self: &Arc<Self>, keys: Vec<PipelineKey>) {
        for (shader, entry, real, sreal) in keys {
            if lock(&self.pipelines.map).contains_key(&cache_key(shader, entry, real, sreal)) {
                continue;
            }
            let ctx = self.clone();
            let spawned = std::thread::Builder::new()
                .name("neurofit-compile".into())
                .spawn(move || {
                    let _ = ctx.pipeline(shader, entry, real, sreal);
                });
            // without a thread the pipeline is compiled when first asked for
            drop(spawned);
        }
    }

    /// Records one dispatch of `pipeline` with `bindings` (binding number, buffer).
    pub fn dispatch(
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
        let mut prof = lock(&self.profiler);
        let timestamp_writes = prof.as_mut().and_then(|p| p.next_pass());
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
}
