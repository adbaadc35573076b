//! The upload form of a new run: reads the multipart fields (`content`, `style`…, `settings`) within the
//! size limit, checks each image's header against the pixel limit before decoding it, and decodes the
//! images (off the async threads) into the job's inputs.

use std::io::Cursor;

use axum::body::Bytes;
use axum::extract::Multipart;
use impasto::image::{ImageReader, Rgb32FImage};

use crate::error::{ApiError, clip};
use crate::job::Inputs;
use crate::settings::{Limits, Settings};

/// An image file as uploaded.
#[derive(Debug)]
struct File {
    /// What error messages call it: its file name, else the field's role.
    name: String,
    /// The file name the form gave, if any.
    uploaded: Option<String>,
    bytes: Bytes,
}

/// Reads and checks the whole form; the images are decoded on a blocking thread.
pub(crate) async fn read(mut form: Multipart, limits: Limits) -> Result<(Settings, Inputs), ApiError> {
    let mut content: Option<File> = None;
    let mut styles: Vec<File> = Vec::new();
    let mut settings: Option<Settings> = None;
    let broken = |e| ApiError::multipart(e, limits.max_upload_bytes);
    while let Some(field) = form.next_field().await.map_err(broken)? {
        let field_name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(|n| clip(n, 80));
        match field_name.as_str() {
            "content" | "style" => {
                let uploaded = field.file_name().map(str::to_owned);
                let name = file_name.unwrap_or_else(|| format!("the {field_name} image"));
                let bytes = field.bytes().await.map_err(broken)?;
                if bytes.is_empty() {
                    return Err(ApiError::bad_request(format!("{name} is empty")));
                }
                let file = File { name, uploaded, bytes };
                if field_name == "content" {
                    if content.is_some() {
                        return Err(ApiError::bad_request("give one content image, not several"));
                    }
                    content = Some(file);
                } else {
                    styles.push(file);
                }
            }
            "settings" => {
                let text = field.text().await.map_err(broken)?;
                settings = Some(Settings::parse(&text, &limits)?);
            }
            other => {
                return Err(ApiError::bad_request(format!("unexpected form field `{}`", clip(other, 40))));
            }
        }
    }
    let content = content.ok_or_else(|| ApiError::bad_request("no content image: add one"))?;
    let content_name = content.uploaded.clone();
    if styles.is_empty() {
        return Err(ApiError::bad_request("no style image: add at least one"));
    }
    let settings = settings.unwrap_or_else(|| Settings::defaults_for(&limits));
    let config = settings.check(&limits, styles.len())?;
    for file in std::iter::once(&content).chain(&styles) {
        check_header(file, limits.max_pixels)?;
    }
    let size = settings.size;
    let decoded = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let content = decode(&content, size)?;
        let styles = styles.iter().map(|f| decode(f, size)).collect::<Result<Vec<_>, _>>()?;
        Ok((content, styles))
    })
    .await
    .map_err(|_| ApiError::bad_request("an image could not be decoded (the decoder failed)"))??;
    let (content, styles) = decoded;
    Ok((settings, Inputs { content_name, content, styles, config }))
}

/// Refuses a file that is not an image of a known format, or whose header says it has too many pixels.
fn check_header(file: &File, max_pixels: u64) -> Result<(), ApiError> {
    let not_image = || {
        ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("{} is not an image impasto reads (PNG, JPEG, WebP, TIFF, GIF or BMP)", file.name),
        )
    };
    let reader = ImageReader::new(Cursor::new(&file.bytes)).with_guessed_format().map_err(|_| not_image())?;
    if reader.format().is_none() {
        return Err(not_image());
    }
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| ApiError::bad_request(format!("cannot decode image {}: {e}", file.name)))?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > max_pixels {
        return Err(ApiError::too_large(format!(
            "{} is {w}×{h} ({}), over this server's limit of {}",
            file.name,
            pixel_count(pixels),
            pixel_count(max_pixels)
        )));
    }
    Ok(())
}

/// `12.3 megapixels`, or `20000 pixels` below a tenth of a megapixel.
pub(crate) fn pixel_count(pixels: u64) -> String {
    if pixels >= 100_000 {
        format!("{:.1} megapixels", pixels as f64 / 1e6)
    } else {
        format!("{pixels} pixels")
    }
}

/// Decodes a file as the CLI reads one, then shrinks it to the output size when it is larger (the run
/// would do so anyway, at every scale; this keeps waiting jobs small).
fn decode(file: &File, size: u32) -> Result<Rgb32FImage, ApiError> {
    let img =
        impasto::decode_image(&file.bytes, &file.name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (w, h) = impasto::fit_longest_side(img.width(), img.height(), size);
    if w < img.width() {
        return Ok(impasto::resize(&img, w, h));
    }
    Ok(img)
}
