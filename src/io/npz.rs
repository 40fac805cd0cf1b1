//! `.npz` archives: reading members by name (stored or deflated, CRC-checked, bounded by the
//! size each member's header states) and writing stored archives atomically.

use super::{atomic::write_atomic, io_err, npy, over_budget};
use crate::error::{Error, Result};
use ndarray::ArrayD;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use zip::result::ZipError;

/// An open `.npz` archive.
pub struct NpzReader {
    zip: zip::ZipArchive<BufReader<File>>,
    path: PathBuf,
}

fn zip_err(path: &Path, e: ZipError) -> Error {
    let msg = match e {
        ZipError::InvalidArchive(m) => format!("not a valid .npz (zip) archive: {m}"),
        ZipError::UnsupportedArchive(m) => format!("unsupported .npz archive: {m}"),
        ZipError::FileNotFound => "member not found".to_string(),
        ZipError::Io(e) => e.to_string(),
        other => other.to_string(),
    };
    io_err(path, msg)
}

impl NpzReader {
    /// Opens `path` and reads its directory.
    pub fn open(path: &Path) -> Result<Self> {
        let f = File::open(path).map_err(|e| io_err(path, e))?;
        let zip = zip::ZipArchive::new(BufReader::new(f)).map_err(|e| zip_err(path, e))?;
        Ok(NpzReader {
            zip,
            path: path.to_path_buf(),
        })
    }

    /// Member names without the `.npy` suffix.
    pub fn names(&self) -> Vec<String> {
        self.zip
            .file_names()
            .map(|n| n.strip_suffix(".npy").unwrap_or(n).to_string())
            .collect()
    }

    /// Whether the archive has member `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.names().iter().any(|n| n == name)
    }

    fn with_member<T>(
        &mut self,
        name: &str,
        read: impl FnOnce(&mut dyn Read, &npy::Header) -> Result<T>,
        budget_per_elem: Option<(u64, u64)>,
    ) -> Result<T> {
        let path = self.path.clone();
        let label = format!("{name}.npy");
        let key = if self.zip.index_for_name(&label).is_some() {
            label
        } else {
            name.to_string()
        };
        let mut member = self.zip.by_name(&key).map_err(|e| match e {
            ZipError::FileNotFound => io_err(&path, format!("has no member '{name}'")),
            ZipError::UnsupportedArchive(m) => io_err(
                &path,
                format!("member {name}: unsupported compression or feature ({m})"),
            ),
            other => zip_err(&path, other),
        })?;
        let size = member.size();
        let member_err = |e: Error| match e {
            Error::InvalidInput(m) => io_err(&path, format!("member {name}: {m}")),
            other => other,
        };
        let h = npy::read_header(&mut member, size).map_err(member_err)?;
        if let Some((elem, budget)) = budget_per_elem {
            let need = h.len() as u64 * elem;
            if need > budget {
                return Err(over_budget(
                    &path,
                    &format!(" member {name}"),
                    &h.shape,
                    need,
                    budget,
                ));
            }
        }
        read(&mut member, &h).map_err(|e| match e {
            Error::InvalidInput(m) if m.contains("checksum") || m.contains("CRC") => io_err(
                &path,
                format!("member {name} is corrupt: its CRC-32 checksum does not match"),
            ),
            other => member_err(other),
        })
    }

    /// Reads a numeric member as f64, refusing one whose f64 copy exceeds `budget` bytes.
    pub fn f64(&mut self, name: &str, budget: u64) -> Result<ArrayD<f64>> {
        self.with_member(name, |r, h| npy::read_f64(r, h), Some((8, budget)))
    }

    /// Reads a bool member.
    pub fn bool(&mut self, name: &str, budget: u64) -> Result<ArrayD<bool>> {
        self.with_member(name, |r, h| npy::read_bool(r, h), Some((1, budget)))
    }

    /// Reads a text member (numpy unicode array or UTF-8 bytes as uint8), at most 64 KiB.
    pub fn text(&mut self, name: &str) -> Result<String> {
        self.with_member(name, |r, h| npy::read_text(r, h), Some((1, 64 << 10)))
    }

    /// The archive's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// One member of an `.npz` file to write.
