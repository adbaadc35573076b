//! The network on the device: convolution weights (and their flipped transposes for the backward)
//! uploaded once, and the recording of the forward pass (keeping every output the backward needs)
//! and of the backward pass from a layer down to the RGB pixels.

use std::sync::Arc;

use crate::blocks::{
    Blocks, Pool, PoolKind, record_conv, record_each, record_planes, record_pool_backward,
    record_pool_forward,
};
use crate::device::Gpu;
use crate::error::{GpuError, Result};
use crate::ops::flip_weights;
use crate::program::{OpParams, Program};
use crate::winograd::{self, WinoWeights};

mod grams;

/// One layer, as the CPU network has it (same indices).
#[derive(Debug, Clone)]
pub enum LayerSpec {
    /// 3×3 convolution, stride 1, zero padding 1, with bias; OIHW `weight`.
    Conv {
        /// Input channels.
        c_in: usize,
        /// Output channels.
        c_out: usize,
        /// `c_out·c_in·9` weights, OIHW.
        weight: Vec<f32>,
        /// `c_out` biases.
        bias: Vec<f32>,
    },
    /// `max(x, 0)`.
    Relu,
    /// 2×2 stride-2 max pooling (floor size, first maximum of a window).
    MaxPool,
    /// 2×2 stride-2 average pooling.
    AvgPool,
    /// 2×2 stride-2 L2 pooling (the root mean square of each window).
    L2Pool,
}

/// The network input from planar RGB 0..1: input channel `c` is `rgb[planes[c]]·scale[c] + offset[c]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PreprocessSpec {
    /// The RGB plane each input channel reads.
    pub planes: [usize; 3],
    /// Scale per input channel.
    pub scale: [f32; 3],
    /// Offset per input channel.
    pub offset: [f32; 3],
}

#[derive(Debug)]
enum Layer {
    Conv {
        c_in: usize,
        c_out: usize,
        weight: Blocks,
        bias: wgpu::Buffer,
        flipped: Blocks,
        /// The Winograd form's weights, where the layer takes it.
        wino: Option<Box<WinoWeights>>,
    },
    Relu,
    Pool(PoolKind),
}

/// A network resident on one device.
#[derive(Debug)]
pub struct GpuNet {
    pub(crate) gpu: Arc<Gpu>,
    layers: Vec<Layer>,
    pub(crate) preprocess: PreprocessSpec,
}

/// A layer output read back: the values and (channels, height, width).
pub type LayerOutput = (Vec<f32>, (usize, usize, usize));

/// The buffers of one recorded forward pass at a fixed image size.
#[derive(Debug)]
pub(crate) struct Forward {
    /// Planar RGB 0..1 input (3 × h·w).
    pub(crate) rgb: Blocks,
    /// The preprocessed network input.
    x0: Blocks,
    /// Output of each layer up to `last`; `None` for a convolution fused with its ReLU.
    out: Vec<Option<Blocks>>,
    /// (channels, height, width) of each layer's output.
    pub(crate) shape: Vec<(usize, usize, usize)>,
    pub(crate) hw: (usize, usize),
}

impl Forward {
    /// The kept output of layer `i`.
    pub(crate) fn out(&self, i: usize) -> &Blocks {
        self.out[i].as_ref().expect("output of a wanted layer is kept")
    }
    fn input(&self, i: usize) -> &Blocks {
        if i == 0 { &self.x0 } else { self.out(i - 1) }
    }

    /// (channels, pixels) of the network input (`t` = 0) or of layer `t − 1`'s output.
    fn gradient_shape(&self, t: usize) -> (usize, usize) {
        match t {
            0 => (3, self.hw.0 * self.hw.1),
            t => (self.shape[t - 1].0, self.shape[t - 1].1 * self.shape[t - 1].2),
        }
    }
}

/// Where the backward pass keeps a gradient (see [`GpuNet::gradient_places`]): one of two pools, or
/// the buffer of layer `j`'s output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Pool(usize),
    Out(usize),
}

