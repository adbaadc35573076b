//! SHA-256 of files (streamed) and of bytes, as lowercase hex, and the torch-hub prefix check.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The SHA-256 of the file at `path`, as 64 lowercase hex digits. Reads in 1 MiB chunks.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io("cannot read", path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// The SHA-256 of `bytes`, as 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether the hex digest `actual` starts with `prefix` (case-insensitive; an empty prefix matches).
pub fn sha256_matches(actual: &str, prefix: &str) -> bool {
    actual.len() >= prefix.len() && actual[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// The hash prefix a torch-hub style file name carries: `vgg16-00b39a1b.pth` → `00b39a1b` (the hex
/// digits after the last `-`, before the extension), or `None` when the name has none.
pub fn sha256_prefix_from_file_name(file_name: &str) -> Option<&str> {
    let stem = file_name.split('.').next()?;
    let (_, tail) = stem.rsplit_once('-')?;
    (!tail.is_empty() && tail.bytes().all(|b| b.is_ascii_hexdigit())).then_some(tail)
}