pub enum NpzMember {
    /// f64 data.
    F64(ArrayD<f64>),
    /// f32 data.
    F32(ArrayD<f32>),
    /// bool data.
    Bool(ArrayD<bool>),
    /// An i64 array.
    I64(ArrayD<i64>),
    /// A u32 array (feature indices).
    U32(ArrayD<u32>),
    /// Text, stored as a 0-d numpy unicode array (`str(z[name])` in numpy).
    Text(String),
}

impl NpzMember {
    /// A 0-d f64 member.
    pub fn scalar(v: f64) -> Self {
        NpzMember::F64(ndarray::arr0(v).into_dyn())
    }

    /// A 0-d i64 member.
    pub fn int(v: i64) -> Self {
        NpzMember::I64(ndarray::arr0(v).into_dyn())
    }

    fn encoded_len(&self) -> u64 {
        match self {
            NpzMember::F64(a) => npy::encoded_len::<f64>(a.shape()),
            NpzMember::F32(a) => npy::encoded_len::<f32>(a.shape()),
            NpzMember::Bool(a) => npy::encoded_len::<bool>(a.shape()),
            NpzMember::I64(a) => npy::encoded_len::<i64>(a.shape()),
            NpzMember::U32(a) => npy::encoded_len::<u32>(a.shape()),
            NpzMember::Text(s) => 128 + 4 * s.len() as u64,
        }
    }

    fn write<W: Write>(&self, w: &mut W) -> std::io::Result<()> {
        match self {
            NpzMember::F64(a) => npy::write(w, a),
            NpzMember::F32(a) => npy::write(w, a),
            NpzMember::Bool(a) => npy::write(w, a),
            NpzMember::I64(a) => npy::write(w, a),
            NpzMember::U32(a) => npy::write(w, a),
            NpzMember::Text(s) => npy::write_text(w, s),
        }
    }
}

/// An `.npz` archive being written member by member (stored, ZIP64 for members over 4 GiB);
/// [`NpzWriter::stream`] writes one large member in pieces as they are computed.
pub struct NpzWriter<'a, W: Write + std::io::Seek> {
    zip: zip::ZipWriter<W>,
    path: &'a Path,
}

fn stored(bytes: u64) -> zip::write::SimpleFileOptions {
    zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(bytes >= u32::MAX as u64 - (1 << 20))
}

impl<'a, W: Write + std::io::Seek> NpzWriter<'a, W> {
    /// Starts an archive on `w` (errors name `path`).
    pub fn new(w: W, path: &'a Path) -> Self {
        NpzWriter {
            zip: zip::ZipWriter::new(w),
            path,
        }
    }

    /// Adds whole members.
    pub fn add(&mut self, members: &[(&str, NpzMember)]) -> Result<()> {
        for (name, m) in members {
            self.zip
                .start_file(format!("{name}.npy"), stored(m.encoded_len()))
                .map_err(|e| zip_err(self.path, e))?;
            m.write(&mut self.zip).map_err(|e| io_err(self.path, e))?;
        }
        Ok(())
    }

    /// Starts member `name` with a `.npy` header for `shape` (Fortran order when `fortran`) of
    /// `elem_bytes`-byte `descr` elements, and returns a writer for its data.
    pub fn stream(
        &mut self,
        name: &str,
        descr: &str,
        elem_bytes: usize,
        shape: &[usize],
        fortran: bool,
    ) -> Result<&mut zip::ZipWriter<W>> {
        let header = npy::header_bytes_ordered(descr, shape, fortran);
        let n: usize = shape.iter().product();
        let total = header.len() as u64 + (n * elem_bytes) as u64;
        self.zip
            .start_file(format!("{name}.npy"), stored(total))
            .map_err(|e| zip_err(self.path, e))?;
        self.zip
            .write_all(&header)
            .map_err(|e| io_err(self.path, e))?;
        Ok(&mut self.zip)
    }

    /// Finishes the archive.
    pub fn finish(self) -> Result<()> {
        self.zip.finish().map_err(|e| zip_err(self.path, e))?;
        Ok(())
    }
}

/// Writes an `.npz` archive (stored, ZIP64 for members over 4 GiB) atomically.
pub fn write_npz(path: &Path, members: &[(&str, NpzMember)]) -> Result<()> {
    write_atomic(path, |w| {
        let mut z = NpzWriter::new(w, path);
        z.add(members)?;
        z.finish()
    })
}
