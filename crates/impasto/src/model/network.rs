//! The VGG feature extractor: loading, the forward pass that keeps what the backward needs, and the
//! backward pass to the input pixels (never to the weights).

use std::path::Path;

use impasto_kernels as k;
use impasto_weights::Preprocess;

use super::arch::{Arch, Layer, LayerKind, Pooling};
use super::buffers::BufferPool;
use super::tensors::ConvWeights;
use super::weights::{parse_conv_weights, read_conv_weights, read_embedded};
use crate::error::Result;

/// A loaded VGG network, cut after the deepest layer it was loaded for.
#[derive(Debug)]
pub struct Vgg {
    arch: Arch,
    pooling: Pooling,
    preprocess: Preprocess,
    layers: Vec<Layer>,
    convs: Vec<k::Conv3x3>,
    /// Every convolution on im2col (see [`Vgg::exact_convolutions`]).
    exact: bool,
    /// The network's copy on the GPU of its last GPU run, reused by the next runs on that adapter.
    pub(crate) gpu: crate::device::GpuCache,
}

/// The outputs of a forward pass, by layer index; `None` where an output was not kept.
///
/// Kept: the outputs the caller flagged as wanted, and what the backward needs. The backward needs
/// every ReLU output as a mask, except for a ReLU followed by a max pool: that pool records its
/// argmax in one byte per output (`pool_idx`) with the ReLU mask folded in, so the ReLU output
/// itself (the largest tensor of each block) is not kept unless wanted.
#[derive(Debug)]
pub(crate) struct Activations {
    /// Output of each layer (fused conv+ReLU stores its output at the ReLU's index only).
    pub(crate) out: Vec<Option<Vec<f32>>>,
    /// For a max pool whose input ReLU was folded: the argmax of each window (see
    /// [`k::max_pool2x2_forward_argmax`]).
    pool_idx: Vec<Option<Vec<u8>>>,
    /// (channels, height, width) of each layer's output.
    pub(crate) shape: Vec<(usize, usize, usize)>,
    /// (height, width) of the input.
    input_hw: (usize, usize),
}

impl Activations {
    /// The kept output of layer `i`. Panics if it was not kept (a planning bug).
    pub(crate) fn get(&self, i: usize) -> &[f32] {
        self.out[i].as_deref().expect("activation requested but not kept")
    }

    /// Bytes held by the kept tensors (for memory accounting).
    pub(crate) fn bytes(&self) -> usize {
        let f = self.out.iter().flatten().map(|v| v.len() * 4).sum::<usize>();
        f + self.pool_idx.iter().flatten().map(Vec::len).sum::<usize>()
    }
}

/// Where the current layer's input lives during the forward pass.
enum Cur {
    /// A buffer owned by the loop (not kept).
    Owned(Vec<f32>),
    /// The kept output of a layer.
    Kept(usize),
}

impl Cur {
    fn view<'a>(&'a self, acts: &'a Activations) -> &'a [f32] {
        match self {
            Cur::Owned(v) => v,
            Cur::Kept(i) => acts.get(*i),
        }
    }

    /// Hands an owned (scratch) buffer back to the pool; a kept one stays in the activations.
    fn release(self, pool: &BufferPool) {
        if let Cur::Owned(v) = self {
            pool.give_scratch(v);
        }
    }
}

impl Activations {
    /// Hands every buffer back to `pool` for the next evaluation.
    pub(crate) fn recycle(self, pool: &BufferPool) {
        self.out.into_iter().flatten().for_each(|v| pool.give(v));
        self.pool_idx.into_iter().flatten().for_each(|v| pool.give_bytes(v));
    }
}

impl Vgg {
    /// Loads `arch` from a safetensors file, keeping the layers up to and including `deepest`
    /// (a layer name such as `relu5_1`). `preprocess` overrides what the file's metadata declares;
    /// with neither, Caffe preprocessing is assumed (the original VGG weights).
    pub fn load(
        path: &Path,
        arch: Arch,
        pooling: Pooling,
        preprocess: Option<Preprocess>,
        deepest: &str,
    ) -> Result<Vgg> {
        let (layers, n_convs) = Self::layers_to(arch, deepest)?;
        let (weights, declared) = read_conv_weights(path, arch, n_convs, deepest)?;
        Ok(Self::from_parts(arch, pooling, preprocess.or(declared).unwrap_or_default(), layers, weights))
    }

