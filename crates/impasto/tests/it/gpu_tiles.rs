//! Runs on a GPU tiled to fit it: a scale whose channel planes exceed the adapter's storage binding
//! (capped on lavapipe with `GpuFaults::max_storage_binding`, as a smaller adapter would have it) or
//! whose estimated GPU memory exceeds `max_gpu_memory` is optimised in tiles that fit, with the result
//! of the CPU run with the same tiles; what cannot fit even in the smallest tiles is one line before
//! the run starts.

use impasto::tiles::{DEFAULT_GPU_MEMORY_SHARE, GpuLimits, TilePlan, estimate_gpu_peak, gpu_budget};
use impasto::{Device, GpuFailure, GpuFaults, NoObserver, Observer, RunInfo, StyleConfig};

use crate::common::random_vgg;
use crate::gpu::{adapter_limits, device, img, rel, small_config};

/// The tile plans a run announces.
#[derive(Default)]
struct Plans(Vec<Option<TilePlan>>);

impl Observer for Plans {
    fn on_start(&mut self, info: &RunInfo) {
        self.0 = info.tiles.clone();
    }
}

/// A 96 px run on relu1_1 (its 64×64 Gram fits a small binding), the style image at 48 px.
fn config(device: Device, binding: Option<u64>) -> StyleConfig {
    StyleConfig {
        size: 96,
        iterations: 1,
        tile_overlap: 8,
        content_layers: vec!["relu1_1".into()],
        style_layers: vec!["relu1_1".into()],
        style_scale: 0.5,
        gpu_faults: GpuFaults { max_storage_binding: binding, ..GpuFaults::default() },
        ..small_config(device)
    }
}

/// One channel plane of the whole 96×96 image is 36 KiB; a binding of 143×256 bytes holds at most
/// 95×95 values, so the image is tiled (in tiles of 80 px: 64 px rectangles) instead of stopping
/// with the adapter's limit, and ends where the CPU run with the same tiles ends. Content and TV
/// only: a binding that holds two planes splits relu1_1's 64 channels into 32 groups, and the Gram
/// over 32×32 pairs of 2-channel groups takes lavapipe 34 s an evaluation (the style over channel
/// groups is tested in impasto-gpu's `split` tests, tiled style on the GPU in `gpu`).
#[test]
fn a_gpu_run_larger_than_a_binding_is_tiled_to_fit_and_matches_the_cpu() {
    let gpu = device();
    let net = random_vgg(impasto::Arch::Vgg16, impasto::Pooling::Max, 3, 21);
    let (content, style) = (img("astronaut.png"), img("starry_night.jpg"));
    let styles = std::slice::from_ref(&style);
    let config =
        |device, binding| StyleConfig { style_weight: 0.0, iterations: 4, ..config(device, binding) };
    let mut plans = Plans::default();
    let on_gpu = impasto::stylize(&net, &config(gpu, Some(143 * 256)), &content, styles, &mut plans)
        .expect("the run is tiled to fit the binding");
    let plan = plans.0[0].clone().expect("the scale is tiled");
    assert_eq!(plan.tile, 80, "the largest tiles whose planes fit");
    assert!(plan.rects().all(|r| 4 * r.pixels() <= 143 * 256), "{plan:?}");
    let mut cpu_plans = Plans::default();
    let cpu_config = StyleConfig { tile: Some(plan.tile), ..config(Device::Cpu, None) };
    let cpu = impasto::stylize(&net, &cpu_config, &content, styles, &mut cpu_plans).unwrap();
    assert_eq!(cpu_plans.0[0].as_ref(), Some(&plan), "the CPU run has the same tiles");
    eprintln!("capped binding, tiled: cpu {:?}\n                       gpu {:?}", cpu.losses, on_gpu.losses);
    assert_eq!(on_gpu.iterations, cpu.iterations);
    assert_eq!(on_gpu.image.dimensions(), (96, 96));
    for (what, x, y) in [
        ("total", on_gpu.losses.total(), cpu.losses.total()),
        ("content", on_gpu.losses.content, cpu.losses.content),
        ("tv", on_gpu.losses.tv, cpu.losses.tv),
    ] {
        assert!(rel(x, y) < 0.01, "{what}: gpu {x} vs cpu {y}");
    }
    // Without the cap the same run is one piece.
    let mut whole = Plans::default();
    impasto::stylize(&net, &StyleConfig { iterations: 1, ..config(gpu, None) }, &content, styles, &mut whole)
        .unwrap();
    assert_eq!(whole.0, vec![None]);
}

