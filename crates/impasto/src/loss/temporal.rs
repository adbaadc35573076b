//! Temporal loss for video (Ruder, Dosovitskiy & Brox 2016): the squared difference to the previous
//! stylised frame carried along the optical flow, on the pixels where that flow is reliable,
//! `L = Σ_c Σ_i m_i·(x_ci − t_ci)² / (3·Σ_i m_i)` — a mean over the reliable elements, so a weight
//! means the same whatever share of the frame the mask keeps.

use image::Rgb32FImage;

use crate::io::AlphaPlane;

/// What a video frame is held to: `weight · Σ m·(x − target)² / (3·Σ m)` over the RGB 0..1 pixels
/// (0 where the mask is empty).
///
/// `target` is the previous stylised frame warped onto this one; `reliability` is 1 where the warp can
/// be trusted and 0 at disocclusions and motion boundaries. Both are resized to each scale's size. The
/// term compares the optimised image, before any colour mode's post-processing.
#[derive(Debug, Clone, PartialEq)]
pub struct Temporal {
    /// The warped previous stylised frame, RGB 0..1.
    pub target: Rgb32FImage,
    /// Per-pixel weight, 0..1 (the reliability mask), any size.
    pub reliability: AlphaPlane,
    /// The weight of the term.
    pub weight: f32,
}

/// A temporal target at one scale: planar RGB target and one mask value per pixel.
#[derive(Debug, Clone)]
pub(crate) struct TemporalTarget {
    pub(crate) target: Vec<f32>,
    pub(crate) mask: Vec<f32>,
    pub(crate) weight: f32,
}

/// Returns `weight · Σ m·(x − target)² / (channels · Σ m)` and adds its gradient into `grad`.
pub(crate) fn temporal_loss(x: &[f32], t: &TemporalTarget, grad: &mut [f32]) -> f64 {
    let hw = t.mask.len();
    let kept: f64 = t.mask.iter().map(|&m| f64::from(m)).sum();
    if t.weight == 0.0 || hw == 0 || kept <= 0.0 {
        return 0.0;
    }
    let n = kept * (x.len() / hw) as f64;
    let scale = (2.0 * f64::from(t.weight) / n) as f32;
    let mut sum = 0.0f64;
    for (i, ((g, &a), &p)) in grad.iter_mut().zip(x).zip(&t.target).enumerate() {
        let m = t.mask[i % hw];
        let d = a - p;
        sum += f64::from(m * d * d);
        *g += scale * m * d;
    }
    f64::from(t.weight) * sum / n
}
