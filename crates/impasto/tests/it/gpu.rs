//! The GPU path against the CPU engine: the losses of `score` (content, masked style, TV, pixel mask),
//! the objective's gradient, a 64 px end-to-end run whose final losses are within 1 % of the CPU
//! run's (and a masked video frame's, its temporal term on the host), repeatability on one device,
//! and the device choice. Runs on adapter `IMPASTO_TEST_GPU`
//! (default 0, software adapters included: lavapipe in CI); no adapter is a failure, never a skip.

use std::time::Instant;

use impasto::{
    AlphaPlane, Arch, Device, GpuFailure, Losses, NoObserver, Objective, Pooling, StyleConfig, Vgg,
};

use crate::common::{Lcg, random_vgg, real_weights, shared_dir};
use crate::fixtures::{load_fixture, rel_err};

pub(crate) fn device() -> Device {
    let index = std::env::var("IMPASTO_TEST_GPU").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(
        !impasto::gpu_adapters().is_empty(),
        "no GPU adapter (install a Vulkan driver, e.g. Debian's mesa-vulkan-drivers for lavapipe)"
    );
    Device::Gpu(Some(index))
}

/// The test adapter's limits as the tiler sees them: its buffer limits, which are all an estimate
/// reads (no memory figures, no budget).
pub(crate) fn adapter_limits() -> impasto::tiles::GpuLimits {
    let Device::Gpu(Some(index)) = device() else { unreachable!("tests name the adapter") };
    let a = &impasto::gpu_adapters()[index];
    impasto::tiles::GpuLimits {
        adapter: a.name.clone(),
        tensor: a.max_storage_buffer_binding_size.min(a.max_buffer_size) / 4 * 4,
        tensor_limit: "max_storage_buffer_binding_size",
        buffer: a.max_buffer_size,
        memory: None,
        available: None,
        fitted: None,
    }
}

pub(crate) fn img(name: &str) -> impasto::image::Rgb32FImage {
    impasto::load_image(&shared_dir().join("images").join(name)).unwrap()
}

pub(crate) fn half_mask(w: u32, h: u32, left: bool) -> AlphaPlane {
    AlphaPlane::from_fn(w, h, |x, _| impasto::image::Luma([if (x < w / 2) == left { 1.0 } else { 0.3 }]))
}

pub(crate) fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-30)
}

/// Each of the GPU's three losses within `tol` (relative) of the CPU's.
pub(crate) fn assert_losses_close(g: &Losses, cpu: &Losses, tol: f64, what: &str) {
    for (term, x, y) in
        [("content", g.content, cpu.content), ("style", g.style, cpu.style), ("tv", g.tv, cpu.tv)]
    {
        assert!(rel(x, y) < tol, "{what} {term}: gpu {x} vs cpu {y}");
    }
}

/// The GPU's gradient within `tol` of the CPU's, relative to the CPU's largest value.
pub(crate) fn assert_gradient_close(g: &[f32], cpu: &[f32], tol: f32) {
    let max_ref = cpu.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let max_err = g.iter().zip(cpu).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("gradient max rel err {:.2e}", max_err / max_ref);
    assert!(max_err / max_ref < tol, "gradient rel err {}", max_err / max_ref);
}

/// A GPU run `a` against the CPU's: as many iterations, final losses within 1 %; and `b`, the same
/// GPU run again, bit for bit.
pub(crate) fn assert_run_matches(a: &impasto::Stylized, cpu: &impasto::Stylized, b: &impasto::Stylized) {
    eprintln!("cpu {:?}\ngpu {:?} ({} iterations)", cpu.losses, a.losses, a.iterations);
    assert_eq!(a.iterations, cpu.iterations);
    assert!(
        rel(a.losses.total(), cpu.losses.total()) < 0.01,
        "final loss {} vs {}",
        a.losses.total(),
        cpu.losses.total()
    );
    assert_eq!(a.image.as_raw(), b.image.as_raw(), "two GPU runs differ");
}

/// A small network and settings that reach relu2_1: fast on a software GPU.
pub(crate) fn small_config(device: Device) -> StyleConfig {
    StyleConfig {
        size: 64,
        iterations: 6,
        content_layers: vec!["relu2_1".into()],
        style_layers: vec!["relu1_1".into(), "relu1_2".into(), "relu2_1".into()],
        tv_weight: 1e3,
        threads: 2,
        device,
        ..StyleConfig::default()
    }
}

