//! `impasto bench`: its arguments, and a table (or JSON lines) of the time of one style-transfer
//! iteration per model and size, measured with `impasto::bench` (random weights, no files), with the
//! effective GFLOP/s, the peak resident memory and the machine's `sgemm` rate for reference.

use std::io::Write;

use anyhow::{Result, bail};
use clap::Args;
use impasto::bench::{BenchResult, BenchSpec, LayerTiming};
use impasto::{Arch, MAX_SIZE, StyleConfig, StyleLoss};
use serde_json::json;

use crate::args::{ModelArg, StyleLossArg};

const AFTER_HELP: &str = "\
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
  impasto bench --sizes 256 --model vgg16 --device gpu:0   (see `impasto devices`)";

/// Arguments of `impasto bench`.
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub struct BenchArgs {
    /// Image sides to measure (square images), comma separated
    #[arg(long, value_name = "PX,...", value_delimiter = ',', default_value = "256,512,1024")]
    pub sizes: Vec<usize>,

    /// Networks to measure, comma separated
    #[arg(
        long,
        value_enum,
        value_name = "vgg16,vgg19",
        value_delimiter = ',',
        hide_possible_values = true,
        default_value = "vgg16,vgg19"
    )]
    pub model: Vec<ModelArg>,

    /// Worker threads (0 = one per core)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: usize,

    /// Timed iterations per model and size (the median is reported)
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub reps: usize,

    /// Untimed iterations before them
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub warmup: usize,

    /// Print one JSON object per line instead of a table
    #[arg(long)]
    pub json: bool,

    /// Also time every convolution on its own (forward with bias and ReLU, backward to the input; on
    /// a GPU every kernel family, after the GPU's ceilings: fma, the GEMM's inner step, a copy) and
    /// one L-BFGS step, its history on the host and, with a GPU, on it
    #[arg(long)]
    pub layers: bool,

    /// The style terms' loss: gram, or w2 (the Wasserstein distance)
    #[arg(long, value_enum, value_name = "gram|w2", hide_possible_values = true, default_value = "gram")]
    pub style_loss: StyleLossArg,

    /// Where the network and losses run: cpu, gpu (the first hardware GPU), gpu:N (see `impasto
    /// devices`) or auto (a hardware GPU if there is one, else the CPU)
    #[arg(long, value_name = "auto|cpu|gpu|gpu:N", default_value = "cpu", value_parser = crate::devices::parse_device)]
    pub device: impasto::Device,
}

