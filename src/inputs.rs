//! Reading the image files of a run: the content (with its alpha plane, re-applied to the output), the
//! style images, the `--init` image and the `--mask` / `--style-mask` images (as luminance planes).

use std::path::Path;

use anyhow::{Context, Result};
use impasto::image::Rgb32FImage;
use impasto::{AlphaPlane, Init, StyleConfig};

use crate::progress::Display;
use crate::settings::{InitSource, Settings};

/// The decoded inputs of a run.
#[derive(Debug)]
pub struct Inputs {
    /// The content image, RGB 0..1.
    pub content: Rgb32FImage,
    /// The content's alpha plane, if it has a non-opaque one.
    pub alpha: Option<AlphaPlane>,
    /// The style images.
    pub styles: Vec<Rgb32FImage>,
    /// The settings' config with the init image and the masks filled in.
    pub config: StyleConfig,
}

/// BT.601 luminance of a mask image as a 0..1 plane (white = 1, black = 0).
pub fn mask_plane(img: &Rgb32FImage) -> AlphaPlane {
    AlphaPlane::from_fn(img.width(), img.height(), |x, y| {
        let [r, g, b] = img.get_pixel(x, y).0;
        impasto::image::Luma([(0.299 * r + 0.587 * g + 0.114 * b).clamp(0.0, 1.0)])
    })
}

/// The `--mask` and `--style-mask` images, as planes. A mask is resized to the content's size; where
/// its shape differs from `content`'s (by more than 2 %, more than rounding), so that it is
/// stretched, a note on stderr says so unless the display is quiet.
pub fn load_masks(
    s: &Settings,
    content: Option<(u32, u32)>,
) -> Result<(Option<AlphaPlane>, Option<Vec<AlphaPlane>>)> {
    let load = |flag: &str, path: &Path| -> Result<AlphaPlane> {
        let m = mask_plane(&impasto::load_image(path).with_context(|| format!("{flag} image"))?);
        if let Some(note) = content.and_then(|c| stretch_note(flag, path, (m.width(), m.height()), c))
            && s.display != Display::Quiet
        {
            crate::progress::note(&note);
        }
        Ok(m)
    };
    let mask = s.mask.as_deref().map(|p| load("--mask", p)).transpose()?;
    let style_masks = s.style_masks.iter().map(|p| load("--style-mask", p)).collect::<Result<Vec<_>>>()?;
    Ok((mask, Some(style_masks).filter(|m| !m.is_empty())))
}

/// The note for a mask of `mask` pixels stretched to a content of `content` pixels, when their
/// aspect ratios differ by more than 2 %.
fn stretch_note(flag: &str, path: &Path, mask: (u32, u32), content: (u32, u32)) -> Option<String> {
    let aspect = |(w, h): (u32, u32)| f64::from(w) / f64::from(h.max(1));
    let (a, b) = (aspect(mask), aspect(content));
    ((a / b - 1.0).abs() > 0.02).then(|| {
        format!(
            "impasto: the {flag} image {} is {}x{} and the content {}x{}: it is stretched to the content's shape",
            path.display(),
            mask.0,
            mask.1,
            content.0,
            content.1
        )
    })
}

/// Reads every image file the settings name, in the order the user gave them.
pub fn load(s: &Settings) -> Result<Inputs> {
    let (content, alpha) = impasto::load_image_with_alpha(&s.content).context("content image")?;
    let styles =
        s.styles.iter().map(|p| impasto::load_image(p).context("style image")).collect::<Result<Vec<_>>>()?;
    let mut config = s.config.clone();
    if let InitSource::File(p) = &s.init {
        config.init = Init::Image(impasto::load_image(p).context("--init image")?);
    }
    (config.mask, config.style_masks) = load_masks(s, Some((content.width(), content.height())))?;
    Ok(Inputs { content, alpha, styles, config })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_are_luminance() {
        let img = Rgb32FImage::from_fn(3, 1, |x, _| match x {
            0 => impasto::image::Rgb([1.0, 1.0, 1.0]),
            1 => impasto::image::Rgb([0.0, 0.0, 0.0]),
            _ => impasto::image::Rgb([1.0, 0.0, 0.0]),
        });
        let m = mask_plane(&img);
        assert_eq!(m.as_raw()[..2], [1.0, 0.0]);
        assert!((m.as_raw()[2] - 0.299).abs() < 1e-6);
    }
}
