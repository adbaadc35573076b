//! Integration tests of impasto-kernels: every fast kernel against its naive twin,
//! at every SIMD level the CPU supports, finite-difference gradient checks, tie rules,
//! determinism and the SIMD levels themselves.

mod common;
mod conv;
mod determinism;
mod gram;
mod levels;
mod microkernel;
mod pool;
mod relu;
mod sgemm;
mod winograd;