/// A binding too small for a plane of even the smallest tiles (80 px with an 8 px overlap: 95 px
/// rectangles), a too small GPU memory budget, an explicit tile too large for the binding: one
/// line naming the limit, before the run starts (no image).
#[test]
fn what_cannot_fit_the_gpu_even_in_tiles_is_one_line_before_the_run() {
    let gpu = device();
    let net = random_vgg(impasto::Arch::Vgg16, impasto::Pooling::Max, 3, 22);
    let (content, style) = (img("astronaut.png"), img("starry_night.jpg"));
    let styles = std::slice::from_ref(&style);
    let cases = [
        (
            config(gpu, Some(16 << 10)),
            "even the smallest tiles (80 px) do not fit the GPU at 96x96: one channel plane of a 95x95 image needs 35.3 KiB but llvmpipe",
        ),
        (
            StyleConfig { max_gpu_memory: Some(1 << 20), ..config(gpu, None) },
            "optimising a 95x95 image on the GPU needs about 33 MiB but the GPU memory budget is 1 MiB",
        ),
        (
            StyleConfig { tile: Some(88), ..config(gpu, Some(143 * 256)) },
            "tiles of 88 px at 96x96: one channel plane of a 96x96 image needs 36.0 KiB",
        ),
    ];
    for (config, says) in cases {
        let err = impasto::stylize(&net, &config, &content, styles, &mut NoObserver).unwrap_err();
        let line = err.to_string();
        eprintln!("{line}");
        assert!(line.contains(says) && !line.contains('\n'), "{line}");
        assert!(err.last_good_image().is_none());
    }
}

/// `max_gpu_memory` between what 80 px tiles and the whole 96 px image hold on the GPU: tiled; and
/// without it, a card whose default budget (a share of its memory, or of what its driver leaves
/// the run) lies between them.
#[test]
fn a_gpu_memory_budget_tiles_the_run() {
    let gpu = device();
    let limits = adapter_limits();
    let net = random_vgg(impasto::Arch::Vgg16, impasto::Pooling::Max, 3, 23);
    let (content, style) = (img("astronaut.png"), img("starry_night.jpg"));
    let styles = std::slice::from_ref(&style);
    let base = StyleConfig { iterations: 1, ..config(gpu, None) };
    let whole = estimate_gpu_peak(&net, &base, 96, 96, &limits);
    let tile = estimate_gpu_peak(&net, &base, 95, 95, &limits);
    eprintln!("GPU estimate: {whole} bytes whole, {tile} in 95 px tiles");
    assert!(tile < whole);
    let mut plans = Plans::default();
    let budget = StyleConfig { max_gpu_memory: Some((tile + whole) / 2), ..base.clone() };
    impasto::stylize(&net, &budget, &content, styles, &mut plans).unwrap();
    assert_eq!(plans.0[0].as_ref().map(|p| p.tile), Some(80));
    // Without `max_gpu_memory` the budget is a share of a discrete card's memory (lavapipe, a
    // software adapter, has none: it is taken for a card with `device_memory`): a card whose share
    // lies between the two is tiled alike; one whose share holds the whole image is not.
    // A card that would hold it whole, of which its driver leaves the run (other programs holding
    // the rest) only what holds the tiles, is tiled as well.
    let share = |bytes: u64| bytes / DEFAULT_GPU_MEMORY_SHARE * 100;
    let (between, roomy) = (share((tile + whole) / 2), share(whole + 4096));
    let cards = [(between, None, true), (roomy, None, false), (2 * roomy, Some(between), true)];
    for (memory, available, tiled) in cards {
        let faults =
            GpuFaults { device_memory: Some(memory), memory_budget: available, ..GpuFaults::default() };
        let small_card = StyleConfig { gpu_faults: faults, ..base.clone() };
        let limits = GpuLimits { memory: Some(memory), available, ..limits.clone() };
        let (allowed, why) = gpu_budget(&small_card, &limits).expect("a budget from the memory");
        assert!(why.starts_with("the default GPU memory budget (80 % of "), "{why}");
        assert_eq!(why.contains("its driver leaves this run"), available.is_some(), "{why}");
        assert!((allowed < whole) == tiled, "{allowed} vs {whole}");
        let mut plans = Plans::default();
        impasto::stylize(&net, &small_card, &content, styles, &mut plans).unwrap();
        assert_eq!(plans.0[0].as_ref().map(|p| p.tile), tiled.then_some(80), "{memory} bytes of memory");
    }
}

