//! Speed measurement: one style-transfer iteration (forward to `relu5_1`, content + style losses,
//! backward to the input) of VGG-16/19 at a given size and thread count, per-layer convolution
//! timings, the direct-convolution FLOP count and a reference `sgemm` rate. Nothing here prints.
//!
//! Weights are random (He-scaled, so activations stay O(1) and no denormals appear): the time of a
//! dense convolution does not depend on the values.
//!
//! ```no_run
//! use impasto::{Arch, bench};
//! # fn main() -> impasto::Result<()> {
//! let r = bench::run(&bench::BenchSpec { arch: Arch::Vgg16, size: 256, ..Default::default() })?;
//! let _ = (r.median_s, r.gflops, bench::sgemm_gflops(2));
//! # Ok(()) }
//! ```

use std::time::Instant;

use impasto_kernels as k;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::StyleLoss;
use crate::error::{Error, GpuFailure, GpuFault, Result};
use crate::loss::Objective;
use crate::model::{Arch, LayerKind, Pooling, Preprocess, Vgg};

/// The deepest layer a default style transfer uses (the last style layer).
pub const DEEPEST: &str = "relu5_1";
/// The content layer of the benchmarked objective.
const CONTENT: &str = "relu4_2";
/// The style layers of the benchmarked objective.
const STYLE: [&str; 5] = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"];

/// What to measure: one architecture at `size`×`size` pixels on `threads` threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchSpec {
    /// The network.
    pub arch: Arch,
    /// Image side in pixels (the image is square; at least 16 so that `relu5_1` exists).
    pub size: usize,
    /// Rayon threads (a dedicated pool is built; at least 1).
    pub threads: usize,
    /// Untimed iterations before the timed ones.
    pub warmup: usize,
    /// Timed iterations (at least 1; the brief's protocol uses ≥ 5).
    pub reps: usize,
    /// The style terms' loss.
    pub style_loss: StyleLoss,
}

impl Default for BenchSpec {
    fn default() -> Self {
        BenchSpec {
            arch: Arch::Vgg16,
            size: 256,
            threads: 2,
            warmup: 1,
            reps: 5,
            style_loss: StyleLoss::Gram,
        }
    }
}

/// Timing of one iteration (forward + losses + backward to the input).
#[derive(Debug, Clone, PartialEq)]
pub struct BenchResult {
    /// What was measured.
    pub spec: BenchSpec,
    /// Median seconds per iteration.
    pub median_s: f64,
    /// Fastest iteration, seconds.
    pub min_s: f64,
    /// Slowest iteration, seconds.
    pub max_s: f64,
    /// Every timed iteration, seconds, in run order.
    pub samples_s: Vec<f64>,
    /// Direct-convolution FLOPs of one iteration (forward and backward), see [`flops`].
    pub flops: u64,
    /// `flops / median_s / 1e9`: the effective rate (Winograd can exceed the machine's peak).
    pub gflops: f64,
    /// On a GPU that tunes, the evaluations run before the warm-up to choose each matrix product's
    /// kernel form ([`Objective::gpu_tune`]), not timed; 0 elsewhere.
    pub tuning_rounds: usize,
    /// Those products: each form's time and the one chosen (empty where nothing was tuned).
    pub tuned: Vec<crate::GpuTuned>,
    /// On a GPU, the bytes impasto holds there during an iteration: the network's weights (with
    /// their flipped and Winograd forms), the objective's buffers and one evaluation's read-back, as
    /// `impasto_gpu` allocates them (the driver's own padding and context are not counted, as
    /// PyTorch's `max_memory_allocated` does not count them). `None` on the CPU.
    pub gpu_bytes: Option<u64>,
}

