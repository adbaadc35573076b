//! `impasto devices` and `--device`: the adapter list with its limits, what `auto` picks, and a missing
//! adapter as a one-line error with exit status 1.

use crate::common::{Run, Sandbox};

/// A sandbox with a 40×30 content, a 24×24 style and tiny weights for [`tiny_run`].
fn tiny_run_sandbox() -> Sandbox {
    let sb = Sandbox::new();
    sb.png("c.png", 40, 30);
    sb.png("s.png", 24, 24);
    sb.tiny_weights("w.safetensors");
    sb
}

/// A quiet 32 px run of the tiny network in `sb` to `out.png`, with `flags`.
fn tiny_run(sb: &Sandbox, flags: &[&str]) -> Run {
    let mut args = vec!["c.png", "s.png", "-o", "out.png", "--weights", "w.safetensors", "--size", "32"];
    args.push("--quiet");
    args.extend(flags);
    args.extend(crate::common::TINY_LAYERS);
    // Mesa's Vulkan drivers complain on stderr without a runtime folder.
    Run::from(sb.cmd().args(&args).env("XDG_RUNTIME_DIR", sb.root()).output().expect("run impasto"))
}

#[test]
fn devices_lists_adapters_and_what_auto_picks() {
    let out = Sandbox::new().run(&["devices"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let last = lines.last().expect("at least the auto line");
    assert!(last.starts_with("--device auto uses "), "{}", out.stdout);
    for l in &lines[..lines.len() - 1] {
        assert!(l.starts_with("gpu:") && l.contains("max storage binding"), "{l}");
        // Vulkan drivers report their memory heaps (lavapipe: the machine's memory).
        if l.contains("[Vulkan, ") {
            assert!(l.contains("]  memory ") && l.contains(" MiB, max buffer "), "{l}");
        }
        // lavapipe names its driver (Mesa's llvmpipe), has no PCI address, and a device UUID (not
        // NVIDIA's, so without `GPU-`).
        if l.contains("llvmpipe") {
            assert!(l.contains(" KiB, driver llvmpipe Mesa ") && !l.contains("PCI"), "{l}");
            assert!(l.contains(", UUID ") && !l.contains("UUID GPU-"), "{l}");
        }
    }
    let json = Sandbox::new().run(&["devices", "--json"]);
    assert_eq!(json.code, Some(0));
    for l in json.stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["max_buffer_size"].as_u64().is_some() && v["device"].as_str().unwrap().starts_with("gpu:"));
        assert!(v["backend"] != "Vulkan" || v["device_memory"].as_u64().is_some_and(|m| m > 0), "{v}");
        // Where the driver gives no PCI address (lavapipe) the key is null, else `lspci`'s form.
        assert!(v["pci_bus_id"].is_null() || v["pci_bus_id"].as_str().is_some_and(|b| b.len() == 12), "{v}");
        assert!(v["driver"].is_null() || v["driver"].is_string(), "{v}");
        // The PCI vendor ID; Mesa's software adapters have Mesa's Vulkan vendor ID, 0x10005.
        assert!(v["software"] == false || v["vendor"] == 0x10005, "{v}");
        // `8-4-4-4-12` hex digits, as nvidia-smi writes a UUID after `GPU-`.
        let uuid = v["uuid"].as_str();
        assert!(
            v["backend"] != "Vulkan" || uuid.is_some_and(|u| u.len() == 36 && u.split('-').count() == 5),
            "{v}"
        );
    }
}

/// `CUDA_VISIBLE_DEVICES` names NVIDIA's GPUs (the library's unit tests cover a node of four): on a
/// machine without one (this one: lavapipe) it changes nothing, not even when it hides every GPU.
#[test]
fn cuda_visible_devices_does_not_apply_without_an_nvidia_gpu() {
    let sb = tiny_run_sandbox();
    let devices = |value: Option<&str>| {
        let mut cmd = sb.cmd();
        cmd.arg("devices").env("XDG_RUNTIME_DIR", sb.root());
        match value {
            Some(v) => cmd.env("CUDA_VISIBLE_DEVICES", v),
            None => cmd.env_remove("CUDA_VISIBLE_DEVICES"),
        };
        Run::from(cmd.output().expect("run impasto")).stdout
    };
    let plain = devices(None);
    assert!(!plain.contains("NVIDIA"), "this test wants a machine without an NVIDIA GPU:\n{plain}");
    for value in ["", "-1", "1", "GPU-00000000"] {
        assert_eq!(devices(Some(value)), plain, "CUDA_VISIBLE_DEVICES={value:?}");
    }
    let mut args =
        vec!["c.png", "s.png", "-o", "out.png", "--weights", "w.safetensors", "--size", "32", "-n", "1"];
    args.extend(["--device", "gpu:0"]);
    args.extend(crate::common::TINY_LAYERS);
    let out = Run::from(
        sb.cmd()
            .args(&args)
            .env("XDG_RUNTIME_DIR", sb.root())
            .env("CUDA_VISIBLE_DEVICES", "")
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("impasto: running on gpu:0 (llvmpipe"), "{}", out.stderr);
    assert!(!out.stderr.contains("CUDA_VISIBLE_DEVICES"), "{}", out.stderr);
}

