//! Warping by a flow (bilinear sampling) and the reliability mask of Ruder, Dosovitskiy & Brox
//! ("Artistic style transfer for videos", 2016, their consistencyChecker): a pixel is unreliable where
//! the flows disagree, `|w + ŵ|² ≥ 0.01·(|w|² + |ŵ|²) + 0.5` with `ŵ` the other flow at `p + w(p)`
//! (disocclusions), where `p + w(p)` leaves the frame, or on a motion boundary, `|∇u|² + |∇v|² >
//! 0.01·|w|² + 0.002`.

use image::Rgb32FImage;
use rayon::prelude::*;

use crate::flow::{Flow, FlowParams, dense_flow};
use crate::plane::Plane;

/// `img` pulled along `flow`: the pixel p of the result is `img` at `p + flow(p)` (bilinear, clamped at
/// the border). With `flow` the flow from frame t to frame t−1, this carries frame t−1 onto frame t.
pub fn warp(img: &Rgb32FImage, flow: &Flow) -> Rgb32FImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    assert_eq!((flow.width(), flow.height()), (w, h), "flow and image sizes differ");
    let planes: Vec<Plane> =
        (0..3).map(|c| Plane::from_fn(w, h, |x, y| img.get_pixel(x as u32, y as u32).0[c])).collect();
    let px: Vec<[f32; 3]> = (0..w * h)
        .into_par_iter()
        .map(|i| {
            let (x, y) = ((i % w) as f32, (i / w) as f32);
            let (sx, sy) = (x + flow.u.data[i], y + flow.v.data[i]);
            [0, 1, 2].map(|c| planes[c].sample(sx, sy))
        })
        .collect();
    Rgb32FImage::from_fn(w as u32, h as u32, |x, y| image::Rgb(px[y as usize * w + x as usize]))
}

/// The reliability of `flow` (frame t → t−1) given `other` (t−1 → t): 1 where the flow can be trusted,
/// 0 at disocclusions, motion boundaries and where the flow points outside the frame.
pub fn reliability(flow: &Flow, other: &Flow) -> Plane {
    let (w, h) = (flow.width(), flow.height());
    let (ux, uy) = flow.u.gradients();
    let (vx, vy) = flow.v.gradients();
    let data = (0..w * h)
        .into_par_iter()
        .map(|i| {
            let (x, y) = ((i % w) as f32, (i / w) as f32);
            let (a, b) = (flow.u.data[i], flow.v.data[i]);
            let (tx, ty) = (x + a, y + b);
            if tx < 0.0 || ty < 0.0 || tx > (w - 1) as f32 || ty > (h - 1) as f32 {
                return 0.0;
            }
            let (c, d) = other.sample(tx, ty);
            let sum = (a + c).powi(2) + (b + d).powi(2);
            let mag = a * a + b * b + c * c + d * d;
            if sum >= 0.01 * mag + 0.5 {
                return 0.0;
            }
            let grad = ux.data[i].powi(2) + uy.data[i].powi(2) + vx.data[i].powi(2) + vy.data[i].powi(2);
            if grad > 0.01 * (a * a + b * b) + 0.002 { 0.0 } else { 1.0 }
        })
        .collect();
    Plane { width: w, height: h, data }
}

/// `a` where `mask` is 1 and `b` where it is 0 (linear in between).
pub fn blend(a: &Rgb32FImage, b: &Rgb32FImage, mask: &Plane) -> Rgb32FImage {
    Rgb32FImage::from_fn(a.width(), a.height(), |x, y| {
        let m = mask.at(x as usize, y as usize);
        let (pa, pb) = (a.get_pixel(x, y).0, b.get_pixel(x, y).0);
        image::Rgb([0, 1, 2].map(|c| m * pa[c] + (1.0 - m) * pb[c]))
    })
}

/// The temporal warping error: mean |a − b| over the channels of the pixels where `mask` is 1 (0 when
/// no pixel is).
pub fn masked_mean_abs(a: &Rgb32FImage, b: &Rgb32FImage, mask: &Plane) -> f64 {
    let (mut sum, mut n) = (0.0f64, 0.0f64);
    for (i, (pa, pb)) in a.pixels().zip(b.pixels()).enumerate() {
        let m = mask.data[i] as f64;
        for c in 0..3 {
            sum += m * (pa[c] - pb[c]).abs() as f64;
        }
        n += 3.0 * m;
    }
    if n > 0.0 { sum / n } else { 0.0 }
}

/// Frame t−1's result carried onto frame t, and where that can be trusted: the flows t → t−1 and
/// t−1 → t between the content frames (in parallel), `prev_result` warped along the first, and the
/// [`reliability`] of the first given the second. All three images have the same size.
pub fn carry_over(
    prev_content: &Rgb32FImage,
    prev_result: &Rgb32FImage,
    content: &Rgb32FImage,
    params: &FlowParams,
) -> (Rgb32FImage, Plane) {
    let (a, b) = (Plane::luma(prev_content), Plane::luma(content));
    let (back, fwd) = rayon::join(|| dense_flow(&b, &a, params), || dense_flow(&a, &b, params));
    (warp(prev_result, &back), reliability(&back, &fwd))
}
