//! The crate's error type: every failure names the file (and its format), URL, key or shape it is
//! about. Each message is one complete line: a variant formats its cause into the message and does not
//! also return it as `source()`, so a caller that prints the error chain prints the cause once.

use std::path::PathBuf;
use std::time::Duration;

use crate::arch::Arch;
use crate::checkpoint::Format;
use crate::resolve::Origin;

/// A result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong reading, converting or downloading weights.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or folder could not be opened, read, written, renamed or locked.
    #[error("{action} {path}: {error}")]
    Io {
        /// What was being done, e.g. "cannot read".
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error (in the message, not `source()`).
        error: std::io::Error,
    },

    /// The checkpoint's pickle names a global outside the state-dict allowlist.
    #[error(
        "refusing to load `{global}` from PyTorch checkpoint {path}: only state-dict globals are allowed \
         (collections.OrderedDict, torch._utils._rebuild_tensor*, torch._utils._rebuild_parameter, torch.*Storage)"
    )]
    RefusedGlobal {
        /// The checkpoint.
        path: PathBuf,
        /// The refused global, `module.name`.
        global: String,
    },

    /// The checkpoint's pickle stream is malformed, truncated or uses an unsupported construct.
    #[error("PyTorch checkpoint {path}: bad pickle at byte {offset}: {reason}")]
    Pickle {
        /// The checkpoint.
        path: PathBuf,
        /// Offset within the pickle stream.
        offset: u64,
        /// What is wrong.
        reason: String,
    },

    /// The file is not a PyTorch checkpoint this crate reads (or its structure is inconsistent).
    #[error("{path} is not a readable PyTorch checkpoint: {reason}")]
    Format {
        /// The checkpoint.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A tensor's storage, dtype, offset or strides cannot be turned into f32 values.
    #[error("PyTorch checkpoint {path}: tensor `{key}` (shape {shape:?}): {reason}")]
    Tensor {
        /// The checkpoint.
        path: PathBuf,
        /// The tensor's state-dict key.
        key: String,
        /// The tensor's shape.
        shape: Vec<usize>,
        /// What is wrong.
        reason: String,
    },

    /// The zip container of a checkpoint is unreadable.
    #[error("PyTorch checkpoint {path}: bad zip archive: {error}")]
    Zip {
        /// The checkpoint.
        path: PathBuf,
        /// The zip reader's error (in the message, not `source()`).
        error: zip::result::ZipError,
    },

    /// A checkpoint's tensors are not the convolutions of a VGG (missing, doubled, of the wrong shape
    /// or type), or a safetensors file is unreadable.
    #[error("{format} {path}: {reason}")]
    Checkpoint {
        /// The file (`<memory>` for bytes).
        path: PathBuf,
        /// The format its bytes are in.
        format: Format,
        /// What is wrong.
        reason: String,
    },

    /// The state dict lacks a convolution key, or a tensor has the wrong shape for a VGG convolution.
    #[error("cannot convert to {out}: {reason}")]
    Convert {
        /// The safetensors file being written.
        out: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },

    /// The server answered with an HTTP error status.
    #[error("downloading {url}: the server answered HTTP {status}")]
    HttpStatus {
        /// The URL.
        url: String,
        /// The status code, e.g. 404.
        status: u16,
    },

    /// The server did not answer (or stopped sending) within the timeout.
    #[error("downloading {url}: no data from the server for {timeout:?} (timed out)")]
    Timeout {
        /// The URL.
        url: String,
        /// The per-read timeout that expired.
        timeout: Duration,
    },

    /// Any other transport failure (connection refused, DNS, TLS, a protocol error, a short body).
    #[error("downloading {url}: {reason}")]
    Network {
        /// The URL.
        url: String,
        /// The transport's error.
        reason: String,
    },

    /// The downloaded file's SHA-256 does not start with the expected prefix; nothing was cached.
    #[error(
        "downloading {url}: SHA-256 {actual} does not start with the expected {expected}; \
         the download was deleted and nothing was cached at {path}"
    )]
    Checksum {
        /// The URL.
        url: String,
        /// Where the file would have gone.
        path: PathBuf,
        /// The expected hex prefix.
        expected: String,
        /// The file's full hex digest.
        actual: String,
    },

    /// [`crate::model_url`] or [`crate::known_model`] was asked for a name it does not know.
    #[error("unknown model `{name}` (known: {known})")]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },

    /// A layer name that the architecture does not have.
    #[error("unknown layer `{name}` for {model} (known: {known})")]
    UnknownLayer {
        /// The name given.
        name: String,
        /// The architecture (and how far it was loaded, where that matters).
        model: String,
        /// The valid names, comma separated.
        known: String,
    },

    /// A weights file the caller named does not exist (a typo is never silently passed over).
    #[error("no {arch} weights: {origin} {path} does not exist")]
    WeightsFileMissing {
        /// The architecture wanted.
        arch: Arch,
        /// Who named the file.
        origin: Origin,
        /// The file.
        path: PathBuf,
    },

    /// No weights were named, none are cached, and there is no cache folder to download them into.
    #[error("no {arch} weights found and no cache folder to download them into")]
    NoCacheFolder {
        /// The architecture wanted.
        arch: Arch,
    },

    /// No weights were named or cached, and downloads are off (with no built-in fallback).
    #[error(
        "no {arch} weights found (none named, {cached} does not exist) and offline mode ({why}) forbids downloading them"
    )]
    Offline {
        /// The architecture wanted.
        arch: Arch,
        /// Where the cached file would be.
        cached: PathBuf,
        /// Why downloads are off, as the caller said it.
        why: String,
    },

    /// Downloading (or converting) the weights into the cache failed.
    #[error("cannot get the {arch} weights: {error}")]
    Download {
        /// The architecture wanted.
        arch: Arch,
        /// What failed.
        error: Box<Error>,
    },
}

impl Error {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, error: std::io::Error) -> Error {
        Error::Io { action, path: path.into(), error }
    }
}
