//! Shared test helpers: a tiny deterministic RNG, tolerance checks, thread pools, SIMD levels.

use impasto_kernels::{SimdLevel, supported_simd_levels, with_simd_level};

/// SplitMix64: small, deterministic, good enough for test data.
pub struct Rng(u64);

/// Runs `f` at every SIMD level this CPU supports, best first (AVX-512, AVX2+FMA, portable), with
/// the level capped on the calling thread, so the kernels' checks cover every dispatch path on
/// every machine. Call it inside `ThreadPool::install`, not around it (the cap is per thread).
pub fn each_level(mut f: impl FnMut(SimdLevel)) {
    for level in supported_simd_levels() {
        with_simd_level(level, || f(level));
    }
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform()).collect()
    }

    pub fn vec_f64(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| f64::from(self.uniform())).collect()
    }
}

pub fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

/// `|got − want| ≤ rel · max|want|` elementwise (scale floor 1e-30).
#[track_caller]
pub fn assert_close(got: &[f32], want: &[f32], rel: f32, ctx: &str) {
    assert_eq!(got.len(), want.len(), "{ctx}: length mismatch");
    let tol = rel * max_abs(want).max(1e-30);
    for (idx, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{ctx}: index {idx}: got {g}, want {w} (tol {tol})");
    }
}

/// Same as [`assert_close`] for f64 references.
#[track_caller]
pub fn assert_close_f64(got: &[f64], want: &[f64], rel: f64, ctx: &str) {
    assert_eq!(got.len(), want.len(), "{ctx}: length mismatch");
    let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-300);
    for (idx, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= rel * scale, "{ctx}: index {idx}: got {g}, want {w} (tol {})", rel * scale);
    }
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

pub fn dot_f64(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Central finite-difference gradient of `loss` at `x` (f64, step `eps`).
pub fn fd_grad(x: &[f64], eps: f64, mut loss: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            xp[i] = x[i] + eps;
            let lp = loss(&xp);
            xp[i] = x[i] - eps;
            let lm = loss(&xp);
            xp[i] = x[i];
            (lp - lm) / (2.0 * eps)
        })
        .collect()
}

pub fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("build rayon pool")
}

/// Channel / pixel sizes the brief asks for.
pub const SIZES: [usize; 5] = [1, 3, 5, 63, 65];
