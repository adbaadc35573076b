//! The temporal term of video frames: its gradient against central finite differences, its mean over
//! the reliable pixels only (the same value whatever the mask's coverage), and
//! `stylize_frame` holding the reliable pixels to the warped previous frame while leaving the others free.

use impasto::image::{Luma, Rgb, Rgb32FImage};
use impasto::{AlphaPlane, Arch, NoObserver, Objective, Pooling, StyleConfig, Temporal, gram_matrix};

use crate::common::{Lcg, random_vgg, shared_dir};

#[test]
fn temporal_gradient_matches_finite_differences() {
    let (w, h) = (9, 8);
    let net = random_vgg(Arch::Vgg16, Pooling::Avg, 4, 11);
    let mut rng = Lcg(77);
    let px: Vec<f32> = rng.vec(3 * w * h, 0.4).into_iter().map(|v| v + 0.5).collect();
    let feats = net.features(&px, w, h, &["relu1_1", "relu2_2"]).unwrap();
    let mut obj = Objective::new(&net, w, h);
    obj.add_content("relu2_2", feats[1].0.iter().map(|v| v * 0.8).collect(), 2.0).unwrap();
    let (f, [c, fh, fw]) = &feats[0];
    obj.add_style("relu1_1", gram_matrix(f, *c, fh * fw), 30.0).unwrap();
    let target: Vec<f32> = rng.vec(3 * w * h, 0.4).into_iter().map(|v| v + 0.5).collect();
    // A mask with zeros, ones and values between.
    let mask: Vec<f32> = (0..w * h).map(|i| [0.0, 1.0, 0.5, 1.0][i % 4]).collect();
    obj.set_temporal(target, mask, 40.0);
    let x: Vec<f32> = rng.vec(3 * w * h, 0.4).into_iter().map(|v| v + 0.5).collect();
    let (losses, grad) = obj.evaluate(&x);
    assert!(losses.temporal > 0.0, "the temporal term is evaluated: {losses:?}");
    let gmax = grad.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let eps = 1e-3f32;
    let mut worst = 0.0f32;
    for i in 0..x.len() {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp[i] += eps;
        xm[i] -= eps;
        let fd = ((obj.evaluate(&xp).0.total() - obj.evaluate(&xm).0.total()) / (2.0 * eps as f64)) as f32;
        worst = worst.max((fd - grad[i]).abs() / gmax);
    }
    eprintln!("temporal objective: worst |fd − grad| / max|grad| = {worst:.2e}");
    assert!(worst < 2e-2, "finite differences disagree ({worst:e})");
}

#[test]
fn temporal_term_is_a_mean_over_the_reliable_pixels() {
    let (w, h) = (8, 6);
    let net = random_vgg(Arch::Vgg16, Pooling::Avg, 4, 3);
    let x = vec![0.5f32; 3 * w * h];
    let target = vec![0.3f32; 3 * w * h];
    let at = |mask: Vec<f32>| {
        let mut obj = Objective::new(&net, w, h);
        obj.set_temporal(target.clone(), mask, 10.0);
        obj.evaluate(&x).0.temporal
    };
    // Every reliable pixel differs by 0.2 in each channel: the term is 10 · 0.04 for any coverage.
    let all = at(vec![1.0; w * h]);
    let quarter = at((0..w * h).map(|i| f32::from(i % 4 == 0)).collect());
    let none = at(vec![0.0; w * h]);
    assert!((all - 0.4).abs() < 1e-5, "{all}");
    assert!((quarter - 0.4).abs() < 1e-5, "the term depends on the mask's coverage: {quarter}");
    assert_eq!(none, 0.0);
}

#[test]
fn stylize_frame_holds_reliable_pixels_to_the_warped_frame() {
    let net = random_vgg(Arch::Vgg16, Pooling::Max, 4, 5);
    let img = |n: &str| impasto::load_image(&shared_dir().join("images").join(n)).unwrap();
    let content = impasto::resize(&img("astronaut.png"), 48, 48);
    let style = img("starry_night.jpg");
    let config = StyleConfig {
        size: 48,
        min_size: 48,
        iterations: 30,
        content_layers: vec!["relu2_2".into()],
        style_layers: vec!["relu1_1".into(), "relu2_1".into()],
        threads: 2,
        ..StyleConfig::default()
    };
    let target = Rgb32FImage::from_pixel(48, 48, Rgb([0.2, 0.6, 0.4]));
    // Reliable on the left half only.
    let reliability = AlphaPlane::from_fn(48, 48, |x, _| Luma([if x < 24 { 1.0 } else { 0.0 }]));
    let dist = |out: &Rgb32FImage, left: bool| {
        let (mut s, mut n) = (0.0f32, 0.0f32);
        for (x, _, p) in out.enumerate_pixels() {
            if (x < 20) == left && !(20..28).contains(&x) {
                s += (0..3).map(|c| (p[c] - target.get_pixel(0, 0)[c]).abs()).sum::<f32>();
                n += 3.0;
            }
        }
        s / n
    };
    let free =
        impasto::stylize(&net, &config, &content, std::slice::from_ref(&style), &mut NoObserver).unwrap();
    let temporal = Temporal { target: target.clone(), reliability, weight: 1e5 };
    let held = impasto::stylize_frame(&net, &config, &content, &[style], &temporal, &mut NoObserver).unwrap();
    eprintln!(
        "distance to the target: free run {:.3} / {:.3}, held run {:.3} (reliable) / {:.3} (unreliable)",
        dist(&free.image, true),
        dist(&free.image, false),
        dist(&held.image, true),
        dist(&held.image, false)
    );
    assert!(held.losses.temporal > 0.0);
    assert!(dist(&held.image, true) < 0.25 * dist(&free.image, true), "reliable pixels not held");
    assert!(dist(&held.image, false) > 0.5 * dist(&free.image, false), "unreliable pixels held too");
}
