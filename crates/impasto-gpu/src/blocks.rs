//! Tensors split into channel groups that each fit one storage binding, and the recording of every
//! kernel over them: a `rows×cols` matrix (channels × pixels of an activation, output channels ×
//! 9·input channels of convolution weights) is held as row blocks of `per` rows, one buffer each.
//! A product over split operands becomes a sequence of GEMMs on sub-blocks, each output still one
//! sum in increasing k (the accumulators of a later group start from the raw sums of the earlier
//! ones), so the forward pass and the Gram matrix give the same bits split or not.

use crate::device::Gpu;
use crate::error::{GpuError, Result};
use crate::gemm::GemmDims;
use crate::kernels::{self, Gemm};
use crate::program::{OpParams, Program, grid, partial_count};

/// A `rows×cols` row-major matrix held as row blocks of `per` rows (the last one shorter).
#[derive(Debug, Clone)]
pub(crate) struct Blocks {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) per: usize,
    pub(crate) bufs: Vec<wgpu::Buffer>,
}

impl Blocks {
    /// (first row, rows, buffer) of each block.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, usize, &wgpu::Buffer)> {
        self.bufs.iter().enumerate().map(|(g, b)| {
            let r0 = g * self.per;
            (r0, self.per.min(self.rows - r0), b)
        })
    }

    /// The block holding `row` and the row's index inside it.
    pub(crate) fn locate(&self, row: usize) -> (&wgpu::Buffer, usize) {
        (&self.bufs[row / self.per], row % self.per)
    }

    /// Each block with its length in floats, for [`Gpu::finish_and_read`].
    pub(crate) fn reads(&self) -> Vec<(&wgpu::Buffer, usize)> {
        self.iter().map(|(_, n, b)| (b, n * self.cols)).collect()
    }

    /// Writes `data` (`rows·cols` values) into the blocks.
    pub(crate) fn write(&self, gpu: &Gpu, data: &[f32]) {
        for (r0, n, b) in self.iter() {
            let part = &data[r0 * self.cols..(r0 + n) * self.cols];
            if !part.is_empty() {
                gpu.queue.write_buffer(b, 0, bytemuck::cast_slice(part));
            }
        }
    }

    /// Partial sums a loss kernel leaves over these blocks (one dispatch per block).
    pub(crate) fn partials(&self) -> usize {
        self.iter().map(|(_, n, _)| partial_count(n * self.cols)).sum()
    }

    /// A `rows×cols` tensor, blocked as [`Gpu::blocks`] would block it, in these blocks' buffers
    /// (whose contents are no longer needed), or `None` where one of its blocks would not fit the
    /// buffer it takes.
    pub(crate) fn reuse(&self, gpu: &Gpu, rows: usize, cols: usize) -> Result<Option<Blocks>> {
        let per = gpu.rows_per_block("a gradient", rows, cols)?;
        let count = rows.max(1).div_ceil(per);
        let fits = count <= self.bufs.len()
            && (0..count).all(|g| {
                let have = self.per.min(self.rows.max(1) - g * self.per) * self.cols;
                per.min(rows.max(1) - g * per) * cols <= have
            });
        Ok(fits.then(|| Blocks { rows, cols, per, bufs: self.bufs[..count].to_vec() }))
    }
}

/// Buffers shared by tensors of several shapes used one after the other (the gradient of each layer
/// in the backward pass): each shape takes the first of them, blocked as [`Gpu::blocks`] would.
#[derive(Debug)]
pub(crate) struct Pool {
    bufs: Vec<wgpu::Buffer>,
}

impl Pool {
    /// The `rows×cols` tensor in the pool.
    pub(crate) fn view(&self, gpu: &Gpu, rows: usize, cols: usize) -> Result<Blocks> {
        let per = gpu.rows_per_block("a gradient", rows, cols)?;
        let bufs = self.bufs[..rows.div_ceil(per).max(1)].to_vec();
        Ok(Blocks { rows, cols, per, bufs })
    }
}