/// A GPU memory budget just under what the whole 96 px scale holds with the default Winograd
/// scratch: the scratch shrinks (more bands of tile rows) instead of the scale being tiled, and the
/// run gives the pixels of the run without a budget, bit for bit.
#[test]
fn a_smaller_winograd_scratch_keeps_a_scale_whole_under_a_budget() {
    let gpu = device();
    let limits = adapter_limits();
    let net = random_vgg(impasto::Arch::Vgg16, impasto::Pooling::Max, 3, 25);
    let (content, style) = (img("astronaut.png"), img("starry_night.jpg"));
    let styles = std::slice::from_ref(&style);
    // relu2_1: the 64 → 64 and 64 → 128 convolutions take the Winograd form at 96 and 48 px.
    let base = StyleConfig {
        iterations: 2,
        content_layers: vec!["relu2_1".into()],
        style_layers: vec!["relu1_1".into(), "relu2_1".into()],
        ..config(gpu, None)
    };
    let whole = estimate_gpu_peak(&net, &base, 96, 96, &limits);
    let budget = StyleConfig { max_gpu_memory: Some(whole - 1), ..base.clone() };
    let fitted = estimate_gpu_peak(&net, &budget, 96, 96, &limits);
    eprintln!(
        "GPU estimate at 96 px: {whole} bytes with the default Winograd scratch, {fitted} under the budget"
    );
    assert!(fitted < whole);
    let (mut free, mut tight) = (Plans::default(), Plans::default());
    let a = impasto::stylize(&net, &base, &content, styles, &mut free).unwrap();
    let b = impasto::stylize(&net, &budget, &content, styles, &mut tight).unwrap();
    assert_eq!((free.0, tight.0), (vec![None], vec![None]), "both whole");
    assert_eq!(a.losses, b.losses);
    assert!(a.image == b.image, "a smaller Winograd scratch changed the pixels");
}

