//! Compiled pipelines (one per shader, entry point and precision pair, compiled once per
//! context) and recording dispatches, with validation errors captured as [`Error::Gpu`].

use super::context::{describe_error, lock, GpuContext};
use crate::error::{Error, Result};
use crate::Dtype;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The pipelines compiled so far.
#[derive(Default)]
pub struct PipelineCache {
    map: Mutex<HashMap<String, Arc<wgpu::ComputePipeline>>>,
}

/// A WGSL source and the name it is cached under.
#[derive(Clone, Copy)]
pub struct Shader {
    /// Cache and label name.
    pub name: &'static str,
    /// The WGSL text (without the prelude).
    pub source: &'static str,
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
        let key = format!("{}/{entry}/{real}/{sreal}", shader.name);
        if let Some(p) = lock(&self.pipelines.map).get(&key) {
            return Ok(p.clone());
        }
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
        lock(&self.pipelines.map).insert(key, p.clone());
        Ok(p)
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
