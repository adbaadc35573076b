//! Decoding image files: format sniffing, size limits, refusing truncated files, EXIF orientation, ICC
//! conversion and the alpha plane.

use std::io::Cursor;
use std::path::Path;

use image::{ColorType, DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Rgb32FImage};

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
/// system error reading an existing file, which is an [`Error::Io`]. A PNG or JPEG file that ends
/// before its end marker (IEND chunk, EOI marker) is refused as truncated even where the decoder
/// would fill the missing rows in, so a partial image is never returned.
pub fn load_image_with_alpha(path: &Path) -> Result<(Rgb32FImage, Option<AlphaPlane>)> {
    load(path, true)
}

/// Decodes an image file's bytes held in memory (an upload, say) exactly as [`load_image`] reads a file,
/// with the same limits. `name` stands for the file in error messages.
pub fn decode_image(bytes: &[u8], name: &str) -> Result<Rgb32FImage> {
    decode(bytes, Path::new(name), false).map(|(rgb, _)| rgb)
}

fn load(path: &Path, want_alpha: bool) -> Result<(Rgb32FImage, Option<AlphaPlane>)> {
    let io_err = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => decode_err(path, "no such file"),
        _ => Error::Io { action: "cannot read", path: path.to_path_buf(), error: e },
    };
    let len = std::fs::metadata(path).map_err(io_err)?.len();
    if len > MAX_INPUT_ALLOC {
        return Err(decode_err(
            path,
            format!(
                "too large: the file is {} MiB, over the limit of {} MiB",
                len >> 20,
                MAX_INPUT_ALLOC >> 20
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(io_err)?;
    decode(&bytes, path, want_alpha)
}

fn decode(bytes: &[u8], path: &Path, want_alpha: bool) -> Result<(Rgb32FImage, Option<AlphaPlane>)> {
    // The extension names the format unless the contents say otherwise.
    let mut reader = ImageReader::new(Cursor::new(bytes));
    if let Ok(format) = ImageFormat::from_path(path) {
        reader.set_format(format);
    }
    let mut reader = reader.with_guessed_format().map_err(|e| decode_err(path, e))?;
    let Some(format) = reader.format() else {
        return Err(decode_err(path, "unrecognised or unsupported image format"));
    };
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
    let decoded_bytes = decoder.total_bytes();
    if decoded_bytes > MAX_INPUT_ALLOC {
        return Err(decode_err(
            path,
            format!(
                "too large: {w}×{h} needs {} MiB to decode, over the limit of {} MiB",
                decoded_bytes >> 20,
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
    // The decoder's own errors come first (they say more); a file it decoded is then checked to be
    // whole, since a JPEG decoder fills a scan cut short with grey and says nothing.
    let complete = match format {
        ImageFormat::Jpeg => jpeg_complete(bytes),
        ImageFormat::Png => png_complete(bytes),
        _ => Ok(()),
    };
    complete.map_err(|why| decode_err(path, format!("the file is truncated ({why})")))?;
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

/// Checks that a JPEG file's segments and entropy-coded data run up to its end-of-image marker: some
/// decoders fill a scan that is cut short with grey and report nothing. Data after the marker is
/// allowed (some cameras append some).
fn jpeg_complete(b: &[u8]) -> std::result::Result<(), &'static str> {
    const CUT: &str = "the JPEG data ends before its end-of-image marker";
    if !b.starts_with(&[0xFF, 0xD8]) {
        return Ok(()); // not a JPEG stream the decoder accepts: it reports what is wrong
    }
    let mut i = 2;
    loop {
        // The next marker: 0xFF, any fill 0xFF bytes, then the marker's code. Stray bytes between
        // segments are skipped, as decoders do.
        i += b.get(i..).and_then(|r| r.iter().position(|&x| x == 0xFF)).ok_or(CUT)?;
        while b.get(i) == Some(&0xFF) {
            i += 1;
        }
        let marker = *b.get(i).ok_or(CUT)?;
        i += 1;
        match marker {
            0xD9 => return Ok(()),
            // Markers without a length: TEM, RSTn, and a stray 0x00 after 0xFF.
            0x00 | 0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let len = match b.get(i..i + 2) {
            Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
            _ => return Err(CUT),
        };
        i += len;
        if i > b.len() {
            return Err(CUT);
        }
        if marker == 0xDA {
            // Start of scan: entropy-coded data up to the next marker that is not a stuffed 0xFF00
            // or a restart marker.
            loop {
                i += b.get(i..).and_then(|r| r.iter().position(|&x| x == 0xFF)).ok_or(CUT)?;
                match *b.get(i + 1).ok_or(CUT)? {
                    0x00 | 0xD0..=0xD7 => i += 2,
                    0xFF => i += 1,
                    _ => break,
                }
            }
        }
    }
}

/// Checks that a PNG file's chunks run whole up to its IEND chunk.
fn png_complete(b: &[u8]) -> std::result::Result<(), &'static str> {
    const CUT: &str = "the PNG data ends before its IEND chunk";
    let mut i = 8;
    loop {
        let header = b.get(i..i + 8).ok_or(CUT)?;
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let end = (i + 12).checked_add(len).ok_or(CUT)?;
        if end > b.len() {
            return Err(CUT);
        }
        if &header[4..8] == b"IEND" {
            return Ok(());
        }
        i = end;
    }
}
