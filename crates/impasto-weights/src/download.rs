//! Downloading a file into a cache folder: streamed into `<name>.part`, resumed with an HTTP
//! `Range` request when a `.part` is already there, checked against a SHA-256 prefix, renamed into
//! place atomically, all under a lock on `<name>.lock` so concurrent processes download once.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::checksum::{sha256_file, sha256_matches};
use crate::error::{Error, Result};
use crate::lock::FileLock;

/// How many requests one [`fetch`] makes at most when transfers break off after making progress
/// (or a `.part` the server would not resume was dropped).
const ATTEMPTS: usize = 3;

/// Settings of a download beyond what [`fetch`] takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// How long to wait to connect, and for each read (headers or body) to return data. A slow but
    /// steady transfer never times out; a server that stops sending does.
    pub timeout: Duration,
    /// An HTTP or SOCKS proxy URL (`http://host:port`); `None` connects directly. The library does
    /// not read `HTTPS_PROXY` itself: a caller that wants it passes it here.
    pub proxy: Option<String>,
}

/// Downloads `url` to `dest_dir/file_name` unless that file is already there, and returns its
/// path. See [`fetch_with`]; this is it with a timeout and no proxy.
pub fn fetch(
    url: &str,
    dest_dir: &Path,
    file_name: &str,
    expected_sha256_prefix: Option<&str>,
    progress: &mut dyn FnMut(u64, Option<u64>),
    timeout: Duration,
) -> Result<PathBuf> {
    fetch_with(
        url,
        dest_dir,
        file_name,
        expected_sha256_prefix,
        progress,
        &FetchOptions { timeout, proxy: None },
    )
}

/// Downloads `url` to `dest_dir/file_name` (creating `dest_dir`) unless that file is already there,
/// and returns its path.
///
/// - The bytes go to `dest_dir/file_name.part`; an existing `.part` (an earlier run that was
///   interrupted) is resumed with `Range: bytes=N-`. A server that answers `200` instead of `206`
///   sends the whole file again, which then replaces the `.part`. A transfer that breaks off after
///   making progress is resumed at once, up to 3 requests per call.
/// - With `expected_sha256_prefix` (hex, e.g. the `00b39a1b` of `vgg16-00b39a1b.pth`), the finished
///   file's SHA-256 must start with it; otherwise the `.part` is deleted, nothing is cached, and
///   [`Error::Checksum`] is returned.
/// - The finished file is renamed into place, so `dest_dir/file_name` is always complete.
/// - The whole download holds an exclusive lock on `dest_dir/file_name.lock`: a second process
///   (or thread) fetching the same file waits, then finds the file and returns it.
/// - `progress(done, total)` is called as bytes arrive (`total` when the server says it).
/// - HTTP errors are [`Error::HttpStatus`]; a server that stops sending for `options.timeout` is
///   [`Error::Timeout`]; other transport failures are [`Error::Network`].
pub fn fetch_with(
    url: &str,
    dest_dir: &Path,
    file_name: &str,
    expected_sha256_prefix: Option<&str>,
    progress: &mut dyn FnMut(u64, Option<u64>),
    options: &FetchOptions,
) -> Result<PathBuf> {
    if file_name.is_empty() || file_name.contains(['/', '\\']) || file_name.starts_with('.') {
        return Err(Error::io(
            "invalid file name",
            dest_dir.join(file_name),
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "must be a plain file name"),
        ));
    }
    let dest = dest_dir.join(file_name);
    if dest.is_file() {
        return Ok(dest);
    }
    std::fs::create_dir_all(dest_dir).map_err(|e| Error::io("cannot create cache folder", dest_dir, e))?;
    let _lock = FileLock::acquire(&dest_dir.join(format!("{file_name}.lock")))?;
    if dest.is_file() {
        return Ok(dest); // another process finished it while this one waited
    }
    let part = dest_dir.join(format!("{file_name}.part"));
    let agent = agent(options)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let before = part_len(&part);
        match download_once(&agent, url, &part, progress, options.timeout) {
            Ok(()) => break,
            // Progress was made (or a bad .part was dropped): go on from where the .part ends.
            Err(Error::Network { .. } | Error::Timeout { .. })
                if attempt < ATTEMPTS && part_len(&part) != before => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(prefix) = expected_sha256_prefix {
        let actual = sha256_file(&part)?;
        if !sha256_matches(&actual, prefix) {
            let _ = std::fs::remove_file(&part);
            return Err(Error::Checksum {
                url: url.to_string(),
                path: dest,
                expected: prefix.to_string(),
                actual,
            });
        }
    }
    std::fs::rename(&part, &dest).map_err(|e| Error::io("cannot move into place", &dest, e))?;
    Ok(dest)
}

