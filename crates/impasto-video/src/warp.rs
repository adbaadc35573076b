//! Warping by a flow (bilinear sampling), blending by a mask, and the masked warping error.

use image::Rgb32FImage;
use rayon::prelude::*;

use crate::flow::Flow;
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