/// Median time of one convolution layer, forward (with its fused ReLU) and gradient to the input.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerTiming {
    /// The convolution's name, e.g. `conv1_2`.
    pub name: String,
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Height and width of the layer.
    pub hw: (usize, usize),
    /// Median seconds of the forward (conv + bias + ReLU).
    pub forward_s: f64,
    /// Median seconds of the backward to the input.
    pub backward_s: f64,
    /// Direct-convolution FLOPs of one pass (`2·Cin·Cout·9·H·W`).
    pub flops: u64,
}

/// Direct-convolution FLOPs of one iteration of `arch` on an `h`×`w` image, up to and including
/// layer `deepest`: `2·Cin·Cout·9·H·W` per convolution, doubled for the backward to the input.
pub fn flops(arch: Arch, h: usize, w: usize, deepest: &str) -> Result<u64> {
    let last = arch.layer_index(deepest)?;
    let (mut h, mut w, mut total) = (h as u64, w as u64, 0u64);
    for layer in arch.layers().into_iter().take(last + 1) {
        match layer.kind {
            LayerKind::Conv { c_in, c_out, .. } => total += 2 * 2 * 9 * (c_in * c_out) as u64 * h * w,
            LayerKind::Pool => (h, w) = (h / 2, w / 2),
            LayerKind::Relu => {}
        }
    }
    Ok(total)
}

/// Times [`BenchSpec::reps`] iterations after [`BenchSpec::warmup`] untimed ones.
pub fn run(spec: &BenchSpec) -> Result<BenchResult> {
    run_on(spec, crate::Device::Cpu)
}

/// [`run`] with the network and losses on `device` (on a GPU, an iteration includes sending the
/// pixels and reading back the losses and the gradient).
pub fn run_on(spec: &BenchSpec, device: crate::Device) -> Result<BenchResult> {
    check(spec)?;
    let net = random_vgg(spec.arch)?;
    let (h, w) = (spec.size, spec.size);
    let pixels = random_vec(3 * h * w, 0.0, 1.0, 7);
    let pool = thread_pool(spec.threads)?;
    let (samples_s, ((tuning_rounds, tuned), gpu_bytes)) = pool.install(|| -> Result<_> {
        let mut obj = objective(&net, h, w, spec.style_loss)?;
        obj.use_device(device)?;
        // A fresh network opens its own device: what it allocated so far is the weights and the
        // objective; an evaluation adds its read-back, freed when it returns.
        let held = obj.gpu_allocated_bytes();
        let tuning = obj.gpu_tune(&pixels)?;
        let mut samples = Vec::with_capacity(spec.reps);
        let mut gpu_bytes = None;
        for i in 0..spec.warmup + spec.reps {
            // The first evaluation's read-back, counted around it (outside the timed span).
            let before = if i == 0 { held.and(obj.gpu_allocated_bytes()) } else { None };
            let t = Instant::now();
            let (losses, grad) = obj.evaluate(&pixels);
            let dt = t.elapsed().as_secs_f64();
            if let (Some(held), Some(before)) = (held, before) {
                gpu_bytes = obj.gpu_allocated_bytes().map(|after| held + (after - before));
            }
            if !losses.total().is_finite() {
                let fault = obj.gpu_error().unwrap_or_else(|| {
                    GpuFault::new(
                        GpuFailure::Other,
                        format!("the benchmark's loss is not finite on {device}"),
                    )
                });
                return Err(fault.into());
            }
            std::hint::black_box((losses, grad));
            if i >= spec.warmup {
                samples.push(dt);
            }
        }
        Ok((samples, (tuning, gpu_bytes)))
    })?;
    let flops = flops(spec.arch, h, w, DEEPEST)?;
    let (median_s, min_s, max_s) = stats(&samples_s);
    Ok(BenchResult {
        spec: *spec,
        median_s,
        min_s,
        max_s,
        samples_s,
        flops,
        gflops: flops as f64 / median_s / 1e9,
        tuning_rounds,
        tuned,
        gpu_bytes,
    })
}

