//! Files: `.npy` and `.npz` reading and writing ([`npy`], [`npz`]) and atomic output
//! ([`atomic`]). Inputs may be float64, float32, int64, int32, uint8 or bool arrays, either byte
//! order, C or Fortran order. Every header is validated (dtype, shape, and that the file really
//! holds that many bytes) before anything large is allocated, and the f64 copy a read makes is
//! checked against the memory budget first. `.npz` members may be stored or deflated
//! (`np.savez_compressed`); their CRC is verified and no member expands beyond the size its
//! header states.

pub mod atomic;
pub mod npy;
pub mod npz;

pub use atomic::{abandon_pending_writes, write_atomic};
pub use npz::{NpzMember, NpzReader};

use crate::device::memory;
use crate::error::{Error, Result};
use ndarray::ArrayD;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

/// A path as it appears in messages: control characters (a newline in a file name) are escaped
/// so that every error stays on one line.
pub fn shown(path: &Path) -> String {
    let s = path.display().to_string();
    if s.chars().any(char::is_control) {
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        s
    }
}

/// An [`Error::Io`] about `path`.
pub fn io_err(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::Io {
        path: shown(path),
        msg: msg.to_string().replace('\n', " "),
    }
}

/// Re-labels a format error from the `.npy` parser with the file it came from.
fn in_file(path: &Path, e: Error) -> Error {
    match e {
        Error::InvalidInput(m) => io_err(path, m),
        other => other,
    }
}

/// The error for an array whose f64 copy would not fit the budget.
pub fn over_budget(path: &Path, what: &str, shape: &[usize], bytes: u64, budget: u64) -> Error {
    Error::OutOfMemory(format!(
        "{}{what}: the array of shape {shape:?} needs {} as f64 but the memory budget is {}; raise --max-memory / max_memory",
        shown(path),
        memory::format_size(bytes),
        memory::format_size(budget)
    ))
}

/// Reads a `.npy` file as f64, refusing arrays whose f64 copy exceeds `budget` bytes.
pub fn read_npy_within(path: &Path, budget: u64) -> Result<ArrayD<f64>> {
    let f = File::open(path).map_err(|e| io_err(path, e))?;
    let len = f.metadata().map_err(|e| io_err(path, e))?.len();
    let mut r = BufReader::with_capacity(1 << 20, f);
    let h = npy::read_header(&mut r, len).map_err(|e| in_file(path, e))?;
    let need = h.len() as u64 * 8;
    if need > budget {
        return Err(over_budget(path, "", &h.shape, need, budget));
    }
    npy::read_f64(&mut r, &h).map_err(|e| in_file(path, e))
}

/// The element type of a `.npy` file, from its header alone.
pub fn npy_kind(path: &Path) -> Result<npy::Kind> {
    let f = File::open(path).map_err(|e| io_err(path, e))?;
    let len = f.metadata().map_err(|e| io_err(path, e))?.len();
    let mut r = BufReader::new(f);
    Ok(npy::read_header(&mut r, len)
        .map_err(|e| in_file(path, e))?
        .kind)
}

/// Reads a `.npy` file as f64 within the default CPU memory budget.
pub fn read_npy(path: &Path) -> Result<ArrayD<f64>> {
    read_npy_within(path, memory::default_cpu_budget())
}

/// An array that can be written as `.npy`.
pub trait WriteNpy {
    /// Writes `self` to `w`.
    fn write_npy_to<W: std::io::Write>(&self, w: &mut W) -> std::io::Result<()>;
}

impl<T: npy::Element> WriteNpy for ArrayD<T> {
    fn write_npy_to<W: std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        npy::write(w, self)
    }
}

/// Writes one array as `.npy`, atomically.
pub fn write_npy<A: WriteNpy>(path: &Path, a: &A) -> Result<()> {
    write_atomic(path, |w| a.write_npy_to(w).map_err(|e| io_err(path, e)))
}