impl GpuNet {
    /// Uploads the layers' weights to `gpu`.
    pub fn new(gpu: Arc<Gpu>, layers: Vec<LayerSpec>, preprocess: PreprocessSpec) -> Result<GpuNet> {
        let mut out = Vec::with_capacity(layers.len());
        for (i, l) in layers.into_iter().enumerate() {
            out.push(match l {
                LayerSpec::Conv { c_in, c_out, weight, bias } => {
                    if weight.len() != c_out * c_in * 9 || bias.len() != c_out {
                        return Err(GpuError::Shape {
                            op: "GpuNet::new",
                            reason: format!(
                                "layer {i}: {} weights and {} biases for a {c_in}→{c_out} convolution",
                                weight.len(),
                                bias.len()
                            ),
                        });
                    }
                    let flipped = flip_weights(&weight, c_in, c_out);
                    Layer::Conv {
                        c_in,
                        c_out,
                        wino: winograd::upload(&gpu, i, &weight, &flipped, c_in, c_out)?.map(Box::new),
                        flipped: gpu.upload_blocks(
                            &format!("flipped weights of layer {i}"),
                            &flipped,
                            c_in,
                            9 * c_out,
                        )?,
                        weight: gpu.upload_blocks(
                            &format!("weights of layer {i}"),
                            &weight,
                            c_out,
                            9 * c_in,
                        )?,
                        bias: gpu.upload("bias", &bias)?,
                    }
                }
                LayerSpec::Relu => Layer::Relu,
                LayerSpec::MaxPool => Layer::Pool(PoolKind::Max),
                LayerSpec::AvgPool => Layer::Pool(PoolKind::Avg),
                LayerSpec::L2Pool => Layer::Pool(PoolKind::L2),
            });
        }
        Ok(GpuNet { gpu, layers: out, preprocess })
    }

