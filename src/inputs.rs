//! Reading the image files of a run: the content (with its alpha plane, re-applied to the output), the
//! style images, the `--init` image and the `--mask` / `--style-mask` images (as luminance planes).

use std::path::Path;

use anyhow::{Context, Result};
use impasto::image::Rgb32FImage;
use impasto::{AlphaPlane, Init, StyleConfig};

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

fn load_mask(path: &Path, what: &'static str) -> Result<AlphaPlane> {
    Ok(mask_plane(&impasto::load_image(path).context(what)?))
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
    if let Some(p) = &s.mask {
        config.mask = Some(load_mask(p, "--mask image")?);
    }
    if !s.style_masks.is_empty() {
        let masks = s.style_masks.iter().map(|p| load_mask(p, "--style-mask image"));
        config.style_masks = Some(masks.collect::<Result<Vec<_>>>()?);
    }
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
