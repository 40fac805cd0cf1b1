//! GPU kernel timing with timestamp queries (for `neurofit bench`): each compute pass writes a
//! begin and an end timestamp; at every submit the pass durations are summed. wgpu-profiler was
//! considered: it scopes nested regions for a frame profiler, while this needs one sum over
//! many submits, which these ~80 lines give without another dependency.

use super::context::{lock, GpuContext};
use crate::error::Result;

/// Timestamp capacity of the query set (wgpu's maximum): 2048 passes per submit.
const TIMESTAMP_QUERIES: u32 = 4096;

/// The timing state of a context.
pub struct Profiler {
    queries: wgpu::QuerySet,
    next: u32,
    passes: u64,
    total_ns: f64,
    overflow: bool,
}

impl Profiler {
    /// The timestamp writes of the next compute pass (`None` once the set is full).
    pub fn next_pass(&mut self) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        if self.next + 2 > TIMESTAMP_QUERIES {
            self.overflow = true;
            return None;
        }
        self.next += 2;
        self.passes += 1;
        Some(wgpu::ComputePassTimestampWrites {
            query_set: &self.queries,
            beginning_of_pass_write_index: Some(self.next - 2),
            end_of_pass_write_index: Some(self.next - 1),
        })
    }
}

impl GpuContext {
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
        *lock(&self.profiler) = Some(Profiler {
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
        let p = lock(&self.profiler).take()?;
        (!p.overflow && p.passes > 0).then_some(p.total_ns * 1e-9)
    }

    /// Resolves the timestamps written since the last call and adds their durations.
    pub(super) fn resolve_timestamps(&self) -> Result<()> {
        let mut guard = lock(&self.profiler);
        let Some(prof) = guard.as_mut() else {
            return Ok(());
        };
        if prof.next == 0 {
            return Ok(());
        }
        let count = prof.next;
        let resolve = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamp resolve"),
            size: (count as u64 * 8).div_ceil(256) * 256,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let mut enc = self.encoder();
        enc.resolve_query_set(&prof.queries, 0..count, &resolve, 0);
        prof.next = 0;
        let period = self.queue.get_timestamp_period() as f64;
        // the pending list is reset before reading, so the read's own submit resolves nothing
        let taken = guard.take();
        drop(guard);
        let buf = super::buffers::DevBuf {
            buf: resolve,
            len: count as usize * 2,
            elem: 4,
        };
        let bytes = self.submit_and_read(enc, &[&buf], "timestamps");
        let mut guard = lock(&self.profiler);
        *guard = taken;
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes?[0]);
        let ns: f64 = ticks
            .chunks(2)
            .map(|c| c[1].saturating_sub(c[0]) as f64 * period)
            .sum();
        if let Some(p) = guard.as_mut() {
            p.total_ns += ns;
        }
        Ok(())
    }
}
