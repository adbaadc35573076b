//! Runs with the Wasserstein style loss (`StyleLoss::Wasserstein`): the style distance falls, alone
//! and with style masks, and results are deterministic. Its GPU path is tested in
//! `gpu_wasserstein.rs`, its tiled scales in `tile_wasserstein.rs`.

use impasto::{NoObserver, Observer, Pooling, StyleConfig, StyleLoss};

use crate::common::{run_net, shared_image_or_pattern};

/// The style loss at the start and at the end of a run.
#[derive(Default)]
struct Ends(Option<f64>);

impl Observer for Ends {
    fn on_start(&mut self, info: &impasto::RunInfo) {
        self.0 = Some(info.initial.style);
    }
}

#[test]
#[ignore = "slow: three real-VGG runs of 30 iterations; `.ci/run` runs it (--include-ignored)"]
fn wasserstein_style_loss_falls_and_is_deterministic() {
    let (net, style_layers) = run_net(Pooling::Max, "relu5_1");
    let content = shared_image_or_pattern("astronaut.png", 96);
    let style = shared_image_or_pattern("starry_night.jpg", 80);
    let config = StyleConfig {
        size: 64,
        iterations: 30,
        threads: 2,
        style_layers,
        style_loss: StyleLoss::Wasserstein,
        ..StyleConfig::default()
    };
    let mut ends = Ends::default();
    let a = impasto::stylize(&net, &config, &content, std::slice::from_ref(&style), &mut ends).unwrap();
    let initial = ends.0.unwrap();
    eprintln!("w2 style loss {initial:e} -> {:e} after {} iterations", a.losses.style, a.iterations);
    assert!(a.losses.style.is_finite() && a.losses.style * 4.0 <= initial, "{initial} -> {}", a.losses.style);
    let b = impasto::stylize(&net, &config, &content, std::slice::from_ref(&style), &mut NoObserver).unwrap();
    assert!(a.image == b.image, "two identical runs differ");

    // The same run scored with the Gram loss: a different objective, so other losses and pixels.
    let gram = StyleConfig { style_loss: StyleLoss::Gram, ..config.clone() };
    let g = impasto::stylize(&net, &gram, &content, std::slice::from_ref(&style), &mut NoObserver).unwrap();
    assert!(g.image != a.image && g.losses.style != a.losses.style);
}

#[test]
fn wasserstein_style_loss_with_style_masks() {
    let (net, style_layers) = run_net(Pooling::Max, "relu4_2");
    let content = shared_image_or_pattern("chelsea.png", 48);
    let styles =
        [shared_image_or_pattern("starry_night.jpg", 48), shared_image_or_pattern("the_scream.jpg", 48)];
    let left = impasto::image::ImageBuffer::from_fn(48, 48, |x, _| impasto::image::Luma([f32::from(x < 24)]));
    let right =
        impasto::image::ImageBuffer::from_fn(48, 48, |x, _| impasto::image::Luma([f32::from(x >= 24)]));
    let config = StyleConfig {
        size: 48,
        iterations: 15,
        threads: 2,
        style_layers: style_layers.into_iter().take(3).collect(),
        style_loss: StyleLoss::Wasserstein,
        style_masks: Some(vec![left, right]),
        ..StyleConfig::default()
    };
    let mut ends = Ends::default();
    let out = impasto::stylize(&net, &config, &content, &styles, &mut ends).unwrap();
    let initial = ends.0.unwrap();
    assert!(
        out.losses.style.is_finite() && out.losses.style * 2.0 <= initial,
        "{initial} -> {}",
        out.losses.style
    );
}
