//! Embedded ICC profiles: converting RGB and grey pixels to sRGB with `moxcms`.

use std::sync::Arc;

use image::{ImageBuffer, Luma, Rgb32FImage};
use moxcms::{ColorProfile, DataColorSpace, Layout, TransformF32Executor, TransformOptions};
use rayon::prelude::*;

/// Pixels per parallel chunk of a transform.
const CHUNK_PIXELS: usize = 1 << 14;
/// Largest difference from the identity for which a profile is taken as sRGB (and not applied).
const IDENTITY_TOLERANCE: f32 = 2e-3;

fn parse(profile: &[u8], space: DataColorSpace) -> Option<ColorProfile> {
    let p = ColorProfile::new_from_slice(profile).ok()?;
    (p.color_space == space).then_some(p)
}

fn transform(src: &ColorProfile, layout: Layout) -> Option<Arc<TransformF32Executor>> {
    src.create_transform_f32(layout, &ColorProfile::new_srgb(), Layout::Rgb, TransformOptions::default()).ok()
}

/// Runs `t` over `src` (pixels of `src_channels` values) into RGB, in parallel; clips to 0..1.
/// Returns `None` if the transform fails.
fn run(t: &TransformF32Executor, src: &[f32], src_channels: usize) -> Option<Vec<f32>> {
    let mut dst = vec![0.0f32; src.len() / src_channels * 3];
    dst.par_chunks_mut(CHUNK_PIXELS * 3)
        .zip(src.par_chunks(CHUNK_PIXELS * src_channels))
        .try_for_each(|(d, s)| t.transform(s, d).ok())?;
    for v in &mut dst {
        *v = if v.is_finite() { v.clamp(0.0, 1.0) } else { 0.0 };
    }
    Some(dst)
}

/// True when `t` maps every probe colour (6 levels per channel) to itself: the profile is sRGB in all
/// but name, and applying it would only add rounding.
fn is_identity(t: &TransformF32Executor, src_channels: usize) -> bool {
    const LEVELS: [f32; 6] = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];
    let probe: Vec<[f32; 3]> = if src_channels == 3 {
        LEVELS
            .iter()
            .flat_map(|&r| LEVELS.iter().flat_map(move |&g| LEVELS.iter().map(move |&b| [r, g, b])))
            .collect()
    } else {
        LEVELS.iter().map(|&v| [v, v, v]).collect()
    };
    let src: Vec<f32> = probe.iter().flat_map(|p| p[..src_channels].to_vec()).collect();
    let mut dst = vec![0.0f32; probe.len() * 3];
    if t.transform(&src, &mut dst).is_err() {
        return false;
    }
    probe.iter().flatten().zip(&dst).all(|(a, b)| (a - b).abs() <= IDENTITY_TOLERANCE)
}

/// Converts `img` (RGB 0..1 encoded in the RGB colour space of `profile`) to sRGB in place.
/// Does nothing when the profile is not an RGB profile, cannot be used, or is sRGB already.
pub(super) fn rgb_to_srgb(profile: &[u8], img: &mut Rgb32FImage) {
    let Some(t) = parse(profile, DataColorSpace::Rgb).and_then(|p| transform(&p, Layout::Rgb)) else {
        return;
    };
    if is_identity(t.as_ref(), 3) {
        return;
    }
    if let Some(out) = run(t.as_ref(), img.as_raw(), 3) {
        img.copy_from_slice(&out);
    }
}

/// Converts a grey image encoded with the grey `profile` to sRGB RGB; `None` when the profile is not a
/// grey profile, cannot be used, or is equivalent to sRGB's grey axis.
pub(super) fn gray_to_srgb(profile: &[u8], luma: &ImageBuffer<Luma<f32>, Vec<f32>>) -> Option<Rgb32FImage> {
    let t = parse(profile, DataColorSpace::Gray).and_then(|p| transform(&p, Layout::Gray))?;
    if is_identity(t.as_ref(), 1) {
        return None;
    }
    let out = run(t.as_ref(), luma.as_raw(), 1)?;
    Rgb32FImage::from_raw(luma.width(), luma.height(), out)
}
