//! Integration tests of the `impasto` binary, in one test binary: help and usage, user errors, and runs.

mod common;
mod errors;
mod help;
mod run;