#[test]
fn score_on_the_gpu_matches_the_cpu_with_masks() {
    let gpu = device();
    for pooling in [Pooling::Max, Pooling::Avg, Pooling::L2] {
        let net = random_vgg(Arch::Vgg16, pooling, 3, 11);
        let (content, a, b) = (img("coffee.png"), img("starry_night.jpg"), img("the_scream.jpg"));
        let image = impasto::resize(&a, 37, 29);
        let config = StyleConfig {
            size: 37,
            mask: Some(half_mask(8, 8, true)),
            style_masks: Some(vec![half_mask(8, 8, true), half_mask(8, 8, false)]),
            ..small_config(Device::Cpu)
        };
        let styles = [a, b];
        let cpu = impasto::score(&net, &config, &content, &styles, &image).unwrap();
        let on_gpu = StyleConfig { device: gpu, ..config };
        let g = impasto::score(&net, &on_gpu, &content, &styles, &image).unwrap();
        eprintln!("{pooling:?}: cpu {cpu:?}\n      gpu {g:?}");
        assert_losses_close(&g, &cpu, 1e-4, &format!("{pooling:?}"));
    }
}

#[test]
fn gpu_gradient_matches_the_cpu() {
    gradient_matches_the_cpu(Pooling::Max, "relu2_1", &[("relu1_1", 50.0), ("relu2_1", 20.0)]);
}

/// The backward pass keeps a convolution's input gradient in the buffer of its output and the
/// others in pools: with a pooling layer last (its gradient and the next both pooled) and terms on
/// a convolution's own output (not fused with its ReLU) every placement is taken.
#[test]
fn gpu_gradient_matches_the_cpu_with_terms_on_convolutions_and_poolings() {
    gradient_matches_the_cpu(Pooling::Avg, "pool1", &[("conv1_2", 50.0), ("relu1_1", 20.0)]);
    gradient_matches_the_cpu(Pooling::Max, "conv2_1", &[("pool1", 50.0), ("conv1_1", 20.0)]);
    gradient_matches_the_cpu(Pooling::L2, "conv2_1", &[("pool1", 50.0), ("relu1_2", 20.0)]);
}

fn gradient_matches_the_cpu(pooling: Pooling, content_layer: &str, style: &[(&str, f32)]) {
    let gpu = device();
    let net: Vgg = random_vgg(Arch::Vgg16, pooling, 3, 12);
    let (w, h) = (33, 21);
    let mut rng = Lcg(5);
    let px: Vec<f32> = (0..3 * w * h).map(|_| 0.5 + 0.4 * rng.next()).collect();
    // Targets from a flatter image, so that every term is well away from zero (no cancellation).
    let other: Vec<f32> = (0..3 * w * h).map(|_| 0.5 + 0.1 * rng.next()).collect();
    let target = |layer: &str| {
        let f = net.features(&other, w, h, &[layer]).unwrap();
        f.into_iter().next().unwrap()
    };
    let objective = |gpu: Option<Device>| {
        let mut o = Objective::new(&net, w, h);
        o.add_content(content_layer, target(content_layer).0, 3.0).unwrap();
        for &(layer, weight) in style {
            let (f, [c, lh, lw]) = target(layer);
            o.add_style(layer, impasto::gram_matrix(&f, c, lh * lw), weight).unwrap();
        }
        o.set_tv_weight(10.0);
        if let Some(gpu) = gpu {
            o.use_device(gpu).unwrap();
        }
        o
    };
    let (lc, gc) = objective(None).evaluate(&px);
    let (lg, gg) = objective(Some(gpu)).evaluate(&px);
    eprintln!("{content_layer} {style:?}\ncpu {lc:?}\ngpu {lg:?}");
    assert!(rel(lg.total(), lc.total()) < 1e-4, "loss {} vs {}", lg.total(), lc.total());
    assert_gradient_close(&gg, &gc, 1e-4);
}

#[test]
fn a_64px_run_on_the_gpu_ends_within_one_percent_of_the_cpu_and_repeats() {
    let gpu = device();
    let net = random_vgg(Arch::Vgg16, Pooling::Max, 3, 13);
    let (content, style) = (img("astronaut.png"), img("starry_night.jpg"));
    let styles = std::slice::from_ref(&style);
    let t = Instant::now();
    let cpu = impasto::stylize(&net, &small_config(Device::Cpu), &content, styles, &mut NoObserver).unwrap();
    let t_cpu = t.elapsed();
    let t = Instant::now();
    let a = impasto::stylize(&net, &small_config(gpu), &content, styles, &mut NoObserver).unwrap();
    let t_gpu = t.elapsed();
    eprintln!("cpu in {t_cpu:?}, gpu in {t_gpu:?}");
    let b = impasto::stylize(&net, &small_config(gpu), &content, styles, &mut NoObserver).unwrap();
    assert_run_matches(&a, &cpu, &b);
}

