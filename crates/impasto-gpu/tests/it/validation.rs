//! The Khronos Vulkan validation layer over every pipeline, a tuned objective and the split paths:
//! what wgpu and naga make of this crate's kernels (the SPIR-V of every GEMM form and kernel, the
//! dispatches, the timestamp queries, the read-backs) is checked against the Vulkan specification,
//! with the layer's synchronisation checks on. Lavapipe runs what a stricter driver (NVIDIA's, AMD's) might reject;
//! the layer is what those drivers are held to.
//!
//! The layer is enabled through the Vulkan loader's environment, which the test cannot change for
//! its own process once a Vulkan instance exists, so `vulkan_validation_finds_nothing` runs
//! `every_pipeline_and_a_tuned_objective` again in a child process under the layer and reads the
//! layer's log.

use std::path::Path;
use std::process::Command;

use impasto_gpu::{
    Choice, Gpu, GpuHistory, GpuObjective, GpuOptions, SmallTiles, StyleTarget, StyleTerm, Tune,
};

use crate::common::{Lcg, small_net, test_adapter};

/// The layer's manifest as Debian's `vulkan-validationlayers` installs it.
const MANIFEST: &str = "/usr/share/vulkan/explicit_layer.d/VkLayer_khronos_validation.json";

/// What the child runs: every pipeline compiled (every GEMM form: a device that tunes, with the
/// 32×32 tiles), an objective evaluated until its tuning ends (every form dispatched and timed),
/// an L-BFGS direction on the device, and on a device whose bindings hold 8 KiB (the first block
/// one channel a group, the image in planes) a masked objective and a masked cropped Gram; and
/// the ceiling kernels (`Gpu::ceilings`). Its own checks: the evaluations repeat to the bit and are finite, the direction too, the split run
/// agrees with the unsplit one.
#[test]
fn every_pipeline_and_a_tuned_objective() {
    use crate::common::Layer::{Conv, MaxPool};
    let options = GpuOptions { tune: Tune::On, small_tiles: SmallTiles::On, ..Default::default() };
    let gpu = Gpu::with_options(Choice::Index(test_adapter()), &options).unwrap_or_else(|e| panic!("{e}"));
    assert!(gpu.tunes(), "{} has no timestamp queries", gpu.adapter().name);
    // Wide enough for the Winograd form (16 channels each side, 64 tiles of 4×4) and tiled products.
    let net =
        std::sync::Arc::new(small_net(gpu.clone(), 41, &[Conv(3, 16), Conv(16, 24), MaxPool, Conv(24, 8)]));
    let (w, h) = (37, 35);
    let mut rng = Lcg(42);
    let px: Vec<f32> = (0..3 * w * h).map(|_| 0.5 + 0.4 * rng.next()).collect();
    let other: Vec<f32> = (0..3 * w * h).map(|_| 0.5 + 0.2 * rng.next()).collect();
    let grams = net.grams_at(&other, h, w, &[1, 3, 6]).unwrap();
    let targets = net.outputs_at(&other, h, w, &[6]).unwrap();
    let style = [1, 3, 6]
        .iter()
        .zip(grams)
        .map(|(&layer, gram)| StyleTerm { layer, target: StyleTarget::Gram(gram), weight: 10.0, mask: None })
        .collect();
    let content = vec![(6, targets[0].0.clone(), 2.0)];
    let mut objective = GpuObjective::new(net, w, h, content, style, 5.0, None).unwrap();
    let first = objective.evaluate(&px).unwrap();
    let mut rounds = 1;
    while objective.tuning() {
        assert_eq!(objective.evaluate(&px).unwrap(), first, "tuning round {rounds}");
        rounds += 1;
        assert!(rounds < 60, "tuning does not end");
    }
    let (losses, grad) = first;
    assert!(losses.style.is_finite() && losses.content.is_finite() && grad.iter().all(|g| g.is_finite()));
    let mut history = GpuHistory::new(gpu.clone(), grad.len(), 3).unwrap();
    for k in 0..3 {
        let s = rng.vec(grad.len(), 1e-3);
        let y: Vec<f32> = s.iter().map(|v| v * (1.5 + 0.1 * k as f32)).collect();
        let ys = s.iter().zip(&y).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
        history.push(&s, &y, ys).unwrap();
    }
    let d = history.direction(&grad).unwrap();
    assert!(d.iter().all(|v| v.is_finite()) && d == history.direction(&grad).unwrap());
    gpu.ceilings(1).unwrap_or_else(|e| panic!("{e}"));
    split_and_masked(&px, &other, (w, h));
}

