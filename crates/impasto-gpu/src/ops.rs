//! One-shot kernel calls on host slices (upload, one dispatch list, read back): the same kernels the
//! network and the objective record, exposed for tests against the CPU twins and for benchmarks.

use crate::device::Gpu;
use crate::error::{GpuError, Result};
use crate::kernels::{self, Gemm, GemmDims, OpParams, Program, grid};

fn check(op: &'static str, what: &str, len: usize, want: usize) -> Result<()> {
    if len != want {
        return Err(GpuError::Shape { op, reason: format!("{what} has {len} values, expected {want}") });
    }
    Ok(())
}

/// OIHW weights → the weights of the backward-to-input convolution: `W'[c, o, 2−ky, 2−kx] = W[o, c, ky, kx]`.
pub fn flip_weights(weight: &[f32], c_in: usize, c_out: usize) -> Vec<f32> {
    let mut out = vec![0.0; weight.len()];
    for o in 0..c_out {
        for c in 0..c_in {
            for tap in 0..9 {
                out[(c * c_out + o) * 9 + 8 - tap] = weight[(o * c_in + c) * 9 + tap];
            }
        }
    }
    out
}

fn run(gpu: &Gpu, prog: &Program, out: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
    let mut enc = gpu.encoder();
    prog.record(&mut enc);
    Ok(gpu.finish_and_read(enc, &[(out, len)])?.remove(0))
}

impl Gpu {
    /// 3×3 pad-1 convolution of `x` (`c_in·h·w`) with OIHW `weight` and `bias`, then ReLU if `relu`.
    pub fn conv3x3_forward(
        &self,
        x: &[f32],
        c_in: usize,
        c_out: usize,
        h: usize,
        w: usize,
        weight: &[f32],
        bias: &[f32],
        relu: bool,
    ) -> Result<Vec<f32>> {
        check("conv3x3_forward", "x", x.len(), c_in * h * w)?;
        check("conv3x3_forward", "weight", weight.len(), c_out * c_in * 9)?;
        check("conv3x3_forward", "bias", bias.len(), c_out)?;
        let (xb, wb, bb) = (self.upload("x", x)?, self.upload("weight", weight)?, self.upload("bias", bias)?);
        let y = self.storage("y", c_out * h * w)?;
        let mut prog = Program::default();
        let flags = kernels::BIAS | if relu { kernels::RELU } else { 0 };
        let d = GemmDims { m: c_out, n: h * w, k: c_in * 9, h, w, flags, alpha: 1.0, slices: 1 };
        prog.gemm(self, Gemm::Conv, &wb, &xb, Some(&bb), &y, d)?;
        run(self, &prog, &y, c_out * h * w)
    }

    /// Gradient of the convolution with respect to its input: `dy` (`c_out·h·w`) → `c_in·h·w`.
    pub fn conv3x3_backward_input(
        &self,
        dy: &[f32],
        c_in: usize,
        c_out: usize,
        h: usize,
        w: usize,
        weight: &[f32],
    ) -> Result<Vec<f32>> {
        check("conv3x3_backward_input", "dy", dy.len(), c_out * h * w)?;
        check("conv3x3_backward_input", "weight", weight.len(), c_out * c_in * 9)?;
        let flipped = flip_weights(weight, c_in, c_out);
        let (db, wb) = (self.upload("dy", dy)?, self.upload("weight", &flipped)?);
        let dx = self.storage("dx", c_in * h * w)?;
        let mut prog = Program::default();
        let d = GemmDims { m: c_in, n: h * w, k: c_out * 9, h, w, flags: 0, alpha: 1.0, slices: 1 };
        prog.gemm(self, Gemm::Conv, &wb, &db, None, &dx, d)?;
        run(self, &prog, &dx, c_in * h * w)
    }

    /// Element-wise pass `entry` (a pooling or ReLU kernel) from `src` (and `aux`) to `out_len` values.
    fn simple(
        &self,
        entry: &'static str,
        src: &[f32],
        aux: Option<&[f32]>,
        dst_init: Option<&[f32]>,
        (c, h, w): (usize, usize, usize),
        n: usize,
        out_len: usize,
    ) -> Result<Vec<f32>> {
        let sb = self.upload("src", src)?;
        let db = match dst_init {
            Some(d) => self.upload("dst", d)?,
            None => self.storage("dst", out_len)?,
        };
        let ab = aux.map(|a| self.upload("aux", a)).transpose()?;
        let mut bufs = vec![(1, &sb), (2, &db)];
        if let Some(a) = &ab {
            bufs.push((3, a));
        }
        let mut prog = Program::default();
        prog.op(self, entry, OpParams { n, c, h, w, ..Default::default() }, &bufs, grid(n))?;
        run(self, &prog, &db, out_len)
    }

    /// 2×2 stride-2 max pooling (floor size; first maximum of a window).
    pub fn max_pool2x2_forward(&self, x: &[f32], c: usize, h: usize, w: usize) -> Result<Vec<f32>> {
        check("max_pool2x2_forward", "x", x.len(), c * h * w)?;
        let n = c * (h / 2) * (w / 2);
        self.simple("max_pool_forward", x, None, None, (c, h, w), n, n)
    }

