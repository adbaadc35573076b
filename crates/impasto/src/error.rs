//! The library's error type: one enum whose variants name the file, layer, key and shapes involved.
//! Each message is one complete line: a variant formats its cause and does not also return it as
//! `source()`, so a printed error chain says the cause once. Messages say what is wrong, not which
//! command-line flag would fix it (the CLI adds that).

use std::path::PathBuf;

/// Everything that can go wrong in impasto. Each message is one line meant for the end user.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{action} {path}: {error}")]
    Io {
        /// What was being done ("cannot read", "cannot write", ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's reason (in the message, not `source()`).
        error: std::io::Error,
    },
    /// Finding or reading weights failed in impasto-weights (a PyTorch checkpoint that cannot be read
    /// or converted, a named weights file that does not exist).
    #[error(transparent)]
    Weights(impasto_weights::Error),
    /// An image file could not be decoded (missing, corrupt, truncated or unsupported).
    #[error("cannot decode image {path}: {reason}")]
    ImageDecode {
        /// The file.
        path: PathBuf,
        /// The decoder's reason.
        reason: String,
    },
    /// An image could not be encoded or written.
    #[error("cannot write image {path}: {reason}")]
    ImageEncode {
        /// The output file.
        path: PathBuf,
        /// The encoder's reason.
        reason: String,
    },
    /// The weights file is not a readable safetensors file.
    #[error("weights file {path} is not a valid safetensors file: {reason}")]
    WeightsFormat {
        /// The weights file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A tensor the model needs is missing from the weights file.
    #[error(
        "weights file {path} has no tensor `{key}` (needed for layer {layer} of {model}); is it a {model} checkpoint?"
    )]
    WeightsMissingKey {
        /// The weights file.
        path: PathBuf,
        /// The missing key, e.g. `features.0.weight`.
        key: String,
        /// The layer that needs it, e.g. `conv1_1`.
        layer: String,
        /// The architecture being loaded.
        model: String,
    },
    /// A tensor in the weights file has the wrong shape or dtype.
    #[error(
        "weights file {path}: tensor `{key}` (layer {layer}) has shape {actual:?} {dtype}, expected {expected:?} {expected_dtype}"
    )]
    WeightsShape {
        /// The weights file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The layer that needs it.
        layer: String,
        /// The expected shape.
        expected: Vec<usize>,
        /// The shape found in the file.
        actual: Vec<usize>,
        /// The dtype found in the file.
        dtype: String,
        /// The dtype expected (`F32`; `I8` for the quantised weights of a compact file).
        expected_dtype: String,
    },
    /// No weights file was found in any of the places searched.
    #[error("no {model} weights found (looked in: {searched})")]
    WeightsNotFound {
        /// The architecture wanted.
        model: String,
        /// The places searched, comma separated.
        searched: String,
    },
    /// The weights end before a layer the run needs: the compact VGG-16 stops at `relu4_2`.
    #[error("{weights} stops at {last}; {layer} needs the full {model} weights")]
    WeightsTooShallow {
        /// The weights, e.g. "the built-in compact VGG-16".
        weights: String,
        /// The deepest layer they have, e.g. `relu4_2`.
        last: String,
        /// The layer asked for, e.g. `relu5_1`.
        layer: String,
        /// The architecture.
        model: String,
    },
    /// The weights are a VGG-16 (the compact model) and the run asks for another architecture.
    #[error("invalid model: {model} needs {model} weights, and {weights} is a VGG-16")]
    NotVgg16 {
        /// The weights, e.g. "the built-in compact VGG-16".
        weights: String,
        /// The architecture asked for.
        model: String,
    },
    /// This build of the library has no built-in model (its `embedded-model` feature is off).
    #[error("this build of impasto has no built-in model (the `embedded-model` feature is off)")]
    NoEmbeddedModel,
    /// A layer name that the network does not have.
    #[error("unknown layer `{name}` for {model} (known: {known})")]
    UnknownLayer {
        /// The name given.
        name: String,
        /// The architecture.
        model: String,
        /// The valid names, comma separated.
        known: String,
    },
    /// An invalid configuration value.
    #[error("invalid {what}: {reason}")]
    Config {
        /// Which setting (e.g. "size", "style blend weights").
        what: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// A checkpoint could not be written or read, or does not belong to this run.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The loss or its gradient became NaN or infinite. `last_good` holds the last image with a finite loss.
    #[error(
        "the loss became non-finite at iteration {iteration} ({what}); try lower weights or a smaller learning rate"
    )]
    NonFinite {
        /// The iteration at which it happened.
        iteration: usize,
        /// What was non-finite.
        what: &'static str,
        /// The last image whose loss was finite (RGB, 0..1).
        last_good: Box<image::Rgb32FImage>,
    },
    /// The GPU failed: no adapter, a driver error, out of memory, a device limit, a lost device. When a
    /// run was under way, `last_good` holds the last image with a finite loss.
    #[error("{reason}")]
    Gpu {
        /// The GPU backend's one-line reason.
        reason: String,
        /// The last good image of the run (RGB, 0..1), if one was under way.
        last_good: Option<Box<image::Rgb32FImage>>,
    },
}

impl From<impasto_weights::Error> for Error {
    fn from(e: impasto_weights::Error) -> Error {
        match e {
            impasto_weights::Error::UnknownLayer { name, model, known } => {
                Error::UnknownLayer { name, model, known }
            }
            e => Error::Weights(e),
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The last good image carried by a [`Error::NonFinite`] or [`Error::Gpu`] error, if any.
    pub fn last_good_image(&self) -> Option<&image::Rgb32FImage> {
        match self {
            Error::NonFinite { last_good, .. } => Some(last_good),
            Error::Gpu { last_good: Some(last_good), .. } => Some(last_good),
            _ => None,
        }
    }

    /// `self` reporting `image` as the run's last good image: a non-finite loss or a GPU failure
    /// carries it (in place of its own); other errors are unchanged.
    pub(crate) fn with_last_good(self, image: image::Rgb32FImage) -> Error {
        match self {
            Error::NonFinite { iteration, what, .. } => {
                Error::NonFinite { iteration, what, last_good: Box::new(image) }
            }
            Error::Gpu { reason, .. } => Error::Gpu { reason, last_good: Some(Box::new(image)) },
            e => e,
        }
    }

    /// Whether this is a GPU allocation that did not fit (the one GPU failure that smaller tiles can
    /// avoid).
    pub(crate) fn is_gpu_out_of_memory(&self) -> bool {
        #[cfg(feature = "gpu")]
        if let Error::Gpu { reason, .. } = self {
            return impasto_gpu::is_out_of_memory(reason);
        }
        false
    }

    /// [`Error::with_last_good`] for a GPU failure that has no image yet: one while building a later
    /// scale's targets or objective (out of memory, a kernel) stops the run as a device lost mid-run
    /// does, with the image the run had. `image`: the newest result, if there is one.
    pub(crate) fn or_last_good(self, image: impl FnOnce() -> Option<image::Rgb32FImage>) -> Error {
        if !matches!(self, Error::Gpu { last_good: None, .. }) {
            return self;
        }
        match image() {
            Some(img) => self.with_last_good(img),
            None => self,
        }
    }
}
