//! The adapter's ceilings through this toolchain: the fma rate of a kernel that touches no memory,
//! the rate of the GEMM's own inner step on data resident in workgroup memory, and the bandwidth of
//! a copy (`shaders/peak.wgsl`), the yardsticks beside which a kernel's GFLOP/s say where its time
//! goes.

use crate::device::{Gpu, KernelClock};
use crate::error::Result;
use crate::program::{Program, Step, bind_group};

/// What [`Gpu::ceilings`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ceilings {
    /// GFLOP/s (2 per fma) of independent fma chains in registers, no memory touched.
    pub fma_gflops: f64,
    /// GFLOP/s of the tiled GEMM's inner step (`tile8`: 8×8 outputs an invocation, 4 vec4 reads of
    /// workgroup memory per 64 fma, a barrier per block of 16 k) on one block staged once: the
    /// most the GEMM's register blocking allows, staging and global memory aside.
    pub inner_gflops: f64,
    /// GB/s of a copy between two storage buffers (bytes read plus bytes written).
    pub copy_gbps: f64,
    /// What the kernels were timed with.
    pub clock: KernelClock,
}

/// fma steps of each `peak_fma` invocation (`PEAK_STEPS` of `peak.wgsl`), 32 lanes a step.
const FMA_STEPS: u64 = 512;
/// Rounds of `peak_inner` over its block: 16 k steps of 64 fma an invocation each.
const INNER_ROUNDS: u32 = 64;
/// The value every fma chain of `peak_fma` tends to: v ← v·ALPHA + SHIFT.
const ALPHA: f32 = 0.75;
const SHIFT: f32 = 0.25;
/// What each of `peak_inner`'s staged values of A is (B's are half of it): a power of two, so
/// every output is exact (see the test).
const INNER_A: f32 = 0.25;

/// One ceiling kernel to time: its pipeline, its first and largest workgroup counts, and for a
/// count the outputs, grid and parameter words, and the value output i must hold.
struct Probe<'a> {
    pipeline: &'a wgpu::ComputePipeline,
    first: u32,
    most: u32,
    shape: &'a dyn Fn(u32) -> (usize, [u32; 3], [u32; 20]),
    expect: &'a dyn Fn(usize) -> f32,
}

impl Gpu {
    /// Times each ceiling kernel at growing sizes until one run takes long enough for its clock
    /// (1 ms on the GPU's timestamps, 20 ms on the host's), or reaches its largest size, then
    /// returns the median rate of `reps` runs there. The kernels' outputs are checked, so that
    /// nothing a driver skipped is counted.
    pub fn ceilings(&self, reps: usize) -> Result<Ceilings> {
        let [fma, inner, copy] = crate::kernels::peak_pipelines(self)?;
        let enough = match self.kernel_clock() {
            KernelClock::Device => 1e-3,
            KernelClock::Host => 20e-3,
        };
        // What the kernels read: `peak_fma` a[0..256] and its shift a[256], `peak_inner` a block of
        // 16 × 17 quads.
        let mut values = vec![INNER_A; 4 * 16 * 17];
        values[256] = SHIFT;
        let a = self.upload("ceiling inputs", &values)?;
        let most = self.limits.max_compute_workgroups_per_dimension.min(1 << 16);
        let chains = fma_chains();
        let (s, groups) = self.grow(
            &Probe {
                pipeline: &fma,
                first: 64,
                most,
                shape: &|g| (g as usize * 256, [g, 1, 1], params(0, ALPHA, 0, 0)),
                expect: &|_| chains,
            },
            &a,
            enough,
            reps,
        )?;
        let fma_gflops = f64::from(groups) * 256.0 * FMA_STEPS as f64 * 64.0 / s / 1e9;
        // Each output of `peak_inner`: INNER_ROUNDS·16 products of A and B, 64 outputs an invocation.
        let inner_sum = 64.0 * INNER_ROUNDS as f32 * 16.0 * INNER_A * INNER_A * 0.5;
        let (s, groups) = self.grow(
            &Probe {
                pipeline: &inner,
                first: 64,
                most,
                shape: &|g| (g as usize * 64, [g, 1, 1], params(INNER_ROUNDS, 1.0, 0, 0)),
                expect: &|_| inner_sum,
            },
            &a,
            enough,
            reps,
        )?;
        let inner_gflops = f64::from(groups) * 64.0 * f64::from(INNER_ROUNDS) * 16.0 * 64.0 * 2.0 / s / 1e9;
        // The copy: up to 64 Mi floats each way, within one binding, from a buffer of zeros.
        let cap = (self.binding_cap().0 / 4).min(1 << 26) as usize;
        let zeros = self.storage("ceiling copy", cap)?;
        let (s, groups) = self.grow(
            &Probe {
                pipeline: &copy,
                first: 1 << 10,
                most: (cap >> 8) as u32,
                shape: &|g| {
                    let n = g as usize * 256;
                    let grid = crate::program::grid(n);
                    (n, grid, params(0, 0.0, n as u32, grid[0]))
                },
                expect: &|i| (i & 1023) as f32,
            },
            &zeros,
            enough,
            reps,
        )?;
        let copy_gbps = f64::from(groups) * 256.0 * 8.0 / s / 1e9;
        Ok(Ceilings { fma_gflops, inner_gflops, copy_gbps, clock: self.kernel_clock() })
    }

