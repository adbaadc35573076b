//! The crate's error type: every failure names the file, URL, key or shape it is about.

use std::path::PathBuf;
use std::time::Duration;

/// A result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong reading, converting or downloading weights.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or folder could not be opened, read, written, renamed or locked.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, e.g. "cannot read".
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },

    /// The checkpoint's pickle names a global outside the state-dict allowlist.
    #[error(
        "refusing to load `{global}` from {path}: only state-dict globals are allowed \
         (collections.OrderedDict, torch._utils._rebuild_tensor*, torch._utils._rebuild_parameter, torch.*Storage)"
    )]
    RefusedGlobal {
        /// The checkpoint.
        path: PathBuf,
        /// The refused global, `module.name`.
        global: String,
    },

    /// The checkpoint's pickle stream is malformed, truncated or uses an unsupported construct.
    #[error("{path}: bad pickle at byte {offset}: {reason}")]
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
    #[error("{path}: tensor `{key}` (shape {shape:?}): {reason}")]
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
    #[error("{path}: bad zip archive: {source}")]
    Zip {
        /// The checkpoint.
        path: PathBuf,
        /// The zip reader's error.
        source: zip::result::ZipError,
    },

    /// The state dict lacks a convolution key, or a tensor has the wrong shape for a VGG convolution.
    #[error("cannot convert to {out}: {reason}")]
    Convert {
        /// The safetensors file being written.
        out: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },

    /// Writing the safetensors file failed.
    #[error("cannot write safetensors {path}: {source}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// The safetensors error.
        source: safetensors::SafeTensorError,
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
}

impl Error {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { action, path: path.into(), source }
    }
}
