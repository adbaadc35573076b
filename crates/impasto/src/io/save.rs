//! Encoding and writing images: format by extension, quality, bit depth, alpha, metadata, atomic rename.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use image::imageops::FilterType;
use image::{DynamicImage, ImageEncoder, Rgb32FImage, Rgba32FImage};

use super::{AlphaPlane, OUTPUT_EXTENSIONS, SOFTWARE, encode_err, metadata};
use crate::error::{Error, Result};

/// How [`save_image_with`] writes an image.
#[derive(Debug, Clone, PartialEq)]
pub struct SaveOptions {
    /// JPEG quality, 1 (smallest) ..= 100 (best); default 95. JPEGs are written without chroma
    /// subsampling (4:4:4). Ignored by the other formats (WebP is written lossless).
    pub quality: u8,
    /// Bits per channel: 8 (default) or 16. 16 is only possible for PNG and TIFF.
    pub depth: u8,
    /// An alpha plane to write with the image (see [`crate::load_image_with_alpha`]); resized to the
    /// image's size if it differs. PNG, WebP, TIFF and BMP store it; JPEG has no alpha, so it is
    /// dropped there.
    pub alpha: Option<AlphaPlane>,
    /// `(key, value)` text to embed, e.g. `("parameters", "--style-weight 1e5 …")`. Always followed
    /// by `Software` = [`crate::SOFTWARE`] (unless a `Software` key is given). PNG: one tEXt chunk per
    /// pair (iTXt when the value is not ASCII). JPEG and WebP: EXIF ImageDescription holding the
    /// pairs as `key: value` lines, and EXIF Software. TIFF and BMP: not written.
    pub metadata: Vec<(String, String)>,
}

