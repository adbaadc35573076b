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
    /// A checkpoint could not be written during a run (a full disk, its folder removed), which stopped
    /// there. `last_good` holds the image the run had, for the caller to write as for Ctrl-C.
    #[error("checkpoint {path}: {reason}")]
    CheckpointWrite {
        /// The checkpoint file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
        /// The run's image when it stopped (RGB, 0..1).
        last_good: Box<image::Rgb32FImage>,
    },
    /// A tile job's file (`job.json`, its base image, a round's style shift) or a finished tile's
    /// file could not be written or read, or belongs to another job or run. The path names which.
    #[error("{path}: {reason}")]
    TileFile {
        /// The file.
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
        /// Which failure it is, for a caller that reacts to it.
        kind: GpuFailure,
        /// The GPU backend's one-line reason.
        reason: String,
        /// The last good image of the run (RGB, 0..1), if one was under way.
        last_good: Option<Box<image::Rgb32FImage>>,
    },
}

/// The kind of an [`Error::Gpu`]: what a caller may do about it (smaller work after
/// [`GpuFailure::OutOfMemory`] or [`GpuFailure::Limit`], another device after [`GpuFailure::Lost`]
/// or [`GpuFailure::Unavailable`]); the error's line says the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GpuFailure {
    /// No GPU to run on: no adapter matches the choice, or this build has no GPU support.
    Unavailable,
    /// The adapter refused to open a device (a driver error, limits it does not support).
    Open,
    /// An allocation did not fit in the device's memory: the one failure that smaller pieces of the
    /// same work (tiles) can avoid, and the one a run re-plans after.
    OutOfMemory,
    /// The work needs more than one of the adapter's fixed limits (a buffer or binding size) allows.
    Limit,
    /// The device was lost mid-run (driver reset, adapter removed).
    Lost,
    /// A kernel failed to compile or its pipeline to build.
    Kernel,
    /// Any other error the driver or the GPU backend reported.
    Other,
}

/// A GPU failure without an image: what the objective, the optimiser and the run loop hand each
/// other (and keep in a run's error slot) until the run stops and [`GpuFault::into_error`] adds the
/// last good image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GpuFault {
    pub(crate) kind: GpuFailure,
    pub(crate) reason: String,
}

impl GpuFault {
    pub(crate) fn new(kind: GpuFailure, reason: impl Into<String>) -> GpuFault {
        GpuFault { kind, reason: reason.into() }
    }

    /// The fault as an [`Error::Gpu`] carrying `last_good`.
    pub(crate) fn into_error(self, last_good: Option<Box<image::Rgb32FImage>>) -> Error {
        Error::Gpu { kind: self.kind, reason: self.reason, last_good }
    }
}

impl From<GpuFault> for Error {
    fn from(f: GpuFault) -> Error {
        f.into_error(None)
    }
}

/// The one mapping of the GPU backend's errors onto [`GpuFailure`].
#[cfg(feature = "gpu")]
impl From<impasto_gpu::GpuError> for GpuFault {
    fn from(e: impasto_gpu::GpuError) -> GpuFault {
        use impasto_gpu::GpuError as G;
        let kind = match &e {
            G::NoAdapter { .. } => GpuFailure::Unavailable,
            G::RequestDevice { .. } => GpuFailure::Open,
            G::OutOfMemory { .. } => GpuFailure::OutOfMemory,
            G::Limit { .. } => GpuFailure::Limit,
            G::DeviceLost { .. } => GpuFailure::Lost,
            G::Shader { .. } => GpuFailure::Kernel,
            _ => GpuFailure::Other,
        };
        GpuFault { kind, reason: e.to_string() }
    }
}

