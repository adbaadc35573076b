//! The compact VGG-16: its convolutions up to conv4_2 with 8-bit weights (one f32 scale per output
//! channel, f32 biases) in a safetensors file. Its format constants, the per-channel quantisation,
//! reading it back as f32, and the copy built into the library with the `embedded-model` feature
//! (`pack.rs` writes the form).

use std::collections::HashMap;
use std::path::Path;

use safetensors::SafeTensors;
use safetensors::tensor::Dtype;

use super::arch::{Arch, LayerKind};
use super::tensors::{ConvWeights, f32_values, tensor};
use crate::error::{Error, Result};

/// The metadata `format` of a compact file.
pub const COMPACT_FORMAT: &str = "impasto-vgg16-q8";
/// The metadata `format_version` this library writes and reads.
pub const COMPACT_FORMAT_VERSION: &str = "1";
/// The deepest layer of the compact model (content layer `relu4_2` is its last).
pub const COMPACT_LAST_LAYER: &str = "relu4_2";
/// The default style layers with the compact model: `relu1_1` … `relu4_1` (it has no `relu5_1`).
pub const COMPACT_STYLE_LAYERS: [&str; 4] = ["relu1_1", "relu2_1", "relu3_1", "relu4_1"];
/// The file name of the built-in compact model (in `crates/impasto/assets/`).
pub const COMPACT_FILE_NAME: &str = "vgg16-q8.safetensors";
/// What errors call the built-in compact model.
pub const EMBEDDED_LABEL: &str = "the built-in compact VGG-16";
/// The path errors about the built-in model name (it is no file).
pub(crate) const EMBEDDED_PATH: &str = "<built-in compact VGG-16>";

/// Convolutions kept: conv1_1 … conv4_2.
pub(crate) const COMPACT_CONVS: usize = 9;
/// Quantisation levels on each side of zero.
const LEVELS: f32 = 127.0;
/// The clipping thresholds tried per channel, as fractions of its largest magnitude: 1 (no clipping)
/// down to 0.5 in steps of 1/200. The one with the least squared error is kept.
const CLIP_STEPS: usize = 100;

#[cfg(feature = "embedded-model")]
static EMBEDDED: &[u8] = include_bytes!("../../assets/vgg16-q8.safetensors");

/// The bytes of the built-in compact VGG-16 (a safetensors file in the form [`pack_compact`](crate::pack_compact) writes),
/// or `None` when the library is built without its `embedded-model` feature.
pub fn embedded_model() -> Option<&'static [u8]> {
    #[cfg(feature = "embedded-model")]
    return Some(EMBEDDED);
    #[cfg(not(feature = "embedded-model"))]
    None
}

/// Checks that the compact model has layer `deepest` of `arch`: it is a VGG-16 that stops at
/// [`COMPACT_LAST_LAYER`]. `weights` names it in the error (e.g. [`EMBEDDED_LABEL`]).
pub fn check_compact_depth(weights: &str, arch: Arch, deepest: &str) -> Result<()> {
    if arch != Arch::Vgg16 {
        return Err(Error::NotVgg16 { weights: weights.into(), model: arch.name().into() });
    }
    if arch.layer_index(deepest)? > arch.layer_index(COMPACT_LAST_LAYER)? {
        return Err(Error::WeightsTooShallow {
            weights: weights.into(),
            last: COMPACT_LAST_LAYER.into(),
            layer: deepest.into(),
            model: arch.name().into(),
        });
    }
    Ok(())
}

