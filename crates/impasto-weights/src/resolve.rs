//! Where a run's weights come from: a file the caller named (a flag, or an environment value the
//! caller read), else the cache folder's `<arch>-conv-imagenet.safetensors`, else a download of the
//! known model into the cache (checksummed, converted, the checkpoint deleted, under a lock so two
//! processes download once), else (offline, or without network) the caller's built-in fallback.
//! Nothing here reads the environment or prints: the values come in as [`WeightsOptions`], and
//! progress goes out as [`Event`]s to a callback.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::arch::Arch;
use crate::error::{Error, Result};

/// The cache's subfolder for checkpoints being downloaded (each is deleted once converted).
pub const DOWNLOADS: &str = "downloads";
/// How long a download waits by default for the server to connect or to send more bytes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The file name impasto uses for an architecture's weights in its cache folder.
pub fn cache_file_name(arch: Arch) -> String {
    format!("{}-conv-imagenet.safetensors", arch.name())
}

/// The cached weights file of `arch` in `cache_dir`.
pub fn cached_file(cache_dir: &Path, arch: Arch) -> PathBuf {
    cache_dir.join(cache_file_name(arch))
}

/// Who named a weights file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The caller's explicit choice (the CLI's `--weights`).
    Explicit,
    /// An environment value the caller read (the CLI's `IMPASTO_WEIGHTS`).
    Environment,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Explicit => "the weights file given,",
            Origin::Environment => "the weights file the environment names,",
        })
    }
}

/// Where to look for weights and what to do when there are none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsOptions {
    /// A weights file chosen explicitly; tried first.
    pub explicit: Option<PathBuf>,
    /// A weights file named by the environment; tried second.
    pub env: Option<PathBuf>,
    /// The cache folder: looked in third, and downloaded into.
    pub cache_dir: Option<PathBuf>,
    /// Why downloads are forbidden, if they are (e.g. "--offline").
    pub offline: Option<String>,
    /// Another download source (a URL or a mirror folder, see [`crate::model_url`]).
    pub model_url: Option<String>,
    /// Whether a built-in VGG-16 exists to fall back on (impasto's `embedded_model()`).
    pub builtin_fallback: bool,
    /// How long a download waits for the server to connect or to send more bytes.
    pub timeout: Duration,
}

impl Default for WeightsOptions {
    fn default() -> WeightsOptions {
        WeightsOptions {
            explicit: None,
            env: None,
            cache_dir: None,
            offline: None,
            model_url: None,
            builtin_fallback: false,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// What [`locate`] found without downloading anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    /// The weights file.
    File(PathBuf),
    /// Nothing named and nothing cached: [`Missing::get`] downloads it (or falls back).
    Missing(Missing),
}

/// Weights that are nowhere yet, and how to get them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The architecture wanted.
    pub arch: Arch,
    /// The cache folder to download into.
    pub cache_dir: PathBuf,
    options: WeightsOptions,
}

/// Why the built-in model is used instead of the weights asked for.
#[derive(Debug)]
pub enum Fallback {
    /// Downloads are forbidden and none were found.
    Offline {
        /// The architecture wanted.
        arch: Arch,
        /// Why downloads are forbidden, as the caller said it.
        why: String,
    },
    /// The download could not reach the server (no connection, no answer).
    Unreachable {
        /// The architecture wanted.
        arch: Arch,
        /// The network error.
        error: Error,
    },
}

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fallback::Offline { arch, why } => write!(f, "offline mode ({why}) and no {arch} weights found"),
            Fallback::Unreachable { arch, error } => {
                write!(f, "cannot download the {arch} weights ({error})")
            }
        }
    }
}

/// The weights a run gets.
#[derive(Debug)]
pub enum Resolved {
    /// A weights file (named, cached or just downloaded).
    File(PathBuf),
    /// The caller's built-in VGG-16, and why.
    Builtin {
        /// Why the weights asked for are not used.
        reason: Fallback,
    },
}

/// What a download reports as it goes.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// Nothing is cached: the download starts.
    Missing {
        /// The architecture.
        arch: Arch,
        /// The cache folder.
        cache_dir: &'a Path,
    },
    /// The checkpoint is being downloaded from `url` into `to`.
    Downloading {
        /// The URL.
        url: &'a str,
        /// The file being written.
        to: &'a Path,
    },
    /// Bytes received so far, and the total when the server said it.
    Bytes {
        /// Bytes received.
        done: u64,
        /// The size, if known.
        total: Option<u64>,
    },
    /// The transfer ended (well or not).
    Transferred,
    /// The checkpoint is being converted into `to`.
    Converting {
        /// The cache file.
        to: &'a Path,
    },
    /// The downloaded checkpoint could not be deleted after the conversion.
    CannotDelete {
        /// The checkpoint.
        path: &'a Path,
        /// The operating system's error.
        error: &'a std::io::Error,
    },
    /// The weights are cached.
    Cached {
        /// The architecture.
        arch: Arch,
        /// The cache file.
        path: &'a Path,
    },
}

