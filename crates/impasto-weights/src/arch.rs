//! The VGG-16 and VGG-19 topologies: layer names (conv1_1 … relu5_4, pool1 … pool5), channel counts,
//! the torchvision `features.N` index of every convolution, and the number of convolutions that tells
//! the two apart in a checkpoint.

use crate::error::{Error, Result};

/// A VGG architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// VGG-16: 13 convolutions in blocks of 2, 2, 3, 3, 3.
    Vgg16,
    /// VGG-19: 16 convolutions in blocks of 2, 2, 4, 4, 4 (the network of Gatys et al.).
    Vgg19,
}

/// What a layer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// A 3×3 convolution; `conv` is its position among the convolutions (0-based),
    /// `torch_index` its index in torchvision's `features` list.
    Conv {
        /// Position among the network's convolutions.
        conv: usize,
        /// Index in torchvision's `features` list (`features.{torch_index}.weight`).
        torch_index: usize,
        /// Input channels.
        c_in: usize,
        /// Output channels.
        c_out: usize,
    },
    /// A ReLU after the preceding convolution.
    Relu,
    /// A 2×2, stride-2 pooling layer.
    Pool,
}

/// One named layer of the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The layer's name, e.g. `relu4_2`.
    pub name: String,
    /// What it does.
    pub kind: LayerKind,
}

impl Arch {
    /// The lower-case name used on the command line and in files (`vgg16`, `vgg19`).
    pub fn name(self) -> &'static str {
        match self {
            Arch::Vgg16 => "vgg16",
            Arch::Vgg19 => "vgg19",
        }
    }

    /// Both architectures.
    pub const ALL: [Arch; 2] = [Arch::Vgg16, Arch::Vgg19];

    /// Parses `vgg16` / `vgg19` (case-insensitive).
    pub fn from_name(s: &str) -> Option<Arch> {
        match s.to_ascii_lowercase().as_str() {
            "vgg16" => Some(Arch::Vgg16),
            "vgg19" => Some(Arch::Vgg19),
            _ => None,
        }
    }

    /// The number of convolutions: 13 (VGG-16) or 16 (VGG-19).
    pub fn conv_count(self) -> usize {
        self.blocks().iter().sum()
    }

    /// The architecture with `n` convolutions (13 → VGG-16, 16 → VGG-19), for a checkpoint whose
    /// architecture nobody named.
    pub fn from_conv_count(n: usize) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.conv_count() == n)
    }

    fn blocks(self) -> [usize; 5] {
        match self {
            Arch::Vgg16 => [2, 2, 3, 3, 3],
            Arch::Vgg19 => [2, 2, 4, 4, 4],
        }
    }

    /// Every layer of the feature extractor, in order.
    pub fn layers(self) -> Vec<Layer> {
        const CH: [usize; 5] = [64, 128, 256, 512, 512];
        let mut layers = Vec::new();
        let (mut c_in, mut conv, mut torch_index) = (3, 0, 0);
        for (b, &n) in self.blocks().iter().enumerate() {
            for i in 1..=n {
                let kind = LayerKind::Conv { conv, torch_index, c_in, c_out: CH[b] };
                layers.push(Layer { name: format!("conv{}_{i}", b + 1), kind });
                layers.push(Layer { name: format!("relu{}_{i}", b + 1), kind: LayerKind::Relu });
                c_in = CH[b];
                conv += 1;
                torch_index += 2;
            }
            layers.push(Layer { name: format!("pool{}", b + 1), kind: LayerKind::Pool });
            torch_index += 1;
        }
        layers
    }

    /// The position of a named layer in [`Arch::layers`], or [`Error::UnknownLayer`] listing the valid
    /// names.
    pub fn layer_index(self, name: &str) -> Result<usize> {
        let layers = self.layers();
        layers.iter().position(|l| l.name == name).ok_or_else(|| Error::UnknownLayer {
            name: name.to_string(),
            model: self.name().to_string(),
            known: layers.iter().map(|l| l.name.as_str()).collect::<Vec<_>>().join(", "),
        })
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