/// Symmetric 8-bit quantisation of one output channel's weights: `w ≈ q · scale` with `q` in
/// −127..=127. The scale is the one of the clipping threshold (from the largest magnitude down to
/// half of it, in 100 steps) whose rounded values have the least squared error; values beyond
/// the threshold are clipped, the others are within `scale / 2` of their original. All zeros give
/// scale 0.
pub fn quantize_channel(w: &[f32]) -> (Vec<i8>, f32) {
    let max = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if max == 0.0 {
        return (vec![0; w.len()], 0.0);
    }
    let level = |v: f32, scale: f32| (v / scale).round().clamp(-LEVELS, LEVELS);
    let error = |scale: f32| -> f64 {
        w.iter().map(|&v| (f64::from(level(v, scale)) * f64::from(scale) - f64::from(v)).powi(2)).sum()
    };
    let mut best: Option<(f64, f32)> = None;
    for step in 0..=CLIP_STEPS {
        let scale = max * (1.0 - step as f32 / (2 * CLIP_STEPS) as f32) / LEVELS;
        let e = error(scale);
        if best.is_none_or(|(b, _)| e < b) {
            best = Some((e, scale));
        }
    }
    let scale = best.map_or(max / LEVELS, |(_, s)| s);
    (w.iter().map(|&v| level(v, scale) as i8).collect(), scale)
}

/// Whether a safetensors file's metadata declares the compact format.
pub(crate) fn is_compact(meta: &HashMap<String, String>) -> bool {
    meta.get("format").is_some_and(|f| f == COMPACT_FORMAT)
}

/// Reads convolutions `0..n_convs` of `arch` from a compact file, as f32 (`q · scale`). `deepest` is
/// the layer that needs the last of them: beyond the file's last layer it is
/// [`Error::WeightsTooShallow`].
pub(crate) fn read(
    st: &SafeTensors<'_>,
    meta: &HashMap<String, String>,
    path: &Path,
    arch: Arch,
    n_convs: usize,
    deepest: &str,
) -> Result<Vec<ConvWeights>> {
    let format_err = |reason: String| Error::WeightsFormat { path: path.into(), reason };
    let version = meta.get("format_version").map_or("", String::as_str);
    if version != COMPACT_FORMAT_VERSION {
        return Err(format_err(format!(
            "compact format version `{version}` is not the one this impasto reads ({COMPACT_FORMAT_VERSION})"
        )));
    }
    let label = if path == Path::new(EMBEDDED_PATH) {
        EMBEDDED_LABEL.to_string()
    } else {
        format!("weights file {} (a compact VGG-16 made by `impasto models pack`)", path.display())
    };
    check_compact_depth(&label, arch, deepest)?;
    let mut out = Vec::with_capacity(n_convs);
    for layer in arch.layers() {
        let LayerKind::Conv { conv, torch_index, c_in, c_out } = layer.kind else { continue };
        if conv >= n_convs {
            break;
        }
        let get = |suffix: &str, shape: &[usize], dtype: Dtype| {
            tensor(st, path, &format!("features.{torch_index}.{suffix}"), &layer.name, arch, shape, dtype)
        };
        let q = get("weight_q", &[c_out, c_in, 3, 3], Dtype::I8)?;
        let scales = f32_values(get("weight_scale", &[c_out], Dtype::F32)?.data());
        let bias = f32_values(get("bias", &[c_out], Dtype::F32)?.data());
        if let Some(i) = scales.iter().chain(&bias).position(|v| !v.is_finite()) {
            return Err(format_err(format!("layer {} has a non-finite scale or bias at {i}", layer.name)));
        }
        let k = c_in * 9;
        let weight = q.data().iter().enumerate().map(|(i, &b)| f32::from(b as i8) * scales[i / k]).collect();
        out.push(ConvWeights { c_in, c_out, weight, bias });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantised_values_are_within_half_a_step_unless_clipped() {
        let w: Vec<f32> =
            (0..300).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013 + (i as f32).sin() * 0.2).collect();
        let (q, scale) = quantize_channel(&w);
        assert!(scale > 0.0);
        let max = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(scale <= max / 127.0 * 1.000_001 && scale >= max / 254.0 * 0.999_999, "{scale}");
        for (&v, &q) in w.iter().zip(&q) {
            let clip = 127.0 * scale;
            if v.abs() <= clip {
                assert!((f32::from(q) * scale - v).abs() <= scale / 2.0 * 1.0001, "{v} {q} {scale}");
            } else {
                assert_eq!(i32::from(q).abs(), 127, "{v} beyond {clip} is clipped");
            }
        }
        assert_eq!(quantize_channel(&[0.0; 9]), (vec![0; 9], 0.0));
    }
}
