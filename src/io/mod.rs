//! `.npy` / `.npz` reading and writing. Inputs may be f64, f32 or integer arrays in C or Fortran
//! order; writes go to a temporary file that is renamed into place, so a failed command leaves no
//! partial output.

use crate::error::{Error, Result};
use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{NpzReader, NpzWriter, ReadNpyExt, WritableElement, WriteNpyExt};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek};
use std::path::{Path, PathBuf};

fn io_err(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.display().to_string(),
        msg: msg.to_string(),
    }
}

fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| io_err(path, e))
}

/// Reads an array from any readable `.npy` source, converting f32/integer data to f64.
fn read_any<R: Read + Seek>(mut r: R, path: &Path) -> Result<ArrayD<f64>> {
    let start = r.stream_position().map_err(|e| io_err(path, e))?;
    let rewind = |r: &mut R| r.seek(std::io::SeekFrom::Start(start)).map(|_| ());
    if let Ok(a) = ArrayD::<f64>::read_npy(&mut r) {
        return Ok(a);
    }
    rewind(&mut r).map_err(|e| io_err(path, e))?;
    if let Ok(a) = ArrayD::<f32>::read_npy(&mut r) {
        return Ok(a.mapv(f64::from));
    }
    rewind(&mut r).map_err(|e| io_err(path, e))?;
    if let Ok(a) = ArrayD::<i64>::read_npy(&mut r) {
        return Ok(a.mapv(|v| v as f64));
    }
    rewind(&mut r).map_err(|e| io_err(path, e))?;
    if let Ok(a) = ArrayD::<i32>::read_npy(&mut r) {
        return Ok(a.mapv(f64::from));
    }
    rewind(&mut r).map_err(|e| io_err(path, e))?;
    match ArrayD::<f64>::read_npy(&mut r) {
        Ok(a) => Ok(a),
        Err(e) => Err(io_err(
            path,
            format!("not a readable .npy array of f64, f32, i64 or i32 ({e})"),
        )),
    }
}

/// Reads a `.npy` file as f64.
pub fn read_npy(path: &Path) -> Result<ArrayD<f64>> {
    let f = open(path)?;
    read_any(BufReader::new(f), path)
}

/// Reads a boolean `.npy` array from an `.npz` member.
fn read_npz_bool(npz: &mut NpzReader<File>, name: &str, path: &Path) -> Result<ArrayD<bool>> {
    npz.by_name::<ndarray::OwnedRepr<bool>, IxDyn>(name)
        .map_err(|e| io_err(path, format!("member {name}: {e}")))
}

/// The members of an `.npz` archive, read as f64 (and bool for `bool_members`).
pub struct NpzContents {
    /// Numeric members.
    pub arrays: std::collections::BTreeMap<String, ArrayD<f64>>,
    /// Boolean members.
    pub bools: std::collections::BTreeMap<String, ArrayD<bool>>,
}

/// Reads every member of an `.npz` file; members listed in `bool_members` are read as bool.
pub fn read_npz(path: &Path, bool_members: &[&str]) -> Result<NpzContents> {
    let mut npz = NpzReader::new(open(path)?).map_err(|e| io_err(path, e))?;
    let names = npz.names().map_err(|e| io_err(path, e))?;
    let mut out = NpzContents {
        arrays: Default::default(),
        bools: Default::default(),
    };
    for raw in names {
        let name = raw.trim_end_matches(".npy").to_string();
        if bool_members.contains(&name.as_str()) {
            let a = read_npz_bool(&mut npz, &raw, path)?;
            out.bools.insert(name, a);
            continue;
        }
        macro_rules! try_ty {
            ($t:ty, $conv:expr) => {
                if let Ok(a) = npz.by_name::<ndarray::OwnedRepr<$t>, IxDyn>(&raw) {
                    out.arrays.insert(name.clone(), a.mapv($conv));
                    continue;
                }
            };
        }
        try_ty!(f64, |v| v);
        try_ty!(f32, f64::from);
        try_ty!(i64, |v| v as f64);
        try_ty!(i32, f64::from);
        try_ty!(u8, f64::from);
        try_ty!(bool, |v| if v { 1.0 } else { 0.0 });
        return Err(io_err(path, format!("member {name}: unsupported dtype")));
    }
    Ok(out)
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|s| s.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// Writes via a temporary file in the same directory, renamed into place on success.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<()>,
) -> Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let f = File::create(&tmp).map_err(|e| io_err(path, e))?;
        let mut w = BufWriter::new(f);
        write(&mut w)?;
        use std::io::Write;
        w.flush().map_err(|e| io_err(path, e))?;
        Ok(())
    })();
    match result {
        Ok(()) => std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_err(path, e)
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Writes one array as `.npy`.
pub fn write_npy<T: WritableElement>(path: &Path, a: &ArrayD<T>) -> Result<()> {
    write_atomic(path, |w| a.write_npy(w).map_err(|e| io_err(path, e)))
}

/// One member of an `.npz` file to write.
pub enum NpzMember {
    /// f64 data.
    F64(ArrayD<f64>),
    /// f32 data.
    F32(ArrayD<f32>),
    /// bool data.
    Bool(ArrayD<bool>),
    /// Text (an option value), stored as a 1-d `uint8` array of its UTF-8 bytes
    /// (`bytes(a).decode()` in numpy); ndarray-npy cannot write numpy unicode arrays.
    Text(String),
    /// An i64 array.
    I64(ArrayD<i64>),
}

/// Writes an `.npz` archive (uncompressed) atomically.
pub fn write_npz(path: &Path, members: Vec<(&str, NpzMember)>) -> Result<()> {
    write_atomic(path, |w| {
        let mut npz = NpzWriter::new(w);
        for (name, m) in members {
            let r = match m {
                NpzMember::F64(a) => npz.add_array(name, &a),
                NpzMember::F32(a) => npz.add_array(name, &a),
                NpzMember::Bool(a) => npz.add_array(name, &a),
                NpzMember::I64(a) => npz.add_array(name, &a),
                NpzMember::Text(s) => npz.add_array(name, &ndarray::Array1::from(s.into_bytes())),
            };
            r.map_err(|e| io_err(path, e))?;
        }
        npz.finish().map_err(|e| io_err(path, e))?;
        Ok(())
    })
}

/// Reads a text member written by [`NpzMember::Text`].
pub fn text_member(contents: &NpzContents, name: &str) -> Option<String> {
    contents.arrays.get(name).map(|a| {
        let bytes: Vec<u8> = a.iter().map(|&v| v as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
