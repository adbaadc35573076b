//! Shared helpers: the one device every test uses, test data, error measures.

use std::sync::{Arc, OnceLock};

use impasto_gpu::{Choice, Gpu, GpuNet, LayerSpec, PreprocessSpec, adapters};

/// The device the tests run on: adapter `IMPASTO_TEST_GPU` (an index) or the first adapter,
/// software ones included. No adapter is a failure, never a skip (CI installs lavapipe).
pub fn gpu() -> Arc<Gpu> {
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| {
        let gpu = Gpu::new(Choice::Index(test_adapter())).unwrap_or_else(|e| panic!("{e}"));
        eprintln!("GPU tests on {} ({})", gpu.adapter().name, gpu.adapter().backend);
        gpu
    })
    .clone()
}

/// The adapter index the tests use (`IMPASTO_TEST_GPU`, default 0); no adapter at all fails.
pub fn test_adapter() -> usize {
    assert!(
        !adapters().is_empty(),
        "no GPU adapter (install a Vulkan driver, e.g. mesa-vulkan-drivers for lavapipe)"
    );
    std::env::var("IMPASTO_TEST_GPU").ok().and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// A small deterministic pseudo-random generator (xorshift64*), values in -1..1.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((v >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

/// max |a − b| / max(max |b|, 1e-30).
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let max_ref = b.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs())).max(1e-30);
    let max_err = a.iter().zip(b).fold(0.0f64, |m, (&x, &y)| m.max((f64::from(x) - f64::from(y)).abs()));
    max_err / max_ref
}

/// A layer of a small test network: a 3×3 convolution (input, output channels; a ReLU follows it) or
/// a 2×2 pooling.
pub enum Layer {
    Conv(usize, usize),
    MaxPool,
    AvgPool,
    L2Pool,
}

/// A small VGG-like network on `gpu`: weights from `seed` (He's scale ×1.5, biases ±0.1), a ReLU
/// after each convolution, BGR-like planes with a scale and offset each.
pub fn small_net(gpu: Arc<Gpu>, seed: u64, layers: &[Layer]) -> GpuNet {
    let mut rng = Lcg(seed);
    let mut specs = Vec::new();
    for l in layers {
        match *l {
            Layer::Conv(c_in, c_out) => {
                let weight = rng.vec(c_out * c_in * 9, (2.0 / (9.0 * c_in as f32)).sqrt() * 1.5);
                specs.push(LayerSpec::Conv { c_in, c_out, weight, bias: rng.vec(c_out, 0.1) });
                specs.push(LayerSpec::Relu);
            }
            Layer::MaxPool => specs.push(LayerSpec::MaxPool),
            Layer::AvgPool => specs.push(LayerSpec::AvgPool),
            Layer::L2Pool => specs.push(LayerSpec::L2Pool),
        }
    }
    let pre = PreprocessSpec { planes: [2, 1, 0], scale: [2.0, 1.5, 1.0], offset: [-0.5, -0.4, -0.3] };
    GpuNet::new(gpu, specs, pre).unwrap()
}