    /// Like [`Vgg::load`], but from the bytes of a safetensors file held in memory; errors name the
    /// file `<memory>`. Every key, dtype and shape is checked against `arch` as `load` checks them,
    /// and any bytes give an error rather than a panic.
    ///
    /// ```
    /// use impasto::{Arch, Pooling, Vgg};
    /// let err = Vgg::from_safetensors_bytes(b"not safetensors", Arch::Vgg16, Pooling::Max, None, "relu1_1");
    /// assert!(err.unwrap_err().to_string().contains("not a valid safetensors file"));
    /// ```
    pub fn from_safetensors_bytes(
        bytes: &[u8],
        arch: Arch,
        pooling: Pooling,
        preprocess: Option<Preprocess>,
        deepest: &str,
    ) -> Result<Vgg> {
        let (layers, n_convs) = Self::layers_to(arch, deepest)?;
        let (weights, declared) = parse_conv_weights(bytes, Path::new("<memory>"), arch, n_convs, deepest)?;
        Ok(Self::from_parts(arch, pooling, preprocess.or(declared).unwrap_or_default(), layers, weights))
    }

    /// The layers of `arch` up to and including `deepest`, and how many convolutions they hold.
    fn layers_to(arch: Arch, deepest: &str) -> Result<(Vec<Layer>, usize)> {
        let last = arch.layer_index(deepest)?;
        let layers: Vec<Layer> = arch.layers().into_iter().take(last + 1).collect();
        let n_convs = layers.iter().filter(|l| matches!(l.kind, LayerKind::Conv { .. })).count();
        Ok((layers, n_convs))
    }

    /// Loads the built-in compact VGG-16 (see [`crate::embedded_model`]) up to and including layer
    /// `deepest`, dequantised to f32. It stops at `relu4_2`: a deeper layer is
    /// [`crate::Error::WeightsTooShallow`]; a library built without the `embedded-model` feature gives
    /// [`crate::Error::NoEmbeddedModel`].
    pub fn embedded(pooling: Pooling, deepest: &str) -> Result<Vgg> {
        let arch = Arch::Vgg16;
        let last = arch.layer_index(deepest)?;
        let (weights, declared) = read_embedded(deepest)?;
        let layers = arch.layers().into_iter().take(last + 1).collect();
        Ok(Self::from_parts(arch, pooling, declared.unwrap_or_default(), layers, weights))
    }

    /// Builds a network from in-memory OIHW weights for the first `weights.len()` convolutions of `arch`
    /// (each `(weight, bias)`; shapes must match the architecture). Meant for tests and custom sources.
    pub fn from_tensors(
        arch: Arch,
        pooling: Pooling,
        preprocess: Preprocess,
        weights: Vec<(Vec<f32>, Vec<f32>)>,
    ) -> Result<Vgg> {
        let all = arch.layers();
        let mut convs = Vec::new();
        let mut end = 0;
        for (i, l) in all.iter().enumerate() {
            if let LayerKind::Conv { conv, c_in, c_out, .. } = l.kind {
                if conv >= weights.len() {
                    break;
                }
                let (w, b) = &weights[conv];
                if w.len() != c_out * c_in * 9 || b.len() != c_out {
                    return Err(crate::Error::WeightsShape {
                        path: "<memory>".into(),
                        key: format!("conv {conv}"),
                        layer: l.name.clone(),
                        expected: vec![c_out, c_in, 3, 3],
                        actual: vec![w.len() / 9, 1, 3, 3],
                        dtype: "F32".into(),
                        expected_dtype: "F32".into(),
                    });
                }
                convs.push(ConvWeights { c_in, c_out, weight: w.clone(), bias: b.clone() });
                end = i + 2; // conv + its ReLU
            } else if !convs.is_empty() && i == end && matches!(l.kind, LayerKind::Pool) {
                end = i + 1;
            }
        }
        let layers = all.into_iter().take(end).collect();
        Ok(Self::from_parts(arch, pooling, preprocess, layers, convs))
    }

    fn from_parts(
        arch: Arch,
        pooling: Pooling,
        preprocess: Preprocess,
        layers: Vec<Layer>,
        weights: Vec<ConvWeights>,
    ) -> Vgg {
        let convs = weights.into_iter().map(|w| k::Conv3x3::new(w.c_in, w.c_out, w.weight, w.bias)).collect();
        Vgg { arch, pooling, preprocess, layers, convs, exact: false, gpu: Default::default() }
    }

