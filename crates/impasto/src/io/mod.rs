//! Reading and writing image files: the public entry points, the input limits and the types they share.
//!
//! * [`load_image`] / [`load_image_with_alpha`] read PNG, JPEG, WebP, TIFF, GIF and BMP (8/16-bit, grey,
//!   grey+alpha, palette, RGB(A), CMYK JPEG), apply the EXIF orientation, convert an embedded ICC
//!   profile to sRGB and return RGB 0..1 (plus the alpha plane when there is one); [`decode_image`]
//!   does the same for a file's bytes in memory.
//! * [`save_image`] / [`save_image_with`] write PNG, JPEG, WebP, TIFF or BMP, chosen by extension,
//!   8- or 16-bit, with the alpha plane re-applied and the run's parameters embedded as metadata,
//!   atomically (temporary file in the same folder, then rename); [`reserve_output`] sets the disk
//!   space for a run's output aside before the run, so that a full disk cannot lose the result, and
//!   [`OutputReservation::save_or_rescue`] writes it into another folder when the output's is gone.

mod icc;
mod load;
mod metadata;
mod rescue;
mod reserve;
mod save;

use std::path::Path;

use crate::error::Error;

pub use load::{decode_image, load_image, load_image_with_alpha};
pub use rescue::Saved;
pub use reserve::{OutputReservation, reserve_output};
pub use save::{SaveOptions, as_saved, check_writable, save_image, save_image_with};

/// Largest width or height accepted from an image file (a decompression-bomb guard).
pub const MAX_INPUT_SIDE: u32 = 32_768;
/// Largest decoded allocation accepted from an image file, in bytes.
pub const MAX_INPUT_ALLOC: u64 = 2 << 30;

/// The output formats impasto writes, chosen by file extension.
pub const OUTPUT_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "webp", "tif", "tiff", "bmp"];

/// The name and version written as the `Software` of every saved image, e.g. `impasto 0.1.0`.
pub const SOFTWARE: &str = concat!("impasto ", env!("CARGO_PKG_VERSION"));

/// An image's alpha (opacity) plane, 0 (transparent) ..= 1 (opaque), one value per pixel.
pub type AlphaPlane = image::ImageBuffer<image::Luma<f32>, Vec<f32>>;

fn decode_err(path: &Path, reason: impl ToString) -> Error {
    Error::ImageDecode { path: path.to_path_buf(), reason: reason.to_string() }
}

fn encode_err(path: &Path, reason: impl ToString) -> Error {
    Error::ImageEncode { path: path.to_path_buf(), reason: reason.to_string() }
}