/// A video frame: the temporal term (on the host, beside the GPU's network terms) with a pixel mask
/// (which also masks that term's gradient), against the CPU run.
#[test]
fn a_video_frame_on_the_gpu_ends_within_one_percent_of_the_cpu() {
    let gpu = device();
    let net = random_vgg(Arch::Vgg16, Pooling::Max, 3, 14);
    let (content, style) = (impasto::resize(&img("astronaut.png"), 40, 32), img("starry_night.jpg"));
    let target = impasto::resize(&img("coffee.png"), 40, 32);
    let reliability =
        AlphaPlane::from_fn(40, 32, |x, y| impasto::image::Luma([if (x + y) % 3 == 0 { 0.0 } else { 1.0 }]));
    let temporal = impasto::Temporal { target, reliability, weight: 1e4 };
    let config =
        |device| StyleConfig { size: 40, mask: Some(half_mask(40, 32, true)), ..small_config(device) };
    let run = |device| {
        let styles = std::slice::from_ref(&style);
        impasto::stylize_frame(&net, &config(device), &content, styles, &temporal, &mut NoObserver).unwrap()
    };
    let (cpu, on_gpu) = (run(Device::Cpu), run(gpu));
    eprintln!("cpu {:?}\ngpu {:?}", cpu.losses, on_gpu.losses);
    assert!(cpu.losses.temporal > 0.0 && on_gpu.losses.temporal > 0.0);
    assert_eq!(on_gpu.iterations, cpu.iterations);
    for (what, x, y) in [
        ("temporal", on_gpu.losses.temporal, cpu.losses.temporal),
        ("total", on_gpu.losses.total(), cpu.losses.total()),
    ] {
        assert!(rel(x, y) < 0.01, "final {what} loss {x} on the GPU vs {y}");
    }
}

#[test]
fn device_choice_parses_and_resolves() {
    assert_eq!(Device::parse("cpu"), Some(Device::Cpu));
    assert_eq!(Device::parse("AUTO"), Some(Device::Auto));
    assert_eq!(Device::parse("gpu"), Some(Device::Gpu(None)));
    assert_eq!(Device::parse("gpu:2"), Some(Device::Gpu(Some(2))));
    assert_eq!(Device::parse("gpu:x"), None);
    assert_eq!(Device::Gpu(Some(3)).to_string(), "gpu:3");
    let err = impasto::resolve_device(Device::Gpu(Some(99))).unwrap_err();
    assert!(err.to_string().contains("there is no GPU adapter gpu:99"), "{err}");
    // auto never picks a software adapter; without a hardware one it falls back with a notice.
    match impasto::resolve_device(Device::Auto).unwrap() {
        impasto::ResolvedDevice::Cpu { notice } => assert!(notice.unwrap().contains("running on the CPU")),
        impasto::ResolvedDevice::Gpu { index, .. } => assert!(!impasto::gpu_adapters()[index].software),
    }
    let net = random_vgg(Arch::Vgg16, Pooling::Max, 1, 1);
    let config = StyleConfig {
        device: Device::Gpu(Some(99)),
        content_layers: vec!["relu1_1".into()],
        style_layers: vec![],
        ..StyleConfig::default()
    };
    let c = img("coffee.png");
    let err = impasto::stylize(&net, &config, &c, std::slice::from_ref(&c), &mut NoObserver).unwrap_err();
    assert!(matches!(err, impasto::Error::Gpu { kind: GpuFailure::Unavailable, .. }), "{err}");
}

