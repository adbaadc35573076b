//! divan micro-benchmarks of the hot kernels at VGG-16 shapes.
//!
//! Kernels run on a dedicated rayon pool of `IMPASTO_BENCH_THREADS` threads
//! (default 2): `IMPASTO_BENCH_THREADS=2 cargo bench -p impasto-kernels`.

use std::fmt;
use std::sync::LazyLock;

use divan::Bencher;
use impasto_kernels::{
    Conv3x3, ConvAlgo, SimdLevel, gram, gram_backward, max_pool2x2_backward, max_pool2x2_backward_argmax,
    max_pool2x2_forward, max_pool2x2_forward_argmax, sgemm, with_simd_level,
};

fn main() {
    divan::main();
}

static POOL: LazyLock<rayon::ThreadPool> = LazyLock::new(|| {
    let threads = std::env::var("IMPASTO_BENCH_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("build bench pool")
});

/// Deterministic pseudo-random data in [-1, 1).
fn data(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

/// A conv layer shape: `c_in → c_out` at `size × size`.
#[derive(Clone, Copy)]
struct Layer {
    c_in: usize,
    c_out: usize,
    size: usize,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}->{}@{}", self.c_in, self.c_out, self.size)
    }
}

const fn layer(c_in: usize, c_out: usize, size: usize) -> Layer {
    Layer { c_in, c_out, size }
}

/// VGG-16 conv shapes (3×3, same padding) at a small content size, plus
/// 64→64 @256² and 512→512 @32² as headline numbers.
const LAYERS: [Layer; 7] = [
    layer(3, 64, 128),
    layer(64, 64, 128),
    layer(128, 128, 64),
    layer(256, 256, 32),
    layer(512, 512, 16),
    layer(64, 64, 256),
    layer(512, 512, 32),
];

fn conv_setup(l: Layer) -> (Conv3x3, Vec<f32>, Vec<f32>) {
    let conv = Conv3x3::new(l.c_in, l.c_out, data(l.c_out * l.c_in * 9, 1), data(l.c_out, 2));
    let hw = l.size * l.size;
    (conv, data(l.c_in * hw, 3), data(l.c_out * hw, 4))
}

#[divan::bench(args = LAYERS, sample_count = 10, sample_size = 1)]
fn conv_forward(bencher: Bencher, l: Layer) {
    let (conv, x, mut y) = conv_setup(l);
    bencher.bench_local(|| POOL.install(|| conv.forward(&x, l.size, l.size, true, &mut y)));
}

#[divan::bench(args = LAYERS, sample_count = 10, sample_size = 1)]
fn conv_backward_input(bencher: Bencher, l: Layer) {
    let (conv, mut dx, dy) = conv_setup(l);
    bencher.bench_local(|| POOL.install(|| conv.backward_input(&dy, l.size, l.size, &mut dx)));
}

#[divan::bench(args = [layer(64, 64, 256), layer(512, 512, 32)], sample_count = 10, sample_size = 1)]
fn conv_forward_backward(bencher: Bencher, l: Layer) {
    let (conv, x, mut y) = conv_setup(l);
    let mut dx = x.clone();
    bencher.bench_local(|| {
        POOL.install(|| {
            conv.forward(&x, l.size, l.size, true, &mut y);
            conv.backward_input(&y, l.size, l.size, &mut dx);
        })
    });
}

/// Forward + backward at SIMD level `P` (0: the CPU's best, with the AVX-512F micro-kernel where
/// the CPU has it; 1: capped at AVX2+FMA, the `gemm` crate), on the bench pool; Winograd weights
/// are laid out for the level at construction.
#[divan::bench(
    args = [layer(64, 64, 256), layer(128, 128, 128), layer(256, 256, 64), layer(512, 512, 32)],
    consts = [0, 1],
    sample_count = 10,
    sample_size = 1
)]
fn conv_forward_backward_path<const P: usize>(bencher: Bencher, l: Layer) {
    let level = if P == 1 { SimdLevel::Avx2Fma } else { SimdLevel::Avx512 };
    let (conv, x, mut y) = with_simd_level(level, || conv_setup(l));
    let mut dx = x.clone();
    bencher.bench_local(|| {
        POOL.install(|| {
            with_simd_level(level, || {
                conv.forward(&x, l.size, l.size, true, &mut y);
                conv.backward_input(&y, l.size, l.size, &mut dx);
            });
        });
    });
}

/// The two conv algorithms side by side at every VGG shape (`Auto` above picks per shape).
const ALGOS: [ConvAlgo; 2] = [ConvAlgo::Im2col, ConvAlgo::Winograd];

#[divan::bench(args = LAYERS, consts = [0, 1], sample_count = 10, sample_size = 1)]
fn conv_forward_algo<const A: usize>(bencher: Bencher, l: Layer) {
    let (conv, x, mut y) = conv_setup(l);
    bencher.bench_local(|| POOL.install(|| conv.forward_with(ALGOS[A], &x, l.size, l.size, true, &mut y)));
}

#[divan::bench(args = LAYERS, consts = [0, 1], sample_count = 10, sample_size = 1)]
fn conv_backward_input_algo<const A: usize>(bencher: Bencher, l: Layer) {
    let (conv, mut dx, dy) = conv_setup(l);
    bencher.bench_local(|| POOL.install(|| conv.backward_input_with(ALGOS[A], &dy, l.size, l.size, &mut dx)));
}

