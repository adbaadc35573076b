//! Integration tests of the `impasto` binary, in one test binary: help and usage, user errors, runs, batches,
//! run options, checkpoints, `impasto bench`, `impasto models` with the first run's download, the
//! built-in compact model, and `impasto serve`.

mod batch;
mod bench;
mod builtin;
mod checkpoint;
mod common;
mod devices;
mod errors;
mod help;
mod http_server;
mod models;
mod options;
mod pth;
mod run;
mod serve;
mod tiles;
mod video;
