//! CPU kernels of impasto: the `sgemm` entry point, 3×3 convolution (forward
//! and gradient to the input), ReLU, 2×2 pooling, Gram matrices, and the f64
//! dot product that L-BFGS uses on the host and on a GPU history's host side.
//!
//! # Layout and conventions
//!
//! * Every activation is a **single image in CHW layout**: contiguous `f32`,
//!   channel-major, then row, then column. Element `(c, i, j)` of a `c×h×w`
//!   tensor is at index `(c·h + i)·w + j`. Matrices are row-major.
//! * Output buffers are **overwritten** unless a function takes an
//!   `accumulate` flag. Buffer sizes are passed explicitly; a slice of the
//!   wrong length is a programming error and panics with a message naming it.
//! * Semantics follow PyTorch: [`Conv3x3`] is `conv2d` (cross-correlation,
//!   stride 1, zero padding 1, bias); pooling is 2×2 stride 2 with `floor`
//!   output size; the max-pool gradient goes to the first maximum of a window
//!   in row-major order.
//! * Only gradients with respect to **inputs** are provided: the network
//!   weights are frozen in style transfer.
//!
//! # GEMM
//!
//! [`sgemm`] is the single matrix-multiply entry point of the whole project.
//! On x86-64 CPUs with AVX-512F it runs the crate's own packed, register-blocked
//! micro-kernel (`microkernel.rs`, 14×32 tiles); elsewhere it wraps the `gemm`
//! crate. It and every parallel kernel here run on the *current* rayon pool;
//! install a pool (`ThreadPool::install`) to control the thread count.
//!
//! # Determinism
//!
//! For a fixed rayon thread count and SIMD level every kernel is bitwise
//! reproducible: no reduction is split in a way that depends on scheduling.
//!
//! # SIMD levels
//!
//! Kernels pick AVX-512, AVX2+FMA or portable code at run time ([`SimdLevel`],
//! [`simd_level`]); [`with_simd_level`] caps the level for one call, so tests
//! and benchmarks can run every level the CPU supports. The Winograd
//! transforms give identical bits at every level; the GEMM does not (the
//! AVX-512F micro-kernel sums in another order than the `gemm` crate), so
//! results at the AVX-512 level differ in the last bits from those below it.
//!
//! # Safety
//!
//! With `impasto-gpu` (two calls into wgpu and Vulkan, each with its reason),
//! this is the only crate of the workspace allowed `unsafe`; it is confined
//! to the call into the `gemm` crate in `sgemm.rs`, after bounds checks, to
//! calling `#[target_feature]` builds of safe kernel bodies after runtime
//! feature detection (`simd.rs`), and to the AVX-512F GEMM micro-kernel and
//! its packing (`microkernel.rs`, `pack.rs`: raw-pointer loads and stores
//! inside bounds-checked panels, run only at the AVX-512 level, which is never
//! above what `is_x86_feature_detected!` reported).
//!
//! # Algorithms
//!
//! [`Conv3x3`] runs Winograd F(4×4, 3×3) (`winograd.rs`, 4× fewer multiplies)
//! where it wins and tiled im2col + GEMM otherwise; [`ConvAlgo`] forces one.
//!
//! # Reference implementations
//!
//! [`naive`] holds obviously-correct twins of every kernel (f64
//! accumulation) for tests, including other crates' tests.

#![deny(missing_docs)]

mod conv;
pub mod dot;
mod gram;
mod im2col;
mod microkernel;
pub mod naive;
mod pack;
mod par;
mod pool;
mod pool_argmax;
mod relu;
mod sgemm;
mod simd;
mod winograd;

pub use conv::{Conv3x3, ConvAlgo, winograd_applies};
pub use gram::{gram, gram_backward};
pub use pool::{
    avg_pool2x2_backward, avg_pool2x2_forward, l2_pool2x2_backward, l2_pool2x2_forward, max_pool2x2_backward,
    max_pool2x2_forward,
};
pub use pool_argmax::{NO_GRADIENT, max_pool2x2_backward_argmax, max_pool2x2_forward_argmax};
pub use relu::{relu_backward_inplace, relu_inplace};
pub use sgemm::sgemm;
pub use simd::{SimdLevel, simd_level, supported_simd_levels, with_simd_level};
pub use winograd::transform_weights as winograd_weights;
