//! Where a fit's targets Y come from, one chunk of flat units at a time: an array in memory
//! ([`FlatTargets`]) or a `.npy` file read by ranged reads ([`NpyTargets`]), so that a Y larger
//! than the memory budget is never held whole. Units are flattened in Fortran order over the unit
//! axes, as the reference does: flat unit `j = i1 + s1·i2 + s1·s2·i3 + …`.

use crate::error::{Error, Result};
use crate::io::{self, npy};
use ndarray::{s, Array2, ArrayView2};
use rayon::prelude::*;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A source of targets, read by ranges of flat units.
pub trait Targets: Sync {
    /// Samples (rows).
    fn rows(&self) -> usize;
    /// Shape of the unit axes.
    fn unit_shape(&self) -> &[usize];
    /// Number of flat units.
    fn units(&self) -> usize {
        self.unit_shape().iter().product()
    }
    /// Flat units `range` as a `rows × range.len()` f64 matrix.
    fn read(&self, range: Range<usize>) -> Result<Array2<f64>>;
    /// Bytes this source keeps in memory for the whole fit.
    fn resident_bytes(&self) -> u64;
}

/// Targets already flattened in memory (`n × U`).
pub struct FlatTargets<'a> {
    y: ArrayView2<'a, f64>,
    unit_shape: Vec<usize>,
}

impl<'a> FlatTargets<'a> {
    /// Wraps a flattened `n × U` view whose units have `unit_shape`.
    pub fn new(y: ArrayView2<'a, f64>, unit_shape: &[usize]) -> Self {
        FlatTargets {
            y,
            unit_shape: unit_shape.to_vec(),
        }
    }
}

impl Targets for FlatTargets<'_> {
    fn rows(&self) -> usize {
        self.y.nrows()
    }
    fn unit_shape(&self) -> &[usize] {
        &self.unit_shape
    }
    fn read(&self, range: Range<usize>) -> Result<Array2<f64>> {
        Ok(self.y.slice(s![.., range]).to_owned())
    }
    fn resident_bytes(&self) -> u64 {
        self.y.len() as u64 * 8
    }
}

/// Targets in a `.npy` file (`n × s1 × … × sk`, any supported dtype, C or Fortran order), read
/// with positioned reads chunk by chunk: only the chunk being fitted is in memory.
pub struct NpyTargets {
    file: File,
    path: PathBuf,
    header: npy::Header,
    decode: fn(&[u8]) -> f64,
}

fn decoder(kind: npy::Kind, big_endian: bool) -> Result<fn(&[u8]) -> f64> {
    macro_rules! dec {
        ($t:ty, $n:expr) => {
            if big_endian {
                |b: &[u8]| <$t>::from_be_bytes(b[..$n].try_into().expect("element")) as f64
            } else {
                |b: &[u8]| <$t>::from_le_bytes(b[..$n].try_into().expect("element")) as f64
            }
        };
    }
    Ok(match kind {
        npy::Kind::F64 => dec!(f64, 8),
        npy::Kind::F32 => dec!(f32, 4),
        npy::Kind::I64 => dec!(i64, 8),
        npy::Kind::I32 => dec!(i32, 4),
        npy::Kind::U32 => dec!(u32, 4),
        npy::Kind::U8 | npy::Kind::Bool => |b: &[u8]| b[0] as f64,
        npy::Kind::F16 => {
            if big_endian {
                |b: &[u8]| half::f16::from_bits(u16::from_be_bytes([b[0], b[1]])).to_f64()
            } else {
                |b: &[u8]| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f64()
            }
        }
        npy::Kind::Unicode(_) => {
            return Err(Error::InvalidInput(
                "a text array where numbers were expected".into(),
            ))
        }
    })
}

#[cfg(unix)]
fn read_at(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, off)
}

#[cfg(windows)]
fn read_at(f: &File, mut buf: &mut [u8], mut off: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        let n = f.seek_read(buf, off)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[n..];
        off += n as u64;
    }
    Ok(())
}

impl NpyTargets {
    /// Opens `path` and validates its header (nothing else is read).
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| io::io_err(path, e))?;
        let len = file.metadata().map_err(|e| io::io_err(path, e))?.len();
        let mut r = std::io::BufReader::new(&file);
        let header = npy::read_header(&mut r, len).map_err(|e| match e {
            Error::InvalidInput(m) => io::io_err(path, m),
            other => other,
        })?;
        if header.shape.len() < 2 {
            return Err(Error::InvalidInput(format!(
                "Y ({}) must have at least 2 dimensions (samples × units…), got shape {:?}",
                io::shown(path),
                header.shape
            )));
        }
        let decode = decoder(header.kind, header.big_endian())
            .map_err(|e| io::io_err(path, e.to_string()))?;
        Ok(NpyTargets {
            file,
            path: path.to_path_buf(),
            header,
            decode,
        })
    }
}

impl Targets for NpyTargets {
    fn rows(&self) -> usize {
        self.header.shape[0]
    }
    fn unit_shape(&self) -> &[usize] {
        &self.header.shape[1..]
    }
    fn read(&self, range: Range<usize>) -> Result<Array2<f64>> {
        let (n, units) = (self.rows(), self.units());
        let es = self.header.kind.size();
        let start = self.header.header_bytes;
        let uc = range.len();
        let mut out = Array2::<f64>::zeros((n, uc));
        let err = |e: std::io::Error| io::io_err(&self.path, format!("reading Y: {e}"));
        if self.header.fortran {
            // element (r, j) at r + n·j: the chunk is one contiguous block, unit by unit
            let mut buf = vec![0u8; n * uc * es];
            read_at(&self.file, &mut buf, start + (n * range.start * es) as u64).map_err(err)?;
            for (c, col) in buf.chunks_exact(n * es).enumerate() {
                for (r, e) in col.chunks_exact(es).enumerate() {
                    out[(r, c)] = (self.decode)(e);
                }
            }
            return Ok(out);
        }
        // C order: unit j's offset within a row from its Fortran multi-index
        let shape = self.unit_shape();
        let mut cstride = vec![1usize; shape.len()];
        for a in (0..shape.len().saturating_sub(1)).rev() {
            cstride[a] = cstride[a + 1] * shape[a + 1];
        }
        let base: Vec<usize> = range
            .clone()
            .map(|mut j| {
                let mut off = 0;
                for (a, &sa) in shape.iter().enumerate() {
                    off += (j % sa) * cstride[a];
                    j /= sa;
                }
                off
            })
            .collect();
        let lo = *base.iter().min().unwrap_or(&0);
        let hi = base.iter().max().map_or(0, |m| m + 1);
        let span = (hi - lo) * es;
        let decode = self.decode;
        let file = &self.file;
        out.outer_iter_mut()
            .into_par_iter()
            .enumerate()
            .try_for_each_init(
                || vec![0u8; span],
                |buf, (r, mut row)| {
                    read_at(file, buf, start + ((r * units + lo) * es) as u64)?;
                    for (c, &b) in base.iter().enumerate() {
                        row[c] = decode(&buf[(b - lo) * es..(b - lo + 1) * es]);
                    }
                    Ok::<(), std::io::Error>(())
                },
            )
            .map_err(err)?;
        Ok(out)
    }
    fn resident_bytes(&self) -> u64 {
        0
    }
}