    /// Max-pool backward: the gradient `dy` goes to the first maximum of each window of `x`.
    pub fn max_pool2x2_backward(
        &self,
        x: &[f32],
        c: usize,
        h: usize,
        w: usize,
        dy: &[f32],
    ) -> Result<Vec<f32>> {
        check("max_pool2x2_backward", "x", x.len(), c * h * w)?;
        check("max_pool2x2_backward", "dy", dy.len(), c * (h / 2) * (w / 2))?;
        self.simple("max_pool_backward", x, Some(dy), None, (c, h, w), c * h * w, c * h * w)
    }

    /// 2×2 stride-2 average pooling.
    pub fn avg_pool2x2_forward(&self, x: &[f32], c: usize, h: usize, w: usize) -> Result<Vec<f32>> {
        check("avg_pool2x2_forward", "x", x.len(), c * h * w)?;
        let n = c * (h / 2) * (w / 2);
        self.simple("avg_pool_forward", x, None, None, (c, h, w), n, n)
    }

    /// Average-pool backward.
    pub fn avg_pool2x2_backward(&self, c: usize, h: usize, w: usize, dy: &[f32]) -> Result<Vec<f32>> {
        check("avg_pool2x2_backward", "dy", dy.len(), c * (h / 2) * (w / 2))?;
        self.simple("avg_pool_backward", dy, None, None, (c, h, w), c * h * w, c * h * w)
    }

    /// `max(x, 0)`.
    pub fn relu_forward(&self, x: &[f32]) -> Result<Vec<f32>> {
        self.simple("relu_forward", x, None, None, (1, 1, 1), x.len(), x.len())
    }

    /// The gradient `dy` zeroed where the ReLU output `act` is ≤ 0.
    pub fn relu_backward(&self, dy: &[f32], act: &[f32]) -> Result<Vec<f32>> {
        check("relu_backward", "act", act.len(), dy.len())?;
        self.simple("relu_backward", act, None, Some(dy), (1, 1, 1), dy.len(), dy.len())
    }

    /// `scale·F·Fᵀ` of a `c×n` matrix, its K split into `slices` summed in order.
    pub fn gram(&self, f: &[f32], c: usize, n: usize, scale: f32, slices: usize) -> Result<Vec<f32>> {
        check("gram", "f", f.len(), c * n)?;
        let fb = self.upload("features", f)?;
        let mut prog = Program::default();
        let g = self.storage("gram", c * c)?;
        record_gram(self, &mut prog, &fb, c, n, scale, slices, &g)?;
        run(self, &prog, &g, c * c)
    }

    /// `scale·(dG + dGᵀ)·F`: the Gram backward, `F` `c×n`, `dG` `c×c`.
    pub fn gram_backward(&self, f: &[f32], c: usize, n: usize, dg: &[f32], scale: f32) -> Result<Vec<f32>> {
        check("gram_backward", "f", f.len(), c * n)?;
        check("gram_backward", "dg", dg.len(), c * c)?;
        let mut d = vec![0.0; c * c];
        for i in 0..c {
            for j in 0..c {
                d[i * c + j] = dg[i * c + j] + dg[j * c + i];
            }
        }
        let (fb, db) = (self.upload("features", f)?, self.upload("dG", &d)?);
        let df = self.storage("dF", c * n)?;
        let mut prog = Program::default();
        let dims = GemmDims { m: c, n, k: c, flags: 0, alpha: scale, slices: 1, ..Default::default() };
        prog.gemm(self, Gemm::Plain, &db, &fb, None, &df, dims)?;
        run(self, &prog, &df, c * n)
    }
}

/// How many K slices a Gram over `n` pixels uses: enough workgroups to fill a large GPU, slices of at
/// least 1024 pixels.
pub(crate) fn gram_slices(c: usize, n: usize) -> usize {
    let tiles = c.div_ceil(64).pow(2);
    (256 / tiles).clamp(1, 64).min(n.div_ceil(1024)).max(1)
}

/// Records `g = scale·F·Fᵀ` (F `c×n` in `f`), split over `slices` K slices then summed in order.
pub(crate) fn record_gram(
    gpu: &Gpu,
    prog: &mut Program,
    f: &wgpu::Buffer,
    c: usize,
    n: usize,
    scale: f32,
    slices: usize,
    g: &wgpu::Buffer,
) -> Result<(wgpu::Buffer, wgpu::Buffer)> {
    let chunk = n.div_ceil(slices.max(1)).next_multiple_of(16).max(16);
    let slices = n.div_ceil(chunk).max(1);
    let parts = gpu.storage("Gram slices", slices * c * c)?;
    let d = GemmDims { m: c, n: c, k: n, flags: kernels::SPLIT, alpha: 1.0, slices, ..Default::default() };
    prog.gemm(gpu, Gemm::Gram, f, f, None, &parts, d)?;
    let p =
        OpParams { n: c * c, c: slices, f: [scale, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], ..Default::default() };
    let sp = prog.op(gpu, "sum_slices", p, &[(1, &parts), (2, g)], grid(c * c))?;
    Ok((parts, sp))
}