#[cfg(feature = "gpu")]
impl From<impasto_gpu::GpuError> for Error {
    fn from(e: impasto_gpu::GpuError) -> Error {
        GpuFault::from(e).into()
    }
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
    /// Why the run could not continue from the checkpoint at `path` (damaged, written by another
    /// version of impasto, or for other settings or images), if that is what this error says: a
    /// caller that keeps its own checkpoints removes it and starts over. (One that cannot be
    /// written is another error, [`Error::CheckpointWrite`], and keeps the file.)
    pub fn checkpoint_refusal(&self, path: &std::path::Path) -> Option<&str> {
        match self {
            Error::Checkpoint { path: p, reason } if p == path => Some(reason),
            _ => None,
        }
    }

    /// The last good image carried by a [`Error::NonFinite`], [`Error::Gpu`] or
    /// [`Error::CheckpointWrite`] error, if any.
    pub fn last_good_image(&self) -> Option<&image::Rgb32FImage> {
        match self {
            Error::NonFinite { last_good, .. } | Error::CheckpointWrite { last_good, .. } => Some(last_good),
            Error::Gpu { last_good: Some(last_good), .. } => Some(last_good),
            _ => None,
        }
    }

    /// `self` reporting `image` as the run's last good image: a non-finite loss, a GPU failure or a
    /// checkpoint that could not be written carries it (in place of its own); other errors are
    /// unchanged.
    pub(crate) fn with_last_good(self, image: image::Rgb32FImage) -> Error {
        match self {
            Error::NonFinite { iteration, what, .. } => {
                Error::NonFinite { iteration, what, last_good: Box::new(image) }
            }
            Error::Gpu { kind, reason, .. } => Error::Gpu { kind, reason, last_good: Some(Box::new(image)) },
            Error::CheckpointWrite { path, reason, .. } => {
                Error::CheckpointWrite { path, reason, last_good: Box::new(image) }
            }
            e => e,
        }
    }

    /// Whether this is a GPU allocation that did not fit (the one GPU failure that smaller tiles can
    /// avoid).
    pub(crate) fn is_gpu_out_of_memory(&self) -> bool {
        matches!(self, Error::Gpu { kind: GpuFailure::OutOfMemory, .. })
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

#[cfg(all(test, feature = "gpu"))]
mod tests {
    use super::{Error, GpuFailure, GpuFault};
    use impasto_gpu::GpuError;

    #[test]
    fn each_gpu_error_has_its_kind_and_keeps_its_line() {
        let a = || "card".to_string();
        let cases = [
            (GpuError::NoAdapter { reason: "none".into() }, GpuFailure::Unavailable),
            (GpuError::RequestDevice { adapter: a(), reason: "no".into() }, GpuFailure::Open),
            (GpuError::OutOfMemory { adapter: a(), what: "x".into(), bytes: 4 }, GpuFailure::OutOfMemory),
            (
                GpuError::Limit { adapter: a(), what: "x".into(), limit: "l", needed: 2, allowed: 1 },
                GpuFailure::Limit,
            ),
            (GpuError::DeviceLost { adapter: a(), reason: "reset".into() }, GpuFailure::Lost),
            (GpuError::Shader { kernel: "conv3x3", adapter: a(), reason: "bad".into() }, GpuFailure::Kernel),
            (GpuError::Driver { adapter: a(), op: "submit", reason: "x".into() }, GpuFailure::Other),
            (GpuError::Shape { op: "gram", reason: "x".into() }, GpuFailure::Other),
        ];
        for (e, kind) in cases {
            let line = e.to_string();
            let err = Error::from(e);
            assert!(
                matches!(&err, Error::Gpu { kind: k, reason, last_good: None } if *k == kind && *reason == line)
            );
            assert_eq!(err.is_gpu_out_of_memory(), kind == GpuFailure::OutOfMemory, "{line}");
        }
        // The run's last good image joins the fault, which keeps its kind.
        let image = image::Rgb32FImage::new(2, 1);
        let err = GpuFault::new(GpuFailure::Lost, "gone").into_error(None).with_last_good(image);
        assert!(matches!(err, Error::Gpu { kind: GpuFailure::Lost, .. }));
        assert_eq!(err.last_good_image().map(|i| i.dimensions()), Some((2, 1)));
    }
}