/// The optimiser's share of an iteration on the CPU: one L-BFGS step (active set, two-loop recursion
/// over `history` correction pairs, trial point, Armijo test) on a `size`×`size` image, the objective
/// replaced by a stored gradient so that only the optimiser's own work is timed. Median seconds of
/// `reps` steps after `warmup`. This is what a GPU run would do on the host between evaluations,
/// and with it the bytes the bus carries per iteration: the pixels up and the gradient down,
/// `2·3·size²·4`.
pub fn lbfgs_step(size: usize, history: usize, warmup: usize, reps: usize) -> Result<f64> {
    lbfgs_step_on(size, history, warmup, reps, crate::Device::Cpu)
}

/// [`lbfgs_step`] with the pairs and the two-loop recursion on `device`, as a run on it keeps them
/// (on a GPU the step also sends the gradient up and reads the direction back; the active set,
/// the trial point and the Armijo test stay on the host).
pub fn lbfgs_step_on(
    size: usize,
    history: usize,
    warmup: usize,
    reps: usize,
    device: crate::Device,
) -> Result<f64> {
    if size == 0 || history == 0 || reps == 0 {
        let reason = format!("size {size}, history {history} and reps {reps} must all be at least 1");
        return Err(Error::Config { what: "benchmark", reason });
    }
    let n = 3 * size * size;
    let mut opt = crate::optim::Lbfgs::new(history);
    for i in 0..history {
        // Positive pairs, so that every yᵀs > 0 as in a real history.
        let s = random_vec(n, 0.0, 1e-3, 1000 + i as u64);
        let y = random_vec(n, 0.0, 1e-3, 2000 + i as u64);
        let ys = crate::optim::dot(&y, &s);
        opt.push_pair(s, y, ys)?;
    }
    let error = std::sync::Arc::new(std::sync::Mutex::new(None));
    if let crate::device::ResolvedDevice::Gpu { index, .. } = crate::device::resolve_device(device)? {
        lbfgs_on_gpu(&mut opt, index, n, error.clone())?;
    }
    let (mut x, mut g) = (random_vec(n, 0.05, 0.95, 3), random_vec(n, -1.0, 1.0, 4));
    let mut f = 1e6;
    let stored = g.clone();
    let spec = BenchSpec { arch: Arch::Vgg16, size, threads: 1, warmup, reps, ..BenchSpec::default() };
    // An evaluation that always lowers the loss and returns the same gradient: the step is accepted
    // at once and, with y = 0, the history stays as it is.
    let mut failed = false;
    let samples = time_reps(&spec, || {
        let f0 = f;
        let step = opt.step(&mut x, &mut f, &mut g, |_| (f0 - 1.0, stored.clone()));
        failed |= step == crate::optim::LbfgsStep::NonFinite;
    });
    if failed {
        let kept = error.lock().ok().and_then(|e| e.clone());
        let fault = kept.unwrap_or_else(|| {
            GpuFault::new(GpuFailure::Other, format!("the L-BFGS step failed on {device}"))
        });
        return Err(fault.into());
    }
    Ok(stats(&samples).0)
}

/// Moves `opt`'s pairs onto GPU adapter `index`; later GPU errors go to `error`.
#[cfg(feature = "gpu")]
fn lbfgs_on_gpu(
    opt: &mut crate::optim::Lbfgs,
    index: usize,
    n: usize,
    error: std::sync::Arc<std::sync::Mutex<Option<GpuFault>>>,
) -> Result<()> {
    let gpu = impasto_gpu::Gpu::new(impasto_gpu::Choice::Index(index))?;
    Ok(opt.move_to_gpu(gpu, error, n)?)
}

/// Without the `gpu` feature no device resolves to a GPU.
#[cfg(not(feature = "gpu"))]
fn lbfgs_on_gpu(
    _opt: &mut crate::optim::Lbfgs,
    _index: usize,
    _n: usize,
    _error: std::sync::Arc<std::sync::Mutex<Option<GpuFault>>>,
) -> Result<()> {
    Err(crate::device::no_gpu_support())
}

