//! Integration tests of the `impasto` binary, in one test binary: help and usage, user errors, runs,
//! run options, checkpoints and `impasto bench`.

mod bench;
mod checkpoint;
mod common;
mod errors;
mod help;
mod options;
mod run;
