//! Small file helpers: atomic writes, reads that tolerate absence, directory wiping.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::error::{Result, io_at};

/// Writes a file through a temporary sibling and a rename, so readers never see half a file.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_at(parent))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = Path::new(&tmp);
    let mut file = fs::File::create(tmp).map_err(io_at(tmp))?;
    file.write_all(data).map_err(io_at(tmp))?;
    drop(file);
    fs::rename(tmp, path).map_err(io_at(path))
}

/// Reads a text file, `None` if it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_at(path)(e)),
    }
}

/// Reads a text file that must exist.
pub fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(io_at(path))
}

/// Removes a file if it exists.
pub fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_at(path)(e)),
    }
}

/// Removes a directory tree if it exists.
pub fn remove_dir(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_at(path)(e)),
    }
}

/// Empties a directory (creating it if needed), keeping the directory itself.
pub fn empty_dir(path: &Path) -> Result<()> {
    remove_dir(path)?;
    fs::create_dir_all(path).map_err(io_at(path))
}

/// Creates a directory and its parents.
pub fn create_dir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(io_at(path))
}
