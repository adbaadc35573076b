//! GPU backend of impasto: the VGG forward pass, the style-transfer losses (content, Gram-matrix style
//! with masks, host terms of the layers' statistics, total variation) and the backward pass to the pixels as WGSL compute kernels on wgpu
//! (Vulkan, Metal, DirectX 12), every buffer resident on the device between evaluations.
//!
//! * [`adapters`] lists the adapters; [`Gpu::new`] opens one ([`Choice`]).
//! * [`GpuNet`] holds a network's weights on the device, built from plain [`LayerSpec`]s.
//! * [`GpuObjective`] evaluates the loss and its gradient for one image size: pixels go up, the
//!   three loss terms and the gradient come back, one submit and one read-back per evaluation (two,
//!   around a host step, for [`StyleTarget::Moments`] terms).
//! * [`GpuHistory`] keeps L-BFGS's correction pairs on the device and runs the two-loop recursion
//!   there: the gradient goes up, the direction comes back.
//! * One-shot kernel calls on host slices ([`Gpu::conv3x3_forward`], …) exist for tests and benches;
//!   [`Gpu::ceilings`] measures what the adapter reaches with the simplest kernels.
//!
//! Every reduction runs in a fixed order (per-workgroup trees, then one ordered pass; split-K slices
//! summed in order; no atomics), so one device and driver give the same bits run after run.
//! Nothing here prints, reads the environment or exits; errors are [`GpuError`].

mod adapters;
#[cfg(test)]
mod backends;
mod blocks;
mod device;
mod error;
mod gemm;
mod history;
mod identity;
mod kernels;
mod memory;
mod moments;
mod net;
mod objective;
mod ops;
mod peak;
mod profile;
mod program;
mod tune;
mod winograd;

pub use adapters::{AdapterSummary, adapters};
pub use device::{Choice, Faults, Gpu, GpuOptions, KernelClock};
pub use error::{GpuError, Result};
pub use history::GpuHistory;
pub use kernels::{GemmTile, SmallTiles};
pub use moments::{MomentGradient, MomentLoss, Moments};
pub use net::{GpuNet, LayerOutput, LayerSpec, PreprocessSpec};
pub use objective::{GpuLosses, GpuObjective, StyleTarget, StyleTerm};
pub use ops::flip_weights;
pub use peak::Ceilings;
pub use tune::{Tune, TunedProduct};
