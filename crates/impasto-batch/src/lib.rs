//! impasto's batches: many style transfers from one plan, split over the nodes of a cluster with no
//! coordinator.
//!
//! - [`Plan`]: a TOML plan (`output`, `[settings]`, `[grid]`, `[[job]]`) or a command-line grid.
//! - [`expand`]: the plan's job list, each job with a fingerprint (SHA-256 of its inputs' bytes and
//!   settings) and an output name derived from it; the same list on every machine.
//! - [`shard::assign`]: N disjoint parts balanced by cost (pixels × iterations).
//! - [`claim`]: one owner per job on a shared file system (an atomically created marker, taken over
//!   when its owner is gone), and [`claim::is_done`]: a result with the job's fingerprint.
//! - [`log`]: the JSON-lines log; [`index`]: the contact sheet and HTML page.
//!
//! The library never prints, never reads the environment and runs no job: the caller (the `impasto
//! batch` command) says which run flags exist, runs each job and reads the shard from its environment.

pub mod claim;
mod error;
mod expand;
mod font;
pub mod index;
pub mod log;
mod plan;
pub mod shard;

pub use error::{Error, Result};
pub use expand::{FlagKind, Flags, IMAGE_EXTENSIONS, Job, JobList, expand};
pub use plan::{Grid, JobSpec, Plan, Value};
pub use shard::Shard;