    /// With `on`, every CPU convolution (forward and backward) runs on im2col + GEMM instead of
    /// Winograd where Winograd would be faster: slower, with about a tenth of the rounding error
    /// (relative ~1e-7 instead of ~1e-6). For checks against a reference whose gradients go through
    /// max pools, where a window whose two largest values are closer than Winograd's rounding may
    /// send its gradient to the other one. The GPU path is unaffected (it has no Winograd).
    pub fn exact_convolutions(mut self, on: bool) -> Vgg {
        self.exact = on;
        self
    }

    /// The GPU adapter (`gpu:N`) holding this network's weights from an earlier run, which the next
    /// runs on that adapter reuse (the opened device, its compiled kernels, the weights) instead of
    /// opening it again; `None` before any GPU run or after the device was lost.
    pub fn gpu_resident(&self) -> Option<usize> {
        self.gpu.adapter()
    }

    /// The architecture.
    pub fn arch(&self) -> Arch {
        self.arch
    }
    /// The pooling used.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }
    /// The input convention used.
    pub fn preprocess(&self) -> Preprocess {
        self.preprocess
    }
    /// The layers this network has (up to the deepest one loaded).
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// The convolution weights (OIHW) and biases of the layers, in order, `None` for a ReLU or a pool:
    /// what another device needs to rebuild this network.
    #[cfg(feature = "gpu")]
    pub(crate) fn conv_weights(&self) -> Vec<Option<(Vec<f32>, Vec<f32>)>> {
        self.layers
            .iter()
            .map(|l| match l.kind {
                LayerKind::Conv { conv, .. } => Some(self.convs[conv].weights()),
                _ => None,
            })
            .collect()
    }

    /// Index of a named layer, or an error naming the model and the valid layers.
    pub fn layer_index(&self, name: &str) -> Result<usize> {
        let i = self.arch.layer_index(name)?;
        if i >= self.layers.len() {
            return Err(crate::Error::UnknownLayer {
                name: name.into(),
                model: format!(
                    "{} (loaded only up to {})",
                    self.arch,
                    self.layers.last().map_or("", |l| l.name.as_str())
                ),
                known: self.layers.iter().map(|l| l.name.as_str()).collect::<Vec<_>>().join(", "),
            });
        }
        Ok(i)
    }

    /// How many 2×2 poolings come before layer `i` (the input must be at least `2^pools` on each side).
    pub fn pools_before(&self, i: usize) -> u32 {
        self.layers[..i].iter().filter(|l| l.kind == LayerKind::Pool).count() as u32
    }

    /// Outputs of the named layers for a planar RGB 0..1 image of `width`×`height`, each with its
    /// (channels, height, width).
    pub fn features(
        &self,
        rgb: &[f32],
        width: usize,
        height: usize,
        layers: &[&str],
    ) -> Result<Vec<(Vec<f32>, [usize; 3])>> {
        let idx: Vec<usize> = layers.iter().map(|n| self.layer_index(n)).collect::<Result<_>>()?;
        let Some(&last) = idx.iter().max() else { return Ok(Vec::new()) };
        let mut wanted = vec![false; last + 1];
        for &i in &idx {
            wanted[i] = true;
        }
        let acts = self.forward(rgb, height, width, last, &wanted, &BufferPool::default());
        Ok(idx.iter().map(|&i| (acts.get(i).to_vec(), acts.shape[i].into())).collect())
    }

