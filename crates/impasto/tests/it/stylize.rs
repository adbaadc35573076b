//! End-to-end runs with the real VGG-16 on small images from ../shared/images (on a fresh clone without
//! them: the built-in compact VGG-16 on colour patterns): the style loss falls, results are
//! deterministic, non-finite losses and cancellation return usable images.

use std::ops::ControlFlow;

use impasto::{Error, Init, NoObserver, Observer, Optimizer, Pooling, Step, StopReason, StyleConfig};

use crate::common::{run_net, shared_image_or_pattern};

fn inputs() -> (impasto::image::Rgb32FImage, impasto::image::Rgb32FImage) {
    (shared_image_or_pattern("astronaut.png", 96), shared_image_or_pattern("starry_night.jpg", 80))
}

#[test]
#[ignore = "slow: five real-VGG runs, 110 iterations (about 10 s of CPU); `.ci/run` runs it (--include-ignored)"]
fn style_loss_falls_and_output_is_deterministic() {
    let (net, style_layers) = run_net(Pooling::Max, "relu5_1");
    let (content, style) = inputs();
    let config = StyleConfig { size: 64, iterations: 40, threads: 2, style_layers, ..StyleConfig::default() };

    struct First(Option<impasto::Losses>);
    impl Observer for First {
        fn on_start(&mut self, info: &impasto::RunInfo) {
            self.0 = Some(info.initial);
        }
    }
    let mut first = First(None);
    let a = impasto::stylize(&net, &config, &content, std::slice::from_ref(&style), &mut first).unwrap();
    let initial = first.0.unwrap();
    eprintln!("initial {initial:?}\nfinal   {:?} after {} iterations", a.losses, a.iterations);
    assert_eq!((a.image.width(), a.image.height()), (64, 64));
    assert!(a.losses.content.is_finite());
    assert!(
        a.losses.style * 5.0 <= initial.style,
        "style loss fell only from {} to {}",
        initial.style,
        a.losses.style
    );

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.png");
    impasto::save_image(&a.image, &out).unwrap();
    let back = impasto::load_image(&out).unwrap();
    assert_eq!((back.width(), back.height()), (64, 64));

    // Same inputs, seed and thread count: identical output file bytes; another seed: different ones.
    let png = |config: &StyleConfig, name: &str| {
        let out =
            impasto::stylize(&net, config, &content, std::slice::from_ref(&style), &mut NoObserver).unwrap();
        let path = dir.path().join(name);
        impasto::save_image(&out.image, &path).unwrap();
        std::fs::read(path).unwrap()
    };
    assert!(png(&config, "again.png") == std::fs::read(&out).unwrap(), "two identical runs differ");
    let noisy = StyleConfig { init: Init::Noise, seed: 3, iterations: 10, ..config.clone() };
    let n1 = png(&noisy, "n1.png");
    assert!(n1 == png(&noisy, "n2.png"), "two seeded noise runs differ");
    assert!(n1 != png(&StyleConfig { seed: 4, ..noisy }, "n3.png"), "another seed gave the same image");
}

#[test]
fn adam_noise_init_and_cancellation() {
    let (net, _) = run_net(Pooling::Avg, "relu4_2");
    let (content, style) = inputs();
    let config = StyleConfig {
        size: 48,
        iterations: 50,
        init: Init::Noise,
        optimizer: Optimizer::Adam { learning_rate: 0.02 },
        style_layers: vec!["relu1_1".into(), "relu2_1".into(), "relu3_1".into()],
        threads: 1,
        ..StyleConfig::default()
    };
    struct StopAt(usize, Vec<f64>);
    impl Observer for StopAt {
        fn on_step(&mut self, s: &Step<'_>) -> ControlFlow<()> {
            self.1.push(s.losses.total());
            if s.iteration == self.0 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        }
    }
    let mut obs = StopAt(20, Vec::new());
    let out = impasto::stylize(&net, &config, &content, &[style], &mut obs).unwrap();
    assert_eq!(out.stop, StopReason::Cancelled);
    assert_eq!(out.iterations, 20);
    assert!(obs.1[19] < obs.1[0], "Adam did not lower the loss: {:?}", obs.1);
}

#[test]
fn non_finite_loss_returns_the_last_good_image() {
    let (net, style_layers) = run_net(Pooling::Max, "relu5_1");
    let (content, style) = inputs();
    let config =
        StyleConfig { size: 32, iterations: 5, style_weight: 1e38, style_layers, ..StyleConfig::default() };
    let err = impasto::stylize(&net, &config, &content, &[style], &mut NoObserver).unwrap_err();
    assert!(matches!(err, Error::NonFinite { .. }), "{err}");
    let img = err.last_good_image().unwrap();
    assert_eq!((img.width(), img.height()), (32, 32));
}