/// A tile job (`impasto tiles run`) on a GPU that fails in its second tile (out of memory building
/// its objective, the device lost in it; the first fault `oom@N`/`lost@N` after the first tile is
/// stored, found by search) stops as a run does: one line, and the last good image, the job's base
/// with the first tile blended in (that tile stays stored).
#[test]
fn a_gpu_failure_in_a_tile_job_keeps_the_last_good_image() {
    let gpu = device();
    // One convolution (the search below runs the job a dozen times; lavapipe is slow).
    let net = random_vgg(impasto::Arch::Vgg16, impasto::Pooling::Max, 1, 24);
    let (content, style) = (img("astronaut.png"), img("starry_night.jpg"));
    let styles = std::slice::from_ref(&style);
    let config = |device| StyleConfig {
        size: 96,
        tile: Some(80),
        tile_overlap: 8,
        iterations: 2,
        content_layers: vec!["relu1_1".into()],
        style_layers: vec!["relu1_1".into()],
        ..small_config(device)
    };
    let (job, base) =
        impasto::tiles::prepare_tiles(&net, &config(Device::Cpu), &content, styles, &mut NoObserver).unwrap();
    assert!(job.plan.len() >= 2);
    let run = |fault: &str, n: u64| {
        let dir = tempfile::tempdir().unwrap();
        let faults = GpuFaults::parse(&format!("{fault}@{n}")).unwrap();
        let config = StyleConfig { gpu_faults: faults, ..config(gpu) };
        let r = impasto::tiles::run_tiles(
            &net,
            &config,
            &content,
            styles,
            &job,
            &base,
            dir.path(),
            &[0, 1],
            None,
            &mut NoObserver,
        );
        let first = job.store(dir.path()).unwrap().read(0, job.plan.rect(0)).unwrap();
        (r, first)
    };
    for fault in ["oom", "lost"] {
        // The smallest N at which the first tile is finished: exponential, then binary search.
        let (mut lo, mut hi) = (1u64, 16u64);
        while run(fault, hi).1.is_none() {
            assert!(hi < 1 << 16, "no {fault}@N up to {hi} lets the first tile finish");
            (lo, hi) = (hi, hi * 2);
        }
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if run(fault, mid).1.is_some() { hi = mid } else { lo = mid }
        }
        let (result, first) = run(fault, hi);
        let err = result.expect_err("the second tile fails");
        let line = err.to_string();
        eprintln!("{fault}@{hi}: {line}");
        let kind = if fault == "oom" { GpuFailure::OutOfMemory } else { GpuFailure::Lost };
        assert!(matches!(err, impasto::Error::Gpu { kind: k, .. } if k == kind), "{line}");
        assert!(!line.contains('\n'), "{line}");
        let image = err.last_good_image().expect("the last good image comes with the error");
        assert_eq!(image.dimensions(), (job.plan.width, job.plan.height));
        // The first tile where it alone counts, the base elsewhere outside the first two tiles.
        let (first, r0) = (first.unwrap(), job.plan.rect(0));
        let scaled = impasto::resize(&base, job.plan.width, job.plan.height);
        let weights = job.plan.weights(0);
        let n = r0.pixels() as usize;
        for (k, _) in weights.iter().enumerate().filter(|(_, w)| **w == 1.0) {
            let (x, y) = (r0.x + k as u32 % r0.width, r0.y + k as u32 / r0.width);
            for c in 0..3 {
                assert_eq!(
                    image.get_pixel(x, y).0[c],
                    first[c * n + k].clamp(0.0, 1.0),
                    "{fault}: tile 0 at {x},{y}"
                );
            }
        }
        let last = job.plan.rect(job.plan.len() - 1);
        let (x, y) = (last.x + last.width - 1, last.y + last.height - 1);
        assert_eq!(
            image.get_pixel(x, y),
            scaled.get_pixel(x, y),
            "{fault}: the base where no tile is finished"
        );
        assert_ne!(image.as_raw(), scaled.as_raw(), "{fault}: the first tile is in the image");
    }
}

/// A tile job planned on the CPU in one tile (its tile size no smaller than the image) taken on a GPU
/// whose binding cannot hold that tile, which a run there would cut in smaller tiles: the job's plan
/// stays, and the GPU is refused with one line naming its limit (it was refused as "planned with
/// other settings"); with a tile that fits, the same job runs there.
#[test]
fn a_cpu_planned_tile_job_too_large_for_the_gpu_names_the_limit() {
    let gpu = device();
    let net = random_vgg(impasto::Arch::Vgg16, impasto::Pooling::Max, 3, 25);
    let (content, style) = (img("astronaut.png"), img("starry_night.jpg"));
    let styles = std::slice::from_ref(&style);
    let config =
        |device, binding| StyleConfig { tile: Some(96), style_weight: 0.0, ..config(device, binding) };
    let (job, base) =
        impasto::tiles::prepare_tiles(&net, &config(Device::Cpu, None), &content, styles, &mut NoObserver)
            .unwrap();
    assert_eq!(job.plan.len(), 1);
    let dir = tempfile::tempdir().unwrap();
    let take = |binding| {
        impasto::tiles::run_tiles(
            &net,
            &config(gpu, binding),
            &content,
            styles,
            &job,
            &base,
            dir.path(),
            &[0],
            None,
            &mut NoObserver,
        )
    };
    let err = take(Some(143 * 256)).unwrap_err();
    let line = err.to_string();
    eprintln!("{line}");
    assert!(matches!(err, impasto::Error::Gpu { kind: GpuFailure::Limit, .. }), "{line}");
    assert!(
        line.contains("the job's tiles of 96 px at 96x96 do not fit this GPU: one channel plane of a 96x96 image needs 36.0 KiB")
            && line.contains("--device cpu")
            && !line.contains('\n'),
        "{line}"
    );
    assert!(job.missing(dir.path()).unwrap() == vec![0], "nothing stored");
    take(None).expect("without the cap the GPU takes the job's tile");
    assert!(job.missing(dir.path()).unwrap().is_empty());
}
