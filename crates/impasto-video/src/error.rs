//! The errors of video I/O, each naming the program or file involved, and of the temporal settings.

use std::path::PathBuf;

/// Why reading or writing frames failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ffmpeg program could not be started.
    #[error("could not run ffmpeg `{}`: {source}", program.display())]
    Spawn {
        /// The program given.
        program: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// ffmpeg found no video stream, or could not read the file.
    #[error("cannot read video {}: {reason}", path.display())]
    Probe {
        /// The input.
        path: PathBuf,
        /// ffmpeg's message.
        reason: String,
    },
    /// Decoding stopped with an error or in the middle of a frame.
    #[error("cannot decode video {}: {reason}", path.display())]
    Decode {
        /// The input.
        path: PathBuf,
        /// ffmpeg's message.
        reason: String,
    },
    /// Encoding the output failed.
    #[error("cannot write video {}: {reason}", path.display())]
    Encode {
        /// The output.
        path: PathBuf,
        /// ffmpeg's message.
        reason: String,
    },
    /// A frame file or folder could not be read or written.
    #[error("{}: {reason}", path.display())]
    Frames {
        /// The file or folder.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A list of long-term frame offsets that cannot be used.
    #[error("invalid frame offsets `{given}`: {reason}")]
    Offsets {
        /// The text given.
        given: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