/// Writes one line to stdout (the benchmark's output), ignoring a closed stdout.
fn out(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// The specs to measure, checked before anything is measured.
fn specs(args: &BenchArgs) -> Result<Vec<BenchSpec>> {
    if args.reps == 0 {
        bail!("invalid --reps: 0 (must be at least 1)");
    }
    for &size in &args.sizes {
        if !(16..=MAX_SIZE as usize).contains(&size) {
            bail!("invalid --sizes: {size} (each must be between 16 and {MAX_SIZE} pixels)");
        }
    }
    // The run's own rule and message (`invalid threads: N (must be at most …)`).
    StyleConfig { threads: args.threads, ..StyleConfig::default() }.validate(1)?;
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let mut specs = Vec::new();
    for &model in &args.model {
        for &size in &args.sizes {
            let arch = Arch::from(model);
            let style_loss = StyleLoss::from(args.style_loss);
            specs.push(BenchSpec { arch, size, threads, warmup: args.warmup, reps: args.reps, style_loss });
        }
    }
    Ok(specs)
}

/// Runs `impasto bench`.
pub fn run(args: &BenchArgs) -> Result<()> {
    let specs = specs(args)?;
    let device = crate::devices::settle(args.device, !args.json)?;
    let threads = specs.first().map_or(1, |s| s.threads);
    let sgemm = impasto::bench::sgemm_gflops(threads);
    if args.json {
        out(&json!({ "kind": "sgemm", "threads": threads, "gflops": sgemm }).to_string());
    } else {
        out(&format!("sgemm 512x1024x4608 on {threads} threads: {sgemm:.1} GFLOP/s"));
    }
    if args.layers
        && let Some(c) = impasto::bench::gpu_ceilings(device, specs.first().map_or(3, |s| s.reps.max(3)))?
    {
        out(&ceilings_line(&c, args.json));
    }
    if !args.json {
        if args.style_loss == StyleLossArg::W2 {
            out("style terms: the Wasserstein distance (--style-loss w2)");
        }
        let gpu = if device == impasto::Device::Cpu { "" } else { "  GPU memory" };
        out(&format!(
            "{:<6} {:>5}  {:<26} {:>8}  {:>9}{gpu}",
            "model", "size", "s/iteration (min–max)", "GFLOP/s", "peak RSS"
        ));
    }
    for spec in &specs {
        reset_peak_rss();
        let r = impasto::bench::run_on(spec, device)?;
        let peak = peak_rss_bytes();
        if args.json {
            out(&json_line(&r, peak));
        } else {
            out(&table_row(&r, peak));
        }
        if args.layers {
            for line in tuned_lines(spec, &r, args.json) {
                out(&line);
            }
        }
        if args.layers && device != impasto::Device::Cpu {
            let times = impasto::bench::gpu_kernels(spec, device)?;
            if !args.json {
                out(&format!(
                    "  per kernel family, timed {}:",
                    if times.gpu_clock {
                        "with the GPU's timestamps (upload and readback on the host)"
                    } else {
                        "on the host, one submit and wait per dispatch"
                    }
                ));
            }
            for (family, s, n) in &times.rows {
                let clock = if times.on_gpu_clock(family) { "gpu" } else { "host" };
                if args.json {
                    out(&json!({
                        "kind": "gpu_kernel",
                        "model": spec.arch.name(),
                        "size": spec.size,
                        "kernel": family,
                        "dispatches": n,
                        "seconds": s,
                        "share": s / r.median_s,
                        "clock": clock,
                    })
                    .to_string());
                } else {
                    out(&format!(
                        "  {family:<40} {n:>3}x {:>10.3} ms  {:>5.1}%",
                        s * 1e3,
                        100.0 * s / r.median_s
                    ));
                }
            }
        } else if args.layers {
            for l in impasto::bench::layers(spec)? {
                if args.json {
                    out(&layer_json(spec, &l).to_string());
                } else {
                    out(&layer_row(&l));
                }
            }
        }
        if args.layers {
            out(&lbfgs_line(spec, r.median_s, impasto::Device::Cpu, args.json)?);
            if device != impasto::Device::Cpu {
                out(&lbfgs_line(spec, r.median_s, device, args.json)?);
            }
        }
    }
    Ok(())
}

/// The GPU's ceilings: what its simplest kernels reach, beside which the layers' GFLOP/s are read.
fn ceilings_line(c: &impasto::bench::GpuCeilings, json: bool) -> String {
    let clock = if c.gpu_clock { "gpu" } else { "host" };
    if json {
        return json!({
            "kind": "gpu_ceilings",
            "fma_gflops": c.fma_gflops,
            "inner_gflops": c.inner_gflops,
            "copy_gbps": c.copy_gbps,
            "clock": clock,
        })
        .to_string();
    }
    format!(
        "GPU ceilings ({clock} clock): fma {:.0} GFLOP/s, GEMM inner step {:.0} GFLOP/s, copy {:.1} GB/s",
        c.fma_gflops, c.inner_gflops, c.copy_gbps
    )
}

/// The optimiser's work per iteration beside the iteration's time: one L-BFGS step with the history
/// a run of this size keeps (the default 100 pairs, capped by `impasto::LBFGS_MEMORY`), its pairs
/// and two-loop recursion on the host (`device` cpu) or on the GPU, as a GPU run keeps them.
fn lbfgs_line(spec: &BenchSpec, iteration_s: f64, device: impasto::Device, json: bool) -> Result<String> {
    let values = 3 * spec.size * spec.size;
    let history = impasto::lbfgs_history_for(crate::args::default_lbfgs_history(), values);
    let s = impasto::bench::lbfgs_step_on(spec.size, history, spec.warmup, spec.reps, device)?;
    // A GPU run sends the pixels up and reads the gradient back; with the history on the GPU the
    // step also sends the gradient (active entries zeroed) up and reads the direction back.
    let on_host = device == impasto::Device::Cpu;
    let bus = if on_host { 2 } else { 4 } * 4 * values;
    let on = if on_host { "host" } else { "gpu" };
    Ok(if json {
        json!({
            "kind": "lbfgs_step",
            "model": spec.arch.name(),
            "size": spec.size,
            "history": history,
            "history_on": on,
            "seconds": s,
            "share": s / iteration_s,
            "bus_bytes": bus,
        })
        .to_string()
    } else {
        let what = if on_host {
            format!("L-BFGS step on the host, history {history}")
        } else {
            format!("L-BFGS step, history {history} on the GPU")
        };
        format!(
            "  {what:<40} {:>14.3} ms  {:>5.1}% of an iteration (bus per iteration: {:.1} MB)",
            s * 1e3,
            100.0 * s / iteration_s,
            bus as f64 / 1e6
        )
    })
}

fn layer_json(spec: &BenchSpec, l: &LayerTiming) -> serde_json::Value {
    json!({
        "kind": "layer",
        "model": spec.arch.name(),
        "size": spec.size,
        "threads": spec.threads,
        "layer": l.name,
        "c_in": l.c_in,
        "c_out": l.c_out,
        "height": l.hw.0,
        "width": l.hw.1,
        "forward_s": l.forward_s,
        "backward_s": l.backward_s,
        "flops": l.flops,
    })
}

fn layer_row(l: &LayerTiming) -> String {
    let gflops = |s: f64| l.flops as f64 / s / 1e9;
    format!(
        "  {:<8} {:>3}→{:<3} {:>4}x{:<4}  fwd {:>8} s {:>6.1} GFLOP/s  bwd {:>8} s {:>6.1} GFLOP/s",
        l.name,
        l.c_in,
        l.c_out,
        l.hw.1,
        l.hw.0,
        secs(l.forward_s),
        gflops(l.forward_s),
        secs(l.backward_s),
        gflops(l.backward_s)
    )
}

fn json_line(r: &BenchResult, peak: Option<u64>) -> String {
    json!({
        "kind": "iteration",
        "model": r.spec.arch.name(),
        "size": r.spec.size,
        "threads": r.spec.threads,
        "warmup": r.spec.warmup,
        "reps": r.spec.reps,
        "style_loss": r.spec.style_loss.name(),
        "median_s": r.median_s,
        "min_s": r.min_s,
        "max_s": r.max_s,
        "samples_s": r.samples_s,
        "flops": r.flops,
        "gflops": r.gflops,
        "peak_rss_bytes": peak,
        "gpu_bytes": r.gpu_bytes,
        "tuning_rounds": r.tuning_rounds,
    })
    .to_string()
}

/// What `--layers` shows of a GPU's tuning: each product's forms and times, the chosen one first.
fn tuned_lines(spec: &BenchSpec, r: &BenchResult, json: bool) -> Vec<String> {
    let mut out = Vec::new();
    if !json && !r.tuned.is_empty() {
        out.push(format!(
            "  kernel forms chosen by timing in {} evaluations before the warm-up (GPU timestamps):",
            r.tuning_rounds
        ));
    }
    for t in &r.tuned {
        if json {
            let forms: Vec<_> = t.forms.iter().map(|(f, s)| json!({ "form": f, "seconds": s })).collect();
            out.push(
                json!({
                    "kind": "gpu_tuned",
                    "model": spec.arch.name(),
                    "size": spec.size,
                    "product": t.label,
                    "m": t.m,
                    "k": t.k,
                    "n": t.n,
                    "chosen": t.chosen,
                    "forms": forms,
                })
                .to_string(),
            );
            continue;
        }
        let mut forms: Vec<&(String, Option<f64>)> = t.forms.iter().collect();
        forms.sort_by(|a, b| a.1.unwrap_or(f64::INFINITY).total_cmp(&b.1.unwrap_or(f64::INFINITY)));
        let times: Vec<String> = forms
            .iter()
            .map(|(f, s)| {
                format!("{f} {}", s.map_or_else(|| "-".to_string(), |s| format!("{:.3} ms", s * 1e3)))
            })
            .collect();
        out.push(format!("  {} {}x{}x{}: {}", t.label, t.m, t.k, t.n, times.join("; ")));
    }
    out
}

fn table_row(r: &BenchResult, peak: Option<u64>) -> String {
    let times = format!("{} ({}–{})", secs(r.median_s), secs(r.min_s), secs(r.max_s));
    let peak = peak.map_or_else(|| "n/a".to_string(), |b| format!("{} MiB", b >> 20));
    let gpu = r.gpu_bytes.map_or_else(String::new, |b| format!("  {:>10}", format!("{} MiB", b >> 20)));
    format!("{:<6} {:>5}  {times:<26} {:>8.1}  {peak:>9}{gpu}", r.spec.arch.name(), r.spec.size, r.gflops)
}

/// Seconds with three significant digits: `12.3`, `0.412`, `0.00213`.
fn secs(s: f64) -> String {
    if !s.is_finite() || s <= 0.0 {
        return format!("{s}");
    }
    let decimals = (2 - s.log10().floor() as i32).max(0) as usize;
    format!("{s:.decimals$}")
}

/// Resets the kernel's peak-resident-memory mark, so that each measurement has its own (Linux ≥ 4.0;
/// elsewhere, or if it fails, the peak is the process's so far).
fn reset_peak_rss() {
    #[cfg(target_os = "linux")]
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident memory in bytes (`VmHWM`), where the system tells it.
fn peak_rss_bytes() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    }
    #[cfg(not(target_os = "linux"))]
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_have_three_digits() {
        assert_eq!(secs(12.345), "12.3");
        assert_eq!(secs(0.41234), "0.412");
        assert_eq!(secs(0.0021345), "0.00213");
        assert_eq!(secs(1234.5), "1234");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn peak_memory_is_read() {
        reset_peak_rss();
        assert!(peak_rss_bytes().is_some_and(|b| b > 0));
    }

    #[test]
    fn rows_line_up_with_the_header() {
        let r = BenchResult {
            spec: BenchSpec {
                arch: Arch::Vgg19,
                size: 512,
                threads: 2,
                warmup: 1,
                reps: 3,
                ..BenchSpec::default()
            },
            median_s: 0.5,
            min_s: 0.45,
            max_s: 0.61,
            samples_s: vec![0.45, 0.5, 0.61],
            flops: 10_000_000_000,
            gflops: 20.0,
            tuning_rounds: 0,
            tuned: Vec::new(),
            gpu_bytes: None,
        };
        assert_eq!(
            table_row(&r, Some(300 << 20)),
            "vgg19    512  0.500 (0.450–0.610)            20.0    300 MiB"
        );
        assert_eq!(table_row(&r, None), "vgg19    512  0.500 (0.450–0.610)            20.0        n/a");
        // On a GPU, its memory under the header's last column ("peak RSS  GPU memory").
        let gpu = BenchResult { gpu_bytes: Some(402 << 20), ..r.clone() };
        assert_eq!(
            table_row(&gpu, Some(300 << 20)),
            "vgg19    512  0.500 (0.450–0.610)            20.0    300 MiB     402 MiB"
        );
        let j: serde_json::Value = serde_json::from_str(&json_line(&gpu, None)).unwrap();
        assert_eq!(j["gpu_bytes"].as_u64(), Some(402 << 20));
        let j: serde_json::Value = serde_json::from_str(&json_line(&r, None)).unwrap();
        assert_eq!(
            (j["model"].as_str(), j["size"].as_u64(), j["peak_rss_bytes"].is_null()),
            (Some("vgg19"), Some(512), true)
        );
    }

    #[test]
    fn tuned_products_list_their_forms_fastest_first() {
        let spec = BenchSpec {
            arch: Arch::Vgg16,
            size: 512,
            threads: 1,
            warmup: 1,
            reps: 1,
            ..BenchSpec::default()
        };
        let tuned = impasto::GpuTuned {
            label: "conv fwd 64->64 512x512 (layer 2)".into(),
            m: 64,
            k: 576,
            n: 262144,
            forms: vec![("a".into(), Some(0.002)), ("b".into(), None), ("c".into(), Some(0.001))],
            chosen: "c".into(),
            remembered: false,
        };
        let r = BenchResult {
            spec,
            median_s: 0.01,
            min_s: 0.01,
            max_s: 0.01,
            samples_s: vec![0.01],
            flops: 1,
            gflops: 1.0,
            tuning_rounds: 12,
            tuned: vec![tuned],
            gpu_bytes: None,
        };
        assert_eq!(
            tuned_lines(&spec, &r, false),
            [
                "  kernel forms chosen by timing in 12 evaluations before the warm-up (GPU timestamps):",
                "  conv fwd 64->64 512x512 (layer 2) 64x576x262144: c 1.000 ms; a 2.000 ms; b -",
            ]
        );
        let json = tuned_lines(&spec, &r, true);
        let j: serde_json::Value = serde_json::from_str(&json[0]).unwrap();
        assert_eq!((j["kind"].as_str(), j["chosen"].as_str()), (Some("gpu_tuned"), Some("c")));
        assert_eq!(j["forms"][1]["seconds"], serde_json::Value::Null);
        let none = BenchResult { tuned: Vec::new(), tuning_rounds: 0, ..r };
        assert!(tuned_lines(&spec, &none, false).is_empty());
    }
}
