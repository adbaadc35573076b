//! Reading and writing image files: format detection, EXIF orientation, decoder limits, 8/16-bit output.

use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, Rgb32FImage};

use crate::error::{Error, Result};

/// Largest width or height accepted from an image file (a decompression-bomb guard).
pub const MAX_INPUT_SIDE: u32 = 32_768;
/// Largest decoded allocation accepted from an image file, in bytes.
pub const MAX_INPUT_ALLOC: u64 = 2 << 30;

fn decode_err(path: &Path, reason: impl ToString) -> Error {
    Error::ImageDecode { path: path.to_path_buf(), reason: reason.to_string() }
}

/// Reads an image file of any supported format (PNG, JPEG, WebP, TIFF, GIF, BMP), applies its EXIF
/// orientation and returns it as RGB 0..1 (alpha, if any, is dropped; grey is expanded to RGB).
pub fn load_image(path: &Path) -> Result<Rgb32FImage> {
    let reader = ImageReader::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => decode_err(path, "no such file"),
        _ => Error::Io { action: "cannot read", path: path.to_path_buf(), source: e },
    })?;
    let mut reader = reader.with_guessed_format().map_err(|e| decode_err(path, e))?;
    if reader.format().is_none() {
        return Err(decode_err(path, "unrecognised or unsupported image format"));
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_INPUT_SIDE);
    limits.max_image_height = Some(MAX_INPUT_SIDE);
    limits.max_alloc = Some(MAX_INPUT_ALLOC);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| decode_err(path, e))?;
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| decode_err(path, e))?;
    img.apply_orientation(orientation);
    if img.width() == 0 || img.height() == 0 {
        return Err(decode_err(path, "the image is empty"));
    }
    Ok(img.into_rgb32f())
}

/// The output formats impasto writes, chosen by file extension.
pub const OUTPUT_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "webp", "tif", "tiff", "bmp"];

/// Checks that `path` has a supported extension and that its folder exists and is writable,
/// by creating and removing a probe file there. Call it before any long computation.
pub fn check_writable(path: &Path) -> Result<()> {
    let enc = |reason: String| Error::ImageEncode { path: path.to_path_buf(), reason };
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    if !OUTPUT_EXTENSIONS.contains(&ext.as_str()) {
        return Err(enc(format!(
            "unsupported output extension `.{ext}` (use one of: {})",
            OUTPUT_EXTENSIONS.join(", ")
        )));
    }
    if path.is_dir() {
        return Err(enc("it is a directory".into()));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(enc(format!("folder {} does not exist", dir.display())));
    }
    let probe = dir.join(format!(".impasto-write-probe-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
        }
        Err(e) => return Err(enc(format!("folder {} is not writable ({e})", dir.display()))),
    }
    if path.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| enc(format!("not writable ({e})")))?;
    }
    Ok(())
}

/// Writes an RGB 0..1 image; the format follows the extension (8-bit, except 16-bit for TIFF).
/// The file is written to a temporary name in the same folder and renamed, so a reader never
/// sees half a file and an old result is replaced only by a complete new one.
pub fn save_image(img: &Rgb32FImage, path: &Path) -> Result<()> {
    let enc = |reason: String| Error::ImageEncode { path: path.to_path_buf(), reason };
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    let format = image::ImageFormat::from_extension(&ext)
        .ok_or_else(|| enc(format!("unsupported output extension `.{ext}`")))?;
    let dynimg = DynamicImage::ImageRgb32F(img.clone());
    let out = match format {
        image::ImageFormat::Tiff => DynamicImage::ImageRgb16(dynimg.to_rgb16()),
        _ => DynamicImage::ImageRgb8(dynimg.to_rgb8()),
    };
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    out.save_with_format(&tmp, format).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        enc(e.to_string())
    })?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        enc(e.to_string())
    })
}
