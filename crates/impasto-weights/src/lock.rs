//! A cross-process exclusive lock on a file (`std::fs::File::lock`), held until dropped, so that
//! two impasto processes fetching the same model download it once.

use std::fs::{File, OpenOptions};
use std::path::Path;

use crate::error::{Error, Result};

/// An exclusive lock on a lock file; released when dropped (or when the process dies). The lock
/// file itself is left in place: removing it would let a third process lock a fresh inode while a
/// second still waits on the old one.
#[derive(Debug)]
pub struct FileLock {
    file: File,
}

impl FileLock {
    /// Opens (creating it if needed) `path` and blocks until this process holds its exclusive lock.
    pub fn acquire(path: &Path) -> Result<FileLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| Error::io("cannot create lock file", path, e))?;
        file.lock().map_err(|e| Error::io("cannot lock", path, e))?;
        Ok(FileLock { file })
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}
