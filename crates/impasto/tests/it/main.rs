//! The library's one integration-test binary: fixtures against PyTorch, gradient checks, end-to-end runs.

mod common;
mod config;
mod fixtures;
mod gradcheck;
mod stylize;