    /// Forward pass of planar RGB 0..1 (`3·h·w`) through layers `0..=last`. Keeps what the backward
    /// needs (see [`Activations`]) and the outputs of the layers flagged in `wanted`. Buffers come from
    /// `pool` (see [`Activations::recycle`]).
    pub(crate) fn forward(
        &self,
        rgb: &[f32],
        h: usize,
        w: usize,
        last: usize,
        wanted: &[bool],
        pool: &BufferPool,
    ) -> Activations {
        pool.for_input(h, w);
        let mut x = pool.scratch(rgb.len());
        self.preprocess.forward(rgb, &mut x);
        let mut acts = Activations {
            out: vec![None; last + 1],
            pool_idx: vec![None; last + 1],
            shape: vec![(0, 0, 0); last + 1],
            input_hw: (h, w),
        };
        let (mut c, mut h, mut w) = (3, h, w);
        let mut cur = Cur::Owned(x); // the current layer's input
        // Whether the output of layer `j` is kept (the backward or the caller needs it). Kept outputs
        // live in exact-size pool buffers, the others in the two scratch buffers.
        let kept = |j: usize| wanted[j] || self.needs_relu_output(j, last, wanted);
        let alloc = |j: usize, n: usize| if kept(j) { pool.floats(n) } else { pool.scratch(n) };
        let settle = |acts: &mut Activations, j: usize, y: Vec<f32>| -> Cur {
            if kept(j) {
                acts.out[j] = Some(y);
                Cur::Kept(j)
            } else {
                Cur::Owned(y)
            }
        };
        let mut i = 0;
        while i <= last {
            match self.layers[i].kind {
                LayerKind::Conv { conv, c_out, .. } => {
                    let fuse = i < last && !wanted[i];
                    // The fused conv+ReLU output is layer i + 1's.
                    let out = if fuse { i + 1 } else { i };
                    let mut y = alloc(out, c_out * h * w);
                    let algo = self.forward_algo(i);
                    self.convs[conv].forward_with(algo, cur.view(&acts), h, w, fuse, &mut y);
                    cur.release(pool);
                    c = c_out;
                    acts.shape[i] = (c, h, w);
                    acts.shape[out] = (c, h, w);
                    cur = settle(&mut acts, out, y);
                    i = out;
                }
                LayerKind::Relu => {
                    let y = match cur {
                        Cur::Owned(mut y) if !kept(i) => {
                            k::relu_inplace(&mut y);
                            y
                        }
                        _ => {
                            let x = cur.view(&acts);
                            let mut y = alloc(i, x.len());
                            y.copy_from_slice(x);
                            k::relu_inplace(&mut y);
                            cur.release(pool);
                            y
                        }
                    };
                    acts.shape[i] = (c, h, w);
                    cur = settle(&mut acts, i, y);
                }
                LayerKind::Pool => {
                    let (ho, wo) = (h / 2, w / 2);
                    let mut y = alloc(i, c * ho * wo);
                    let x = cur.view(&acts);
                    match self.pooling {
                        Pooling::Max if self.folds_relu(i, wanted) => {
                            let mut idx = pool.bytes(c * ho * wo);
                            k::max_pool2x2_forward_argmax(x, c, h, w, &mut y, &mut idx);
                            acts.pool_idx[i] = Some(idx);
                        }
                        Pooling::Max => k::max_pool2x2_forward(x, c, h, w, &mut y),
                        Pooling::Avg => k::avg_pool2x2_forward(x, c, h, w, &mut y),
                        Pooling::L2 => k::l2_pool2x2_forward(x, c, h, w, &mut y),
                    }
                    (h, w) = (ho, wo);
                    acts.shape[i] = (c, h, w);
                    cur.release(pool);
                    cur = settle(&mut acts, i, y);
                }
            }
            i += 1;
        }
        cur.release(pool);
        acts
    }

    /// Memory a forward and backward pass of an `h`×`w` image through layers `0..=last` holds at its
    /// peak, as [`forward`](Self::forward) allocates it: (bytes of the kept outputs and argmax indices,
    /// floats of the largest layer output, which sizes the two scratch buffers).
    pub(crate) fn forward_bytes(&self, h: usize, w: usize, last: usize, wanted: &[bool]) -> (usize, usize) {
        let kept = |j: usize| wanted[j] || self.needs_relu_output(j, last, wanted);
        let (mut c, mut h, mut w) = (3, h, w);
        let (mut bytes, mut largest) = (0, 3 * h * w);
        let mut i = 0;
        while i <= last {
            match self.layers[i].kind {
                LayerKind::Conv { c_out, .. } => {
                    let out = if i < last && !wanted[i] { i + 1 } else { i };
                    c = c_out;
                    largest = largest.max(c * h * w);
                    if kept(out) {
                        bytes += 4 * c * h * w;
                    }
                    i = out;
                }
                LayerKind::Relu => {
                    if kept(i) {
                        bytes += 4 * c * h * w;
                    }
                }
                LayerKind::Pool => {
                    (h, w) = (h / 2, w / 2);
                    if kept(i) {
                        bytes += 4 * c * h * w;
                    }
                    if self.pooling == Pooling::Max && self.folds_relu(i, wanted) {
                        bytes += c * h * w;
                    }
                }
            }
            i += 1;
        }
        (bytes, largest)
    }