/// What a GPU adapter reaches with the simplest kernels of each kind ([`gpu_ceilings`]): the
/// yardsticks for the GFLOP/s of its convolutions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuCeilings {
    /// GFLOP/s of independent fma chains in registers, no memory touched.
    pub fma_gflops: f64,
    /// GFLOP/s of the tiled GEMM's inner step (8×8 outputs an invocation) on one block of data
    /// resident in workgroup memory: the most its register blocking allows.
    pub inner_gflops: f64,
    /// GB/s of a copy between two storage buffers (read plus written).
    pub copy_gbps: f64,
    /// Whether they were timed with the GPU's timestamps (else the host's clock).
    pub gpu_clock: bool,
}

/// The ceilings of the adapter `device` resolves to, each the median of `reps` runs (see
/// `impasto_gpu::Gpu::ceilings`); `None` where it resolves to the CPU.
pub fn gpu_ceilings(device: crate::Device, reps: usize) -> Result<Option<GpuCeilings>> {
    match crate::device::resolve_device(device)? {
        crate::device::ResolvedDevice::Cpu { .. } => Ok(None),
        crate::device::ResolvedDevice::Gpu { index, .. } => ceilings_on(index, reps).map(Some),
    }
}

#[cfg(feature = "gpu")]
fn ceilings_on(index: usize, reps: usize) -> Result<GpuCeilings> {
    use impasto_gpu::{Choice, Gpu, GpuOptions, KernelClock, SmallTiles, Tune};
    // Only the plain kernels: the ceilings compile their own.
    let options = GpuOptions { tune: Tune::Off, small_tiles: SmallTiles::Off, ..GpuOptions::default() };
    let gpu = Gpu::with_options(Choice::Index(index), &options)?;
    let c = gpu.ceilings(reps)?;
    Ok(GpuCeilings {
        fma_gflops: c.fma_gflops,
        inner_gflops: c.inner_gflops,
        copy_gbps: c.copy_gbps,
        gpu_clock: c.clock == KernelClock::Device,
    })
}

#[cfg(not(feature = "gpu"))]
fn ceilings_on(_index: usize, _reps: usize) -> Result<GpuCeilings> {
    Err(crate::device::no_gpu_support())
}

/// Activation memory of one iteration of `arch` at `size`×`size` (the benchmark's objective:
/// content `relu4_2`, style `relu1_1` … `relu5_1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivationMemory {
    /// Bytes the forward pass keeps for the losses and the backward.
    pub kept_bytes: usize,
    /// Bytes if every ReLU output were kept as f32 (the straightforward plan), for comparison.
    pub all_relu_f32_bytes: usize,
    /// Bytes of the largest layer output (the backward holds two such gradient buffers).
    pub largest_layer_bytes: usize,
}

/// Runs one forward pass and reports what it keeps (see [`ActivationMemory`]).
pub fn activation_memory(arch: Arch, size: usize) -> Result<ActivationMemory> {
    check(&BenchSpec { arch, size, threads: 1, warmup: 0, reps: 1, ..BenchSpec::default() })?;
    let net = random_vgg(arch)?;
    let obj = objective(&net, size, size, StyleLoss::Gram)?;
    let last = net.layer_index(DEEPEST)?;
    let mut wanted = vec![false; last + 1];
    for name in STYLE.iter().chain([&CONTENT]) {
        wanted[net.layer_index(name)?] = true;
    }
    let pixels = random_vec(3 * size * size, 0.0, 1.0, 7);
    let acts = net.forward(&pixels, size, size, last, &wanted, &crate::model::BufferPool::default());
    drop(obj);
    let relu_bytes = |want_relu: bool| {
        net.layers()[..=last]
            .iter()
            .zip(&acts.shape)
            .filter(|(l, _)| !want_relu || l.kind == LayerKind::Relu)
            .map(|(_, &(c, h, w))| c * h * w * 4)
            .collect::<Vec<_>>()
    };
    Ok(ActivationMemory {
        kept_bytes: acts.bytes(),
        all_relu_f32_bytes: relu_bytes(true).iter().sum(),
        largest_layer_bytes: relu_bytes(false).into_iter().max().unwrap_or(0),
    })
}

