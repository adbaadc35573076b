//! The network on the device: convolution weights (and their flipped transposes for the backward)
//! uploaded once, and the recording of the forward pass (keeping every output the backward needs)
//! and of the backward pass from a layer down to the RGB pixels.

use std::sync::Arc;

use crate::device::Gpu;
use crate::error::{GpuError, Result};
use crate::kernels::{self, Gemm, GemmDims, OpParams, Program, grid};
use crate::ops::{flip_weights, gram_slices, record_gram};

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
    Conv { c_in: usize, c_out: usize, weight: wgpu::Buffer, bias: wgpu::Buffer, flipped: wgpu::Buffer },
    Relu,
    MaxPool,
    AvgPool,
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
    /// Planar RGB 0..1 input (3·h·w).
    pub(crate) rgb: wgpu::Buffer,
    /// The preprocessed network input.
    x0: wgpu::Buffer,
    /// Output of each layer up to `last`; `None` for a convolution fused with its ReLU.
    out: Vec<Option<wgpu::Buffer>>,
    /// (channels, height, width) of each layer's output.
    pub(crate) shape: Vec<(usize, usize, usize)>,
    pub(crate) hw: (usize, usize),
}

impl Forward {
    /// The kept output of layer `i`.
    pub(crate) fn out(&self, i: usize) -> &wgpu::Buffer {
        self.out[i].as_ref().expect("output of a wanted layer is kept")
    }
    fn input(&self, i: usize) -> &wgpu::Buffer {
        if i == 0 { &self.x0 } else { self.out(i - 1) }
    }
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
                    Layer::Conv {
                        c_in,
                        c_out,
                        flipped: gpu.upload("flipped weights", &flip_weights(&weight, c_in, c_out))?,
                        weight: gpu.upload("weights", &weight)?,
                        bias: gpu.upload("bias", &bias)?,
                    }
                }
                LayerSpec::Relu => Layer::Relu,
                LayerSpec::MaxPool => Layer::MaxPool,
                LayerSpec::AvgPool => Layer::AvgPool,
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

    fn preprocess_params(&self, n: usize) -> OpParams {
        let p = self.preprocess;
        let u = [p.planes[0] as u32, p.planes[1] as u32, p.planes[2] as u32, 0];
        let f = [p.scale[0], p.scale[1], p.scale[2], p.offset[0], p.offset[1], p.offset[2], 0.0, 0.0];
        OpParams { n, u, f, ..Default::default() }
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
        let rgb = gpu.storage(&format!("input image (3×{h}×{w})"), 3 * h * w)?;
        let x0 = gpu.storage("network input", 3 * h * w)?;
        prog.op(
            gpu,
            "preprocess_forward",
            self.preprocess_params(h * w),
            &[(1, &rgb), (2, &x0)],
            grid(3 * h * w),
        )?;
        let mut fwd = Forward { rgb, x0, out: Vec::new(), shape: Vec::new(), hw: (h, w) };
        let (mut c, mut h, mut w) = (3, h, w);
        let mut i = 0;
        while i <= last {
            let alloc = |what: &str, c: usize, h: usize, w: usize| {
                gpu.storage(&format!("{what} output of layer {i} ({c}×{h}×{w})"), c * h * w)
            };
            match &self.layers[i] {
                Layer::Conv { c_in, c_out, weight, bias, .. } => {
                    if *c_in != c {
                        return Err(GpuError::Shape {
                            op: "GpuNet forward",
                            reason: format!("layer {i} expects {c_in} channels, gets {c}"),
                        });
                    }
                    let fuse = i < last && !wanted[i] && matches!(self.layers[i + 1], Layer::Relu);
                    let y = alloc("convolution", *c_out, h, w)?;
                    let flags = kernels::BIAS | if fuse { kernels::RELU } else { 0 };
                    let d = GemmDims { m: *c_out, n: h * w, k: c * 9, h, w, flags, alpha: 1.0, slices: 1 };
                    prog.tag(Some(format!("conv fwd {c_in}->{c_out} {h}x{w} (layer {i})")));
                    prog.gemm(gpu, Gemm::Conv, weight, fwd.input(i), Some(bias), &y, d)?;
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
                    let n = c * h * w;
                    let p = OpParams { n, ..Default::default() };
                    prog.op(gpu, "relu_forward", p, &[(1, fwd.input(i)), (2, &y)], grid(n))?;
                    fwd.shape.push((c, h, w));
                    fwd.out.push(Some(y));
                }
                Layer::MaxPool | Layer::AvgPool => {
                    let entry = if matches!(self.layers[i], Layer::MaxPool) {
                        "max_pool_forward"
                    } else {
                        "avg_pool_forward"
                    };
                    let (ho, wo) = (h / 2, w / 2);
                    let y = alloc("pooling", c, ho, wo)?;
                    let n = c * ho * wo;
                    let p = OpParams { n, c, h, w, ..Default::default() };
                    prog.op(gpu, entry, p, &[(1, fwd.input(i)), (2, &y)], grid(n))?;
                    (h, w) = (ho, wo);
                    fwd.shape.push((c, h, w));
                    fwd.out.push(Some(y));
                }
            }
            i += 1;
        }
        Ok(fwd)
    }

    /// Records the backward pass from layer `last` to the RGB input. `add_loss(prog, i, grad)` records
    /// the loss gradient of layer `i`'s output into `grad` (for every `i` from `last` down to 0).
    /// Returns the buffer holding d(loss)/d(network input) mapped back to planar RGB (3·h·w).
    pub(crate) fn record_backward(
        &self,
        prog: &mut Program,
        fwd: &Forward,
        last: usize,
        mut add_loss: impl FnMut(&mut Program, usize, &wgpu::Buffer) -> Result<()>,
    ) -> Result<wgpu::Buffer> {
        let gpu = &*self.gpu;
        let (h0, w0) = fwd.hw;
        let largest =
            fwd.shape[..=last].iter().map(|&(c, h, w)| c * h * w).max().unwrap_or(0).max(3 * h0 * w0);
        let mut cur = gpu.storage("gradient", largest)?;
        let mut other = gpu.storage("gradient", largest)?;
        prog.clear(&cur);
        for i in (0..=last).rev() {
            add_loss(prog, i, &cur)?;
            let (in_c, in_h, in_w) = if i == 0 { (3, h0, w0) } else { fwd.shape[i - 1] };
            match &self.layers[i] {
                Layer::Relu => {
                    let n = in_c * in_h * in_w;
                    let p = OpParams { n, ..Default::default() };
                    prog.op(gpu, "relu_backward", p, &[(1, fwd.out(i)), (2, &cur)], grid(n))?;
                }
                Layer::Conv { c_in, c_out, flipped, .. } => {
                    let (_, h, w) = fwd.shape[i];
                    let d =
                        GemmDims { m: *c_in, n: h * w, k: c_out * 9, h, w, flags: 0, alpha: 1.0, slices: 1 };
                    prog.tag(Some(format!("conv bwd {c_out}->{c_in} {h}x{w} (layer {i})")));
                    prog.gemm(gpu, Gemm::Conv, flipped, &cur, None, &other, d)?;
                    prog.tag(None);
                    std::mem::swap(&mut cur, &mut other);
                }
                Layer::MaxPool => {
                    let n = in_c * in_h * in_w;
                    let p = OpParams { n, c: in_c, h: in_h, w: in_w, ..Default::default() };
                    prog.op(
                        gpu,
                        "max_pool_backward",
                        p,
                        &[(1, fwd.input(i)), (2, &other), (3, &cur)],
                        grid(n),
                    )?;
                    std::mem::swap(&mut cur, &mut other);
                }
                Layer::AvgPool => {
                    let n = in_c * in_h * in_w;
                    let p = OpParams { n, c: in_c, h: in_h, w: in_w, ..Default::default() };
                    prog.op(gpu, "avg_pool_backward", p, &[(1, &cur), (2, &other)], grid(n))?;
                    std::mem::swap(&mut cur, &mut other);
                }
            }
        }
        let n = h0 * w0;
        prog.op(
            gpu,
            "preprocess_backward",
            self.preprocess_params(n),
            &[(1, &cur), (2, &other)],
            grid(3 * n),
        )?;
        Ok(other)
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
        self.gpu.queue.write_buffer(&fwd.rgb, 0, bytemuck::cast_slice(rgb));
        let mut enc = self.gpu.encoder();
        prog.record(&mut enc);
        let reads: Vec<(&wgpu::Buffer, usize)> = layers
            .iter()
            .map(|&l| {
                let (c, h, w) = fwd.shape[l];
                (fwd.out(l), c * h * w)
            })
            .collect();
        let data = self.gpu.finish_and_read(enc, &reads)?;
        Ok(data.into_iter().zip(layers).map(|(d, &l)| (d, fwd.shape[l])).collect())
    }

    /// Normalised Gram matrices `F·Fᵀ/(C·H·W)` of `rgb` at `layers`, computed on the device.
    pub fn grams_at(&self, rgb: &[f32], h: usize, w: usize, layers: &[usize]) -> Result<Vec<Vec<f32>>> {
        let Some(&last) = layers.iter().max() else { return Ok(Vec::new()) };
        self.check_layer(last)?;
        if rgb.len() != 3 * h * w {
            return Err(GpuError::Shape {
                op: "grams_at",
                reason: format!("{} values for 3×{h}×{w}", rgb.len()),
            });
        }
        let mut wanted = vec![false; last + 1];
        layers.iter().for_each(|&l| wanted[l] = true);
        let mut prog = Program::default();
        let fwd = self.record_forward(&mut prog, h, w, last, &wanted)?;
        let mut grams = Vec::new();
        for &l in layers {
            let (c, lh, lw) = fwd.shape[l];
            let g = self.gpu.storage("Gram matrix", c * c)?;
            let n = lh * lw;
            record_gram(&self.gpu, &mut prog, fwd.out(l), c, n, 1.0 / (c * n) as f32, gram_slices(c, n), &g)?;
            grams.push((g, c * c));
        }
        self.gpu.queue.write_buffer(&fwd.rgb, 0, bytemuck::cast_slice(rgb));
        let mut enc = self.gpu.encoder();
        prog.record(&mut enc);
        let reads: Vec<(&wgpu::Buffer, usize)> = grams.iter().map(|(b, n)| (b, *n)).collect();
        self.gpu.finish_and_read(enc, &reads)
    }
}
