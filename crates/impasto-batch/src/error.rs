//! The errors of a batch: each names the plan key, job, file or shard it is about, in one line.

use std::path::PathBuf;

/// What went wrong while reading a plan, expanding it, sharding it or writing its index. The cause of
/// an I/O or image error is part of the message (not a separate source), so it is said once.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The plan file is not valid TOML or has a key of the wrong type.
    #[error("plan {path}: {message}")]
    PlanSyntax {
        /// The plan file.
        path: PathBuf,
        /// What the TOML reader said, on one line.
        message: String,
    },
    /// A key or value of the plan (or of `--grid`/`--set`) is refused.
    #[error("{place}: {message}")]
    Plan {
        /// Where: `[grid] style-weigth`, `[[job]] 2`, `--grid size=…`.
        place: String,
        /// Why.
        message: String,
    },
    /// An input image or folder named by the plan cannot be read.
    #[error("{place}: cannot read {}: {cause}", path.display())]
    Input {
        /// The plan key or job that names it.
        place: String,
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// Two jobs would write the same output file.
    #[error(
        "duplicate output name `{name}`: {first} and {second} (give one of them another `name` or setting)"
    )]
    DuplicateName {
        /// The output name.
        name: String,
        /// The first job (its origin in the plan).
        first: String,
        /// The second job.
        second: String,
    },
    /// `--shard I/N` that names no shard.
    #[error("invalid shard `{text}`: {why}")]
    Shard {
        /// The text given.
        text: String,
        /// Why it is refused.
        why: String,
    },
    /// Reading or writing a file of the batch (output folder, claim, log, index).
    #[error("{what} {}: {cause}", path.display())]
    Io {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// Writing the contact sheet.
    #[error("contact sheet {}: {cause}", path.display())]
    Image {
        /// The file.
        path: PathBuf,
        /// The encoder's error.
        cause: image::ImageError,
    },
}

/// This crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Plan`].
    pub(crate) fn plan(place: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Plan { place: place.into(), message: message.into() }
    }

    /// An [`Error::Io`].
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { what, path: path.into(), cause: source }
    }
}