/// Median forward and backward time of every convolution up to `relu5_1`, each timed `reps` times
/// after `warmup` runs, on a pool of `threads` threads.
pub fn layers(spec: &BenchSpec) -> Result<Vec<LayerTiming>> {
    check(spec)?;
    let pool = thread_pool(spec.threads)?;
    let last = spec.arch.layer_index(DEEPEST)?;
    let (mut h, mut w) = (spec.size, spec.size);
    let mut out = Vec::new();
    for layer in spec.arch.layers().into_iter().take(last + 1) {
        match layer.kind {
            LayerKind::Conv { conv, c_in, c_out, .. } => {
                let (wt, b) = random_conv(c_in, c_out, conv as u64);
                let conv = k::Conv3x3::new(c_in, c_out, wt, b);
                let x = random_vec(c_in * h * w, -1.0, 1.0, 11);
                let dy = random_vec(c_out * h * w, -1.0, 1.0, 12);
                let (mut y, mut dx) = (vec![0.0; c_out * h * w], vec![0.0; c_in * h * w]);
                let (fwd, bwd) = pool.install(|| {
                    let fwd = time_reps(spec, || conv.forward(&x, h, w, true, &mut y));
                    let bwd = time_reps(spec, || conv.backward_input(&dy, h, w, &mut dx));
                    (fwd, bwd)
                });
                out.push(LayerTiming {
                    name: layer.name.replace("relu", "conv"),
                    c_in,
                    c_out,
                    hw: (h, w),
                    forward_s: stats(&fwd).0,
                    backward_s: stats(&bwd).0,
                    flops: 2 * 9 * (c_in * c_out * h * w) as u64,
                });
            }
            LayerKind::Pool => (h, w) = (h / 2, w / 2),
            LayerKind::Relu => {}
        }
    }
    Ok(out)
}

/// Per-kernel GPU times of one benchmark iteration ([`gpu_kernels`]).
#[derive(Debug, Clone, PartialEq)]
pub struct GpuKernelTimes {
    /// (family, median seconds per iteration summed over its dispatches, dispatches per iteration).
    pub rows: Vec<(String, f64, usize)>,
    /// Whether the kernels were timed with the GPU's own timestamps, all of an iteration in one
    /// submission; otherwise with the host's clock around one submit and wait per kernel.
    pub gpu_clock: bool,
}

impl GpuKernelTimes {
    /// Whether row `family` was timed with the GPU's timestamps: every kernel under
    /// [`GpuKernelTimes::gpu_clock`]; `upload` and `readback` are host times on either clock.
    pub fn on_gpu_clock(&self, family: &str) -> bool {
        self.gpu_clock && family != "upload" && family != "readback"
    }
}