    /// Runs `probe` over `a` with its first workgroup count, ×4 each time, until a run takes
    /// `enough` seconds or the next count would pass its largest; the median seconds of `reps` runs
    /// at the last count, and that count.
    fn grow(&self, probe: &Probe<'_>, a: &wgpu::Buffer, enough: f64, reps: usize) -> Result<(f64, u32)> {
        let mut groups = probe.first.min(probe.most).max(1);
        loop {
            let (outputs, grid, words) = (probe.shape)(groups);
            let c = self.storage("ceiling outputs", outputs)?;
            let params = self.params(&words);
            let bind = bind_group(self, probe.pipeline, &params, &[(1, a), (4, &c)])?;
            let mut prog = Program::default();
            let label = "ceiling".to_string();
            prog.steps.push(Step::Dispatch { pipeline: probe.pipeline.clone(), bind, groups: grid, label });
            let once = crate::profile::profile(self, &prog)?[0].1;
            if once < enough && groups.saturating_mul(4) <= probe.most {
                groups *= 4;
                continue;
            }
            let mut times = Vec::with_capacity(reps.max(1));
            for _ in 0..reps.max(1) {
                times.push(crate::profile::profile(self, &prog)?[0].1);
            }
            times.sort_by(f64::total_cmp);
            let got = self.finish_and_read(self.encoder(), &[(&c, outputs)])?.remove(0);
            let bad = got.iter().enumerate().find(|&(i, &v)| {
                let e = (probe.expect)(i);
                let close = (v - e).abs() <= 1e-4 * e.abs().max(1.0);
                !close // NaN too
            });
            if let Some((i, &v)) = bad {
                return Err(crate::error::GpuError::Driver {
                    adapter: self.name(),
                    op: "measuring the adapter's ceilings",
                    reason: format!("output {i} is {v}, expected {}", (probe.expect)(i)),
                });
            }
            return Ok((times[times.len() / 2].max(1e-9), groups));
        }
    }
}

/// The parameter words (the GEMM's `P`) of a ceiling kernel: `k` its rounds, `alpha`, `n` the
/// copy's length, `xn` the width of its grid.
fn params(k: u32, alpha: f32, n: u32, xn: u32) -> [u32; 20] {
    let mut w = [0u32; 20];
    (w[1], w[2], w[5], w[12]) = (n, k, xn, alpha.to_bits());
    w
}

/// What every `peak_fma` invocation writes: the sum of its 32 chains from a[i % 256] + 0..31
/// (all INNER_A) after FMA_STEPS steps v ← v·ALPHA + SHIFT, each near SHIFT / (1 − ALPHA).
fn fma_chains() -> f32 {
    (0..32)
        .map(|j| {
            let mut v = f64::from(INNER_A) + f64::from(j);
            for _ in 0..FMA_STEPS {
                v = v * f64::from(ALPHA) + f64::from(SHIFT);
            }
            v
        })
        .sum::<f64>() as f32
}
