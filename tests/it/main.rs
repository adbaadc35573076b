//! Integration tests of the `impasto` binary, in one test binary: help and usage, user errors, runs,
//! run options, checkpoints, `impasto bench`, `impasto models` with the first run's download, and the
//! built-in compact model.

mod bench;
mod builtin;
mod checkpoint;
mod common;
mod errors;
mod help;
mod http_server;
mod models;
mod options;
mod pth;
mod run;
