//! The Wasserstein style loss on the GPU against the CPU engine: the objective's loss and gradient
//! (terms on convolutions, ReLUs and a pooling), `score` with style masks, and a 64 px run with two
//! masked styles whose final losses are within 1 % of the CPU run's and repeat bit for bit.

use impasto::{Arch, Device, NoObserver, Objective, Pooling, StyleConfig, StyleLoss, Vgg};

use crate::common::{Lcg, random_vgg};
use crate::gpu::{
    assert_gradient_close, assert_losses_close, assert_run_matches, device, half_mask, img, rel, small_config,
};

/// The mean of each channel of the C×`n` features `f`.
fn means(f: &[f32], n: usize) -> Vec<f32> {
    f.chunks_exact(n).map(|row| (row.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64) as f32).collect()
}

fn w2_gradient_matches_the_cpu(pooling: Pooling, style: &[(&str, f32)]) {
    let gpu = device();
    let net: Vgg = random_vgg(Arch::Vgg16, pooling, 3, 21);
    let (w, h) = (33, 21);
    let mut rng = Lcg(9);
    let px: Vec<f32> = (0..3 * w * h).map(|_| 0.5 + 0.4 * rng.next()).collect();
    let other: Vec<f32> = (0..3 * w * h).map(|_| 0.5 + 0.2 * rng.next()).collect();
    let objective = |gpu: Option<Device>| {
        let mut o = Objective::new(&net, w, h);
        for &(layer, weight) in style {
            let (f, [c, lh, lw]) = net.features(&other, w, h, &[layer]).unwrap().into_iter().next().unwrap();
            let gram = impasto::gram_matrix(&f, c, lh * lw);
            o.add_style_wasserstein(layer, gram, &means(&f, lh * lw), weight).unwrap();
        }
        o.set_tv_weight(10.0);
        if let Some(gpu) = gpu {
            o.use_device(gpu).unwrap();
        }
        o
    };
    let (lc, gc) = objective(None).evaluate(&px);
    let (lg, gg) = objective(Some(gpu)).evaluate(&px);
    eprintln!("{pooling:?} {style:?}\ncpu {lc:?}\ngpu {lg:?}");
    assert!(lc.style > 0.0 && rel(lg.style, lc.style) < 1e-4, "style loss {} vs {}", lg.style, lc.style);
    assert_gradient_close(&gg, &gc, 1e-4);
}

#[test]
fn w2_gradient_on_the_gpu_matches_the_cpu() {
    w2_gradient_matches_the_cpu(Pooling::Max, &[("relu1_1", 50.0), ("relu2_1", 20.0)]);
    w2_gradient_matches_the_cpu(Pooling::Avg, &[("relu1_2", 50.0), ("pool1", 20.0), ("conv2_1", 5.0)]);
}

#[test]
fn w2_score_on_the_gpu_matches_the_cpu_with_style_masks() {
    let gpu = device();
    let net = random_vgg(Arch::Vgg16, Pooling::Max, 3, 22);
    let (content, a, b) = (img("coffee.png"), img("starry_night.jpg"), img("the_scream.jpg"));
    let image = impasto::resize(&a, 37, 29);
    let config = StyleConfig {
        size: 37,
        style_loss: StyleLoss::Wasserstein,
        style_masks: Some(vec![half_mask(8, 8, true), half_mask(8, 8, false)]),
        ..small_config(Device::Cpu)
    };
    let styles = [a, b];
    let cpu = impasto::score(&net, &config, &content, &styles, &image).unwrap();
    let g = impasto::score(&net, &StyleConfig { device: gpu, ..config }, &content, &styles, &image).unwrap();
    eprintln!("cpu {cpu:?}\ngpu {g:?}");
    assert_losses_close(&g, &cpu, 1e-4, "w2");
}

#[test]
fn a_64px_w2_run_on_the_gpu_ends_within_one_percent_of_the_cpu_and_repeats() {
    let gpu = device();
    let net = random_vgg(Arch::Vgg16, Pooling::Max, 3, 23);
    let content = img("astronaut.png");
    let styles = [img("starry_night.jpg"), img("the_scream.jpg")];
    let config = |device| StyleConfig {
        style_loss: StyleLoss::Wasserstein,
        style_masks: Some(vec![half_mask(8, 8, true), half_mask(8, 8, false)]),
        ..small_config(device)
    };
    let cpu = impasto::stylize(&net, &config(Device::Cpu), &content, &styles, &mut NoObserver).unwrap();
    let a = impasto::stylize(&net, &config(gpu), &content, &styles, &mut NoObserver).unwrap();
    let b = impasto::stylize(&net, &config(gpu), &content, &styles, &mut NoObserver).unwrap();
    assert_run_matches(&a, &cpu, &b);
}
