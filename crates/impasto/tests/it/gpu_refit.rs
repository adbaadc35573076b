//! A GPU run whose scale runs out of memory (`GpuFaults::capacity`: a device with that much memory
//! for buffers, whose driver reports none) starts that scale again in smaller tiles, planned as a
//! budget given from the start would plan them, and a checkpoint of it resumes into the same plan.

use std::ops::ControlFlow;

use impasto::tiles::{TilePlan, estimate_gpu_peak};
use impasto::{Device, GpuFaults, Observer, Replan, RunInfo, Step, StyleConfig, StyleLoss};

use crate::common::random_vgg;
use crate::gpu::{adapter_limits, device, img, small_config};

/// The plans a run announces and re-makes; stops after iteration `stop_at` when set.
#[derive(Default)]
struct Watch {
    plans: Vec<Option<TilePlan>>,
    replans: Vec<Replan>,
    stop_at: Option<usize>,
}

impl Observer for Watch {
    fn on_start(&mut self, info: &RunInfo) {
        self.plans = info.tiles.clone();
    }
    fn on_replan(&mut self, replan: &Replan) {
        self.replans.push(replan.clone());
    }
    fn on_step(&mut self, step: &Step<'_>) -> ControlFlow<()> {
        if self.stop_at == Some(step.iteration) { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    }
}

/// A 96 px run on relu1_1 with tiles of at least 64 px (no overlap), and a device whose capacity
/// lies between what the whole image and what those tiles hold.
fn setup(gpu: Device) -> (impasto::Vgg, StyleConfig) {
    let (net, config, capacity) = setup_with_estimates(gpu);
    let faults = GpuFaults { capacity: Some((capacity.0 + capacity.1) / 2), ..GpuFaults::default() };
    (net, StyleConfig { gpu_faults: faults, ..config })
}

/// [`setup`] without the fault, and what the whole image and the smallest tiles hold, estimated.
fn setup_with_estimates(gpu: Device) -> (impasto::Vgg, StyleConfig, (u64, u64)) {
    let limits = adapter_limits();
    let net = random_vgg(impasto::Arch::Vgg16, impasto::Pooling::Max, 3, 31);
    let base = StyleConfig {
        size: 96,
        iterations: 2,
        tile_overlap: 0,
        tile_rounds: 1,
        content_layers: vec!["relu1_1".into()],
        style_layers: vec!["relu1_1".into()],
        style_scale: 0.5,
        ..small_config(gpu)
    };
    let whole = estimate_gpu_peak(&net, &base, 96, 96, &limits);
    let tiles = estimate_gpu_peak(&net, &base, 79, 79, &limits);
    eprintln!("GPU estimate: {whole} bytes whole, {tiles} in the smallest tiles");
    (net, base, (whole, tiles))
}

#[test]
fn a_scale_out_of_gpu_memory_starts_again_in_tiles_as_a_budget_would_plan_it() {
    let gpu = device();
    let (net, config) = setup(gpu);
    let (content, style) = (img("astronaut.png"), img("starry_night.jpg"));
    let styles = std::slice::from_ref(&style);
    let mut watch = Watch::default();
    let out =
        impasto::stylize(&net, &config, &content, styles, &mut watch).expect("it starts again in tiles");
    assert_eq!(watch.replans.len(), 1, "one failure teaches the budget");
    let r = &watch.replans[0];
    eprintln!("{} → budget {} bytes, tiles {:?}", r.reason, r.budget, r.tiles[0].as_ref().map(|t| t.tile));
    assert!(r.reason.starts_with("out of GPU memory") && !r.reason.contains('\n'), "{}", r.reason);
    let plan = r.tiles[0].clone().expect("the scale is tiled");
    assert_eq!((r.scale, r.iterations), (0, 2 * plan.len()));
    assert_eq!(watch.plans[0].as_ref(), Some(&plan), "the run announces the plan it runs");
    assert_eq!(out.iterations, 2 * plan.len());
    assert_eq!((out.image.width(), out.image.height()), (96, 96));
    // The bits of a run given that budget from the start (the scale failed before its first
    // iteration, so both start from the same image).
    let planned =
        StyleConfig { max_gpu_memory: Some(r.budget), gpu_faults: GpuFaults::default(), ..config.clone() };
    let mut watch_planned = Watch::default();
    let reference = impasto::stylize(&net, &planned, &content, styles, &mut watch_planned).unwrap();
    assert_eq!(watch_planned.plans[0].as_ref(), Some(&plan));
    assert!(watch_planned.replans.is_empty());
    assert_eq!(out.image.as_raw(), reference.image.as_raw());
    // The Wasserstein loss starts again in the same tiles.
    let w2 = StyleConfig { style_loss: StyleLoss::Wasserstein, ..config.clone() };
    let mut watch_w2 = Watch::default();
    let out = impasto::stylize(&net, &w2, &content, styles, &mut watch_w2).expect("w2 starts again in tiles");
    assert_eq!(watch_w2.replans.len(), 1);
    assert_eq!(watch_w2.replans[0].tiles[0].as_ref(), Some(&plan));
    assert!(out.losses.total().is_finite());
    // What cannot fit even in the smallest tiles still stops with the allocation's one line.
    let tiny =
        StyleConfig { gpu_faults: GpuFaults { capacity: Some(1 << 20), ..GpuFaults::default() }, ..config };
    let err = impasto::stylize(&net, &tiny, &content, styles, &mut Watch::default()).unwrap_err();
    assert!(err.to_string().starts_with("out of GPU memory"), "{err}");
}

/// A checkpoint written after the re-plan records the budget: the run resumes into the same tiles
/// (on a GPU; on the CPU, one line says why not) and ends with the bits of the uninterrupted run.
/// One written before any re-plan, resumed on a device where the scale does not fit, re-plans.
#[test]
fn a_re_planned_run_resumes_into_the_same_tiles() {
    let gpu = device();
    let (net, config) = setup(gpu);
    let (content, style) = (img("astronaut.png"), img("starry_night.jpg"));
    let styles = std::slice::from_ref(&style);
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("run.ckpt");
    let config = StyleConfig { checkpoint: Some(ckpt.clone()), checkpoint_every: 1, ..config };
    let whole = impasto::stylize(&net, &config, &content, styles, &mut Watch::default()).unwrap();
    let mut stop = Watch { stop_at: Some(3), ..Watch::default() };
    impasto::stylize(&net, &config, &content, styles, &mut stop).unwrap();
    assert_eq!(stop.replans.len(), 1);
    // No fault now: the checkpoint's budget alone re-makes the plan.
    let resume =
        StyleConfig { resume: Some(ckpt.clone()), gpu_faults: GpuFaults::default(), ..config.clone() };
    let mut watch = Watch::default();
    let resumed = impasto::stylize(&net, &resume, &content, styles, &mut watch).unwrap();
    assert!(watch.replans.is_empty());
    assert_eq!(watch.plans[0], stop.replans[0].tiles[0]);
    assert_eq!(resumed.image.as_raw(), whole.image.as_raw());
    let on_cpu = StyleConfig { device: Device::Cpu, ..resume };
    let err = impasto::stylize(&net, &on_cpu, &content, styles, &mut Watch::default()).unwrap_err();
    assert!(err.to_string().contains("resume it on a GPU"), "{err}");
    // A checkpoint of the whole scale, written where it fitted, resumed where it does not: the scale
    // starts again in tiles from the checkpoint's image.
    let roomy = StyleConfig { gpu_faults: GpuFaults::default(), ..config.clone() };
    let mut stop = Watch { stop_at: Some(1), ..Watch::default() };
    impasto::stylize(&net, &roomy, &content, styles, &mut stop).unwrap();
    assert!(stop.replans.is_empty() && stop.plans[0].is_none(), "it fits whole without the fault");
    let tight = StyleConfig { resume: Some(ckpt), ..config };
    let mut watch = Watch::default();
    let out = impasto::stylize(&net, &tight, &content, styles, &mut watch).expect("it starts again in tiles");
    assert_eq!(watch.replans.len(), 1);
    assert_eq!((out.image.width(), out.image.height()), (96, 96));
}

/// A run planned in tiles because the card's driver left it little memory (`memory=BYTES/BUDGET`)
/// resumes into the same tiles when the driver leaves more by then: the checkpoint records what the
/// plan followed, so it is not refused as made with other settings.
#[test]
fn a_run_planned_for_the_memory_its_driver_left_resumes_into_the_same_tiles() {
    let gpu = device();
    let (net, base, (whole, tiles)) = setup_with_estimates(gpu);
    let (content, style) = (img("astronaut.png"), img("starry_night.jpg"));
    let styles = std::slice::from_ref(&style);
    let share = |bytes: u64| bytes / impasto::tiles::DEFAULT_GPU_MEMORY_SHARE * 100;
    let (tight, roomy) = (share((whole + tiles) / 2), share(whole + 4096));
    let card = |available| GpuFaults {
        device_memory: Some(2 * roomy),
        memory_budget: Some(available),
        ..GpuFaults::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("run.ckpt");
    let config =
        StyleConfig { checkpoint: Some(ckpt.clone()), checkpoint_every: 1, gpu_faults: card(tight), ..base };
    let mut whole_run = Watch::default();
    let uninterrupted = impasto::stylize(&net, &config, &content, styles, &mut whole_run).unwrap();
    assert!(whole_run.plans[0].is_some(), "tiled: the driver leaves too little for the whole image");
    let mut stop = Watch { stop_at: Some(3), ..Watch::default() };
    impasto::stylize(&net, &config, &content, styles, &mut stop).unwrap();
    let later = StyleConfig { resume: Some(ckpt), gpu_faults: card(roomy), ..config.clone() };
    let fresh = StyleConfig { checkpoint: None, resume: None, ..later.clone() };
    let mut planned_now = Watch::default();
    impasto::stylize(&net, &fresh, &content, styles, &mut planned_now).unwrap();
    assert!(planned_now.plans[0].is_none(), "a fresh run with that much is planned whole");
    let mut watch = Watch::default();
    let resumed = impasto::stylize(&net, &later, &content, styles, &mut watch).expect("it resumes");
    assert_eq!(watch.plans[0], whole_run.plans[0]);
    assert_eq!(resumed.image.as_raw(), uninterrupted.image.as_raw());
}
