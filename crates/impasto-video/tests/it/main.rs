//! impasto-video's integration tests: flow accuracy on synthetic motion with known ground truth, the
//! reliability mask on occlusions, and frame I/O through ffmpeg.

mod flow;
mod synth;
