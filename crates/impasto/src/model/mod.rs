//! The VGG network: architectures, weights, preprocessing, forward and backward passes.

mod arch;
mod buffers;
mod compact;
mod network;
mod pack;
mod tensors;
mod weights;

pub use arch::{Arch, Layer, LayerKind, Pooling};
pub(crate) use buffers::BufferPool;
pub use compact::{
    COMPACT_FILE_NAME, COMPACT_FORMAT, COMPACT_FORMAT_VERSION, COMPACT_LAST_LAYER, COMPACT_STYLE_LAYERS,
    EMBEDDED_LABEL, check_compact_depth, embedded_model, quantize_channel,
};
pub use impasto_weights::{Preprocess, cache_file_name};
pub(crate) use network::Activations;
pub use network::Vgg;
pub use pack::pack_compact;
pub use weights::locate_weights;
