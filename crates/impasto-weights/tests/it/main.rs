//! Integration tests of impasto-weights, all offline: checkpoint reading against committed
//! fixtures (tests/data, written by make_fixtures.py), format detection, conversion, finding the
//! weights, and downloads from a loopback HTTP server.

mod checkpoint;
mod convert;
#[cfg(feature = "download")]
mod download;
mod fixtures;
#[cfg(feature = "download")]
mod http_server;
mod memory;
mod models;
mod pth;
#[cfg(feature = "download")]
mod resolve;