#[test]
fn a_missing_adapter_is_one_line_and_exit_1() {
    let out = Sandbox::new()
        .run(&["bench", "--sizes", "32", "--model", "vgg16", "--reps", "1", "--device", "gpu:99"]);
    assert_eq!(out.code, Some(1));
    assert_eq!(out.stderr.lines().filter(|l| l.starts_with("impasto: error:")).count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("there is no GPU adapter gpu:99"), "{}", out.stderr);
    let bad = Sandbox::new().run(&["bench", "--device", "tpu"]);
    assert_eq!(bad.code, Some(2));
    assert!(bad.stderr.contains("`tpu` is not auto, cpu, gpu or gpu:N"), "{}", bad.stderr);
}

/// A GPU failure during a run (injected with the hidden `--gpu-fault`): one line, the last good image
/// written as for Ctrl-C, exit status 1. Failures before the run: one line, exit 1, no image.
#[test]
fn a_gpu_failure_is_one_line_the_last_good_image_and_exit_1() {
    let sb = tiny_run_sandbox();
    let run = |fault: &str| tiny_run(&sb, &["-n", "5", "--device", "gpu:0", "--gpu-fault", fault]);
    // Submissions 1 and 2 compute the style and content targets; 5 is the third evaluation.
    let out = run("lost@5");
    let line = out.error_line(1);
    assert!(line.contains("was lost") && line.ends_with("wrote the last good image to out.png"), "{line}");
    let img = image::open(sb.path("out.png")).expect("the last good image was written");
    assert_eq!((img.width(), img.height()), (32, 24));
    std::fs::remove_file(sb.path("out.png")).unwrap();
    for (fault, says) in
        [("kernel=gram", "GPU kernel gram failed to build on "), ("oom@1", "out of GPU memory on ")]
    {
        let out = run(fault);
        let line = out.error_line(1);
        assert!(line.contains(says), "{fault}: {line}");
        assert!(!sb.path("out.png").exists(), "{fault}: no image before the run");
    }
    let bad = run("melt");
    assert_eq!(bad.code, Some(2));
    assert!(
        bad.stderr.contains("`melt` is not lost@N, oom@N, kernel=NAME, binding=BYTES or memory=BYTES"),
        "{}",
        bad.stderr
    );
}

/// A device lost mid-run with `--checkpoint`: the line names the checkpoint and how to go on, and
/// the run goes on from it on the CPU and finishes.
#[test]
fn a_run_stopped_by_a_lost_gpu_goes_on_from_its_checkpoint_on_the_cpu() {
    let sb = tiny_run_sandbox();
    let run = |extra: &[&str]| tiny_run(&sb, &[&["-n", "6", "--checkpoint", "ck"], extra].concat());
    // Submission 7: the third iteration's evaluation (two for the targets, then each evaluation once
    // and, from the second step on, each L-BFGS direction twice).
    let stopped = run(&["--device", "gpu:0", "--gpu-fault", "lost@7"]);
    let line = stopped.error_line(1);
    let (head, tail) =
        line.split_once("; wrote the last good image to out.png and checkpoint ck (iteration ").expect(line);
    assert!(head.contains("was lost"), "{line}");
    let (done, rest) = tail.split_once(';').expect(line);
    let done: usize = done.parse().expect(line);
    assert!((1..6).contains(&done), "{line}");
    assert_eq!(rest, " continue with --resume ck, on the CPU with --device cpu)", "{line}");
    let resumed = run(&["--device", "cpu", "--resume", "ck"]);
    assert_eq!(resumed.code, Some(0), "{}", resumed.stderr);
    let img = image::open(sb.path("out.png")).expect("the resumed run wrote its result");
    assert_eq!((img.width(), img.height()), (32, 24));
}

