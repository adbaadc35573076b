//! impasto-video's integration tests: flow accuracy on synthetic motion with known ground truth, the
//! reliability mask on occlusions, the long-term temporal targets, and frame I/O through ffmpeg.

// Tests report measured errors on stderr (shown with `--show-output`).
#![allow(clippy::print_stderr)]

mod flow;
mod synth;
mod temporal;
