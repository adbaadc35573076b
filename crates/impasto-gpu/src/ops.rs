//! One-shot kernel calls on host slices (upload, one dispatch list, read back): the same kernels the
//! network and the objective record, exposed for tests against the CPU twins and for benchmarks.

use crate::blocks::{
    Blocks, PoolKind, record_crop_gram, record_each, record_gram, record_gram_backward, record_pool_backward,
    record_pool_forward,
};
use crate::device::Gpu;
use crate::error::{GpuError, Result};
use crate::net::conv;
use crate::program::{OpParams, Program};
use crate::winograd;

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

fn run(gpu: &Gpu, prog: &Program, out: &Blocks) -> Result<Vec<f32>> {
    let mut enc = gpu.encoder();
    prog.record(&mut enc);
    Ok(gpu.finish_and_read(enc, &out.reads())?.concat())
}

impl Gpu {
    /// 3×3 pad-1 convolution of `x` (`c_in·h·w`) with OIHW `weight` and `bias`, then ReLU if `relu`:
    /// in the Winograd form where a network on this device would take it, as the backward below.
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
        let xb = self.upload_blocks("x", x, c_in, h * w)?;
        let wb = self.upload_blocks("weight", weight, c_out, 9 * c_in)?;
        let bb = self.upload("bias", bias)?;
        let y = self.blocks("y", c_out, h * w)?;
        let wino = winograd::upload(self, 0, weight, &flip_weights(weight, c_in, c_out), c_in, c_out)?;
        let mut prog = Program::default();
        let u = wino.as_ref().map(|u| &u.forward);
        conv(self, &mut prog, (&wb, u), Some(&bb), (&xb, &y), (c_in, c_out), (h, w), relu)?;
        run(self, &prog, &y)
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
        let db = self.upload_blocks("dy", dy, c_out, h * w)?;
        let wb = self.upload_blocks("weight", &flipped, c_in, 9 * c_out)?;
        let dx = self.blocks("dx", c_in, h * w)?;
        let wino = winograd::upload(self, 0, weight, &flipped, c_in, c_out)?;
        let mut prog = Program::default();
        let u = wino.as_ref().map(|u| &u.backward);
        conv(self, &mut prog, (&wb, u), None, (&db, &dx), (c_out, c_in), (h, w), false)?;
        run(self, &prog, &dx)
    }

    /// Seconds one 3×3 convolution kernel takes on the device, data already there: the forward
    /// (`c_in → c_out` on `h×w`, bias and ReLU fused) or, with `backward`, its backward to the input,
    /// in the Winograd form where the device takes it ([`crate::GpuOptions::direct_convolutions`]).
    /// The median of `reps` runs after one warm-up, each the sum of its dispatches' times on
    /// [`Gpu::kernel_clock`] (the GPU's timestamps where it has them, else the host's clock around
    /// one submit and wait per dispatch). For measuring the kernels' rate (`examples/conv_rate.rs`);
    /// the values (zeros) do not matter.
    pub fn conv3x3_seconds(
        &self,
        c_in: usize,
        c_out: usize,
        (h, w): (usize, usize),
        backward: bool,
        reps: usize,
    ) -> Result<f64> {
        let (rows_in, rows_out) = if backward { (c_out, c_in) } else { (c_in, c_out) };
        let x = self.blocks("x", rows_in, h * w)?;
        let wts = self.blocks("weights", rows_out, 9 * rows_in)?;
        let bias = self.storage("bias", rows_out)?;
        let y = self.blocks("y", rows_out, h * w)?;
        let u = winograd::takes_winograd(self, c_in, c_out)
            .then(|| self.storage("Winograd weights", winograd::POINTS * c_in * c_out))
            .transpose()?;
        let mut prog = Program::default();
        let bias = (!backward).then_some(&bias);
        conv(self, &mut prog, (&wts, u.as_ref()), bias, (&x, &y), (rows_in, rows_out), (h, w), !backward)?;
        let mut times = Vec::with_capacity(reps);
        for rep in 0..=reps.max(1) {
            let s: f64 = crate::profile::profile(self, &prog)?.iter().map(|(_, s)| s).sum();
            if rep > 0 {
                times.push(s);
            }
        }
        times.sort_by(f64::total_cmp);
        Ok(times[times.len() / 2])
    }

    /// 2×2 stride-2 max pooling (floor size; first maximum of a window).
    pub fn max_pool2x2_forward(&self, x: &[f32], c: usize, h: usize, w: usize) -> Result<Vec<f32>> {
        self.pool_forward(PoolKind::Max, x, c, h, w)
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
        self.pool_backward((PoolKind::Max, Some(x)), c, h, w, dy)
    }

    /// 2×2 stride-2 average pooling.
    pub fn avg_pool2x2_forward(&self, x: &[f32], c: usize, h: usize, w: usize) -> Result<Vec<f32>> {
        self.pool_forward(PoolKind::Avg, x, c, h, w)
    }

    /// Average-pool backward.
    pub fn avg_pool2x2_backward(&self, c: usize, h: usize, w: usize, dy: &[f32]) -> Result<Vec<f32>> {
        self.pool_backward((PoolKind::Avg, None), c, h, w, dy)
    }

    /// 2×2 stride-2 L2 pooling: the root mean square of each window.
    pub fn l2_pool2x2_forward(&self, x: &[f32], c: usize, h: usize, w: usize) -> Result<Vec<f32>> {
        self.pool_forward(PoolKind::L2, x, c, h, w)
    }

    /// L2-pool backward; `x` is the forward's input.
    pub fn l2_pool2x2_backward(
        &self,
        x: &[f32],
        c: usize,
        h: usize,
        w: usize,
        dy: &[f32],
    ) -> Result<Vec<f32>> {
        self.pool_backward((PoolKind::L2, Some(x)), c, h, w, dy)
    }

    fn pool_forward(&self, kind: PoolKind, x: &[f32], c: usize, h: usize, w: usize) -> Result<Vec<f32>> {
        check("pool2x2_forward", "x", x.len(), c * h * w)?;
        let xb = self.upload_blocks("x", x, c, h * w)?;
        let y = self.blocks("y", c, (h / 2) * (w / 2))?;
        let mut prog = Program::default();
        record_pool_forward(self, &mut prog, kind, &xb, &y, (h, w))?;
        run(self, &prog, &y)
    }

    fn pool_backward(
        &self,
        (kind, x): (PoolKind, Option<&[f32]>),
        c: usize,
        h: usize,
        w: usize,
        dy: &[f32],
    ) -> Result<Vec<f32>> {
        check("pool2x2_backward", "dy", dy.len(), c * (h / 2) * (w / 2))?;
        if let Some(x) = x {
            check("pool2x2_backward", "x", x.len(), c * h * w)?;
        }
        let xb = x.map(|x| self.upload_blocks("x", x, c, h * w)).transpose()?;
        let dyb = self.upload_blocks("dy", dy, c, (h / 2) * (w / 2))?;
        let dx = self.blocks("dx", c, h * w)?;
        let mut prog = Program::default();
        record_pool_backward(self, &mut prog, (kind, xb.as_ref()), &dyb, &dx, (h, w))?;
        run(self, &prog, &dx)
    }

    /// Element-wise ReLU kernel `entry` on `src` (into `dst_init`, or a new buffer).
    fn relu(&self, entry: &'static str, src: &[f32], dst_init: Option<&[f32]>) -> Result<Vec<f32>> {
        let n = src.len();
        let sb = self.upload_blocks("src", src, 1, n)?;
        let db = match dst_init {
            Some(d) => self.upload_blocks("dst", d, 1, n)?,
            None => self.blocks("dst", 1, n)?,
        };
        let mut prog = Program::default();
        record_each(self, &mut prog, entry, &db, OpParams::default(), |g| {
            vec![(1, &sb.bufs[g]), (2, &db.bufs[g])]
        })?;
        run(self, &prog, &db)
    }

    /// `max(x, 0)`.
    pub fn relu_forward(&self, x: &[f32]) -> Result<Vec<f32>> {
        self.relu("relu_forward", x, None)
    }

    /// The gradient `dy` zeroed where the ReLU output `act` is ≤ 0.
    pub fn relu_backward(&self, dy: &[f32], act: &[f32]) -> Result<Vec<f32>> {
        check("relu_backward", "act", act.len(), dy.len())?;
        self.relu("relu_backward", act, Some(dy))
    }

    /// `scale·F·Fᵀ` of a `c×n` matrix, its K split into `slices` summed in order.
    pub fn gram(&self, f: &[f32], c: usize, n: usize, scale: f32, slices: usize) -> Result<Vec<f32>> {
        check("gram", "f", f.len(), c * n)?;
        let fb = self.upload_blocks("features", f, c, n)?;
        let mut prog = Program::default();
        let g = self.storage(&format!("Gram matrix ({c}×{c})"), c * c)?;
        record_gram(self, &mut prog, &fb, scale, slices, &g)?;
        let out = Blocks { rows: 1, cols: c * c, per: 1, bufs: vec![g] };
        run(self, &prog, &out)
    }

    /// `scale·F_r·F_rᵀ` of `f` (`c` planes of `h`×`w`), `F_r` its pixels inside the rectangle `crop` =
    /// (x, y, width, height) in row-major order; K split into `slices` summed in order.
    #[allow(clippy::too_many_arguments)]
    pub fn cropped_gram(
        &self,
        f: &[f32],
        c: usize,
        h: usize,
        w: usize,
        crop: (usize, usize, usize, usize),
        scale: f32,
        slices: usize,
    ) -> Result<Vec<f32>> {
        check("cropped_gram", "f", f.len(), c * h * w)?;
        let fb = self.upload_blocks("features", f, c, h * w)?;
        let mut prog = Program::default();
        let g = self.storage(&format!("Gram matrix ({c}×{c})"), c * c)?;
        let (x, y, cw, ch) = crop;
        record_crop_gram(self, &mut prog, &fb, (w, x, y, cw, ch), scale, slices, &g)?;
        let out = Blocks { rows: 1, cols: c * c, per: 1, bufs: vec![g] };
        run(self, &prog, &out)
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
        let fb = self.upload_blocks("features", f, c, n)?;
        let db = self.upload("dG", &d)?;
        let df = self.blocks("dF", c, n)?;
        df.bufs.iter().try_for_each(|b| self.zero(b))?;
        let scratch = self.storage("Gram gradient scratch", fb.per.min(c) * n)?;
        let mut prog = Program::default();
        record_gram_backward(self, &mut prog, &db, &fb, None, scale, &df, Some(&scratch))?;
        run(self, &prog, &df)
    }

    fn zero(&self, b: &wgpu::Buffer) -> Result<()> {
        let mut enc = self.encoder();
        enc.clear_buffer(b, 0, None);
        self.submit_and_wait(enc)
    }
}