#[test]
fn every_start_begins_where_it_says() {
    let net = crate::common::random_vgg(impasto::Arch::Vgg16, Pooling::Max, 4, 5);
    let content = impasto::image::Rgb32FImage::from_pixel(48, 32, impasto::image::Rgb([0.9, 0.1, 0.1]));
    let mut style = impasto::image::Rgb32FImage::from_pixel(48, 48, impasto::image::Rgb([0.2, 0.6, 0.3]));
    for (x, y, p) in style.enumerate_pixels_mut() {
        if (x + y) % 2 == 0 {
            *p = impasto::image::Rgb([0.4, 0.6, 0.1]);
        }
    }
    let config = StyleConfig {
        size: 48,
        iterations: 0,
        min_size: 48,
        content_layers: vec!["relu2_1".into()],
        style_layers: vec!["relu1_1".into(), "relu2_1".into()],
        threads: 1,
        ..StyleConfig::default()
    };
    let start = |init: Init| {
        let c = StyleConfig { init, ..config.clone() };
        let out =
            impasto::stylize(&net, &c, &content, std::slice::from_ref(&style), &mut NoObserver).unwrap();
        assert_eq!((out.image.width(), out.image.height()), (48, 32));
        let n = (48 * 32) as f32;
        let mean: [f32; 3] = std::array::from_fn(|c| out.image.pixels().map(|p| p[c]).sum::<f32>() / n);
        let spread: [f32; 3] = std::array::from_fn(|c| {
            (out.image.pixels().map(|p| (p[c] - mean[c]).powi(2)).sum::<f32>() / n).sqrt()
        });
        (mean, spread)
    };
    let near = |a: [f32; 3], b: [f32; 3], tol: f32| a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol);
    let (m, s) = start(Init::Gray);
    assert!(near(m, [0.502; 3], 0.002) && s.iter().all(|&v| v < 0.002), "gray: {m:?} {s:?}");
    // The style's channels: red 0.3 ± 0.1, green 0.6 ± 0, blue 0.2 ± 0.1.
    let (m, s) = start(Init::StyleStats);
    assert!(near(m, [0.3, 0.6, 0.2], 0.01) && near(s, [0.1, 0.0, 0.1], 0.01), "style-stats: {m:?} {s:?}");
    let (m, s) = start(Init::Style);
    assert!(
        near(m, [0.3, 0.6, 0.2], 0.01) && near(s, [0.1, 0.0, 0.1], 1e-5),
        "style (its centre, not resized): {m:?} {s:?}"
    );
    let (m, _) = start(Init::Content);
    assert!(near(m, [0.9, 0.1, 0.1], 1e-4), "content: {m:?}");
    // Without a style image the style starts have nothing to start from: one clear error.
    let c = StyleConfig { init: Init::Style, style_weight: 0.0, ..config.clone() };
    let e = impasto::stylize(&net, &c, &content, &[], &mut NoObserver).unwrap_err();
    assert_eq!(e.to_string(), "invalid init: it starts from the style images, and there are none");
}

#[test]
fn a_fixed_style_size_is_that_of_the_style_scale_it_equals() {
    let (net, style_layers) = run_net(Pooling::Max, "relu4_2");
    let (content, style) = inputs();
    let layers = style_layers.into_iter().take(3).collect();
    let scaled = StyleConfig {
        size: 64,
        iterations: 5,
        threads: 2,
        style_layers: layers,
        style_scale: 0.5,
        ..StyleConfig::default()
    };
    let sized = StyleConfig { style_scale: 1.0, style_size: Some(32), ..scaled.clone() };
    let run =
        |c: &StyleConfig| impasto::stylize(&net, c, &content, std::slice::from_ref(&style), &mut NoObserver);
    let (a, b) = (run(&scaled).unwrap(), run(&sized).unwrap());
    assert!(a.image == b.image, "--style-size 32 at 64 px differs from --style-scale 0.5");
    let other = run(&StyleConfig { style_size: Some(48), ..sized.clone() }).unwrap();
    assert!(other.image != b.image);
    let e = run(&StyleConfig { style_size: Some(8), ..sized }).unwrap_err();
    assert_eq!(e.to_string(), "invalid style size: 8 (must be between 16 and 16384 pixels)");
}