#[test]
fn gpu_kernel_profile_covers_every_step_of_an_iteration() {
    let spec = impasto::bench::BenchSpec {
        arch: Arch::Vgg16,
        size: 32,
        threads: 1,
        warmup: 0,
        reps: 1,
        ..Default::default()
    };
    let times = impasto::bench::gpu_kernels(&spec, device()).unwrap();
    // lavapipe has Vulkan timestamp queries: the kernels are timed on the device's clock.
    assert!(times.gpu_clock);
    let rows = times.rows;
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(names.first(), Some(&"upload"));
    assert_eq!(names.last(), Some(&"readback"));
    // VGG-16 to relu5_1: 11 convolutions (conv1_1 … conv5_1), each timed forward and backward as its
    // own family, a Winograd one (conv1_2: 64 tiles at 32 px) as its products and its two transforms.
    let layers = |dir: &str| {
        let mut l: Vec<&str> =
            names.iter().filter(|n| n.starts_with(dir)).map(|n| n.split(',').next().unwrap_or(n)).collect();
        l.dedup();
        l.len()
    };
    assert_eq!(layers("conv fwd"), 11);
    assert_eq!(layers("conv bwd"), 11);
    for part in ["Winograd input transform", "Winograd", "Winograd output transform"] {
        for dir in ["fwd", "bwd"] {
            let family = format!("conv {dir} 64->64 32x32 (layer 2), {part}");
            assert!(names.contains(&family.as_str()), "{family} missing from {names:?}");
        }
    }
    for family in ["gram", "gram bwd", "style", "content", "max_pool_forward", "reduce_sum"] {
        assert!(names.contains(&family), "{family} missing from {names:?}");
    }
    assert!(rows.iter().all(|r| r.1 >= 0.0 && r.1.is_finite() && r.2 >= 1));
}

#[test]
fn a_gpu_failure_mid_run_stops_it_with_the_last_good_image() {
    let gpu = device();
    let net = random_vgg(Arch::Vgg16, Pooling::Max, 3, 14);
    let (content, style) = (img("astronaut.png"), img("starry_night.jpg"));
    let styles = std::slice::from_ref(&style);
    let faults =
        |f: &str| StyleConfig { gpu_faults: impasto::GpuFaults::parse(f).unwrap(), ..small_config(gpu) };
    // The device is lost at submission 6 (1 and 2 compute the style and content targets, then each
    // evaluation submits once, and from the second step on each L-BFGS direction twice, its history
    // being on the GPU): one line, and the image of the last good evaluation.
    let err = impasto::stylize(&net, &faults("lost@6"), &content, styles, &mut NoObserver).unwrap_err();
    let line = err.to_string();
    assert!(
        matches!(err, impasto::Error::Gpu { kind: GpuFailure::Lost, .. }) && line.contains("was lost"),
        "{line}"
    );
    assert!(!line.contains('\n'), "{line}");
    let last = err.last_good_image().expect("the last good image comes with the error");
    assert_eq!(last.dimensions(), (64, 64));
    assert!(last.pixels().all(|p| p.0.iter().all(|v| v.is_finite())));
    // Failures before the run starts: one line, no image. The targets are computed on the GPU, so a
    // device lost at the first submission stops the run there.
    for (fault, kind, says) in [
        ("kernel=conv3x3", GpuFailure::Kernel, "GPU kernel conv3x3 failed to build"),
        ("oom@1", GpuFailure::OutOfMemory, "out of GPU memory"),
        ("lost@1", GpuFailure::Lost, "was lost"),
    ] {
        let err = impasto::stylize(&net, &faults(fault), &content, styles, &mut NoObserver).unwrap_err();
        let line = err.to_string();
        assert!(line.contains(says) && !line.contains('\n'), "{fault}: {line}");
        assert!(matches!(err, impasto::Error::Gpu { kind: k, .. } if k == kind), "{fault}: {err:?}");
        assert!(err.last_good_image().is_none(), "{fault}");
    }
    assert_eq!(impasto::GpuFaults::parse("lost@0"), None);
    assert_eq!(impasto::GpuFaults::parse("melt"), None);
    let card = impasto::GpuFaults::parse("memory=8000/6000").unwrap();
    assert_eq!((card.device_memory, card.memory_budget), (Some(8000), Some(6000)));
    assert_eq!(impasto::GpuFaults::parse("memory=8000/0"), None);
}