impl Gpu {
    /// Rows per block of a `rows×cols` tensor: all of them when they fit one binding, else the largest
    /// power of two that fits (so that a block of a tensor lies inside one block of any tensor with
    /// as many rows and fewer columns: pooling maps channel groups into channel groups). A single
    /// row larger than a binding is a [`GpuError::Limit`].
    pub(crate) fn rows_per_block(&self, what: &str, rows: usize, cols: usize) -> Result<usize> {
        let (cap, limit) = self.binding_cap();
        let row = (cols.max(1) * 4) as u64;
        if row > cap {
            return Err(GpuError::Limit {
                adapter: self.name(),
                what: format!("one channel of {what} ({cols} values)"),
                limit,
                needed: row,
                allowed: cap,
            });
        }
        let fit = (cap / row) as usize;
        Ok(if fit >= rows { rows.max(1) } else { 1 << fit.ilog2() })
    }

    /// A `rows×cols` tensor on the device, in as many blocks as the binding size needs.
    pub(crate) fn blocks(&self, what: &str, rows: usize, cols: usize) -> Result<Blocks> {
        let per = self.rows_per_block(what, rows, cols)?;
        let mut bufs = Vec::new();
        let mut r0 = 0;
        while r0 < rows.max(1) {
            let n = per.min(rows.max(1) - r0);
            bufs.push(self.storage(what, n * cols)?);
            r0 += n;
        }
        Ok(Blocks { rows, cols, per, bufs })
    }

    /// [`Gpu::blocks`] holding `data`.
    pub(crate) fn upload_blocks(&self, what: &str, data: &[f32], rows: usize, cols: usize) -> Result<Blocks> {
        if data.len() != rows * cols {
            return Err(GpuError::Shape {
                op: "upload",
                reason: format!("{what}: {} values for {rows}×{cols}", data.len()),
            });
        }
        let b = self.blocks(what, rows, cols)?;
        b.write(self, data);
        Ok(b)
    }

    /// Buffers for any of the `rows×cols` `shapes` (see [`Pool`]).
    pub(crate) fn pool(&self, what: &str, shapes: &[(usize, usize)]) -> Result<Pool> {
        let (mut count, mut len) = (1, 1);
        for &(rows, cols) in shapes {
            let per = self.rows_per_block(what, rows, cols)?;
            count = count.max(rows.div_ceil(per));
            len = len.max(per.min(rows) * cols);
        }
        Ok(Pool { bufs: (0..count).map(|_| self.storage(what, len)).collect::<Result<_>>()? })
    }
}

/// Records `y = W ⊛ x` for a 3×3 pad-1 convolution over `h`×`w` planes: `wts` the weights as a
/// `c_out × 9·c_in` matrix, `x` `c_in × h·w`, `y` `c_out × h·w`; with `bias` and `relu` the epilogue.
/// The backward to the input is the same call with the flipped weights, `dy` and `dx`.
pub(crate) fn record_conv(
    gpu: &Gpu,
    prog: &mut Program,
    wts: &Blocks,
    bias: Option<&wgpu::Buffer>,
    x: &Blocks,
    y: &Blocks,
    (h, w): (usize, usize),
    relu: bool,
) -> Result<()> {
    let n = h * w;
    let lda = wts.cols;
    let groups = x.bufs.len();
    for (y0, yn, ybuf) in y.iter() {
        // Rows of this output group, cut where the weights' blocks end.
        let mut r = y0;
        while r < y0 + yn {
            let (wbuf, wrow) = wts.locate(r);
            let m = (wts.per - wrow).min(y0 + yn - r);
            for (g, (x0, xn, xbuf)) in x.iter().enumerate() {
                let mut flags = if g > 0 { kernels::ACC_INIT } else { 0 };
                if g + 1 == groups {
                    flags |=
                        if bias.is_some() { kernels::BIAS } else { 0 } | if relu { kernels::RELU } else { 0 };
                }
                let d = GemmDims {
                    m,
                    n,
                    k: 9 * xn,
                    h,
                    w,
                    flags,
                    alpha: 1.0,
                    slices: 1,
                    lda,
                    a_off: wrow * lda + 9 * x0,
                    ldc: n,
                    c_off: (r - y0) * n,
                    c_slice: 0,
                    bias_off: r,
                    crop: (0, 0),
                };
                prog.gemm(gpu, Gemm::Conv, wbuf, xbuf, bias, ybuf, d)?;
            }
            r += m;
        }
    }
    Ok(())
}

