//! The GPU backend's one integration-test binary: every kernel against its CPU naive twin, the network
//! against the PyTorch fixtures, the objective's losses and gradient, L-BFGS's two-loop recursion on
//! the device against the host's, determinism, the Vulkan validation layer's verdict. The tests need a
//! Vulkan (or Metal / DX12) adapter, software ones included (lavapipe in CI); without one they fail.

// Tests report measured errors and times on stderr (shown with `--show-output`).
#![allow(clippy::print_stderr)]

mod adapter;
mod common;
mod faults;
mod fixtures;
mod history;
mod kernels;
mod moments;
mod split;
mod tune;
mod validation;
mod winograd;
