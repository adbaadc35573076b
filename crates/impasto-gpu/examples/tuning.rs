//! What tuning gains on an adapter: a VGG-16 style-transfer evaluation (random weights and targets,
//! the default layers: style at relu1_1..relu5_1, content at relu4_2) with each matrix product's
//! GEMM form chosen by timing (`Tune::On`) against the same with the fixed default forms
//! (`Tune::Off`), on one adapter in one process; both give the same bits, which it checks.
//!
//! `cargo run --release -p impasto-gpu --example tuning -- [ADAPTER] [SIZE] [REPS]` (defaults: `gpu`,
//! the first hardware adapter, or `gpu:N` for any of `impasto devices`; 512; 5). Prints the time to
//! open the device (its kernels compiled) with every form and with one, the tuning's evaluations and
//! seconds, each product's forms (fastest first, GPU timestamps), then the median
//! seconds per evaluation of both (host clock, upload and read-back included), alternating.

#![allow(clippy::print_stdout)] // a measurement tool: its report is its output

mod common;

use std::sync::Arc;
use std::time::Instant;

use impasto_gpu::{
    Gpu, GpuNet, GpuObjective, GpuOptions, LayerSpec, PreprocessSpec, StyleTarget, StyleTerm, Tune,
};

/// VGG-16's convolutions up to conv5_1 as (c_in, c_out), `None` for a pooling.
const VGG16: [Option<(usize, usize)>; 15] = [
    Some((3, 64)),
    Some((64, 64)),
    None,
    Some((64, 128)),
    Some((128, 128)),
    None,
    Some((128, 256)),
    Some((256, 256)),
    Some((256, 256)),
    None,
    Some((256, 512)),
    Some((512, 512)),
    Some((512, 512)),
    None,
    Some((512, 512)),
];

/// A small deterministic generator (xorshift64*), values in -1..1.
struct Rng(u64);

impl Rng {
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 >> 12;
                self.0 ^= self.0 << 25;
                self.0 ^= self.0 >> 27;
                let u = (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32;
                scale * (2.0 * u - 1.0)
            })
            .collect()
    }
}

/// (layer index, channels, downsamplings before it) of the ReLU after each convolution.
type Relus = Vec<(usize, usize, u32)>;

/// The network on `gpu`, and its ReLUs.
fn vgg16(gpu: Arc<Gpu>) -> Result<(Arc<GpuNet>, Relus), impasto_gpu::GpuError> {
    let mut rng = Rng(7);
    let (mut layers, mut relus, mut down) = (Vec::new(), Vec::new(), 0);
    for l in VGG16 {
        match l {
            Some((c_in, c_out)) => {
                let weight = rng.vec(c_out * c_in * 9, (6.0 / (9.0 * c_in as f32)).sqrt());
                layers.push(LayerSpec::Conv { c_in, c_out, weight, bias: rng.vec(c_out, 0.1) });
                layers.push(LayerSpec::Relu);
                relus.push((layers.len() - 1, c_out, down));
            }
            None => {
                layers.push(LayerSpec::MaxPool);
                down += 1;
            }
        }
    }
    let pre = PreprocessSpec { planes: [2, 1, 0], scale: [255.0; 3], offset: [-104.0, -117.0, -124.0] };
    Ok((Arc::new(GpuNet::new(gpu, layers, pre)?), relus))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (adapter, choice, size, reps) = common::args(5)?;
    let reps = reps.max(1);
    // Opening a device compiles its kernels: every GEMM form where it tunes, one form where not.
    let open = |tune| -> Result<(Arc<Gpu>, f64), impasto_gpu::GpuError> {
        let t = Instant::now();
        let gpu = Gpu::with_options(choice, &GpuOptions { tune, ..GpuOptions::default() })?;
        Ok((gpu, t.elapsed().as_secs_f64()))
    };
    let ((tuned, open_tuned), (fixed, open_fixed)) = (open(Tune::On)?, open(Tune::Off)?);
    println!("adapter {} ({adapter}), {size}x{size}, VGG-16, median of {reps}", tuned.adapter().name);
    println!(
        "device opened (kernels compiled) in {open_tuned:.3} s with every form, {open_fixed:.3} s with one"
    );
    if !tuned.tunes() {
        return Err(format!("{} has no timestamp queries: it cannot tune", tuned.adapter().name).into());
    }
    let mut rng = Rng(11);
    let pixels: Vec<f32> = rng.vec(3 * size * size, 0.5).iter().map(|v| v + 0.5).collect();
    let objective = |gpu: &Arc<Gpu>| -> Result<GpuObjective, Box<dyn std::error::Error>> {
        let (net, relus) = vgg16(gpu.clone())?;
        let mut rng = Rng(13);
        let at = |i: usize| relus[i];
        // relu1_1, relu2_1, relu3_1, relu4_1, relu5_1; content relu4_2.
        let style = [0, 2, 4, 7, 10]
            .into_iter()
            .map(|i| {
                let (layer, c, _) = at(i);
                StyleTerm { layer, target: StyleTarget::Gram(rng.vec(c * c, 1.0)), weight: 1e3, mask: None }
            })
            .collect();
        let (layer, c, down) = at(8);
        let n = c * (size >> down) * (size >> down);
        let content = vec![(layer, rng.vec(n, 1.0), 1.0)];
        Ok(GpuObjective::new(net, size, size, content, style, 1e-3, None)?)
    };
    let (mut a, mut b) = (objective(&tuned)?, objective(&fixed)?);
    let t = Instant::now();
    let rounds = a.tune(&pixels)?;
    println!("tuning: {rounds} evaluations, {:.3} s", t.elapsed().as_secs_f64());
    for p in a.tuned() {
        let mut forms = p.forms.clone();
        forms.sort_by(|x, y| x.1.unwrap_or(f64::INFINITY).total_cmp(&y.1.unwrap_or(f64::INFINITY)));
        let times: Vec<String> =
            forms.iter().map(|(f, s)| format!("{f} {:.3} ms", s.unwrap_or(f64::NAN) * 1e3)).collect();
        println!("  {} {}x{}x{}: {}", p.label, p.m, p.k, p.n, times.join("; "));
    }
    b.evaluate(&pixels)?;
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    let mut same = true;
    for _ in 0..reps {
        let t = Instant::now();
        let ra = a.evaluate(&pixels)?;
        ta.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let rb = b.evaluate(&pixels)?;
        tb.push(t.elapsed().as_secs_f64());
        same &= ra == rb;
    }
    let (ma, mb) = (median(ta), median(tb));
    println!("evaluation, tuned forms:   {ma:.4} s");
    println!("evaluation, default forms: {mb:.4} s ({:.3}x the tuned time)", mb / ma);
    println!("same bits: {}", if same { "yes" } else { "NO" });
    if !same {
        return Err("the tuned forms gave other results than the default forms".into());
    }
    Ok(())
}
