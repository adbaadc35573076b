//! `impasto models pack`'s library side: a full VGG-16 (safetensors f32, or a PyTorch checkpoint,
//! converted in memory as an import converts it) packed into the compact 8-bit form of `compact.rs`,
//! as pure, deterministic bytes.

use std::path::Path;

use rayon::prelude::*;
use safetensors::SafeTensors;

use super::arch::{Arch, LayerKind};
use super::compact::{
    COMPACT_CONVS, COMPACT_FORMAT, COMPACT_FORMAT_VERSION, COMPACT_LAST_LAYER, is_compact, quantize_channel,
};
use super::weights::{as_safetensors, parse_conv_weights};
use crate::error::{Error, Result};

/// Packs a full VGG-16 weights file (safetensors, f32, torchvision key names, such as impasto's cache
/// file) into the compact form: the convolutions conv1_1 … conv4_2, each weight tensor quantised by
/// [`quantize_channel`] per output channel (`features.N.weight_q`, I8, OIHW, and
/// `features.N.weight_scale`, F32 `[c_out]`), biases kept in f32 (`features.N.bias`). The source's
/// metadata is kept, with the format, the layers, the quantisation, the input convention, the SHA-256
/// of `full` and the licence and attribution added. The same input always gives the same bytes.
/// `full` may also be a PyTorch checkpoint of VGG-16: it is packed as the safetensors file
/// `impasto models import` makes of it would be. `name` names the input in errors.
pub fn pack_compact(full: &[u8], name: &Path) -> Result<Vec<u8>> {
    let full: &[u8] = &as_safetensors(full, name, Arch::Vgg16)?;
    let (_, meta) = SafeTensors::read_metadata(full)
        .map_err(|e| Error::WeightsFormat { path: name.into(), reason: e.to_string() })?;
    let source_meta = meta.metadata().clone().unwrap_or_default();
    if is_compact(&source_meta) {
        return Err(Error::WeightsFormat {
            path: name.into(),
            reason: "it is a compact file already; pack the full f32 weights".into(),
        });
    }
    let (convs, declared) = parse_conv_weights(full, name, Arch::Vgg16, COMPACT_CONVS, COMPACT_LAST_LAYER)?;
    let mut metadata: std::collections::BTreeMap<String, String> = source_meta.into_iter().collect();
    let layers: Vec<String> = conv_layers().into_iter().map(|(name, _)| name).collect();
    for (k, v) in [
        ("format", COMPACT_FORMAT.to_string()),
        ("format_version", COMPACT_FORMAT_VERSION.to_string()),
        ("architecture", "vgg16".to_string()),
        ("layout", "OIHW".to_string()),
        ("layers", layers.join(",")),
        ("last_layer", COMPACT_LAST_LAYER.to_string()),
        (
            "quantization",
            "int8 symmetric per output channel: weight[o,i,y,x] = weight_q[o,i,y,x] * weight_scale[o] \
             (scale: the least-squares clipping threshold / 127); biases f32"
                .to_string(),
        ),
        ("preprocessing", declared.unwrap_or_default().name().to_string()),
        ("source_sha256", impasto_weights::sha256_hex(full)),
        ("license", "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)".to_string()),
        (
            "attribution",
            "VGG-16 weights by Karen Simonyan and Andrew Zisserman (Visual Geometry Group, University of \
             Oxford), \"Very Deep Convolutional Networks for Large-Scale Image Recognition\", CC BY 4.0; \
             this is a derived work: truncated after conv4_2 and quantised to 8 bits by `impasto models pack`"
                .to_string(),
        ),
    ] {
        metadata.insert(k.to_string(), v);
    }
    // F32 tensors first, then I8, so that every tensor is aligned to its element size.
    let mut f32_part: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut i8_part: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for ((_, torch_index), w) in conv_layers().into_iter().zip(&convs) {
        // Channels are independent: quantised in parallel, gathered in order.
        let channels: Vec<(Vec<i8>, f32)> =
            w.weight.par_chunks_exact(w.c_in * 9).map(quantize_channel).collect();
        let q: Vec<u8> = channels.iter().flat_map(|(cq, _)| cq.iter().map(|&v| v as u8)).collect();
        let scales: Vec<f32> = channels.iter().map(|&(_, s)| s).collect();
        let le = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        f32_part.push((format!("features.{torch_index}.bias"), vec![w.c_out], le(&w.bias)));
        f32_part.push((format!("features.{torch_index}.weight_scale"), vec![w.c_out], le(&scales)));
        i8_part.push((format!("features.{torch_index}.weight_q"), vec![w.c_out, w.c_in, 3, 3], q));
    }
    Ok(impasto_weights::sorted_safetensors(
        &metadata,
        f32_part.into_iter().map(|t| ("F32", t)).chain(i8_part.into_iter().map(|t| ("I8", t))),
    ))
}

/// The (name, torchvision index) of the compact model's convolutions.
fn conv_layers() -> Vec<(String, usize)> {
    Arch::Vgg16
        .layers()
        .into_iter()
        .filter_map(|l| match l.kind {
            LayerKind::Conv { conv, torch_index, .. } if conv < COMPACT_CONVS => Some((l.name, torch_index)),
            _ => None,
        })
        .collect()
}
