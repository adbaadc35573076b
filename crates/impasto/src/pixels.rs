//! Conversions between interleaved RGB images and the planar (CHW, 0..1) buffers the optimiser works on.

use image::{Rgb32FImage, imageops::FilterType};

/// Interleaved RGB → planar CHW (R plane, G plane, B plane), the layout the network and optimisers use.
pub fn to_planar(img: &Rgb32FImage) -> Vec<f32> {
    let n = (img.width() * img.height()) as usize;
    let mut out = vec![0.0f32; 3 * n];
    for (i, p) in img.pixels().enumerate() {
        out[i] = p[0];
        out[n + i] = p[1];
        out[2 * n + i] = p[2];
    }
    out
}

/// Planar CHW → interleaved RGB, clamping every value to 0..1.
pub fn from_planar(planar: &[f32], width: u32, height: u32) -> Rgb32FImage {
    to_image(planar, width, height)
}

pub(crate) fn to_image(planar: &[f32], width: u32, height: u32) -> Rgb32FImage {
    let n = (width * height) as usize;
    debug_assert_eq!(planar.len(), 3 * n);
    Rgb32FImage::from_fn(width, height, |x, y| {
        let i = (y * width + x) as usize;
        image::Rgb([0, 1, 2].map(|c| planar[c * n + i].clamp(0.0, 1.0)))
    })
}

/// The size with longest side `long` and the aspect ratio of `width`×`height` (each side ≥ 1).
pub fn fit_longest_side(width: u32, height: u32, long: u32) -> (u32, u32) {
    let (w, h) = (width.max(1) as f64, height.max(1) as f64);
    let s = long as f64 / w.max(h);
    let fw = ((w * s).round() as u32).max(1);
    let fh = ((h * s).round() as u32).max(1);
    (fw, fh)
}

/// Resizes to exactly `width`×`height` (Lanczos3, which also filters properly when shrinking).
pub fn resize(img: &Rgb32FImage, width: u32, height: u32) -> Rgb32FImage {
    if img.width() == width && img.height() == height {
        return img.clone();
    }
    let mut out = image::imageops::resize(img, width, height, FilterType::Lanczos3);
    for v in out.iter_mut() {
        *v = v.clamp(0.0, 1.0);
    }
    out
}