#[test]
fn a_network_keeps_its_gpu_copy_for_the_next_runs() {
    let gpu = device();
    let Device::Gpu(Some(index)) = gpu else { unreachable!("tests name the adapter") };
    let net = random_vgg(Arch::Vgg16, Pooling::Max, 3, 15);
    let (content, style) = (img("astronaut.png"), img("starry_night.jpg"));
    let styles = std::slice::from_ref(&style);
    let config = StyleConfig { iterations: 3, ..small_config(gpu) };
    assert_eq!(net.gpu_resident(), None);
    let a = impasto::stylize(&net, &config, &content, styles, &mut NoObserver).unwrap();
    assert_eq!(net.gpu_resident(), Some(index), "the first GPU run leaves the weights on the device");
    let t = Instant::now();
    let b = impasto::stylize(&net, &config, &content, styles, &mut NoObserver).unwrap();
    eprintln!("second run on the kept device: {:?}", t.elapsed());
    assert_eq!(a.image.as_raw(), b.image.as_raw(), "the reused device gives the same run");
    // A run with injected faults opens a device of its own; its loss leaves the kept one usable.
    let lost = StyleConfig { gpu_faults: impasto::GpuFaults::parse("lost@2").unwrap(), ..config.clone() };
    assert!(impasto::stylize(&net, &lost, &content, styles, &mut NoObserver).is_err());
    assert_eq!(net.gpu_resident(), Some(index));
    let c = impasto::stylize(&net, &config, &content, styles, &mut NoObserver).unwrap();
    assert_eq!(a.image.as_raw(), c.image.as_raw());
}

/// The smallest `oom@N` whose run keeps an image: a failed allocation before the run has a result
/// is an error without one; from the first allocation after it on, the error carries the last good
/// image (or, past the last allocation, the run finishes). Exponential then binary search on N.
pub(crate) fn first_oom_with_an_image(
    run: impl Fn(u64) -> impasto::Result<impasto::Stylized>,
) -> (u64, impasto::Result<impasto::Stylized>) {
    let keeps = |r: &impasto::Result<impasto::Stylized>| {
        r.as_ref().map_or_else(|e| e.last_good_image().is_some(), |_| true)
    };
    let (mut lo, mut hi) = (1u64, 64u64);
    while !keeps(&run(hi)) {
        assert!(hi < 1 << 16, "no oom@N up to {hi} keeps an image");
        (lo, hi) = (hi, hi * 2);
    }
    assert!(!keeps(&run(lo)), "oom@{lo} already keeps an image");
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if keeps(&run(mid)) { hi = mid } else { lo = mid }
    }
    (hi, run(hi))
}

/// Out of GPU memory while building the second scale's objective (or a tile's after the first) stops
/// the run as a device lost mid-run does: one line and the previous scale's result (the tiles blended
/// so far).
#[test]
fn a_gpu_failure_building_a_later_scale_keeps_the_previous_result() {
    let gpu = device();
    // One convolution (the search runs each case a dozen times; lavapipe is slow).
    let net = random_vgg(Arch::Vgg16, Pooling::Max, 1, 16);
    let (content, style) = (img("astronaut.png"), img("starry_night.jpg"));
    let styles = std::slice::from_ref(&style);
    let shallow = StyleConfig {
        iterations: 2,
        content_layers: vec!["relu1_1".into()],
        style_layers: vec!["relu1_1".into()],
        ..small_config(gpu)
    };
    let two_scales = StyleConfig { min_size: 32, scale_iterations: Some(2), ..shallow.clone() };
    let tiled = StyleConfig { size: 96, tile: Some(80), tile_overlap: 8, ..shallow };
    for (what, config, size) in [("second scale", two_scales, (32, 32)), ("second tile", tiled, (96, 96))] {
        let run = |n: u64| {
            let faults = impasto::GpuFaults { out_of_memory_at_allocation: Some(n), ..Default::default() };
            let config = StyleConfig { gpu_faults: faults, ..config.clone() };
            impasto::stylize(&net, &config, &content, styles, &mut NoObserver)
        };
        let (n, result) = first_oom_with_an_image(run);
        let err = result.expect_err("an allocation of the later scale fails");
        let line = err.to_string();
        eprintln!("{what}: oom@{n}: {line}");
        let oom = matches!(err, impasto::Error::Gpu { kind: GpuFailure::OutOfMemory, .. });
        assert!(oom && line.contains("out of GPU memory"), "{line}");
        assert!(!line.contains('\n'), "{line}");
        let last = err.last_good_image().expect("the previous result comes with the error");
        assert_eq!(last.dimensions(), size, "{what}");
        assert!(last.pixels().all(|p| p.0.iter().all(|v| v.is_finite())));
    }
}