/// GPU time of one benchmark iteration on `device`, per step family (`conv fwd …` per layer,
/// `conv bwd …` per layer, each `ops.wgsl` kernel by name, `gram`, `gram bwd`, `upload`, `readback`):
/// (family, median seconds per iteration summed over its dispatches, dispatches per iteration), in
/// order of first appearance. The kernels are timed with the GPU's timestamps where the adapter has
/// them, else each is its own submit and wait, timed on the host ([`GpuKernelTimes::gpu_clock`]).
pub fn gpu_kernels(spec: &BenchSpec, device: crate::Device) -> Result<GpuKernelTimes> {
    check(spec)?;
    let net = random_vgg(spec.arch)?;
    let (h, w) = (spec.size, spec.size);
    let pixels = random_vec(3 * h * w, 0.0, 1.0, 7);
    let mut obj = objective(&net, h, w, spec.style_loss)?;
    obj.use_device(device)?;
    obj.gpu_tune(&pixels)?;
    let mut families: Vec<(String, Vec<f64>, usize)> = Vec::new();
    let mut gpu_clock = false;
    for i in 0..spec.warmup + spec.reps {
        let profile = obj.gpu_profile(&pixels)?;
        gpu_clock = profile.gpu_clock;
        if i < spec.warmup {
            continue;
        }
        let mut this: Vec<(String, f64, usize)> = Vec::new();
        for (label, s) in profile.steps {
            match this.iter_mut().find(|f| f.0 == label) {
                Some(f) => (f.1, f.2) = (f.1 + s, f.2 + 1),
                None => this.push((label, s, 1)),
            }
        }
        for (label, s, n) in this {
            match families.iter_mut().find(|f| f.0 == label) {
                Some(f) => f.1.push(s),
                None => families.push((label, vec![s], n)),
            }
        }
    }
    let rows = families.into_iter().map(|(l, s, n)| (l, stats(&s).0, n)).collect();
    Ok(GpuKernelTimes { rows, gpu_clock })
}

/// GFLOP/s of a large `sgemm` (512 × 1024 × 4608, the shape of a deep VGG layer's GEMM) on a pool of
/// `threads` threads: the best of 7 runs after a warm-up, a reference for the machine's attainable rate.
pub fn sgemm_gflops(threads: usize) -> f64 {
    let (m, n, kk) = (512, 1024, 4608);
    let a = random_vec(m * kk, -1.0, 1.0, 1);
    let b = random_vec(kk * n, -1.0, 1.0, 2);
    let mut c = vec![0.0f32; m * n];
    let Ok(pool) = thread_pool(threads.max(1)) else { return 0.0 };
    let best = pool.install(|| {
        k::sgemm(m, n, kk, 1.0, &a, kk, &b, n, false, &mut c, n);
        (0..7)
            .map(|_| {
                let t = Instant::now();
                k::sgemm(m, n, kk, 1.0, &a, kk, &b, n, false, &mut c, n);
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    });
    2.0 * (m * n * kk) as f64 / best / 1e9
}

fn check(spec: &BenchSpec) -> Result<()> {
    let bad = |reason: String| Err(Error::Config { what: "benchmark", reason });
    if spec.threads == 0 {
        return bad("threads must be at least 1".into());
    }
    if spec.reps == 0 {
        return bad("reps must be at least 1".into());
    }
    if spec.size < 16 {
        return bad(format!("size {} is below 16 pixels, too small to reach {DEEPEST}", spec.size));
    }
    Ok(())
}

fn thread_pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Config { what: "benchmark threads", reason: e.to_string() })
}

/// Times `reps` runs of `f` after `warmup` untimed ones.
fn time_reps(spec: &BenchSpec, mut f: impl FnMut()) -> Vec<f64> {
    (0..spec.warmup + spec.reps)
        .filter_map(|i| {
            let t = Instant::now();
            f();
            let dt = t.elapsed().as_secs_f64();
            (i >= spec.warmup).then_some(dt)
        })
        .collect()
}

/// (median, min, max) of a non-empty sample.
fn stats(samples: &[f64]) -> (f64, f64, f64) {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 { s[n / 2] } else { 0.5 * (s[n / 2 - 1] + s[n / 2]) };
    (median, s[0], s[n - 1])
}

fn random_vec(n: usize, lo: f32, hi: f32, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| lo + (hi - lo) * rng.random::<f32>()).collect()
}

/// He-uniform weights (variance 2 / fan-in) and small biases for one convolution.
fn random_conv(c_in: usize, c_out: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let a = (6.0 / (9 * c_in) as f32).sqrt();
    (random_vec(c_out * c_in * 9, -a, a, 100 + seed), random_vec(c_out, -0.01, 0.01, 200 + seed))
}

