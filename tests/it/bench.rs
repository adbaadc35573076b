//! `impasto bench`: its help, a tiny JSON run whose lines parse and carry every field, the table form,
//! the per-convolution times (`--layers`),
//! and its argument errors (checked before anything is measured).

use crate::common::Sandbox;

#[test]
fn bench_help() {
    let out = Sandbox::new().run(&["bench", "--help"]);
    assert_eq!(out.code, Some(0));
    insta::assert_snapshot!(out.stdout, @"
    Measure the speed of one iteration on this machine (random weights, no files needed)

    Usage: impasto bench [OPTIONS]

    Options:
          --sizes <PX,...>               Image sides to measure (square images), comma separated
                                         [default: 256,512,1024]
          --model <vgg16,vgg19>          Networks to measure, comma separated [default: vgg16,vgg19]
          --threads <N>                  Worker threads (0 = one per core) [default: 0]
          --reps <N>                     Timed iterations per model and size (the median is reported)
                                         [default: 5]
          --warmup <N>                   Untimed iterations before them [default: 1]
          --json                         Print one JSON object per line instead of a table
          --layers                       Also time every convolution on its own (forward with bias and
                                         ReLU, backward to the input; on a GPU every kernel family,
                                         after the GPU's ceilings: fma, the GEMM's inner step, a copy)
                                         and one L-BFGS step, its history on the host and, with a GPU,
                                         on it
          --style-loss <gram|w2>         The style terms' loss: gram, or w2 (the Wasserstein distance)
                                         [default: gram]
          --device <auto|cpu|gpu|gpu:N>  Where the network and losses run: cpu, gpu (the first hardware
                                         GPU), gpu:N (see `impasto devices`) or auto (a hardware GPU if
                                         there is one, else the CPU) [default: cpu]
      -h, --help                         Print help

    Prints the machine's sgemm rate once, then for each model and size: the median seconds of one
    style-transfer iteration (forward to relu5_1, content and style losses, backward to the input) with
    the fastest and slowest, the effective GFLOP/s (direct-convolution FLOPs over the median time) and
    the peak resident memory (n/a where the system does not tell it); on a GPU also the GPU memory
    impasto holds there during an iteration (weights, buffers, one read-back; without the driver's own).

    Examples:
      impasto bench
      impasto bench --sizes 512 --model vgg19 --threads 4 --reps 10
      impasto bench --json > bench.jsonl
      impasto bench --sizes 512 --model vgg16 --layers
      impasto bench --sizes 256 --model vgg16 --device gpu:0   (see `impasto devices`)
    ");
}

#[test]
fn bench_json_lines() {
    let out = Sandbox::new()
        .run(&["bench", "--sizes", "32", "--model", "vgg16", "--reps", "1", "--warmup", "0", "--json"]);
    out.assert_ok();
    assert_eq!(out.stderr, "");
    let lines: Vec<serde_json::Value> =
        out.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    let sgemm = &lines[0];
    assert_eq!(sgemm["kind"], "sgemm");
    assert!(sgemm["gflops"].as_f64().is_some_and(|g| g > 0.0), "{sgemm}");
    assert!(sgemm["threads"].as_u64().is_some_and(|t| t >= 1), "{sgemm}");
    let row = &lines[1];
    assert_eq!((row["kind"].as_str(), row["model"].as_str()), (Some("iteration"), Some("vgg16")), "{row}");
    assert_eq!(
        (row["size"].as_u64(), row["reps"].as_u64(), row["warmup"].as_u64()),
        (Some(32), Some(1), Some(0))
    );
    assert_eq!(row["threads"], sgemm["threads"]);
    assert_eq!(row["style_loss"], "gram");
    let f = |k: &str| row[k].as_f64().unwrap_or_else(|| panic!("{k} missing in {row}"));
    assert!(f("min_s") > 0.0 && f("min_s") <= f("median_s") && f("median_s") <= f("max_s"), "{row}");
    assert!(f("gflops") > 0.0 && row["flops"].as_u64().is_some_and(|n| n > 0), "{row}");
    assert_eq!(row["samples_s"].as_array().map(Vec::len), Some(1));
    assert!(row["gpu_bytes"].is_null(), "{row}");
    if cfg!(target_os = "linux") {
        assert!(row["peak_rss_bytes"].as_u64().is_some_and(|b| b > 1 << 20), "{row}");
    } else {
        assert!(row["peak_rss_bytes"].is_null());
    }
}

#[test]
fn bench_with_the_wasserstein_style_loss() {
    let args = ["bench", "--sizes", "32", "--model", "vgg16", "--reps", "1", "--warmup", "0"];
    let out = Sandbox::new().run(&[&args[..], &["--style-loss", "w2", "--json"]].concat());
    out.assert_ok();
    let row: serde_json::Value = serde_json::from_str(out.stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!((row["kind"].as_str(), row["style_loss"].as_str()), (Some("iteration"), Some("w2")), "{row}");
    assert!(row["median_s"].as_f64().is_some_and(|s| s > 0.0), "{row}");
    let table = Sandbox::new().run(&[&args[..], &["--style-loss", "w2"]].concat());
    table.assert_ok();
    assert!(
        table.stdout.contains("style terms: the Wasserstein distance (--style-loss w2)"),
        "{}",
        table.stdout
    );
}

#[test]
fn bench_layers() {
    let args = ["bench", "--sizes", "32", "--model", "vgg16", "--reps", "1", "--warmup", "0", "--layers"];
    let out = Sandbox::new().run(&args);
    out.assert_ok();
    let convs: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("  conv")).collect();
    let names: Vec<&str> = convs.iter().filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(
        names,
        [
            "conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1",
            "conv4_2", "conv4_3", "conv5_1"
        ],
        "{}",
        out.stdout
    );
    assert!(
        convs[0].contains("3→64") && convs[0].contains("32x32") && convs[0].contains(" bwd "),
        "{}",
        convs[0]
    );
    let json = Sandbox::new().run(&[&args[..], &["--json"]].concat());
    json.assert_ok();
    let layers: Vec<serde_json::Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .filter(|v: &serde_json::Value| v["kind"] == "layer")
        .collect();
    assert_eq!(layers.len(), 11, "{}", json.stdout);
    let l = &layers[10];
    assert_eq!(
        (l["layer"].as_str(), l["c_in"].as_u64(), l["height"].as_u64()),
        (Some("conv5_1"), Some(512), Some(2))
    );
    assert!(
        l["forward_s"].as_f64().is_some_and(|s| s > 0.0) && l["backward_s"].as_f64().is_some_and(|s| s > 0.0)
    );
}

#[test]
fn bench_table() {
    let out = Sandbox::new().run(&[
        "bench",
        "--sizes",
        "16,32",
        "--model",
        "vgg19",
        "--reps",
        "1",
        "--warmup",
        "0",
        "--threads",
        "1",
    ]);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", out.stdout);
    assert!(
        lines[0].starts_with("sgemm 512x1024x4608 on 1 threads: ") && lines[0].ends_with(" GFLOP/s"),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1], "model   size  s/iteration (min–max)       GFLOP/s   peak RSS");
    assert!(
        lines[2].starts_with("vgg19     16  ") && lines[3].starts_with("vgg19     32  "),
        "{}",
        out.stdout
    );
    assert_eq!(lines[2].chars().count(), lines[1].chars().count(), "{}", out.stdout);
}

#[test]
fn bench_errors() {
    let sb = Sandbox::new();
    let out = sb.run(&["bench", "--sizes", "256,8"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid --sizes: 8 (each must be between 16 and 16384 pixels)");
    let out = sb.run(&["bench", "--reps", "0"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid --reps: 0 (must be at least 1)");
    // The run's rule, checked before any thread starts.
    let out = sb.run(&["bench", "--sizes", "16", "--threads", "99999"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid threads: 99999 (must be at most 1024; 0 = one per core)");
    let out = sb.run(&["bench", "--model", "vgg11"]);
    assert_eq!(out.code, Some(2));
    insta::assert_snapshot!(out.stderr, @"impasto: error: invalid value 'vgg11' for '--model <vgg16,vgg19>' [possible values: vgg16, vgg19]; tip: a similar value exists: 'vgg19' (try --help)");
    let out = sb.run(&["bench", "c.png", "s.png", "-o", "out.png"]);
    assert_eq!(out.code, Some(2));
    insta::assert_snapshot!(out.stderr, @"impasto: error: unexpected argument 'c.png' found (try --help)");
}
