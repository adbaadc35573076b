//! Integration tests of impasto-kernels: every fast kernel against its naive twin,
//! finite-difference gradient checks, tie rules and determinism.

mod common;
mod conv;
mod determinism;
mod gram;
mod microkernel;
mod pool;
mod relu;
mod sgemm;
mod winograd;
