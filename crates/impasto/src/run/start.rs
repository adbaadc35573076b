//! The image a run starts from (`--init`): the content, noise, grey, the style images' colour
//! statistics, the first style image, or a given image, as planar RGB in 0..1 at one scale's size.

use image::Rgb32FImage;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::Init;
use crate::pixels::{resize, to_planar};

/// The starting pixels of a `width`×`height` scale under `init`. `styles` are the run's style
/// images (after the colour options) and `blend` their normalised weights; the random starts draw
/// from `seed`, so a seed gives the same start at any thread count.
pub(super) fn initial_pixels(
    init: &Init,
    seed: u64,
    content: &Rgb32FImage,
    styles: &[Rgb32FImage],
    blend: &[f32],
    width: u32,
    height: u32,
) -> Vec<f32> {
    let n = (width * height) as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    match init {
        Init::Content => to_planar(&resize(content, width, height)),
        Init::Noise => (0..3 * n).map(|_| 0.5 + 0.25 * (rng.random::<f32>() - 0.5)).collect(),
        Init::Gray => (0..3 * n).map(|_| 0.5 + rng.random::<f32>() / 255.0).collect(),
        Init::StyleStats => {
            let stats = channel_stats(styles, blend);
            let mut out = Vec::with_capacity(3 * n);
            for (mean, sd) in stats {
                out.extend((0..n).map(|_| (mean + sd * standard_normal(&mut rng)).clamp(0.0, 1.0)));
            }
            out
        }
        Init::Style => to_planar(&cover(&styles[0], width, height)),
        Init::Image(img) => to_planar(&resize(img, width, height)),
    }
}

/// Each channel's mean and standard deviation over the style images, blended as their Gram targets
/// are: the blend of the means and of the second moments (linear in each image), then the deviation
/// from those, so two styles of different colours give a spread that covers both.
fn channel_stats(styles: &[Rgb32FImage], blend: &[f32]) -> [(f32, f32); 3] {
    let mut first = [0f64; 3];
    let mut second = [0f64; 3];
    for (img, &b) in styles.iter().zip(blend) {
        let n = f64::from(img.width()) * f64::from(img.height());
        for c in 0..3 {
            let (s, s2) = img.pixels().fold((0f64, 0f64), |(s, s2), p| {
                let v = f64::from(p[c]);
                (s + v, s2 + v * v)
            });
            first[c] += f64::from(b) * s / n;
            second[c] += f64::from(b) * s2 / n;
        }
    }
    std::array::from_fn(|c| (first[c] as f32, (second[c] - first[c] * first[c]).max(0.0).sqrt() as f32))
}

/// One draw of a standard normal variable (Box–Muller; the uniform is kept away from 0).
fn standard_normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// `img` scaled to cover `width`×`height` with its aspect ratio kept, then cropped to its centre.
fn cover(img: &Rgb32FImage, width: u32, height: u32) -> Rgb32FImage {
    let s = (width as f32 / img.width() as f32).max(height as f32 / img.height() as f32);
    let w = ((img.width() as f32 * s).round() as u32).max(width);
    let h = ((img.height() as f32 * s).round() as u32).max(height);
    let scaled = resize(img, w, h);
    image::imageops::crop_imm(&scaled, (w - width) / 2, (h - height) / 2, width, height).to_image()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(w: u32, h: u32, rgb: [f32; 3]) -> Rgb32FImage {
        Rgb32FImage::from_pixel(w, h, image::Rgb(rgb))
    }

    #[test]
    fn style_stats_blend_the_moments_of_the_styles() {
        let a = flat(4, 4, [0.2, 0.5, 0.9]);
        let b = flat(2, 6, [0.6, 0.5, 0.1]);
        let s = channel_stats(&[a, b], &[0.5, 0.5]);
        for (c, (mean, sd)) in [(0.4, 0.2), (0.5, 0.0), (0.5, 0.4)].into_iter().enumerate() {
            assert!((s[c].0 - mean).abs() < 1e-6 && (s[c].1 - sd).abs() < 1e-6, "{c}: {:?}", s[c]);
        }
    }

    #[test]
    fn style_stats_noise_has_the_style_statistics() {
        let mut style = flat(8, 8, [0.0; 3]);
        for (i, p) in style.pixels_mut().enumerate() {
            *p = image::Rgb([if i % 2 == 0 { 0.3 } else { 0.5 }, 0.6, 0.2]);
        }
        let content = flat(64, 64, [0.0; 3]);
        let x = initial_pixels(&Init::StyleStats, 7, &content, &[style], &[1.0], 64, 64);
        let n = 64 * 64;
        for (c, (mean, sd)) in [(0.4f32, 0.1f32), (0.6, 0.0), (0.2, 0.0)].into_iter().enumerate() {
            let v = &x[c * n..(c + 1) * n];
            let m = v.iter().sum::<f32>() / n as f32;
            let d = (v.iter().map(|t| (t - m) * (t - m)).sum::<f32>() / n as f32).sqrt();
            assert!((m - mean).abs() < 0.01 && (d - sd).abs() < 0.01, "channel {c}: mean {m}, sd {d}");
        }
    }

    #[test]
    fn random_starts_follow_the_seed() {
        let content = flat(5, 3, [0.1; 3]);
        let mut style = flat(3, 3, [0.7; 3]);
        style.put_pixel(1, 1, image::Rgb([0.1, 0.9, 0.4]));
        for init in [Init::Noise, Init::Gray, Init::StyleStats] {
            let run =
                |seed| initial_pixels(&init, seed, &content, std::slice::from_ref(&style), &[1.0], 5, 3);
            assert_eq!(run(1), run(1), "{init:?}");
            assert_ne!(run(1), run(2), "{init:?}");
            assert!(run(3).iter().all(|v| (0.0..=1.0).contains(v)), "{init:?}");
        }
        let grey = initial_pixels(&Init::Gray, 0, &content, &[], &[], 5, 3);
        assert!(grey.iter().all(|v| (0.5..=0.5 + 1.0 / 255.0).contains(v)));
    }

    #[test]
    fn the_style_start_covers_the_output_and_keeps_the_centre() {
        // A 6×2 style whose middle third is white: a 2×2 output sees only that middle.
        let mut style = flat(6, 2, [0.0; 3]);
        for (x, _, p) in style.enumerate_pixels_mut() {
            if (2..4).contains(&x) {
                *p = image::Rgb([1.0; 3]);
            }
        }
        let x = initial_pixels(&Init::Style, 0, &flat(2, 2, [0.0; 3]), &[style], &[1.0], 2, 2);
        assert_eq!(x, vec![1.0; 12]);
        // A tall output from a wide style is filled, not stretched.
        let y =
            initial_pixels(&Init::Style, 0, &flat(3, 9, [0.0; 3]), &[flat(8, 2, [0.25; 3])], &[1.0], 3, 9);
        assert_eq!(y.len(), 3 * 27);
        assert!(y.iter().all(|v| (v - 0.25).abs() < 1e-5));
    }
}