/// `arch` up to `relu5_1` with random weights. Torch preprocessing keeps the input O(1).
fn random_vgg(arch: Arch) -> Result<Vgg> {
    let last = arch.layer_index(DEEPEST)?;
    let weights = arch
        .layers()
        .into_iter()
        .take(last + 1)
        .filter_map(|l| match l.kind {
            LayerKind::Conv { conv, c_in, c_out, .. } => Some(random_conv(c_in, c_out, conv as u64)),
            _ => None,
        })
        .collect();
    Vgg::from_tensors(arch, Pooling::Max, Preprocess::Torch, weights)
}

/// Content at `relu4_2` and style at `relu1_1` … `relu5_1`, against zero targets (with the
/// Wasserstein loss, a style of zero mean and unit covariance).
fn objective(net: &Vgg, h: usize, w: usize, loss: StyleLoss) -> Result<Objective<'_>> {
    let mut obj = Objective::new(net, w, h);
    let shape = |name: &str| -> Result<(usize, usize)> {
        let i = net.layer_index(name)?;
        let c = net.layers()[..=i]
            .iter()
            .rev()
            .find_map(|l| match l.kind {
                LayerKind::Conv { c_out, .. } => Some(c_out),
                _ => None,
            })
            .unwrap_or(3);
        let p = net.pools_before(i);
        Ok((c, (h >> p) * (w >> p)))
    };
    let (c, n) = shape(CONTENT)?;
    obj.add_content(CONTENT, vec![0.0; c * n], 1.0)?;
    for name in STYLE {
        let (c, _) = shape(name)?;
        match loss {
            StyleLoss::Gram => obj.add_style(name, vec![0.0; c * c], 1.0)?,
            StyleLoss::Wasserstein => {
                let unit: Vec<f32> =
                    (0..c * c).map(|ij| if ij % (c + 1) == 0 { 1.0 / c as f32 } else { 0.0 }).collect();
                obj.add_style_wasserstein(name, unit, &vec![0.0; c], 1.0)?;
            }
        }
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flops_match_the_pytorch_script() {
        // VGG-16 to relu5_1 at 256²: the sum torch_vgg_iter.py reports, times 2 for the backward.
        let mut want = 0u64;
        let (mut h, mut cin) = (256u64, 3u64);
        for c in [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512] {
            if c == 0 {
                h /= 2;
            } else {
                want += 2 * cin * c * 9 * h * h;
                cin = c;
            }
        }
        assert_eq!(flops(Arch::Vgg16, 256, 256, DEEPEST).unwrap(), 2 * want);
        assert!(flops(Arch::Vgg19, 256, 256, DEEPEST).unwrap() > 2 * want);
    }

    #[test]
    fn run_small_and_reject_bad_specs() {
        let spec =
            BenchSpec { arch: Arch::Vgg19, size: 32, threads: 1, warmup: 0, reps: 2, ..BenchSpec::default() };
        let r = run(&spec).unwrap();
        assert_eq!(r.samples_s.len(), 2);
        assert!(r.min_s <= r.median_s && r.median_s <= r.max_s && r.gflops > 0.0);
        assert_eq!(layers(&spec).unwrap().len(), 13);
        assert!(run(&BenchSpec { threads: 0, ..spec }).is_err());
        assert!(run(&BenchSpec { reps: 0, ..spec }).is_err());
        assert!(run(&BenchSpec { size: 8, ..spec }).is_err());
        let mem = activation_memory(Arch::Vgg16, 64).unwrap();
        // relu1_2, relu2_2, relu3_3 and relu4_3 are folded into their pools' argmax bytes.
        assert!(mem.kept_bytes < mem.all_relu_f32_bytes * 3 / 4, "{mem:?}");
        assert_eq!(mem.largest_layer_bytes, 64 * 64 * 64 * 4);
    }
}