    /// The device.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether the network has no layer.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    fn check_layer(&self, i: usize) -> Result<()> {
        if i >= self.layers.len() {
            return Err(GpuError::Shape {
                op: "GpuNet",
                reason: format!("layer {i} requested, the network has {}", self.layers.len()),
            });
        }
        Ok(())
    }

    /// (source plane, destination plane, scale, offset) of each input channel, forward or backward.
    fn preprocess_planes(&self, backward: bool) -> [(usize, usize, f32, f32); 3] {
        let p = self.preprocess;
        [0, 1, 2].map(|c| {
            if backward {
                (c, p.planes[c], p.scale[c], 0.0)
            } else {
                (p.planes[c], c, p.scale[c], p.offset[c])
            }
        })
    }

    /// Records the forward pass of an `h`×`w` image through layers `0..=last`, keeping the outputs
    /// in `wanted` and those the backward needs.
    pub(crate) fn record_forward(
        &self,
        prog: &mut Program,
        h: usize,
        w: usize,
        last: usize,
        wanted: &[bool],
    ) -> Result<Forward> {
        self.check_layer(last)?;
        let gpu = &*self.gpu;
        let rgb = gpu.blocks(&format!("input image (3×{h}×{w})"), 3, h * w)?;
        let x0 = gpu.blocks("network input", 3, h * w)?;
        record_planes(gpu, prog, &rgb, &x0, self.preprocess_planes(false))?;
        let mut fwd = Forward { rgb, x0, out: Vec::new(), shape: Vec::new(), hw: (h, w) };
        // The Winograd scratch the largest convolution needs, forward and backward alike, so that
        // one pair serves them all.
        if let Some(floats) = self.winograd_scratch(h, w, last, prog.scratch_cap()) {
            prog.winograd_scratch(gpu, floats)?;
        }
        let (mut c, mut h, mut w) = (3, h, w);
        let mut i = 0;
        while i <= last {
            let alloc = |what: &str, c: usize, h: usize, w: usize| {
                gpu.blocks(&format!("{what} output of layer {i} ({c}×{h}×{w})"), c, h * w)
            };
            match &self.layers[i] {
                Layer::Conv { c_in, c_out, weight, bias, wino, .. } => {
                    if *c_in != c {
                        return Err(GpuError::Shape {
                            op: "GpuNet forward",
                            reason: format!("layer {i} expects {c_in} channels, gets {c}"),
                        });
                    }
                    let fuse = i < last && !wanted[i] && matches!(self.layers[i + 1], Layer::Relu);
                    let y = alloc("convolution", *c_out, h, w)?;
                    prog.tag(Some(format!("conv fwd {c_in}->{c_out} {h}x{w} (layer {i})")));
                    let u = wino.as_ref().map(|u| &u.forward);
                    let io = (fwd.input(i), &y);
                    conv(gpu, prog, (weight, u), Some(bias), io, (*c_in, *c_out), (h, w), fuse)?;
                    prog.tag(None);
                    c = *c_out;
                    fwd.shape.push((c, h, w));
                    if fuse {
                        fwd.out.push(None);
                        fwd.shape.push((c, h, w));
                        i += 1;
                    }
                    fwd.out.push(Some(y));
                }
                Layer::Relu => {
                    let y = alloc("ReLU", c, h, w)?;
                    let x = fwd.input(i);
                    record_each(gpu, prog, "relu_forward", &y, OpParams::default(), |g| {
                        vec![(1, &x.bufs[g]), (2, &y.bufs[g])]
                    })?;
                    fwd.shape.push((c, h, w));
                    fwd.out.push(Some(y));
                }
                Layer::Pool(kind) => {
                    let y = alloc("pooling", c, h / 2, w / 2)?;
                    record_pool_forward(gpu, prog, *kind, fwd.input(i), &y, (h, w))?;
                    (h, w) = (h / 2, w / 2);
                    fwd.shape.push((c, h, w));
                    fwd.out.push(Some(y));
                }
            }
            i += 1;
        }
        Ok(fwd)
    }

    /// The floats of each Winograd scratch buffer the convolutions of an `h`×`w` image through
    /// layers `0..=last` need at most with buffers of at most `cap` bytes (`None`: none takes the
    /// Winograd form, see [`conv`]).
    fn winograd_scratch(&self, h: usize, w: usize, last: usize, cap: u64) -> Option<usize> {
        let (mut h, mut w) = (h, w);
        let whole = |rows: usize, n: usize| self.gpu.rows_per_block("", rows, n).is_ok_and(|per| per >= rows);
        let mut most = None;
        for l in &self.layers[..=last] {
            match l {
                Layer::Conv { c_in, c_out, wino: Some(_), .. }
                    if whole(*c_in, h * w) && whole(*c_out, h * w) =>
                {
                    if let Some((_, floats)) = winograd::band(&self.gpu, cap, *c_in, *c_out, (h, w)) {
                        most = most.max(Some(floats));
                    }
                }
                Layer::Pool(_) => (h, w) = (h / 2, w / 2),
                _ => {}
            }
        }
        most
    }

    /// Records the backward pass from layer `last` to the RGB input. `add_loss(prog, i, grad)` records
    /// the loss gradient of layer `i`'s output into `grad` (for every `i` from `last` down to 0).
    /// Returns the buffer holding d(loss)/d(network input) mapped back to planar RGB (3·h·w).
    ///
    /// Each gradient goes where [`GpuNet::gradient_places`] says: a convolution's gradient with
    /// respect to its input into the buffer of its own output, which nothing reads again once its
    /// own gradient is taken, the others into a pool of buffers.
    pub(crate) fn record_backward(
        &self,
        prog: &mut Program,
        fwd: &Forward,
        last: usize,
        mut add_loss: impl FnMut(&mut Program, usize, &Blocks) -> Result<()>,
    ) -> Result<Blocks> {
        let gpu = &*self.gpu;
        let (at, rgb_at) = self.gradient_places(fwd, last)?;
        let shape = |t: usize| fwd.gradient_shape(t);
        // The pools, each sized for the gradients it holds.
        let mut pools: [Option<Pool>; 2] = [None, None];
        for (k, pool) in pools.iter_mut().enumerate() {
            let held: Vec<(usize, usize)> = (0..at.len())
                .filter(|&t| at[t] == Place::Pool(k))
                .map(shape)
                .chain((rgb_at == Place::Pool(k)).then_some(shape(0)))
                .collect();
            if !held.is_empty() {
                *pool = Some(gpu.pool("gradient", &held)?);
            }
        }
        let view = |place: Place, (rows, cols): (usize, usize)| -> Result<Blocks> {
            match place {
                Place::Pool(k) => match &pools[k] {
                    Some(pool) => pool.view(gpu, rows, cols),
                    None => Err(GpuError::Shape {
                        op: "GpuNet backward",
                        reason: format!("no gradient pool {k}"),
                    }),
                },
                Place::Out(j) => fwd.out(j).reuse(gpu, rows, cols)?.ok_or_else(|| GpuError::Shape {
                    op: "GpuNet backward",
                    reason: format!("the gradient {rows}×{cols} does not fit the output of layer {j}"),
                }),
            }
        };
        let grads: Vec<Blocks> = (0..at.len()).map(|t| view(at[t], shape(t))).collect::<Result<_>>()?;
        grads[last + 1].bufs.iter().for_each(|b| prog.clear(b));
        for i in (0..=last).rev() {
            let (c, h, w) = fwd.shape[i];
            let (g, dx) = (&grads[i + 1], &grads[i]);
            add_loss(prog, i, g)?;
            let (in_c, in_h, in_w) = if i == 0 { (3, fwd.hw.0, fwd.hw.1) } else { fwd.shape[i - 1] };
            match &self.layers[i] {
                Layer::Relu => {
                    let y = fwd.out(i);
                    record_each(gpu, prog, "relu_backward", g, OpParams::default(), |b| {
                        vec![(1, &y.bufs[b]), (2, &g.bufs[b])]
                    })?;
                }
                Layer::Conv { flipped, wino, .. } => {
                    prog.tag(Some(format!("conv bwd {c}->{in_c} {h}x{w} (layer {i})")));
                    let u = wino.as_ref().map(|u| &u.backward);
                    conv(gpu, prog, (flipped, u), None, (g, dx), (c, in_c), (h, w), false)?;
                    prog.tag(None);
                }
                Layer::Pool(kind) => {
                    record_pool_backward(gpu, prog, (*kind, Some(fwd.input(i))), g, dx, (in_h, in_w))?
                }
            }
        }
        let rgb = view(rgb_at, (3, fwd.hw.0 * fwd.hw.1))?;
        record_planes(gpu, prog, &grads[0], &rgb, self.preprocess_planes(true))?;
        Ok(rgb)
    }

    /// Where the backward pass from layer `last` keeps each gradient: index `t` of the first list is
    /// the gradient with respect to the network input (`t` = 0) or to layer `t − 1`'s output, the
    /// second where the gradient mapped back to RGB goes. A ReLU's backward works in place; a
    /// convolution writes its input's gradient into the buffer of its own output (or of the ReLU
    /// fused with it), which nothing reads once the backward has passed it, where that fits; the
    /// other gradients go into pool 0, or pool 1 when pool 0 holds the gradient being read. In VGG
    /// every convolution's gradient fits its output, so one pool of the largest pooling input
    /// serves, where the backward used to alternate between two pools of the largest layer.
    fn gradient_places(&self, fwd: &Forward, last: usize) -> Result<(Vec<Place>, Place)> {
        let other = |p: Place| if p == Place::Pool(0) { Place::Pool(1) } else { Place::Pool(0) };
        let mut at = vec![Place::Pool(0); last + 2];
        for i in (0..=last).rev() {
            let g = at[i + 1];
            let (rows, cols) = fwd.gradient_shape(i);
            at[i] = match &self.layers[i] {
                Layer::Relu => g,
                Layer::Conv { .. } => {
                    let own = if fwd.out[i].is_some() { i } else { i + 1 };
                    match fwd.out(own).reuse(&self.gpu, rows, cols)? {
                        Some(_) if g != Place::Out(own) => Place::Out(own),
                        _ => other(g),
                    }
                }
                Layer::Pool(_) => other(g),
            };
        }
        let rgb = other(at[0]);
        Ok((at, rgb))
    }

    /// Outputs of `rgb` (planar RGB 0..1, `h`×`w`) at `layers`, each with its (channels, height, width).
    pub fn outputs_at(&self, rgb: &[f32], h: usize, w: usize, layers: &[usize]) -> Result<Vec<LayerOutput>> {
        let Some(&last) = layers.iter().max() else { return Ok(Vec::new()) };
        self.check_layer(last)?;
        if rgb.len() != 3 * h * w {
            return Err(GpuError::Shape {
                op: "outputs_at",
                reason: format!("{} values for 3×{h}×{w}", rgb.len()),
            });
        }
        let mut wanted = vec![false; last + 1];
        layers.iter().for_each(|&l| wanted[l] = true);
        let mut prog = Program::default();
        let fwd = self.record_forward(&mut prog, h, w, last, &wanted)?;
        fwd.rgb.write(&self.gpu, rgb);
        let mut enc = self.gpu.encoder();
        prog.record(&mut enc);
        let reads: Vec<(&wgpu::Buffer, usize)> = layers.iter().flat_map(|&l| fwd.out(l).reads()).collect();
        let mut data = self.gpu.finish_and_read(enc, &reads)?.into_iter();
        Ok(layers
            .iter()
            .map(|&l| (data.by_ref().take(fwd.out(l).bufs.len()).collect::<Vec<_>>().concat(), fwd.shape[l]))
            .collect())
    }
}

/// Records one convolution `y = W ⊛ x` of `c → m` channels: in the Winograd form where the layer has
/// its weights `u`, `x` and `y` are one buffer each and a band fits, else as implicit-im2col products
/// with the `direct` weights (`record_conv`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv(
    gpu: &Gpu,
    prog: &mut Program,
    (direct, u): (&Blocks, Option<&wgpu::Buffer>),
    bias: Option<&wgpu::Buffer>,
    (x, y): (&Blocks, &Blocks),
    (c, m): (usize, usize),
    hw: (usize, usize),
    relu: bool,
) -> Result<()> {
    if let (Some(u), [xb], [yb]) = (u, &x.bufs[..], &y.bufs[..])
        && winograd::record(gpu, prog, u, bias, xb, yb, (c, m), hw, relu)?
    {
        return Ok(());
    }
    record_conv(gpu, prog, direct, bias, x, y, hw, relu)
}