/// (m, n, k): the conv-forward GEMM of 128→128 @64² and of 512→512 @16².
#[divan::bench(args = [(128, 4096, 1153), (512, 256, 4609)], sample_count = 20)]
fn sgemm_vgg(bencher: Bencher, (m, n, k): (usize, usize, usize)) {
    let a = data(m * k, 5);
    let b = data(k * n, 6);
    let mut c = vec![0.0f32; m * n];
    bencher.bench_local(|| POOL.install(|| sgemm(m, n, k, 1.0, &a, k, &b, n, false, &mut c, n)));
}

/// One-thread pool: single-threaded GEMMs run the micro-kernel path (as Winograd's do).
static POOL1: LazyLock<rayon::ThreadPool> =
    LazyLock::new(|| rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("build bench pool"));

/// (m, n, k): Winograd batched-GEMM shapes (m = c_out, n = tile block, k = c_in) at 512² input,
/// plus a large square-ish one; one thread. `P` = 0: AVX-512F micro-kernel where the CPU has it,
/// 1: capped at AVX2+FMA (the `gemm` crate).
#[divan::bench(
    args = [(64, 640, 64), (128, 640, 128), (256, 512, 256), (512, 256, 512), (512, 64, 512), (512, 1024, 1024)],
    consts = [0, 1],
    sample_count = 20
)]
fn sgemm_1thread<const P: usize>(bencher: Bencher, (m, n, k): (usize, usize, usize)) {
    let a = data(m * k, 5);
    let b = data(k * n, 6);
    let mut c = vec![0.0f32; m * n];
    bencher.counter(divan::counter::ItemsCount::new(2 * m * n * k)).bench_local(|| {
        let level = if P == 1 { SimdLevel::Avx2Fma } else { SimdLevel::Avx512 };
        POOL1.install(|| with_simd_level(level, || sgemm(m, n, k, 1.0, &a, k, &b, n, false, &mut c, n)));
    });
}

/// (c, h·w): style layers conv1_1 @256², conv3_1 @64², conv5_1 @16².
const GRAMS: [(usize, usize); 5] =
    [(64, 512 * 512), (128, 256 * 256), (256, 128 * 128), (512, 64 * 64), (512, 32 * 32)];

#[divan::bench(args = GRAMS, sample_count = 20)]
fn gram_forward(bencher: Bencher, (c, n): (usize, usize)) {
    let f = data(c * n, 7);
    let mut g = vec![0.0f32; c * c];
    bencher.bench_local(|| POOL.install(|| gram(&f, c, n, 1.0, &mut g)));
}

#[divan::bench(args = GRAMS, sample_count = 20)]
fn gram_backward_pass(bencher: Bencher, (c, n): (usize, usize)) {
    let f = data(c * n, 8);
    let dg = data(c * c, 9);
    let mut df = vec![0.0f32; c * n];
    bencher.bench_local(|| POOL.install(|| gram_backward(&f, c, n, &dg, 1.0, false, &mut df)));
}

/// Max pool 2×2 forward over 64 × 256².
#[divan::bench(sample_count = 20)]
fn max_pool_forward(bencher: Bencher) {
    let (c, h, w) = (64, 256, 256);
    let x = data(c * h * w, 10);
    let mut y = vec![0.0f32; c * (h / 2) * (w / 2)];
    bencher.bench_local(|| POOL.install(|| max_pool2x2_forward(&x, c, h, w, &mut y)));
}

/// Max pool 2×2 backward over 64 × 256².
#[divan::bench(sample_count = 20)]
fn max_pool_backward(bencher: Bencher) {
    let (c, h, w) = (64, 256, 256);
    let x = data(c * h * w, 10);
    let dy = data(c * (h / 2) * (w / 2), 11);
    let mut dx = vec![0.0f32; c * h * w];
    bencher.bench_local(|| POOL.install(|| max_pool2x2_backward(&x, c, h, w, &dy, &mut dx)));
}

/// Max pool 2×2 forward recording the argmax (ReLU folded), over 64 × 256².
#[divan::bench(sample_count = 20)]
fn max_pool_forward_argmax(bencher: Bencher) {
    let (c, h, w) = (64, 256, 256);
    let x: Vec<f32> = data(c * h * w, 10).into_iter().map(|v| v.max(0.0)).collect();
    let mut y = vec![0.0f32; c * (h / 2) * (w / 2)];
    let mut idx = vec![0u8; c * (h / 2) * (w / 2)];
    bencher.bench_local(|| POOL.install(|| max_pool2x2_forward_argmax(&x, c, h, w, &mut y, &mut idx)));
}

/// Max pool 2×2 backward from the recorded argmax, over 64 × 256².
#[divan::bench(sample_count = 20)]
fn max_pool_backward_argmax(bencher: Bencher) {
    let (c, h, w) = (64, 256, 256);
    let x: Vec<f32> = data(c * h * w, 10).into_iter().map(|v| v.max(0.0)).collect();
    let mut y = vec![0.0f32; c * (h / 2) * (w / 2)];
    let mut idx = vec![0u8; c * (h / 2) * (w / 2)];
    max_pool2x2_forward_argmax(&x, c, h, w, &mut y, &mut idx);
    let dy = data(c * (h / 2) * (w / 2), 11);
    let mut dx = vec![0.0f32; c * h * w];
    bencher.bench_local(|| POOL.install(|| max_pool2x2_backward_argmax(&idx, c, h, w, &dy, &mut dx)));
}