/// `--max-gpu-memory` below what even the smallest tiles need on the GPU: one line naming the budget
/// before the run, exit 1, no image; a malformed size is refused as `--max-memory`'s is. Without the
/// flag, an adapter whose memory (here injected: `--gpu-fault memory=BYTES`) is that small gives the
/// same line, naming the default budget (lavapipe, a software adapter, is taken for a discrete card).
#[test]
fn a_gpu_memory_budget_too_small_is_one_line_before_the_run() {
    let sb = tiny_run_sandbox();
    let run_with = |flags: &[&str]| tiny_run(&sb, &[&["-n", "5", "--device", "gpu:0"], flags].concat());
    let run = |budget: &str| run_with(&["--max-gpu-memory", budget]);
    let out = run("1k");
    assert_eq!(out.code, Some(1));
    let line = out.error_line(1);
    assert!(
        line.contains("do not fit the GPU at 32x24") && line.ends_with("the GPU memory budget is 1.0 KiB"),
        "{line}"
    );
    assert!(!sb.path("out.png").exists());
    let bad = run("lots");
    insta::assert_snapshot!(bad.error_line(1), @"impasto: error: invalid --max-gpu-memory `lots`: expected a size such as 3G, 1.5GiB or 800M");
    let small_card = run_with(&["--gpu-fault", "memory=1280"]);
    assert_eq!(small_card.code, Some(1), "{}", small_card.stderr);
    let line = small_card.error_line(1);
    assert!(
        line.contains("do not fit the GPU at 32x24")
            && line.contains("but the default GPU memory budget (80 % of ")
            && line.ends_with("'s 1.2 KiB) is 1.0 KiB"),
        "{line}"
    );
    assert!(!sb.path("out.png").exists());
}

/// Out of GPU memory while building the second scale (injected with `--gpu-fault oom@N`, N the first
/// allocation after the first scale, found by bisection: before it a failure has no image, from it
/// on there is one or the run finishes): one line, the first scale's image written, exit status 1.
#[test]
fn a_gpu_failure_building_the_second_scale_writes_the_first_scales_image() {
    let sb = tiny_run_sandbox();
    let run = |n: u64| {
        let _ = std::fs::remove_file(sb.path("out.png"));
        let fault = format!("oom@{n}");
        let scales = ["--min-size", "16", "-n", "2", "--scale-iterations", "2"];
        tiny_run(&sb, &[&scales[..], &["--device", "gpu:0", "--gpu-fault", &fault]].concat())
    };
    let writes = |n: u64| run(n).code.is_some() && sb.path("out.png").exists();
    let (mut lo, mut hi) = (1u64, 64u64);
    assert!(!writes(lo), "oom@1 fails before the run");
    while !writes(hi) {
        assert!(hi < 1 << 16, "no oom@N up to {hi} writes an image");
        (lo, hi) = (hi, hi * 2);
    }
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if writes(mid) { hi = mid } else { lo = mid }
    }
    let out = run(hi);
    let line = out.error_line(1);
    assert!(
        line.contains("out of GPU memory on ") && line.ends_with("wrote the last good image to out.png"),
        "oom@{hi}: {line}"
    );
    let img = image::open(sb.path("out.png")).expect("the first scale's image was written");
    assert_eq!((img.width(), img.height()), (16, 12), "the first scale's result");
}

