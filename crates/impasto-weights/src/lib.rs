//! impasto's model weights: PyTorch checkpoint reading (zip and legacy formats, restricted
//! unpickler), conversion to impasto's safetensors cache form, and downloads with resume, checksum
//! and a cross-process lock.
//!
//! The library never prints and never reads the environment: progress goes to a callback, and
//! environment values (`IMPASTO_MODEL_URL`, an offline switch, a proxy) are the caller's to pass in.
//!
//! Downloading needs the default feature `download`; reading and converting checkpoints do not.
//!
//! ```no_run
//! use std::time::Duration;
//! use impasto_weights::{known_model, model_url, fetch, read_pth_filtered, to_conv_safetensors};
//!
//! let m = known_model("vgg19")?;
//! let url = model_url(m.name, None)?;
//! let dir = std::path::Path::new("/tmp/impasto-cache");
//! let pth = fetch(&url, dir, m.file_name, Some(m.sha256_prefix), &mut |_, _| {}, Duration::from_secs(30))?;
//! let sd = read_pth_filtered(&pth, &|k| k.starts_with("features."))?;
//! to_conv_safetensors(&sd, m.arch, m.conv_count, m.preprocessing, &dir.join("vgg19-conv-imagenet.safetensors"))?;
//! # Ok::<(), impasto_weights::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod checksum;
mod convert;
#[cfg(feature = "download")]
mod download;
mod error;
mod lock;
mod models;
mod pickle;
mod pth;
mod tensor;

pub use checksum::{sha256_file, sha256_matches, sha256_prefix_from_file_name};
pub use convert::{Preprocessing, conv_indices, to_conv_safetensors};
#[cfg(feature = "download")]
pub use download::{FetchOptions, fetch, fetch_with};
pub use error::{Error, Result};
pub use lock::FileLock;
pub use models::{KNOWN_MODELS, KnownModel, arch_for_conv_count, known_model, model_url};
pub use pth::{TensorSpec, read_pth, read_pth_bytes, read_pth_filtered, read_state_dict_pickle};
pub use tensor::{DType, StateDict, Tensor};