/// How many K slices a Gram over `n` pixels uses: about 1024 workgroups (of 64 invocations), which
/// fills a large GPU (an H200's 132 multiprocessors at about 8 each), in slices of at least 256
/// pixels. The partial matrices then take at most 16 MiB. (`impasto::tiles`' GPU memory estimate
/// repeats this rule; its test checks the two against the bytes allocated.)
pub(crate) fn gram_slices(c: usize, n: usize) -> usize {
    let tiles = c.div_ceil(64).pow(2);
    (1024 / tiles).max(1).min(n.div_ceil(256)).max(1)
}

/// Records `g = scale·F·Fᵀ` (`f` `c×n`, `g` one `c×c` buffer), K split into up to `slices` slices
/// (fewer when their partial matrices would not fit one binding), summed in order. Returns the
/// buffers the recording binds.
pub(crate) fn record_gram(
    gpu: &Gpu,
    prog: &mut Program,
    f: &Blocks,
    scale: f32,
    slices: usize,
    g: &wgpu::Buffer,
) -> Result<(wgpu::Buffer, wgpu::Buffer)> {
    record_gram_of(gpu, prog, f, None, scale, slices, g)
}

/// A rectangle of a tensor's planes: (plane width, first column, first row, width, height).
pub(crate) type Crop = (usize, usize, usize, usize, usize);

/// Records `g = scale·F_r·F_rᵀ`, `F_r` the pixels of `f` (`c` × planes of `w` values a row) inside the
/// rectangle `crop` = (w, x, y, width, height), in row-major order: the Gram of a sub-rectangle, each
/// entry one sum over its pixels in that order (K split into slices summed in order, as
/// [`record_gram`]).
pub(crate) fn record_crop_gram(
    gpu: &Gpu,
    prog: &mut Program,
    f: &Blocks,
    crop: Crop,
    scale: f32,
    slices: usize,
    g: &wgpu::Buffer,
) -> Result<(wgpu::Buffer, wgpu::Buffer)> {
    let (w, x, y, cw, ch) = crop;
    if cw == 0 || ch == 0 || x + cw > w || w == 0 || (y + ch) * w > f.cols {
        return Err(GpuError::Shape {
            op: "cropped Gram",
            reason: format!("a {cw}×{ch} rectangle at ({x}, {y}) of {w}-wide planes of {} values", f.cols),
        });
    }
    record_gram_of(gpu, prog, f, Some(crop), scale, slices, g)
}

