//! impasto-video: what stylising a video needs besides the style transfer itself, after Ruder,
//! Dosovitskiy & Brox, "Artistic style transfer for videos" (2016):
//! * [`dense_flow`]: dense optical flow between two frames by pyramidal DIS (Kroeger et al. 2016);
//! * [`warp`], [`reliability`] and [`carry_over`]: earlier stylised frames carried along the flow, and
//!   where that can be trusted (forward–backward consistency, motion boundaries), the previous frame and
//!   for long-term consistency frames further back ([`long_term_masks`], [`parse_offsets`]);
//! * [`pass_frames`] and [`revisit`]: the multi-pass algorithm, later passes over a clip in alternating
//!   directions that let each frame follow its future as well as its past;
//! * [`Decoder`] / [`FrameReader`] and [`encode`]: frames in and out of any video through an `ffmpeg`
//!   program the caller names (decoded frames streamed through a pipe), or a folder of numbered PNG frames.
//!
//! Nothing in this crate prints, reads the environment or exits the process.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod ffmpeg;
mod flow;
mod passes;
mod plane;
mod temporal;
mod warp;

pub use error::{Error, Result};
pub use ffmpeg::{Decoder, FrameReader, VideoInfo, encode, finished_frames, frame_path, image_files, probe};
pub use flow::{Flow, FlowParams, dense_flow};
pub use passes::{BLEND_WEIGHT, Revisit, pass_frames, revisit};
pub use plane::Plane;
pub use temporal::{
    BOUNDARY_MATCH_TOLERANCE, Earlier, MAX_OFFSET, carry_over, long_term_masks, parse_offsets, reliability,
};
pub use warp::{blend, masked_mean_abs, warp};
