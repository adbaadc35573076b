//! Input conventions of the weights: `caffe` (BGR, 0..255, minus the mean) or `torch` (RGB, 0..1, mean/std),
//! what a weights file's metadata declares, the convention applied to the planar RGB 0..1 image, and its
//! backward.

use std::collections::HashMap;

/// How images are turned into network input: the input convention a set of weights was trained with.
/// Written to impasto's safetensors metadata as `preprocessing = caffe|torch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Preprocess {
    /// Caffe / original VGG (and the caffe-converted `.pth` files of neural-style-pt): channels reordered to B,G,R, scaled to 0..255, minus (103.939, 116.779, 123.68).
    #[default]
    Caffe,
    /// torchvision: R,G,B in 0..1, minus (0.485, 0.456, 0.406), divided by (0.229, 0.224, 0.225).
    Torch,
}

const CAFFE_MEAN_BGR: [f32; 3] = [103.939, 116.779, 123.68];
const TORCH_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const TORCH_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl Preprocess {
    /// Parses `caffe` / `torch` (case-insensitive).
    pub fn from_name(s: &str) -> Option<Preprocess> {
        match s.to_ascii_lowercase().as_str() {
            "caffe" => Some(Preprocess::Caffe),
            "torch" => Some(Preprocess::Torch),
            _ => None,
        }
    }

    /// The name used in files and flags.
    pub fn name(self) -> &'static str {
        match self {
            Preprocess::Caffe => "caffe",
            Preprocess::Torch => "torch",
        }
    }

    /// The convention a safetensors metadata map declares: `preprocessing = caffe|torch`, or an `input`
    /// text naming BGR (caffe) or RGB (torch); `None` when it declares none.
    pub fn declared(meta: &HashMap<String, String>) -> Option<Preprocess> {
        if let Some(p) = meta.get("preprocessing").and_then(|s| Preprocess::from_name(s)) {
            return Some(p);
        }
        let input = meta.get("input")?;
        if input.contains("BGR") {
            Some(Preprocess::Caffe)
        } else if input.contains("RGB") {
            Some(Preprocess::Torch)
        } else {
            None
        }
    }

    /// For network input channel `c`, the RGB channel it reads, and the scale and offset applied:
    /// `x[c] = rgb[src] * scale + offset`.
    pub fn channel(self, c: usize) -> (usize, f32, f32) {
        match self {
            Preprocess::Caffe => (2 - c, 255.0, -CAFFE_MEAN_BGR[c]),
            Preprocess::Torch => (c, 1.0 / TORCH_STD[c], -TORCH_MEAN[c] / TORCH_STD[c]),
        }
    }

    /// Planar RGB 0..1 (3·n values) → network input (3·n values).
    pub fn forward(self, rgb: &[f32], out: &mut [f32]) {
        let n = rgb.len() / 3;
        for c in 0..3 {
            let (src, scale, offset) = self.channel(c);
            let (dst, s) = (&mut out[c * n..(c + 1) * n], &rgb[src * n..(src + 1) * n]);
            for (d, &v) in dst.iter_mut().zip(s) {
                *d = v * scale + offset;
            }
        }
    }

    /// Gradient with respect to the network input → gradient with respect to planar RGB 0..1.
    pub fn backward(self, grad_x: &[f32], grad_rgb: &mut [f32]) {
        let n = grad_x.len() / 3;
        for c in 0..3 {
            let (src, scale, _) = self.channel(c);
            let (dst, g) = (&mut grad_rgb[src * n..(src + 1) * n], &grad_x[c * n..(c + 1) * n]);
            for (d, &v) in dst.iter_mut().zip(g) {
                *d = v * scale;
            }
        }
    }
}
