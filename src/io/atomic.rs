//! Output files that appear whole or not at all.
//!
//! Data goes to a temporary file with a short name (`.nf??????.tmp`, so any valid output name
//! works) beside the target and is renamed into place when complete. Temporary files are
//! registered; [`abandon_pending_writes`] (which the CLI's SIGINT/SIGTERM/SIGHUP handler calls)
//! deletes them and exits while holding the registry lock, so an interrupt leaves neither a
//! temporary file nor a partial output. Special targets are written through, never replaced:
//! a character device or FIFO (`/dev/null`, `/dev/stdout`, a named pipe) receives the bytes of
//! the finished temporary file; directories, sockets and block devices are refused. A symbolic
//! link is followed: the file it points to is replaced and the link stays.

use super::{io_err, shown};
use crate::error::Result;
use std::fs::{self, File};
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Temporary files being written now.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn pending() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    PENDING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Deletes every temporary file of a write in progress and exits the process with `code`,
/// holding the registry lock so that no write can complete (rename) or start meanwhile. Call it
/// from a signal-handling thread (the CLI does for SIGINT, SIGTERM and SIGHUP).
pub fn abandon_pending_writes(code: i32) -> ! {
    let guard = pending();
    for p in guard.iter() {
        let _ = fs::remove_file(p);
    }
    std::process::exit(code)
}

/// Where the bytes of an output go.
enum Target {
    /// A regular file (possibly not yet existing), replaced by rename.
    Regular(PathBuf),
    /// A character device or FIFO, written through.
    Special(PathBuf),
}

fn target(path: &Path) -> Result<Target> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Target::Regular(path.to_path_buf()))
        }
        Err(e) => return Err(io_err(path, e)),
    };
    if meta.file_type().is_symlink() {
        return match fs::canonicalize(path) {
            Ok(real) if real != path => target(&real),
            _ => Err(io_err(
                path,
                "is a symbolic link to nothing (dangling); remove it or point it at a file",
            )),
        };
    }
    let ft = meta.file_type();
    if ft.is_file() {
        return Ok(Target::Regular(path.to_path_buf()));
    }
    if ft.is_dir() {
        return Err(io_err(path, "is a directory; give a file name"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_char_device() || ft.is_fifo() {
            return Ok(Target::Special(path.to_path_buf()));
        }
        if ft.is_block_device() {
            return Err(io_err(path, "is a block device; refusing to write to it"));
        }
        if ft.is_socket() {
            return Err(io_err(path, "is a socket; refusing to write to it"));
        }
    }
    Err(io_err(
        path,
        "is not a regular file; refusing to replace it",
    ))
}

fn temp_in(dir: &Path, path: &Path) -> Result<tempfile::NamedTempFile> {
    let mut b = tempfile::Builder::new();
    b.prefix(".nf").suffix(".tmp").rand_bytes(6);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // 0666 before the umask, as a plain File::create would give
        b.permissions(fs::Permissions::from_mode(0o666));
    }
    let mut guard = pending();
    let t = b.tempfile_in(dir).map_err(|e| {
        io_err(
            path,
            format!("cannot create a temporary file in {}: {e}", shown(dir)),
        )
    })?;
    guard.push(t.path().to_path_buf());
    Ok(t)
}

fn forget(tmp: &Path) {
    pending().retain(|p| p != tmp);
}

/// Writes `path` through `write`, atomically: on success the complete file is renamed into place;
/// on any error (or interrupt, see the module docs) nothing is left behind.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<()>,
) -> Result<()> {
    let target = target(path)?;
    let (dir, final_path) = match &target {
        Target::Regular(p) => {
            let dir = match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            (dir, p.clone())
        }
        Target::Special(p) => (std::env::temp_dir(), p.clone()),
    };
    let tmp = temp_in(&dir, path)?;
    let tmp_path = tmp.path().to_path_buf();
    let result = (|| -> Result<()> {
        let file = tmp.as_file().try_clone().map_err(|e| io_err(path, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        write(&mut w)?;
        w.flush().map_err(|e| io_err(path, e))?;
        Ok(())
    })();
    if let Err(e) = result {
        drop(tmp);
        forget(&tmp_path);
        return Err(e);
    }
    match target {
        Target::Regular(_) => {
            let guard = pending();
            let r = tmp.persist(&final_path);
            drop(guard);
            forget(&tmp_path);
            r.map(|_| ()).map_err(|e| io_err(path, e.error))
        }
        Target::Special(_) => {
            let r = (|| -> Result<()> {
                let mut src = tmp.as_file().try_clone().map_err(|e| io_err(path, e))?;
                src.rewind().map_err(|e| io_err(path, e))?;
                let mut dst = fs::OpenOptions::new()
                    .write(true)
                    .open(&final_path)
                    .map_err(|e| io_err(path, e))?;
                std::io::copy(&mut src, &mut dst).map_err(|e| io_err(path, e))?;
                dst.flush().map_err(|e| io_err(path, e))
            })();
            drop(tmp);
            forget(&tmp_path);
            r
        }
    }
}
