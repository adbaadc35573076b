//! The multi-scale schedule on extreme aspect ratios: coarse scales at which the content or a style
//! image would be smaller than the deepest layer needs are skipped, the schedule starting at the
//! smallest valid one; only an output size that cannot work is refused.

use impasto::image::{Rgb, Rgb32FImage};
use impasto::{Arch, Error, NoObserver, Observer, Pooling, RunInfo, Scale, StyleConfig, Vgg};

use crate::common::random_vgg;

/// Records the schedule a run announces.
#[derive(Default)]
struct Schedule(Vec<Scale>);

impl Observer for Schedule {
    fn on_start(&mut self, info: &RunInfo) {
        self.0 = info.scales.clone();
    }
}

fn img(w: u32, h: u32) -> Rgb32FImage {
    Rgb32FImage::from_fn(w, h, |x, y| Rgb([(x % 7) as f32 / 7.0, (y % 5) as f32 / 5.0, 0.5]))
}

/// Up to relu3_1: two poolings, so every side must be at least 4 pixels.
fn net() -> Vgg {
    random_vgg(Arch::Vgg16, Pooling::Max, 5, 21)
}

fn config() -> StyleConfig {
    StyleConfig {
        size: 96,
        min_size: 24,
        iterations: 3,
        scale_iterations: Some(2),
        content_layers: vec!["relu3_1".into()],
        style_layers: vec!["relu1_1".into(), "relu3_1".into()],
        threads: 2,
        ..StyleConfig::default()
    }
}

fn schedule(net: &Vgg, config: &StyleConfig, content: &Rgb32FImage, style: &Rgb32FImage) -> Vec<Scale> {
    let mut seen = Schedule::default();
    let out = impasto::stylize(net, config, content, std::slice::from_ref(style), &mut seen).unwrap();
    let last = *seen.0.last().unwrap();
    assert_eq!(out.image.dimensions(), (last.width, last.height));
    assert_eq!(out.iterations, seen.0.iter().map(|s| s.iterations).sum::<usize>());
    seen.0
}

fn scale(width: u32, height: u32, iterations: usize) -> Scale {
    Scale { width, height, iterations }
}

#[test]
fn a_very_wide_content_skips_the_scales_it_is_too_thin_for() {
    let net = net();
    let c = config();
    assert_eq!(c.scales(), vec![(24, 3), (48, 2), (96, 2)]);
    let style = img(32, 32);
    // 96×4 is 24×1 and 48×2 at the coarse scales: only the output size is left, with all iterations.
    assert_eq!(schedule(&net, &c, &img(96, 4), &style), [scale(96, 4, 3)]);
    // 96×8: 24×2 is skipped, 48×4 becomes the first scale.
    assert_eq!(schedule(&net, &c, &img(96, 8), &style), [scale(48, 4, 3), scale(96, 8, 2)]);
    // Tall works the same way.
    assert_eq!(schedule(&net, &c, &img(8, 96), &style), [scale(4, 48, 3), scale(8, 96, 2)]);
    // Square content keeps every scale.
    assert_eq!(
        schedule(&net, &c, &img(48, 48), &style),
        [scale(24, 24, 3), scale(48, 48, 2), scale(96, 96, 2)]
    );
}

#[test]
fn a_very_wide_style_skips_the_scales_it_is_too_thin_for() {
    let net = net();
    // The style is 24×2 at the 24 px scale (too thin), 48×5 at 48 px.
    let got = schedule(&net, &config(), &img(48, 48), &img(40, 4));
    assert_eq!(got, [scale(48, 48, 3), scale(96, 96, 2)]);
}

#[test]
fn only_an_output_size_too_small_is_refused() {
    let net = net();
    let err = impasto::stylize(&net, &config(), &img(96, 3), &[img(32, 32)], &mut NoObserver).unwrap_err();
    assert!(matches!(err, Error::Config { what: "output size", .. }), "{err}");
    assert!(err.to_string().contains("96×3 is too small"), "{err}");
    // A style too thin even at the output size is the style's error.
    let err = impasto::stylize(&net, &config(), &img(48, 48), &[img(96, 3)], &mut NoObserver).unwrap_err();
    assert!(err.to_string().contains("style image size"), "{err}");
}
