//! impasto's model weights: the VGG architectures and input conventions, PyTorch checkpoint reading
//! (zip and legacy formats, restricted unpickler), reading any checkpoint impasto accepts (told
//! apart by its bytes), conversion to impasto's safetensors cache form, finding a run's weights
//! (named, cached, downloaded, or a built-in fallback), and downloads with resume, checksum and a
//! cross-process lock.
//!
//! The library never prints and never reads the environment: progress goes to a callback, and
//! environment values (`IMPASTO_WEIGHTS`, `IMPASTO_CACHE_DIR`, `IMPASTO_MODEL_URL`, an offline
//! switch) are the caller's to pass in as [`WeightsOptions`].
//!
//! Downloading needs the default feature `download`; reading and converting checkpoints do not.
//!
//! ```no_run
//! use impasto_weights::{Arch, Resolved, WeightsOptions, resolve};
//!
//! let options = WeightsOptions {
//!     cache_dir: Some("/tmp/impasto-cache".into()),
//!     builtin_fallback: true,
//!     ..WeightsOptions::default()
//! };
//! match resolve(Arch::Vgg19, &options, &mut |event| eprintln!("{event:?}"))? {
//!     Resolved::File(path) => println!("weights: {}", path.display()),
//!     Resolved::Builtin { reason } => println!("the built-in model: {reason}"),
//! }
//! # Ok::<(), impasto_weights::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod arch;
mod checkpoint;
mod checksum;
mod convert;
#[cfg(feature = "download")]
mod download;
mod error;
mod lock;
mod models;
mod pickle;
mod preprocess;
mod pth;
mod resolve;
mod tensor;

pub use arch::{Arch, Layer, LayerKind};
pub use checkpoint::{
    Checkpoint, Format, conv_key, known_checkpoint, pth_to_conv_safetensors, read_checkpoint,
    read_checkpoint_bytes, safetensors_metadata,
};
pub use checksum::{sha256_file, sha256_hex, sha256_matches, sha256_prefix_from_file_name};
pub use convert::{CONV_FORMAT, conv_indices, sorted_safetensors, to_conv_safetensors};
#[cfg(feature = "download")]
pub use download::{FetchOptions, fetch, fetch_with};
pub use error::{Error, Result};
pub use lock::FileLock;
pub use models::{KNOWN_MODELS, KnownModel, known_model, known_model_for, model_url};
pub use preprocess::Preprocess;
pub use pth::{TensorSpec, read_pth, read_pth_bytes, read_pth_filtered, read_state_dict_pickle};
pub use resolve::{
    DEFAULT_TIMEOUT, DOWNLOADS, Event, Fallback, Located, Missing, Origin, Resolved, WeightsOptions,
    cache_file_name, cached_file, expected_file, locate,
};
#[cfg(feature = "download")]
pub use resolve::{download_model, resolve};
pub use tensor::{DType, StateDict, Tensor};