impl Default for SaveOptions {
    fn default() -> Self {
        SaveOptions { quality: 95, depth: 8, alpha: None, metadata: Vec::new() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Png,
    Jpeg,
    WebP,
    Tiff,
    Bmp,
}

impl Format {
    /// `PNG`, `JPEG`, …: for messages.
    pub(super) fn name(self) -> &'static str {
        match self {
            Format::Png => "PNG",
            Format::Jpeg => "JPEG",
            Format::WebP => "WebP",
            Format::Tiff => "TIFF",
            Format::Bmp => "BMP",
        }
    }
}

fn extension(path: &Path) -> String {
    path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default()
}

pub(super) fn format_of(path: &Path) -> Result<Format> {
    let ext = extension(path);
    Ok(match ext.as_str() {
        "png" => Format::Png,
        "jpg" | "jpeg" => Format::Jpeg,
        "webp" => Format::WebP,
        "tif" | "tiff" => Format::Tiff,
        "bmp" => Format::Bmp,
        _ => {
            let what = if path.is_dir() {
                "it is a folder: give a file name".to_string()
            } else if ext.is_empty() {
                "no file extension".to_string()
            } else {
                format!("unsupported output extension `.{ext}`")
            };
            return Err(encode_err(path, format!("{what} (use one of: {})", OUTPUT_EXTENSIONS.join(", "))));
        }
    })
}

impl SaveOptions {
    /// Checks these options against the output `path` without writing anything: a supported
    /// extension, quality 1..=100, depth 8 or 16 (16 only for PNG and TIFF) and valid metadata keys.
    /// [`save_image_with`] makes the same checks; call this before a long computation.
    pub fn check(&self, path: &Path) -> Result<()> {
        let format = format_of(path)?;
        if !(1..=100).contains(&self.quality) {
            return Err(encode_err(path, format!("JPEG quality must be 1..=100, got {}", self.quality)));
        }
        match (self.depth, format) {
            (8, _) | (16, Format::Png | Format::Tiff) => {}
            (16, _) => {
                return Err(encode_err(
                    path,
                    format!("16-bit output needs a .png or .tif file (.{} is 8-bit only)", extension(path)),
                ));
            }
            (d, _) => return Err(encode_err(path, format!("bit depth must be 8 or 16, got {d}"))),
        }
        for (key, _) in &self.metadata {
            metadata::check_key(key).map_err(|reason| encode_err(path, reason))?;
        }
        Ok(())
    }
}

/// Checks that `path` has a supported extension and that its folder exists and is writable,
/// by creating and removing a probe file there. Call it before any long computation.
pub fn check_writable(path: &Path) -> Result<()> {
    let enc = |reason: String| encode_err(path, reason);
    format_of(path)?;
    if path.is_dir() {
        return Err(enc("it is a directory".into()));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(enc(format!("folder {} does not exist", dir.display())));
    }
    let probe = dir.join(format!(".impasto-write-probe-{}-{}", std::process::id(), next_serial()));
    match File::create(&probe) {
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

/// Writes an RGB 0..1 image with the default [`SaveOptions`] (8-bit, JPEG quality 95, no alpha, only
/// the `Software` metadata); the format follows the extension. See [`save_image_with`].
pub fn save_image(img: &Rgb32FImage, path: &Path) -> Result<()> {
    save_image_with(img, path, &SaveOptions::default())
}

/// Writes an RGB 0..1 image (values outside 0..1 are clipped) as PNG, JPEG, WebP, TIFF or BMP, chosen
/// by the extension of `path`, as `options` say. The file is written to a temporary name in the same
/// folder and renamed, so a reader never sees half a file and an old result is replaced only by a
/// complete new one. Errors are [`Error::ImageEncode`].
pub fn save_image_with(img: &Rgb32FImage, path: &Path, options: &SaveOptions) -> Result<()> {
    save_through(img, path, options, None)
}

/// The image that a lossless file (PNG, TIFF) of `img` at `depth` bits (8 or 16) reads back as
/// with [`crate::load_image`]: values clipped to 0..1 and rounded to the depth's steps, bit for bit.
/// A caller that keeps an image it has just saved in memory uses this to hold what a later read of
/// the file would give.
pub fn as_saved(img: &Rgb32FImage, depth: u8) -> Rgb32FImage {
    to_pixels(img, None, depth == 16).into_rgb32f()
}

/// [`save_image_with`], writing into `reserved` (a temporary file beside `path` whose disk space was
/// set aside before the run, see [`super::reserve_output`]) when there is one.
pub(super) fn save_through(
    img: &Rgb32FImage,
    path: &Path,
    options: &SaveOptions,
    reserved: Option<TempFile>,
) -> Result<()> {
    options.check(path)?;
    let format = format_of(path)?;
    if img.width() == 0 || img.height() == 0 {
        return Err(encode_err(path, "the image is empty"));
    }
    let alpha = match (&options.alpha, format) {
        (Some(a), Format::Png | Format::WebP | Format::Tiff | Format::Bmp) => Some(fit_alpha(a, img)),
        _ => None,
    };
    let pixels = to_pixels(img, alpha.as_ref(), options.depth == 16);
    let mut text = options.metadata.clone();
    if !text.iter().any(|(k, _)| k.eq_ignore_ascii_case("software")) {
        text.push(("Software".into(), SOFTWARE.into()));
    }

    let (tmp, file) = match reserved {
        // Written over from the start; what the image does not use is cut off below.
        Some(tmp) => {
            let file = OpenOptions::new().write(true).open(&tmp.0).map_err(|e| encode_err(path, e))?;
            (tmp, file)
        }
        None => {
            let tmp = TempFile::beside(path);
            let file = File::create(&tmp.0).map_err(|e| encode_err(path, e))?;
            (tmp, file)
        }
    };
    let mut w = BufWriter::new(Written::new(file));
    encode(&pixels, format, options, &text, &mut w).map_err(|reason| encode_err(path, reason))?;
    let Written { file, end, .. } = w.into_inner().map_err(|e| encode_err(path, e.error()))?;
    file.set_len(end).map_err(|e| encode_err(path, e))?;
    file.sync_all().map_err(|e| encode_err(path, e))?;
    drop(file);
    std::fs::rename(&tmp.0, path).map_err(|e| Error::Io {
        action: "cannot write",
        path: path.to_path_buf(),
        error: e,
    })?;
    std::mem::forget(tmp);
    Ok(())
}

/// A temporary file that is removed unless forgotten.
#[derive(Debug)]
pub(super) struct TempFile(pub(super) PathBuf);

impl TempFile {
    /// A fresh hidden name in the folder of `path` (`.out.png.PID-N.tmp`), so that the rename to
    /// `path` stays on one file system.
    pub(super) fn beside(path: &Path) -> TempFile {
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        TempFile(path.with_file_name(format!(".{file_name}.{}-{}.tmp", std::process::id(), next_serial())))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A file being written from its start, remembering the end of what was written: the TIFF encoder
/// seeks back to patch its header, and a reserved file is longer than the image.
struct Written {
    file: File,
    pos: u64,
    end: u64,
}

impl Written {
    fn new(file: File) -> Written {
        Written { file, pos: 0, end: 0 }
    }
}

impl Write for Written {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.pos += n as u64;
        self.end = self.end.max(self.pos);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Seek for Written {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        // From the end of what was written, not of the (possibly reserved) file.
        let to = match to {
            SeekFrom::End(d) => SeekFrom::Start(self.end.checked_add_signed(d).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
            })?),
            other => other,
        };
        self.pos = self.file.seek(to)?;
        Ok(self.pos)
    }
}

fn next_serial() -> u64 {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

/// The alpha plane at the image's size, clipped to 0..1.
fn fit_alpha(alpha: &AlphaPlane, img: &Rgb32FImage) -> AlphaPlane {
    let mut a = if alpha.dimensions() == img.dimensions() {
        alpha.clone()
    } else {
        image::imageops::resize(alpha, img.width(), img.height(), FilterType::CatmullRom)
    };
    for v in a.iter_mut() {
        *v = if v.is_finite() { v.clamp(0.0, 1.0) } else { 1.0 };
    }
    a
}

/// The 8- or 16-bit RGB or RGBA pixels to encode.
fn to_pixels(img: &Rgb32FImage, alpha: Option<&AlphaPlane>, depth16: bool) -> DynamicImage {
    let float = match alpha {
        None => DynamicImage::ImageRgb32F(img.clone()),
        Some(a) => {
            let data =
                img.pixels().zip(a.pixels()).flat_map(|(p, a)| [p.0[0], p.0[1], p.0[2], a.0[0]]).collect();
            let rgba = Rgba32FImage::from_raw(img.width(), img.height(), data).expect("sizes match");
            DynamicImage::ImageRgba32F(rgba)
        }
    };
    match (alpha.is_some(), depth16) {
        (false, false) => DynamicImage::ImageRgb8(float.to_rgb8()),
        (false, true) => DynamicImage::ImageRgb16(float.to_rgb16()),
        (true, false) => DynamicImage::ImageRgba8(float.to_rgba8()),
        (true, true) => DynamicImage::ImageRgba16(float.to_rgba16()),
    }
}

fn encode(
    pixels: &DynamicImage,
    format: Format,
    options: &SaveOptions,
    text: &[(String, String)],
    w: &mut BufWriter<Written>,
) -> std::result::Result<(), String> {
    let exif = || {
        let software = text.iter().find(|(k, _)| k.eq_ignore_ascii_case("software")).map(|(_, v)| v.as_str());
        let others: Vec<_> =
            text.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("software")).cloned().collect();
        metadata::exif_blob(&metadata::description(&others), software.unwrap_or(SOFTWARE))
    };
    let unsupported = |e: image::error::UnsupportedError| e.to_string();
    match format {
        Format::Png => encode_png(pixels, text, w).map_err(|e| e.to_string()),
        Format::Jpeg => {
            let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut *w, options.quality);
            enc.set_exif_metadata(exif()).map_err(unsupported)?;
            pixels.write_with_encoder(enc).map_err(|e| e.to_string())
        }
        Format::WebP => {
            let mut enc = image::codecs::webp::WebPEncoder::new_lossless(&mut *w);
            enc.set_exif_metadata(exif()).map_err(unsupported)?;
            pixels.write_with_encoder(enc).map_err(|e| e.to_string())
        }
        Format::Tiff => pixels
            .write_with_encoder(image::codecs::tiff::TiffEncoder::new(&mut *w))
            .map_err(|e| e.to_string()),
        Format::Bmp => {
            pixels.write_with_encoder(image::codecs::bmp::BmpEncoder::new(&mut *w)).map_err(|e| e.to_string())
        }
    }?;
    w.flush().map_err(|e| e.to_string())
}

/// PNG through the `png` crate (for the text chunks), marked as sRGB.
fn encode_png(
    pixels: &DynamicImage,
    text: &[(String, String)],
    w: &mut impl Write,
) -> std::result::Result<(), png::EncodingError> {
    let (color, depth, data): (_, _, Vec<u8>) = match pixels {
        DynamicImage::ImageRgb8(p) => (png::ColorType::Rgb, png::BitDepth::Eight, p.as_raw().clone()),
        DynamicImage::ImageRgba8(p) => (png::ColorType::Rgba, png::BitDepth::Eight, p.as_raw().clone()),
        DynamicImage::ImageRgb16(p) => (png::ColorType::Rgb, png::BitDepth::Sixteen, be_bytes(p.as_raw())),
        DynamicImage::ImageRgba16(p) => (png::ColorType::Rgba, png::BitDepth::Sixteen, be_bytes(p.as_raw())),
        _ => unreachable!("to_pixels makes only RGB(A) 8/16-bit images"),
    };
    let mut enc = png::Encoder::new(w, pixels.width(), pixels.height());
    enc.set_color(color);
    enc.set_depth(depth);
    enc.set_source_srgb(png::SrgbRenderingIntent::Perceptual);
    for (k, v) in text {
        if v.is_ascii() {
            enc.add_text_chunk(k.clone(), v.clone())?;
        } else {
            enc.add_itxt_chunk(k.clone(), v.clone())?;
        }
    }
    let mut writer = enc.write_header()?;
    writer.write_image_data(&data)?;
    writer.finish()
}

fn be_bytes(v: &[u16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_be_bytes()).collect()
}
