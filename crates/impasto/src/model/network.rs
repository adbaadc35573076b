//! The VGG feature extractor: loading, the forward pass that keeps what the backward needs, and the
//! backward pass to the input pixels (never to the weights).

use std::path::Path;

use impasto_kernels as k;

use super::arch::{Arch, Layer, LayerKind, Pooling};
use super::preprocess::Preprocess;
use super::weights::{ConvWeights, read_conv_weights};
use crate::error::Result;

/// A loaded VGG network, cut after the deepest layer it was loaded for.
#[derive(Debug)]
pub struct Vgg {
    arch: Arch,
    pooling: Pooling,
    preprocess: Preprocess,
    layers: Vec<Layer>,
    convs: Vec<k::Conv3x3>,
}

/// The outputs of a forward pass, by layer index; `None` where an output was not kept.
#[derive(Debug)]
pub(crate) struct Activations {
    /// Output of each layer (fused conv+ReLU stores its output at the ReLU's index only).
    pub(crate) out: Vec<Option<Vec<f32>>>,
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
        let last = arch.layer_index(deepest)?;
        let layers: Vec<Layer> = arch.layers().into_iter().take(last + 1).collect();
        let n_convs = layers.iter().filter(|l| matches!(l.kind, LayerKind::Conv { .. })).count();
        let (weights, declared) = read_conv_weights(path, arch, n_convs)?;
        Ok(Self::from_parts(arch, pooling, preprocess.or(declared).unwrap_or_default(), layers, weights))
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
        Vgg { arch, pooling, preprocess, layers, convs }
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
        let acts = self.forward(rgb, height, width, last, &wanted);
        Ok(idx.iter().map(|&i| (acts.get(i).to_vec(), acts.shape[i].into())).collect())
    }

    /// Forward pass of planar RGB 0..1 (`3·h·w`) through layers `0..=last`. Keeps every ReLU output (the
    /// backward needs them) and the outputs of the layers flagged in `wanted`.
    pub(crate) fn forward(
        &self,
        rgb: &[f32],
        h: usize,
        w: usize,
        last: usize,
        wanted: &[bool],
    ) -> Activations {
        let mut x = vec![0.0; rgb.len()];
        self.preprocess.forward(rgb, &mut x);
        let mut acts =
            Activations { out: vec![None; last + 1], shape: vec![(0, 0, 0); last + 1], input_hw: (h, w) };
        let (mut c, mut h, mut w) = (3, h, w);
        let mut cur = x; // the current layer's input
        let mut i = 0;
        while i <= last {
            match self.layers[i].kind {
                LayerKind::Conv { conv, c_out, .. } => {
                    let fuse = i < last && !wanted[i];
                    let mut y = vec![0.0; c_out * h * w];
                    self.convs[conv].forward(&cur, h, w, fuse, &mut y);
                    c = c_out;
                    acts.shape[i] = (c, h, w);
                    if fuse {
                        acts.shape[i + 1] = (c, h, w);
                        acts.out[i + 1] = Some(y.clone());
                        cur = y;
                        i += 2;
                        continue;
                    }
                    if wanted[i] {
                        acts.out[i] = Some(y.clone());
                    }
                    cur = y;
                }
                LayerKind::Relu => {
                    k::relu_inplace(&mut cur);
                    acts.shape[i] = (c, h, w);
                    acts.out[i] = Some(cur.clone());
                }
                LayerKind::Pool => {
                    let (ho, wo) = (h / 2, w / 2);
                    let mut y = vec![0.0; c * ho * wo];
                    match self.pooling {
                        Pooling::Max => k::max_pool2x2_forward(&cur, c, h, w, &mut y),
                        Pooling::Avg => k::avg_pool2x2_forward(&cur, c, h, w, &mut y),
                    }
                    (h, w) = (ho, wo);
                    acts.shape[i] = (c, h, w);
                    if wanted[i] {
                        acts.out[i] = Some(y.clone());
                    }
                    cur = y;
                }
            }
            i += 1;
        }
        acts
    }

    /// Backward pass from layer `last` to the RGB 0..1 input. `add_loss_grad(i, grad)` is called for every
    /// layer `i` from `last` down to 0 with the gradient buffer of that layer's output, so the loss can add
    /// its gradient there. Returns d(loss)/d(rgb), planar, `3·h·w`.
    pub(crate) fn backward(
        &self,
        acts: &Activations,
        last: usize,
        mut add_loss_grad: impl FnMut(usize, &mut [f32]),
    ) -> Vec<f32> {
        let (h0, w0) = acts.input_hw;
        let (c, h, w) = acts.shape[last];
        let mut grad = vec![0.0f32; c * h * w];
        for i in (0..=last).rev() {
            add_loss_grad(i, &mut grad);
            let (in_c, in_h, in_w) = if i == 0 { (3, h0, w0) } else { acts.shape[i - 1] };
            match self.layers[i].kind {
                LayerKind::Relu => k::relu_backward_inplace(&mut grad, acts.get(i)),
                LayerKind::Conv { conv, .. } => {
                    let (_, h, w) = acts.shape[i];
                    let mut dx = vec![0.0; in_c * h * w];
                    self.convs[conv].backward_input(&grad, h, w, &mut dx);
                    grad = dx;
                }
                LayerKind::Pool => {
                    let mut dx = vec![0.0; in_c * in_h * in_w];
                    match self.pooling {
                        Pooling::Max => {
                            k::max_pool2x2_backward(acts.get(i - 1), in_c, in_h, in_w, &grad, &mut dx)
                        }
                        Pooling::Avg => k::avg_pool2x2_backward(in_c, in_h, in_w, &grad, &mut dx),
                    }
                    grad = dx;
                }
            }
        }
        let mut grad_rgb = vec![0.0; grad.len()];
        self.preprocess.backward(&grad, &mut grad_rgb);
        grad_rgb
    }
}