/// `bench --layers` on a GPU prints the GPU's ceilings and times the L-BFGS step twice: its history
/// on the host, and on the GPU as a GPU run keeps it (the two-loop recursion there, the gradient up,
/// the direction back).
#[test]
fn bench_layers_on_a_gpu_times_the_lbfgs_step_with_the_history_on_the_gpu() {
    let sb = Sandbox::new();
    let args = ["bench", "--sizes", "32", "--model", "vgg16", "--reps", "1", "--warmup", "0", "--layers"];
    let gpu = ["--device", "gpu:0"];
    let out = sb.cmd().args(args).args(gpu).env("XDG_RUNTIME_DIR", sb.root()).output().expect("run impasto");
    let out = Run::from(out);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lbfgs: Vec<&str> = out.stdout.lines().filter(|l| l.contains("L-BFGS step")).collect();
    assert_eq!(lbfgs.len(), 2, "{}", out.stdout);
    assert!(lbfgs[0].trim_start().starts_with("L-BFGS step on the host, history 100 "), "{}", lbfgs[0]);
    assert!(lbfgs[1].trim_start().starts_with("L-BFGS step, history 100 on the GPU "), "{}", lbfgs[1]);
    assert!(lbfgs.iter().all(|l| l.contains(" ms ") && l.contains("bus per iteration: 0.0 MB")), "{lbfgs:?}");
    // The GPU it settled on is named on stderr.
    assert!(out.stderr.starts_with("impasto: running on gpu:0 ("), "{}", out.stderr);
    // The GPU's ceilings come before the table.
    let ceilings = out.stdout.lines().find(|l| l.starts_with("GPU ceilings")).unwrap_or_default();
    assert!(ceilings.contains(" GFLOP/s, GEMM inner step ") && ceilings.ends_with(" GB/s"), "{}", out.stdout);
    // The table has the GPU memory impasto holds, in MiB.
    let header = out.stdout.lines().find(|l| l.starts_with("model")).unwrap_or_default();
    assert!(header.ends_with("peak RSS  GPU memory"), "{}", out.stdout);
    let row = out.stdout.lines().find(|l| l.starts_with("vgg16")).unwrap_or_default();
    assert!(row.ends_with(" MiB") && row.matches(" MiB").count() == 2, "{row}");
    let json =
        sb.cmd().args(args).args(gpu).arg("--json").env("XDG_RUNTIME_DIR", sb.root()).output().unwrap();
    let json = Run::from(json);
    assert_eq!(json.code, Some(0), "{}", json.stderr);
    let on: Vec<String> = json
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .inspect(|v| {
            if v["kind"] == "iteration" {
                assert!(v["gpu_bytes"].as_u64().is_some_and(|b| b > 1 << 20), "{v}");
            }
            if v["kind"] == "gpu_ceilings" {
                for rate in ["fma_gflops", "inner_gflops", "copy_gbps"] {
                    assert!(v[rate].as_f64().is_some_and(|r| r > 0.0), "{v}");
                }
            }
        })
        .filter(|v| v["kind"] == "lbfgs_step")
        .map(|v| {
            assert!(v["seconds"].as_f64().is_some_and(|s| s > 0.0), "{v}");
            v["history_on"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(on, ["host", "gpu"], "{}", json.stdout);
    assert_eq!(json.stdout.matches(r#""kind":"gpu_ceilings""#).count(), 1, "{}", json.stdout);
}

/// Out of GPU memory at a size that smaller tiles fit (`--gpu-fault capacity=BYTES`: a device with
/// that much memory for buffers, between what the whole 96 px image and its smallest tiles hold,
/// whose driver reports none): the run says so in one line, starts the scale again in tiles and
/// finishes with exit status 0.
#[test]
fn a_run_out_of_gpu_memory_starts_again_in_tiles_and_says_so() {
    use impasto::tiles::{GpuLimits, estimate_gpu_peak};
    let sb = Sandbox::new();
    sb.png("c.png", 96, 96);
    sb.png("s.png", 48, 48);
    sb.tiny_weights("w.safetensors");
    let net = impasto::Vgg::load(
        &sb.path("w.safetensors"),
        impasto::Arch::Vgg16,
        impasto::Pooling::Max,
        None,
        "relu1_1",
    )
    .unwrap();
    let config = impasto::StyleConfig {
        size: 96,
        iterations: 2,
        tile_overlap: 0,
        content_layers: vec!["relu1_1".into()],
        style_layers: vec!["relu1_1".into()],
        device: impasto::Device::Gpu(Some(0)),
        ..impasto::StyleConfig::default()
    };
    let a = &impasto::gpu_adapters()[0];
    let limits = GpuLimits {
        adapter: a.name.clone(),
        tensor: a.max_storage_buffer_binding_size.min(a.max_buffer_size) / 4 * 4,
        tensor_limit: "max_storage_buffer_binding_size",
        buffer: a.max_buffer_size,
        memory: None,
        available: None,
        fitted: None,
    };
    let capacity = (estimate_gpu_peak(&net, &config, 96, 96, &limits)
        + estimate_gpu_peak(&net, &config, 79, 79, &limits))
        / 2;
    let fault = format!("capacity={capacity}");
    let mut args = vec!["c.png", "s.png", "-o", "out.png", "--weights", "w.safetensors", "--size", "96"];
    args.extend(["-n", "2", "--tile-overlap", "0", "--device", "gpu:0", "--gpu-fault", &fault]);
    args.extend(crate::common::TINY_LAYERS);
    let out = sb.cmd().args(&args).env("XDG_RUNTIME_DIR", sb.root()).output().expect("run impasto");
    let out = Run::from(out);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let line =
        out.stderr.lines().find(|l| l.starts_with("impasto: out of GPU memory on ")).unwrap_or_default();
    assert!(
        line.contains("; scale 1 (96x96) starts again in ")
            && line.contains(" tiles of 64 px under a GPU memory budget of ")
            && line.ends_with("M plans so from the start)"),
        "{}",
        out.stderr
    );
    let img = image::open(sb.path("out.png")).expect("the result was written");
    assert_eq!((img.width(), img.height()), (96, 96));
}