#[test]
fn a_tiled_run_on_the_gpu_ends_within_one_percent_of_the_cpu_and_repeats() {
    let gpu = device();
    let net = random_vgg(Arch::Vgg16, Pooling::Max, 3, 17);
    let (content, style) = (img("astronaut.png"), img("starry_night.jpg"));
    let styles = std::slice::from_ref(&style);
    let tiled = |device| StyleConfig { size: 96, tile: Some(80), tile_overlap: 8, ..small_config(device) };
    let cpu = impasto::stylize(&net, &tiled(Device::Cpu), &content, styles, &mut NoObserver).unwrap();
    let a = impasto::stylize(&net, &tiled(gpu), &content, styles, &mut NoObserver).unwrap();
    eprintln!("tiled: cpu {:?}\n       gpu {:?} ({} iterations)", cpu.losses, a.losses, a.iterations);
    assert_eq!(a.iterations, cpu.iterations);
    assert_eq!(a.image.dimensions(), (96, 96));
    for (what, x, y) in
        [("total", a.losses.total(), cpu.losses.total()), ("style", a.losses.style, cpu.losses.style)]
    {
        assert!(rel(x, y) < 0.01, "tiled {what}: gpu {x} vs cpu {y}");
    }
    let b = impasto::stylize(&net, &tiled(gpu), &content, styles, &mut NoObserver).unwrap();
    assert_eq!(a.image.as_raw(), b.image.as_raw(), "two tiled GPU runs differ");
}

/// A run on a GPU computes its targets there: the content features to 1e-4 relative and the style
/// Grams (whole, and in tiles as a tiled scale does: each interior's Gram with the cropped-Gram
/// kernel) to 1e-5 of the CPU's on the shared fixture's 64 px image.
#[test]
fn targets_on_the_gpu_match_the_cpu() {
    let gpu = device();
    let Some(weights) = real_weights() else { return };
    let net = Vgg::load(&weights, Arch::Vgg16, Pooling::Max, None, "relu5_1").expect("weights load");
    let rgb = &load_fixture()["input_rgb01"];
    let content = ["relu4_2", "relu2_1"];
    let cpu = impasto::features_on(&net, Device::Cpu, rgb, 64, 64, &content).unwrap();
    let on_gpu = impasto::features_on(&net, gpu, rgb, 64, 64, &content).unwrap();
    for ((name, g), c) in content.iter().zip(&on_gpu).zip(&cpu) {
        let e = rel_err(g, c);
        eprintln!("features {name}: rel err {e:.2e}");
        assert!(e < 1e-4, "features {name}: {e}");
    }
    let img = impasto::from_planar(rgb, 64, 64);
    let style = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"];
    for tile in [None, Some(32)] {
        let cpu = impasto::grams_on(&net, Device::Cpu, &img, &style, tile).unwrap();
        let on_gpu = impasto::grams_on(&net, gpu, &img, &style, tile).unwrap();
        for ((name, g), c) in style.iter().zip(&on_gpu).zip(&cpu) {
            let e = rel_err(g, c);
            eprintln!("Gram {name} (tile {tile:?}): rel err {e:.2e}");
            assert!(e < 1e-5, "Gram {name} (tile {tile:?}): {e}");
        }
    }
}

/// `bench` on a GPU reports the memory impasto holds there: the weights, the objective and one
/// read-back, as the tiler's GPU estimate predicts them for the same objective.
#[test]
fn bench_reports_the_gpu_memory_the_tiler_estimates() {
    let spec = impasto::bench::BenchSpec {
        arch: Arch::Vgg16,
        size: 40,
        threads: 1,
        warmup: 0,
        reps: 1,
        ..Default::default()
    };
    let r = impasto::bench::run_on(&spec, device()).unwrap();
    let got = r.gpu_bytes.expect("GPU memory of a GPU bench");
    // The bench's network to relu5_1 (the estimate reads only its shapes).
    let net = random_vgg(Arch::Vgg16, Pooling::Max, 11, 15);
    // The bench's objective: content at relu4_2, style at relu1_1 … relu5_1; no optimiser state.
    let config = StyleConfig {
        content_layers: vec!["relu4_2".into()],
        style_layers: ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"].map(String::from).to_vec(),
        optimizer: impasto::Optimizer::Adam { learning_rate: 0.01 },
        ..StyleConfig::default()
    };
    let est = impasto::tiles::estimate_gpu_peak(&net, &config, 40, 40, &adapter_limits());
    eprintln!("bench GPU memory at 40 px: {got} bytes, estimate {est}");
    // The estimate counts one 4-byte placeholder buffer of the kernels the bench's objective lacks.
    assert!(got.abs_diff(est) <= 4, "bench {got} bytes, estimate {est}");
}