fn part_len(part: &Path) -> u64 {
    std::fs::metadata(part).map(|m| m.len()).unwrap_or(0)
}

fn agent(options: &FetchOptions) -> Result<ureq::Agent> {
    let proxy = match &options.proxy {
        None => None,
        Some(p) => Some(
            ureq::Proxy::new(p)
                .map_err(|e| Error::Network { url: p.clone(), reason: format!("invalid proxy: {e}") })?,
        ),
    };
    let t = Some(options.timeout);
    let config = ureq::Agent::config_builder()
        .timeout_connect(t)
        .timeout_per_read(t)
        .timeout_per_write(t)
        .http_status_as_error(false)
        .proxy(proxy)
        .user_agent(concat!("impasto-weights/", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(config.into())
}

fn net_err(url: &str, timeout: Duration, e: ureq::Error) -> Error {
    let timed_out = match &e {
        ureq::Error::Timeout(_) => true,
        ureq::Error::Io(io) => {
            matches!(io.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock)
        }
        _ => false,
    };
    if timed_out {
        Error::Timeout { url: url.to_string(), timeout }
    } else {
        Error::Network { url: url.to_string(), reason: e.to_string() }
    }
}

/// The start offset of a `Content-Range: bytes START-END/TOTAL` header, and TOTAL when known.
fn content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

/// One request: appends to (or, on a `200`, rewrites) `part` until the body ends.
fn download_once(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    progress: &mut dyn FnMut(u64, Option<u64>),
    timeout: Duration,
) -> Result<()> {
    let mut have = part_len(part);
    let mut req = agent.get(url);
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let resp = req.call().map_err(|e| net_err(url, timeout, e))?;
    let status = resp.status().as_u16();
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let length: Option<u64> = header("content-length").and_then(|v| v.trim().parse().ok());
    let total = match status {
        206 => match header("content-range").as_deref().and_then(content_range) {
            Some((start, total)) if start == have => total.or(length.map(|l| l + have)),
            _ => {
                // A range the request did not ask for: start over with the whole file.
                let _ = std::fs::remove_file(part);
                return Err(Error::Network {
                    url: url.into(),
                    reason: format!("the server answered a request for bytes {have}- with another range"),
                });
            }
        },
        200 => {
            have = 0; // the server ignored Range (or there was none): the body is the whole file
            length
        }
        416 if have > 0 => {
            // Nothing left to send: complete if the server's size (`bytes */N`) is the .part's.
            let size = header("content-range")
                .as_deref()
                .and_then(|v| v.trim().strip_prefix("bytes */")?.parse().ok());
            if size == Some(have) {
                return Ok(());
            }
            let _ = std::fs::remove_file(part);
            return Err(Error::Network {
                url: url.into(),
                reason: format!(
                    "the server refused the range {have}- (HTTP 416); the partial download was dropped"
                ),
            });
        }
        s => return Err(Error::HttpStatus { url: url.to_string(), status: s }),
    };
    let mut file = if have == 0 { File::create(part) } else { OpenOptions::new().append(true).open(part) }
        .map_err(|e| Error::io("cannot write", part, e))?;
    progress(have, total);
    let mut body = resp.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut done = have;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let _ = file.flush();
                return Err(net_err(url, timeout, ureq::Error::from(e)));
            }
        };
        file.write_all(&buf[..n]).map_err(|e| Error::io("cannot write", part, e))?;
        done += n as u64;
        progress(done, total);
    }
    file.sync_all().map_err(|e| Error::io("cannot write", part, e))?;
    if let Some(t) = total
        && done != t
    {
        return Err(Error::Network {
            url: url.into(),
            reason: format!("the transfer ended at {done} of {t} bytes"),
        });
    }
    Ok(())
}
