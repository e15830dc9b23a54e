//! File helpers for model directories: atomic writes (temp file + rename) and typed read errors that name
//! the file.

use hone_core::{Error, Result};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `dir/name` through `dir/.name.tmp` and a rename, creating `dir` if needed.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
}

/// Reads `dir/name`; a missing file is an `Error::Io` naming it.
pub(crate) fn read(dir: &Path, name: &str) -> Result<(PathBuf, Vec<u8>)> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    Ok((path, bytes))
}

/// A corrupt or inconsistent model file: an `Error::Io` of kind `InvalidData` naming the file.
pub(crate) fn corrupt(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::io(
        path,
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("corrupt model file: {msg}"),
        ),
    )
}