fn record_gram_of(
    gpu: &Gpu,
    prog: &mut Program,
    f: &Blocks,
    crop: Option<Crop>,
    scale: f32,
    slices: usize,
    g: &wgpu::Buffer,
) -> Result<(wgpu::Buffer, wgpu::Buffer)> {
    let c = f.rows;
    let n = crop.map_or(f.cols, |(_, _, _, cw, ch)| cw * ch);
    let room = (gpu.binding_cap().0 / (c * c * 4).max(1) as u64).max(1) as usize;
    let chunk = n.div_ceil(slices.clamp(1, room)).next_multiple_of(16).max(16);
    let slices = n.div_ceil(chunk).max(1);
    let parts = gpu.storage(&format!("Gram slices ({slices}×{c}×{c})"), slices * c * c)?;
    for (i0, ni, fi) in f.iter() {
        for (j0, nj, fj) in f.iter() {
            let d = GemmDims {
                m: ni,
                n: nj,
                k: n,
                flags: kernels::SPLIT,
                alpha: 1.0,
                slices,
                ldc: c,
                c_off: i0 * c + j0,
                c_slice: c * c,
                ..Default::default()
            };
            match crop {
                None => prog.gemm(gpu, Gemm::Gram, fi, fj, None, &parts, d)?,
                Some((w, x, y, cw, _)) => {
                    let d = GemmDims { h: cw, w, lda: f.cols, crop: (x, y), ..d };
                    prog.gemm(gpu, Gemm::CropGram, fi, fj, None, &parts, d)?
                }
            };
        }
    }
    let p =
        OpParams { n: c * c, c: slices, f: [scale, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], ..Default::default() };
    let sp = prog.op(gpu, "sum_slices", p, &[(1, &parts), (2, g)], grid(c * c))?;
    Ok((parts, sp))
}

/// Records `out += alpha·(D·F)∘mask` (`d` one `c×c` buffer, `f` and `out` `c×n` blocked alike, `mask`
/// one value per column): the Gram backward. With `f` in several blocks each output block is summed
/// in `scratch` (at least one block long) then added.
pub(crate) fn record_gram_backward(
    gpu: &Gpu,
    prog: &mut Program,
    d: &wgpu::Buffer,
    f: &Blocks,
    mask: Option<&wgpu::Buffer>,
    alpha: f32,
    out: &Blocks,
    scratch: Option<&wgpu::Buffer>,
) -> Result<()> {
    let (c, n) = (f.rows, f.cols);
    let colmask = if mask.is_some() { kernels::COLMASK } else { 0 };
    let base = GemmDims { n, alpha: 1.0, slices: 1, lda: c, ..Default::default() };
    if f.bufs.len() == 1 {
        let dims = GemmDims { m: c, k: c, flags: kernels::ACCUMULATE | colmask, alpha, ..base };
        prog.gemm(gpu, Gemm::Plain, d, &f.bufs[0], mask, &out.bufs[0], dims)?;
        return Ok(());
    }
    let scratch = scratch.ok_or_else(|| GpuError::Shape {
        op: "Gram backward",
        reason: "a split Gram backward needs a scratch buffer".into(),
    })?;
    for (i0, ni, obuf) in out.iter() {
        let groups = f.bufs.len();
        for (g, (j0, nj, fj)) in f.iter().enumerate() {
            let last = g + 1 == groups;
            let dims = GemmDims {
                m: ni,
                k: nj,
                flags: if g > 0 { kernels::ACC_INIT } else { 0 } | if last { colmask } else { 0 },
                alpha: if last { alpha } else { 1.0 },
                a_off: i0 * c + j0,
                ..base
            };
            prog.gemm(gpu, Gemm::Plain, d, fj, mask, scratch, dims)?;
        }
        let p = OpParams { n: ni * n, ..Default::default() };
        prog.op(gpu, "add", p, &[(1, scratch), (2, obuf)], grid(ni * n))?;
    }
    Ok(())
}

/// Records the element-wise kernel `entry` once per block: `bind(g)` gives block `g`'s buffers, `p`
/// its parameters with `n` set to the block's value count. Returns each dispatch's parameters.
pub(crate) fn record_each<'b>(
    gpu: &Gpu,
    prog: &mut Program,
    entry: &'static str,
    like: &Blocks,
    p: OpParams,
    mut bind: impl FnMut(usize) -> Vec<(u32, &'b wgpu::Buffer)>,
) -> Result<Vec<(wgpu::Buffer, OpParams)>> {
    let mut out = Vec::new();
    let mut offset = 0;
    for (g, (_, rows, _)) in like.iter().enumerate() {
        let n = rows * like.cols;
        let mut q = p;
        q.n = n;
        q.u[3] = offset as u32;
        offset += partial_count(n);
        let pb = prog.op(gpu, entry, q, &bind(g), grid(n))?;
        out.push((pb, q));
    }
    Ok(out)
}