    /// The algorithm of the forward convolution at layer `i`: Winograd where it wins, except for the
    /// convolution feeding the first max pool. Flat image regions (solid backgrounds, clipped
    /// highlights) give exactly tied pool windows there; im2col computes identical neighbourhoods
    /// bitwise identically, so those ties resolve to the first maximum as in PyTorch, whereas
    /// Winograd's position-dependent rounding would break them at random (a valid but different
    /// subgradient). Deeper pools see no exact ties in practice.
    fn forward_algo(&self, i: usize) -> k::ConvAlgo {
        let first_pool = self.layers.iter().position(|l| l.kind == LayerKind::Pool);
        if self.exact || self.pooling == Pooling::Max && first_pool == Some(i + 2) {
            k::ConvAlgo::Im2col
        } else {
            k::ConvAlgo::Auto
        }
    }

    /// Whether the max pool at `i` folds the ReLU before it into its argmax: that ReLU's output is
    /// then neither needed by the backward nor given a loss gradient of its own.
    fn folds_relu(&self, i: usize, wanted: &[bool]) -> bool {
        self.pooling == Pooling::Max && i > 0 && self.layers[i - 1].kind == LayerKind::Relu && !wanted[i - 1]
    }

    /// Whether the backward needs the f32 output of layer `j` (a ReLU mask, or a max pool's input).
    fn needs_relu_output(&self, j: usize, last: usize, wanted: &[bool]) -> bool {
        if self.layers[j].kind != LayerKind::Relu {
            return false;
        }
        let next_is_pool = j < last && self.layers[j + 1].kind == LayerKind::Pool;
        !(next_is_pool && self.folds_relu(j + 1, wanted))
    }

    /// Backward pass from layer `last` to the RGB 0..1 input. `add_loss_grad(i, grad)` is called for every
    /// layer `i` from `last` down to 0 with the gradient buffer of that layer's output, so the loss can add
    /// its gradient there. Returns d(loss)/d(rgb), planar, `3·h·w`. Buffers come from `pool`.
    pub(crate) fn backward(
        &self,
        acts: &Activations,
        last: usize,
        pool: &BufferPool,
        mut add_loss_grad: impl FnMut(usize, &mut [f32]),
    ) -> Vec<f32> {
        let (h0, w0) = acts.input_hw;
        let (c, h, w) = acts.shape[last];
        let mut grad = pool.scratch(c * h * w);
        grad.fill(0.0);
        let mut i = last as isize;
        while i >= 0 {
            let iu = i as usize;
            add_loss_grad(iu, &mut grad);
            let (in_c, in_h, in_w) = if iu == 0 { (3, h0, w0) } else { acts.shape[iu - 1] };
            let mut step = 1;
            match self.layers[iu].kind {
                LayerKind::Relu => k::relu_backward_inplace(&mut grad, acts.get(iu)),
                LayerKind::Conv { conv, .. } => {
                    let (_, h, w) = acts.shape[iu];
                    let mut spare = pool.scratch(in_c * h * w);
                    let algo = if self.exact { k::ConvAlgo::Im2col } else { k::ConvAlgo::Auto };
                    self.convs[conv].backward_input_with(algo, &grad, h, w, &mut spare);
                    pool.give_scratch(std::mem::replace(&mut grad, spare));
                }
                LayerKind::Pool => {
                    let mut spare = pool.scratch(in_c * in_h * in_w);
                    match (self.pooling, &acts.pool_idx[iu]) {
                        (Pooling::Max, Some(idx)) => {
                            // The ReLU before the pool is folded in: skip it (it has no loss term).
                            k::max_pool2x2_backward_argmax(idx, in_c, in_h, in_w, &grad, &mut spare);
                            step = 2;
                        }
                        (Pooling::Max, None) => {
                            k::max_pool2x2_backward(acts.get(iu - 1), in_c, in_h, in_w, &grad, &mut spare)
                        }
                        (Pooling::Avg, _) => k::avg_pool2x2_backward(in_c, in_h, in_w, &grad, &mut spare),
                        (Pooling::L2, _) => {
                            k::l2_pool2x2_backward(acts.get(iu - 1), in_c, in_h, in_w, &grad, &mut spare)
                        }
                    }
                    pool.give_scratch(std::mem::replace(&mut grad, spare));
                }
            }
            i -= step;
        }
        let mut grad_rgb = vec![0.0; grad.len()];
        self.preprocess.backward(&grad, &mut grad_rgb);
        pool.give_scratch(grad);
        grad_rgb
    }
}
