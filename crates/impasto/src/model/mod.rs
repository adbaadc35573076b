//! The VGG network: architectures, weights, preprocessing, forward and backward passes.

mod arch;
mod buffers;
mod network;
mod preprocess;
mod weights;

pub use arch::{Arch, Layer, LayerKind, Pooling};
pub(crate) use buffers::BufferPool;
pub use network::Vgg;
pub use preprocess::Preprocess;
pub use weights::{cache_file_name, locate_weights};
