//! The library's one integration-test binary: fixtures against PyTorch, gradient checks, end-to-end runs.

// Tests report measured errors on stderr (shown with `--show-output`).
#![allow(clippy::print_stderr)]

mod common;
mod compact;
mod config;
mod fixtures;
mod gpu;
mod gpu_lbfgs;
mod gpu_refit;
mod gpu_tiles;
mod gpu_wasserstein;
mod gradcheck;
mod io;
mod masks;
mod resume;
mod schedule;
mod steer;
mod stylize;
mod temporal;
mod tile_masks;
mod tile_wasserstein;
mod tiles;
mod wasserstein;
