//! Decoding image files: format sniffing, size limits, EXIF orientation, ICC conversion and the alpha plane.

use std::io::{BufRead, Cursor, Seek};
use std::path::Path;

use image::{ColorType, DynamicImage, ImageDecoder, ImageError, ImageReader, Rgb32FImage};

use super::{AlphaPlane, MAX_INPUT_ALLOC, MAX_INPUT_SIDE, decode_err, icc};
use crate::error::{Error, Result};

/// Reads an image file of any supported format (PNG, JPEG, WebP, TIFF, GIF, BMP), applies its EXIF
/// orientation, converts an embedded ICC profile to sRGB and returns it as RGB 0..1 (alpha, if any,
/// is dropped; grey is expanded to RGB). See [`load_image_with_alpha`] for the details.
pub fn load_image(path: &Path) -> Result<Rgb32FImage> {
    load(path, false).map(|(rgb, _)| rgb)
}

/// Reads an image file like [`load_image`] and also returns its alpha plane, or `None` when the file
/// has no alpha channel or every pixel is fully opaque.
///
/// * Any bit depth the decoders produce (8/16-bit, palette, grey, grey+alpha, RGB(A), float) becomes
///   RGB 0..1; a CMYK JPEG is converted to RGB by the JPEG decoder.
/// * An embedded ICC profile is honoured: an RGB profile other than sRGB (Display P3, Adobe RGB, a
///   camera profile …) on an RGB image, or a grey profile on a grey image, is converted to sRGB
///   (relative colorimetric via matrix/TRC or LUT, as `moxcms` supports it), colours outside sRGB
///   being clipped. A profile that does not match the decoded pixels (a CMYK profile, whose pixels the
///   decoder has already turned into RGB, or an RGB profile on a grey image), one that cannot be
///   parsed, or one `moxcms` cannot build a transform for is ignored: the pixels are taken as sRGB.
/// * The colour values under transparent pixels are returned as stored (not premultiplied).
///
/// Files wider or taller than [`MAX_INPUT_SIDE`], or whose decoding needs more than
/// [`MAX_INPUT_ALLOC`] bytes, are refused before their pixels are decoded. Every failure (missing,
/// unrecognised, corrupt, truncated, too large) is an [`Error::ImageDecode`], except an operating
/// system error reading an existing file, which is an [`Error::Io`].
pub fn load_image_with_alpha(path: &Path) -> Result<(Rgb32FImage, Option<AlphaPlane>)> {
    load(path, true)
}

/// Decodes an image file's bytes held in memory (an upload, say) exactly as [`load_image`] reads a file,
/// with the same limits. `name` stands for the file in error messages.
pub fn decode_image(bytes: &[u8], name: &str) -> Result<Rgb32FImage> {
    decode(ImageReader::new(Cursor::new(bytes)), Path::new(name), false).map(|(rgb, _)| rgb)
}

fn load(path: &Path, want_alpha: bool) -> Result<(Rgb32FImage, Option<AlphaPlane>)> {
    let reader = ImageReader::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => decode_err(path, "no such file"),
        _ => Error::Io { action: "cannot read", path: path.to_path_buf(), error: e },
    })?;
    decode(reader, path, want_alpha)
}

fn decode<R: BufRead + Seek>(
    reader: ImageReader<R>,
    path: &Path,
    want_alpha: bool,
) -> Result<(Rgb32FImage, Option<AlphaPlane>)> {
    let mut reader = reader.with_guessed_format().map_err(|e| decode_err(path, e))?;
    if reader.format().is_none() {
        return Err(decode_err(path, "unrecognised or unsupported image format"));
    }
    // The header is read with only the allocation limit so that an oversized image gets the clear
    // message below rather than the decoder's generic one; the full limits are set before decoding.
    let mut header_limits = image::Limits::default();
    header_limits.max_alloc = Some(MAX_INPUT_ALLOC);
    reader.limits(header_limits);
    let mut decoder = reader.into_decoder().map_err(|e| image_err(path, e))?;
    let (w, h) = decoder.dimensions();
    if w > MAX_INPUT_SIDE || h > MAX_INPUT_SIDE {
        return Err(decode_err(
            path,
            format!("too large: {w}×{h} exceeds the limit of {MAX_INPUT_SIDE} pixels per side"),
        ));
    }
    if w == 0 || h == 0 {
        return Err(decode_err(path, "the image is empty"));
    }
    let bytes = decoder.total_bytes();
    if bytes > MAX_INPUT_ALLOC {
        return Err(decode_err(
            path,
            format!(
                "too large: {w}×{h} needs {} MiB to decode, over the limit of {} MiB",
                bytes >> 20,
                MAX_INPUT_ALLOC >> 20
            ),
        ));
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_INPUT_SIDE);
    limits.max_image_height = Some(MAX_INPUT_SIDE);
    limits.max_alloc = Some(MAX_INPUT_ALLOC);
    decoder.set_limits(limits).map_err(|e| image_err(path, e))?;

    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let profile = decoder.icc_profile().ok().flatten();
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| image_err(path, e))?;
    img.apply_orientation(orientation);
    if img.width() == 0 || img.height() == 0 {
        return Err(decode_err(path, "the image is empty"));
    }
    let color = img.color();
    let alpha = if want_alpha && color.has_alpha() { alpha_plane(&img) } else { None };
    let rgb = match profile.as_deref() {
        Some(bytes) => to_srgb(img, color, bytes),
        None => img.into_rgb32f(),
    };
    Ok((rgb, alpha))
}

/// Converts the decoded pixels to RGB 0..1 in sRGB, through the ICC profile when it applies.
fn to_srgb(img: DynamicImage, color: ColorType, profile: &[u8]) -> Rgb32FImage {
    if color.has_color() {
        let mut rgb = img.into_rgb32f();
        icc::rgb_to_srgb(profile, &mut rgb);
        rgb
    } else {
        let luma = img.to_luma32f();
        icc::gray_to_srgb(profile, &luma).unwrap_or_else(|| img.into_rgb32f())
    }
}

/// The alpha plane of an image that has one, or `None` when every pixel is fully opaque.
fn alpha_plane(img: &DynamicImage) -> Option<AlphaPlane> {
    let alpha: Vec<f32> = if img.color().has_color() {
        img.to_rgba32f().pixels().map(|p| p.0[3]).collect()
    } else {
        img.to_luma_alpha32f().pixels().map(|p| p.0[1]).collect()
    };
    if alpha.iter().all(|&a| a >= 1.0) {
        return None;
    }
    AlphaPlane::from_raw(img.width(), img.height(), alpha)
}

fn image_err(path: &Path, e: ImageError) -> Error {
    match e {
        ImageError::Limits(l) => decode_err(
            path,
            format!(
                "too large: {l} (limits: {MAX_INPUT_SIDE} pixels per side, {} MiB to decode)",
                MAX_INPUT_ALLOC >> 20
            ),
        ),
        ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            decode_err(path, format!("the file is truncated ({io})"))
        }
        e => decode_err(path, e),
    }
}
