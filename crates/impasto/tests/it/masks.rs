//! Regional control: a content mask keeps the content exactly where it is black (at every scale of a
//! multi-scale run), and per-style masks put each style in its own region.

use impasto::{AlphaPlane, Arch, NoObserver, Pooling, StyleConfig};

use crate::common::{random_vgg, shared_dir};

fn half_mask(w: u32, h: u32, left: bool) -> AlphaPlane {
    AlphaPlane::from_fn(w, h, |x, _| impasto::image::Luma([if (x < w / 2) == left { 1.0 } else { 0.0 }]))
}

#[test]
fn content_mask_keeps_the_content_outside() {
    let net = random_vgg(Arch::Vgg16, Pooling::Max, 4, 5);
    let img = |n: &str| impasto::load_image(&shared_dir().join("images").join(n)).unwrap();
    let (content, style) = (img("astronaut.png"), img("starry_night.jpg"));
    let config = StyleConfig {
        size: 64,
        min_size: 32,
        iterations: 15,
        content_layers: vec!["relu2_2".into()],
        style_layers: vec!["relu1_1".into(), "relu2_1".into()],
        mask: Some(half_mask(10, 10, true)),
        threads: 2,
        ..StyleConfig::default()
    };
    assert_eq!(config.scales().len(), 2);
    let out = impasto::stylize(&net, &config, &content, &[style], &mut NoObserver).unwrap();
    let reference = impasto::resize(&content, 64, 64);
    let (mut right, mut left) = (0.0f32, 0.0f32);
    for (x, y, p) in out.image.enumerate_pixels() {
        let q = reference.get_pixel(x, y);
        let d = (0..3).map(|c| (p[c] - q[c]).abs()).fold(0.0, f32::max);
        if x >= 40 {
            right = right.max(d);
        } else if x < 24 {
            left = left.max(d);
        }
    }
    assert!(right < 1e-6, "masked-out half changed by {right}");
    assert!(left > 0.05, "masked-in half barely changed ({left})");
}

#[test]
fn style_masks_need_one_per_style_and_run() {
    let net = random_vgg(Arch::Vgg16, Pooling::Avg, 4, 6);
    let img = |n: &str| impasto::load_image(&shared_dir().join("images").join(n)).unwrap();
    let (content, a, b) = (img("coffee.png"), img("starry_night.jpg"), img("the_scream.jpg"));
    let mut config = StyleConfig {
        size: 48,
        iterations: 10,
        content_layers: vec!["relu2_2".into()],
        style_layers: vec!["relu1_1".into(), "relu2_1".into()],
        style_masks: Some(vec![half_mask(8, 8, true)]),
        ..StyleConfig::default()
    };
    let err =
        impasto::stylize(&net, &config, &content, &[a.clone(), b.clone()], &mut NoObserver).unwrap_err();
    assert!(err.to_string().contains("1 masks for 2 style images"), "{err}");
    config.style_masks = Some(vec![half_mask(8, 8, true), half_mask(8, 8, false)]);
    let out = impasto::stylize(&net, &config, &content, &[a, b], &mut NoObserver).unwrap();
    assert!(out.losses.style.is_finite() && out.iterations > 0);
}
