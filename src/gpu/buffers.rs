//! Device buffers: upload, allocation with out-of-memory capture, and read-back. A chunk's
//! results are copied to one staging buffer in the same command encoder as its kernels, so a
//! chunk costs one submit and one map.

use super::context::{describe_error, GpuContext};
use crate::error::{Error, Result};
use crate::Dtype;
use std::time::Duration;
use wgpu::util::DeviceExt;

/// A device buffer with its element type and length.
pub struct DevBuf {
    /// The wgpu buffer.
    pub buf: wgpu::Buffer,
    /// Number of elements.
    pub len: usize,
    /// Bytes per element.
    pub elem: u64,
}

impl DevBuf {
    /// Bytes of data (without padding).
    pub fn bytes(&self) -> u64 {
        self.len as u64 * self.elem
    }
}

const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Converts read-back bytes of `elem`-byte floats to f64.
pub fn floats(bytes: &[u8], elem: u64) -> Vec<f64> {
    match elem {
        8 => bytemuck::pod_collect_to_vec::<u8, f64>(bytes),
        _ => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect(),
    }
}

/// Converts read-back bytes to u32 values.
pub fn words(bytes: &[u8]) -> Vec<u32> {
    bytemuck::pod_collect_to_vec::<u8, u32>(bytes)
}

impl GpuContext {
    fn alloc_checked(&self, bytes: u64, what: &str) -> Result<()> {
        if bytes > self.info.max_buffer {
            return Err(Error::OutOfMemory(format!(
                "{what}: {bytes} bytes exceed the adapter's max_buffer_size of {} bytes",
                self.info.max_buffer
            )));
        }
        Ok(())
    }

    fn create_init(&self, bytes: &[u8], len: usize, elem: u64, what: &str) -> Result<DevBuf> {
        let start = std::time::Instant::now();
        self.alloc_checked(bytes.len() as u64, what)?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let contents: &[u8] = if bytes.is_empty() { &[0u8; 8] } else { bytes };
        let buf = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(what),
                contents,
                usage: USAGE,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::OutOfMemory(format!(
                "{what}: {}",
                describe_error(&e)
            )));
        }
        super::trace::span("upload", what, start, bytes.len() as u64);
        Ok(DevBuf { buf, len, elem })
    }

    /// Uploads f64 host data as `dtype` elements into a storage buffer.
    pub fn upload(&self, data: &[f64], dtype: Dtype, what: &str) -> Result<DevBuf> {
        match dtype {
            Dtype::F64 => self.create_init(bytemuck::cast_slice(data), data.len(), 8, what),
            Dtype::F32 => {
                let v: Vec<f32> = data.iter().map(|&x| x as f32).collect();
                self.create_init(bytemuck::cast_slice(&v), data.len(), 4, what)
            }
        }
    }

    /// Uploads a matrix in row-major order, optionally with a column of ones appended; copies on
    /// the host only when the view is not already contiguous in that order or a column is added.
    pub fn upload_matrix(
        &self,
        a: ndarray::ArrayView2<f64>,
        bias: bool,
        dtype: Dtype,
        what: &str,
    ) -> Result<DevBuf> {
        if !bias {
            if let Some(s) = a.as_slice() {
                return self.upload(s, dtype, what);
            }
        }
        let mut v = Vec::with_capacity(a.nrows() * (a.ncols() + usize::from(bias)));
        for row in a.outer_iter() {
            v.extend(row.iter());
            if bias {
                v.push(1.0);
            }
        }
        self.upload(&v, dtype, what)
    }

    /// Uploads u32 data.
    pub fn upload_u32(&self, data: &[u32], what: &str) -> Result<DevBuf> {
        self.create_init(bytemuck::cast_slice(data), data.len(), 4, what)
    }

    /// A zero-filled storage buffer of `len` elements of `elem` bytes.
    pub fn zeros(&self, len: usize, elem: u64, what: &str) -> Result<DevBuf> {
        let start = std::time::Instant::now();
        let bytes = (len as u64 * elem).max(8);
        self.alloc_checked(bytes, what)?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size: bytes.div_ceil(4) * 4,
            usage: USAGE,
            mapped_at_creation: false,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::OutOfMemory(format!(
                "{what}: {}",
                describe_error(&e)
            )));
        }
        super::trace::span("create", what, start, bytes);
        Ok(DevBuf { buf, len, elem })
    }

    /// A device-side copy of `src` (no host round trip), recorded into `enc`.
    pub fn copy_of(
        &self,
        enc: &mut wgpu::CommandEncoder,
        src: &DevBuf,
        what: &str,
    ) -> Result<DevBuf> {
        let dst = self.zeros(src.len, src.elem, what)?;
        enc.copy_buffer_to_buffer(&src.buf, 0, &dst.buf, 0, src.bytes().div_ceil(4) * 4);
        Ok(dst)
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

    /// Appends copies of `srcs` to `enc`, submits it, waits, and returns each buffer's bytes:
    /// the kernels and the read-back of one chunk in a single submit.
    pub fn submit_and_read(
        &self,
        mut enc: wgpu::CommandEncoder,
        srcs: &[&DevBuf],
        what: &str,
    ) -> Result<Vec<Vec<u8>>> {
        let start = std::time::Instant::now();
        let sizes: Vec<u64> = srcs.iter().map(|b| b.bytes().div_ceil(4) * 4).collect();
        let total: u64 = sizes.iter().sum();
        if total == 0 {
            self.submit(enc, what)?;
            return Ok(srcs.iter().map(|_| Vec::new()).collect());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("staging"),
            size: total,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut off = 0;
        for (b, &s) in srcs.iter().zip(&sizes) {
            if s > 0 {
                enc.copy_buffer_to_buffer(&b.buf, 0, &staging, off, s);
            }
            off += s;
        }
        let idx = self.queue.submit(Some(enc.finish()));
        let slice = staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait(Some(idx), what)?;
        super::trace::span("wait", what, start, 0);
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Error::Gpu(format!("{what}: mapping failed: {e}"))),
            Err(_) => return Err(Error::Gpu(format!("{what}: mapping timed out"))),
        }
        let data = slice
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("{what}: {e}")))?;
        let mut out = Vec::with_capacity(srcs.len());
        let mut off = 0usize;
        for (b, &s) in srcs.iter().zip(&sizes) {
            out.push(data[off..off + b.bytes() as usize].to_vec());
            off += s as usize;
        }
        drop(data);
        staging.unmap();
        self.resolve_timestamps()?;
        super::trace::span("read", what, start, total);
        Ok(out)
    }

    /// Reads one buffer back as f64 values (its own submit).
    pub fn download(&self, src: &DevBuf, what: &str) -> Result<Vec<f64>> {
        let mut v = self.submit_and_read(self.encoder(), &[src], what)?;
        Ok(floats(&v.remove(0), src.elem))
    }
}
