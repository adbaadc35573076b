//! impasto: neural style transfer (Gatys, Ecker & Bethge 2015) on the CPU.
//!
//! The library takes a configuration and images in, and gives an image out. A fixed, ImageNet-trained
//! VGG network ([`Vgg`]) measures *content* (features at deep layers, default `relu4_2`) and *style*
//! (Gram matrices of features at several layers, default `relu1_1` … `relu5_1`); the pixels of the
//! output are optimised with L-BFGS or Adam until the output has the content of one image and the style
//! of the others.
//!
//! # Losses
//! Every term is a per-element mean, so a weight means the same at every image size:
//! * content: `α · Σ_l mean((F_l(x) − F_l(c))²)` over the content layers;
//! * style: `β · Σ_l w_l · mean((G_l(x) − A_l)²)` with `G = F·Fᵀ / (C·H·W)` and
//!   `A_l = Σ_k b_k · G_l(s_k)` the blend of the style images' Grams;
//! * total variation: `λ · Σ (x[i,j+1] − x[i,j])² + (x[i+1,j] − x[i,j])² / (3·H·W)` on the RGB 0..1 image;
//! * temporal (video frames, [`stylize_frame`]): `τ · Σ m·(x − w)² / (3·Σ m)` with `w` the previous
//!   stylised frame warped onto this one and `m` where that warp is reliable.
//!
//! # Example
//! ```no_run
//! use impasto::{Arch, NoObserver, Pooling, StyleConfig, Vgg, load_image, save_image, stylize};
//! # fn main() -> impasto::Result<()> {
//! let config = StyleConfig { size: 256, iterations: 200, ..StyleConfig::default() };
//! let net = Vgg::load("vgg16-conv-imagenet.safetensors".as_ref(), Arch::Vgg16, Pooling::Max, None, "relu5_1")?;
//! let content = load_image("photo.jpg".as_ref())?;
//! let style = load_image("painting.jpg".as_ref())?;
//! let out = stylize(&net, &config, &content, &[style], &mut NoObserver)?;
//! save_image(&out.image, "out.png".as_ref())?;
//! # Ok(()) }
//! ```
//!
//! Progress and cancellation go through an [`Observer`]. Nothing in this crate prints, reads the
//! environment or exits the process.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bench;
mod checkpoint;
mod color;
mod config;
mod device;
mod error;
mod eta;
mod io;
mod layers;
mod loss;
mod model;
mod observer;
mod optim;
mod output;
mod pixels;
mod run;
pub mod tiles;
mod visible;

pub use color::{ColorMatch, ColorMode, luminance, match_colors, match_luminance, preserve_colors};
pub use config::{
    Init, LBFGS_MEMORY, MAX_SIZE, MAX_THREADS, Optimizer, StyleConfig, StyleLoss, lbfgs_history_for,
};
pub use device::{
    Device, GpuAdapter, GpuFaults, ResolvedDevice, gpu_adapters, resolve_device, resolve_device_among,
};
pub use error::{Error, GpuFailure, Result};
pub use eta::Eta;
pub use image;
pub use io::{
    AlphaPlane, MAX_INPUT_ALLOC, MAX_INPUT_SIDE, OUTPUT_EXTENSIONS, OutputReservation, SOFTWARE, SaveOptions,
    Saved, as_saved, check_writable, decode_image, load_image, load_image_with_alpha, reserve_output,
    save_image, save_image_with,
};
pub use layers::{deepest_layer, default_style_layers};
pub use loss::{
    GpuProfile, GpuTuned, Objective, Temporal, features_on, gram_matrix, grams_on, masked_grams_on,
    moments_on,
};
pub use model::{
    Arch, COMPACT_FILE_NAME, COMPACT_FORMAT, COMPACT_FORMAT_VERSION, COMPACT_LAST_LAYER,
    COMPACT_STYLE_LAYERS, EMBEDDED_LABEL, Layer, LayerKind, Pooling, Preprocess, Vgg, cache_file_name,
    check_compact_depth, embedded_model, locate_weights, pack_compact, quantize_channel,
};
pub use observer::{Losses, NoObserver, Observer, Replan, RunInfo, Scale, Step, StopReason, Weights};
pub use output::{at_output_size, output_size};
pub use pixels::{fit_longest_side, from_planar, resize, to_planar};
pub use run::{Stylized, score, stylize, stylize_frame};
pub use visible::{NVIDIA_VENDOR, VisibleGpus};