/// The channel-group paths (split products continuing each sum, per-group element-wise kernels),
/// the style and pixel masks, a host term and the masked cropped Gram, on a device with 8 KiB bindings.
fn split_and_masked(px: &[f32], other: &[f32], (w, h): (usize, usize)) {
    use crate::common::Layer::{Conv, MaxPool};
    let layers = [Conv(3, 16), Conv(16, 24), MaxPool, Conv(24, 8)];
    let open = |cap| {
        let options = GpuOptions { max_storage_binding: cap, ..Default::default() };
        let gpu =
            Gpu::with_options(Choice::Index(test_adapter()), &options).unwrap_or_else(|e| panic!("{e}"));
        std::sync::Arc::new(small_net(gpu, 41, &layers))
    };
    let (split, whole) = (open(Some(8192)), open(None));
    let grams = whole.grams_at(other, h, w, &[1, 6]).unwrap();
    let (mh, mw) = (h / 2, w / 2);
    let mask: Vec<f32> = (0..mh * mw).map(|i| if i % mw < mw / 2 { 1.0 } else { 0.25 }).collect();
    let pixel: Vec<f32> = (0..h * w).map(|i| if i % w < w / 2 { 1.0 } else { 0.5 }).collect();
    let host: impasto_gpu::MomentLoss = std::sync::Arc::new(|m: impasto_gpu::Moments<'_>, weight: f32| {
        let loss = f64::from(weight) * m.mean.iter().map(|v| v * v).sum::<f64>();
        let d_mean = m.mean.iter().map(|v| 2.0 * f64::from(weight) * v).collect();
        Some(impasto_gpu::MomentGradient {
            loss,
            d_second: m.second.iter().map(|v| 1e-3 * v).collect(),
            d_mean,
        })
    });
    let objective = |net: &std::sync::Arc<impasto_gpu::GpuNet>| {
        let style = vec![
            StyleTerm { layer: 1, target: StyleTarget::Gram(grams[0].clone()), weight: 10.0, mask: None },
            StyleTerm {
                layer: 6,
                target: StyleTarget::Gram(grams[1].clone()),
                weight: 10.0,
                mask: Some(mask.clone()),
            },
            // A host term (the Wasserstein loss's path): its statistics and gradient kernels.
            StyleTerm {
                layer: 6,
                target: StyleTarget::Moments(host.clone()),
                weight: 1.0,
                mask: Some(mask.clone()),
            },
        ];
        GpuObjective::new(net.clone(), w, h, Vec::new(), style, 5.0, Some(pixel.clone())).unwrap()
    };
    let (a, b) = (objective(&split).evaluate(px).unwrap(), objective(&whole).evaluate(px).unwrap());
    assert!((a.0.style - b.0.style).abs() <= 1e-5 * b.0.style, "split {:?} vs {:?}", a.0, b.0);
    assert!(a.1.iter().zip(&b.1).all(|(x, y)| (x - y).abs() <= 1e-4 * (1.0 + y.abs())));
    let crop = split.cropped_grams_at(px, h, w, &[6], &[(2, 3, 10, 9)], &[Some(&mask)]).unwrap();
    assert!(crop[0].iter().all(|v| v.is_finite()) && crop[0].len() == 8 * 8);
}

#[test]
fn vulkan_validation_finds_nothing() {
    if !Path::new(MANIFEST).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "no Vulkan validation layer ({MANIFEST}): apt-get install vulkan-validationlayers"
        );
        eprintln!(
            "vulkan_validation_finds_nothing: no {MANIFEST}, not run (install vulkan-validationlayers)"
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("impasto-vk-validation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (settings, log) = (dir.join("vk_layer_settings.txt"), dir.join("validation.log"));
    let _ = std::fs::remove_file(&log);
    let text = format!(
        "khronos_validation.debug_action = VK_DBG_LAYER_ACTION_LOG_MSG\n\
         khronos_validation.report_flags = error,warn,info\n\
         khronos_validation.log_filename = {}\n\
         khronos_validation.enables = VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT\n",
        log.display()
    );
    std::fs::write(&settings, text).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "validation::every_pipeline_and_a_tuned_objective", "--test-threads", "1"])
        .env("VK_INSTANCE_LAYERS", "VK_LAYER_KHRONOS_validation")
        .env("VK_LAYER_SETTINGS_PATH", &settings)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "under the layer: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 passed"), "the child ran no test: {stdout}");
    let text = std::fs::read_to_string(&log)
        .unwrap_or_else(|e| panic!("no log from the validation layer at {}: {e}", log.display()));
    // The layer reports itself active (an info message) before anything else.
    assert!(text.contains("createinstance-status-message"), "the layer did not start: {text}");
    let bad: Vec<&str> = text.lines().filter(|l| l.contains("(ERROR /") || l.contains("(WARN /")).collect();
    assert!(bad.is_empty(), "{} validation messages, the first: {}", bad.len(), text);
    let _ = std::fs::remove_dir_all(&dir);
}