/// The reduction of a 2×2 pooling layer, and its kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolKind {
    /// The first maximum of each window.
    Max,
    /// The mean of each window.
    Avg,
    /// The root mean square of each window.
    L2,
}

/// Records 2×2 pooling forward from `x` (`c × h·w`) to `y` (`c × (h/2)·(w/2)`), one dispatch per
/// block of `x`.
pub(crate) fn record_pool_forward(
    gpu: &Gpu,
    prog: &mut Program,
    kind: PoolKind,
    x: &Blocks,
    y: &Blocks,
    (h, w): (usize, usize),
) -> Result<()> {
    let entry = match kind {
        PoolKind::Max => "max_pool_forward",
        PoolKind::Avg => "avg_pool_forward",
        PoolKind::L2 => "l2_pool_forward",
    };
    for (x0, xn, xb) in x.iter() {
        let (yb, yrow) = y.locate(x0);
        let n = xn * (h / 2) * (w / 2);
        let p = OpParams { n, c: xn, h, w, u: [yrow as u32, 0, 0, 0], ..Default::default() };
        prog.op(gpu, entry, p, &[(1, xb), (2, yb)], grid(n))?;
    }
    Ok(())
}

/// Records the pooling backward: `dy` (`c × (h/2)·(w/2)`) to `dx` (`c × h·w`); `x` is the pooling's
/// input, which the max and L2 backward read and the average's does not.
pub(crate) fn record_pool_backward(
    gpu: &Gpu,
    prog: &mut Program,
    (kind, x): (PoolKind, Option<&Blocks>),
    dy: &Blocks,
    dx: &Blocks,
    (h, w): (usize, usize),
) -> Result<()> {
    for (g, (x0, xn, dxb)) in dx.iter().enumerate() {
        let (dyb, row) = dy.locate(x0);
        let n = xn * h * w;
        let p = OpParams { n, c: xn, h, w, u: [row as u32, 0, 0, 0], ..Default::default() };
        match (kind, x) {
            (PoolKind::Max, Some(x)) => {
                prog.op(gpu, "max_pool_backward", p, &[(1, &x.bufs[g]), (2, dxb), (3, dyb)], grid(n))?
            }
            (PoolKind::L2, Some(x)) => {
                prog.op(gpu, "l2_pool_backward", p, &[(1, &x.bufs[g]), (2, dxb), (3, dyb)], grid(n))?
            }
            (PoolKind::Avg, _) => prog.op(gpu, "avg_pool_backward", p, &[(1, dyb), (2, dxb)], grid(n))?,
            (_, None) => {
                return Err(GpuError::Shape {
                    op: "pool backward",
                    reason: format!("{kind:?} pooling needs its input"),
                });
            }
        };
    }
    Ok(())
}

/// Records `dst plane c = src plane from[c] · scale[c] + offset[c]` for each of the 3 planes (the
/// network's preprocessing; its backward maps plane c back to plane `from[c]` with offset 0).
pub(crate) fn record_planes(
    gpu: &Gpu,
    prog: &mut Program,
    src: &Blocks,
    dst: &Blocks,
    planes: [(usize, usize, f32, f32); 3],
) -> Result<()> {
    let n = src.cols;
    for (from, to, scale, offset) in planes {
        let (sb, si) = src.locate(from);
        let (db, di) = dst.locate(to);
        let p = OpParams {
            n,
            u: [si as u32, di as u32, 0, 0],
            f: [scale, offset, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            ..Default::default()
        };
        prog.op(gpu, "affine_plane", p, &[(1, sb), (2, db)], grid(n))?;
    }
    Ok(())
}