/// Finds the weights file of `arch`: `options.explicit`, else `options.env`, else the cache folder's.
/// A named file that does not exist is [`Error::WeightsFileMissing`], so a typo is never silently
/// passed over; nothing cached is [`Located::Missing`], or [`Error::NoCacheFolder`] without a cache
/// folder.
pub fn locate(arch: Arch, options: &WeightsOptions) -> Result<Located> {
    for (path, origin) in [(&options.explicit, Origin::Explicit), (&options.env, Origin::Environment)] {
        if let Some(p) = path {
            if p.is_file() {
                return Ok(Located::File(p.clone()));
            }
            return Err(Error::WeightsFileMissing { arch, origin, path: p.clone() });
        }
    }
    let dir = options.cache_dir.as_ref().ok_or(Error::NoCacheFolder { arch })?;
    let file = cached_file(dir, arch);
    if file.is_file() {
        return Ok(Located::File(file));
    }
    Ok(Located::Missing(Missing { arch, cache_dir: dir.clone(), options: options.clone() }))
}

/// [`locate`], then [`Missing::get`] if nothing was found.
#[cfg(feature = "download")]
pub fn resolve(
    arch: Arch,
    options: &WeightsOptions,
    progress: &mut dyn FnMut(Event<'_>),
) -> Result<Resolved> {
    match locate(arch, options)? {
        Located::File(p) => Ok(Resolved::File(p)),
        Located::Missing(m) => m.get(progress),
    }
}

impl Missing {
    /// Whether the built-in VGG-16 stands in for these weights when they cannot be had.
    #[cfg(feature = "download")]
    fn can_fall_back(&self) -> bool {
        self.arch == Arch::Vgg16 && self.options.builtin_fallback
    }

    /// Downloads the weights into the cache and returns the cached file. Offline, or when the server
    /// cannot be reached, a VGG-16 falls back to the built-in model if the caller has one; otherwise
    /// the error says what is missing ([`Error::Offline`], [`Error::Download`]).
    #[cfg(feature = "download")]
    pub fn get(&self, progress: &mut dyn FnMut(Event<'_>)) -> Result<Resolved> {
        let arch = self.arch;
        if let Some(why) = &self.options.offline {
            if self.can_fall_back() {
                return Ok(Resolved::Builtin { reason: Fallback::Offline { arch, why: why.clone() } });
            }
            let cached = cached_file(&self.cache_dir, arch);
            return Err(Error::Offline { arch, cached, why: why.clone() });
        }
        progress(Event::Missing { arch, cache_dir: &self.cache_dir });
        let m = crate::models::known_model_for(arch);
        let url = self.options.model_url.as_deref();
        match download_model(m, &self.cache_dir, url, self.options.timeout, progress) {
            Ok(p) => Ok(Resolved::File(p)),
            Err(error @ (Error::Network { .. } | Error::Timeout { .. })) if self.can_fall_back() => {
                Ok(Resolved::Builtin { reason: Fallback::Unreachable { arch, error } })
            }
            Err(error) => Err(Error::Download { arch, error: Box::new(error) }),
        }
    }
}

/// The file name a download is saved under and the SHA-256 prefix it must have: the table's, unless
/// the URL is an override (`overridden`) that names a torch-hub style file of its own
/// (`NAME-HEX.pth`), whose `HEX` is then the expected prefix. A mirror of the same file keeps the
/// table's name, and so its checksum.
pub fn expected_file(m: &crate::KnownModel, url: &str, overridden: bool) -> (String, String) {
    if overridden {
        let path = url.split(['?', '#']).next().unwrap_or_default();
        let name = path.rsplit('/').next().unwrap_or_default();
        let plain = !name.is_empty() && !name.starts_with('.') && !name.contains('\\');
        if plain && let Some(prefix) = crate::sha256_prefix_from_file_name(name) {
            return (name.to_string(), prefix.to_string());
        }
    }
    (m.file_name.to_string(), m.sha256_prefix.to_string())
}

/// Downloads known model `m` (from `url_override` when given) into `cache_dir`, converts it to
/// `cache_dir/<arch>-conv-imagenet.safetensors` and deletes the checkpoint. Two processes doing this
/// at once download once: the second waits, then finds the file.
#[cfg(feature = "download")]
pub fn download_model(
    m: &crate::KnownModel,
    cache_dir: &Path,
    url_override: Option<&str>,
    timeout: Duration,
    progress: &mut dyn FnMut(Event<'_>),
) -> Result<PathBuf> {
    let out = cached_file(cache_dir, m.arch);
    let downloads = cache_dir.join(DOWNLOADS);
    std::fs::create_dir_all(&downloads)
        .map_err(|e| Error::io("cannot create the cache folder", &downloads, e))?;
    let _lock = crate::FileLock::acquire(&downloads.join(format!("{}.lock", m.name)))?;
    if out.is_file() {
        return Ok(out); // another process finished it while this one waited
    }
    let url = crate::model_url(m.name, url_override)?;
    let (file_name, prefix) = expected_file(m, &url, url_override.is_some());
    progress(Event::Downloading { url: &url, to: &downloads.join(&file_name) });
    let mut bytes = |done: u64, total: Option<u64>| progress(Event::Bytes { done, total });
    let fetched = crate::fetch(&url, &downloads, &file_name, Some(&prefix), &mut bytes, timeout);
    progress(Event::Transferred);
    let pth = fetched?;
    progress(Event::Converting { to: &out });
    let sd = crate::read_pth_filtered(&pth, &|k| k.starts_with("features."))?;
    crate::to_conv_safetensors(&sd, m.arch.name(), m.arch.conv_count(), m.preprocess, &out)?;
    if let Err(e) = std::fs::remove_file(&pth) {
        progress(Event::CannotDelete { path: &pth, error: &e });
    }
    progress(Event::Cached { arch: m.arch, path: &out });
    Ok(out)
}
