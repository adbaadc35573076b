//! Loading VGG convolution weights from safetensors files (torchvision key names, OIHW, f32), with every
//! key and shape checked, and finding the weights file (flag, environment value, cache folder).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;

use super::arch::{Arch, LayerKind};
use super::preprocess::Preprocess;
use crate::error::{Error, Result};

/// The conv weights of one layer as read from a file: OIHW weight and bias.
#[derive(Debug, Clone)]
pub(crate) struct ConvWeights {
    pub(crate) c_in: usize,
    pub(crate) c_out: usize,
    pub(crate) weight: Vec<f32>,
    pub(crate) bias: Vec<f32>,
}

/// The file name impasto uses for an architecture's weights in its cache folder.
pub fn cache_file_name(arch: Arch) -> String {
    format!("{}-conv-imagenet.safetensors", arch.name())
}

/// Finds the weights file: `explicit` (a `--weights` flag) first, then `env` (the value of
/// `IMPASTO_WEIGHTS`, passed in by the caller: the library never reads the environment), then
/// `cache_dir/<arch>-conv-imagenet.safetensors`. An explicit path or environment value that does not
/// exist is an error rather than a fall-through, so a typo is never silently ignored.
pub fn locate_weights(
    arch: Arch,
    explicit: Option<&Path>,
    env: Option<&Path>,
    cache_dir: Option<&Path>,
) -> Result<PathBuf> {
    let missing = |p: &Path, what: &str| Error::WeightsNotFound {
        model: arch.name().into(),
        searched: format!("{what} {} (no such file)", p.display()),
    };
    if let Some(p) = explicit {
        return if p.is_file() { Ok(p.to_path_buf()) } else { Err(missing(p, "--weights")) };
    }
    if let Some(p) = env {
        return if p.is_file() { Ok(p.to_path_buf()) } else { Err(missing(p, "IMPASTO_WEIGHTS=")) };
    }
    let mut searched = vec!["--weights (not given)".to_string(), "IMPASTO_WEIGHTS (not set)".to_string()];
    if let Some(dir) = cache_dir {
        let p = dir.join(cache_file_name(arch));
        if p.is_file() {
            return Ok(p);
        }
        searched.push(p.display().to_string());
    }
    Err(Error::WeightsNotFound { model: arch.name().into(), searched: searched.join(", ") })
}

/// Reads the convolutions `0..n_convs` of `arch` from a safetensors file, checking every tensor's
/// presence, dtype and shape. Also returns the preprocessing the file declares in its metadata
/// (`preprocessing = caffe|torch`, or an `input` text mentioning BGR), if any.
pub(crate) fn read_conv_weights(
    path: &Path,
    arch: Arch,
    n_convs: usize,
) -> Result<(Vec<ConvWeights>, Option<Preprocess>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        action: "cannot read weights",
        path: path.into(),
        source: e,
    })?;
    conv_weights_from_bytes(&bytes, path, arch, n_convs)
}

/// [`read_conv_weights`] on the bytes of a safetensors file; `path` only names it in errors.
pub(crate) fn conv_weights_from_bytes(
    bytes: &[u8],
    path: &Path,
    arch: Arch,
    n_convs: usize,
) -> Result<(Vec<ConvWeights>, Option<Preprocess>)> {
    let format_err = |reason: String| Error::WeightsFormat { path: path.into(), reason };
    let st = SafeTensors::deserialize(bytes).map_err(|e| format_err(e.to_string()))?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| format_err(e.to_string()))?;
    let preprocess = meta.metadata().as_ref().and_then(declared_preprocess);
    let mut out = Vec::with_capacity(n_convs);
    for layer in arch.layers() {
        let LayerKind::Conv { conv, torch_index, c_in, c_out } = layer.kind else { continue };
        if conv >= n_convs {
            break;
        }
        let read = |suffix: &str, shape: Vec<usize>| -> Result<Vec<f32>> {
            let key = format!("features.{torch_index}.{suffix}");
            let view = st.tensor(&key).map_err(|_| Error::WeightsMissingKey {
                path: path.into(),
                key: key.clone(),
                layer: layer.name.clone(),
                model: arch.name().into(),
            })?;
            if view.shape() != shape.as_slice() || view.dtype() != safetensors::Dtype::F32 {
                return Err(Error::WeightsShape {
                    path: path.into(),
                    key,
                    layer: layer.name.clone(),
                    expected: shape,
                    actual: view.shape().to_vec(),
                    dtype: format!("{:?}", view.dtype()),
                });
            }
            let values: Vec<f32> =
                view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(format_err(format!("tensor `{key}` has a non-finite value at position {i}")));
            }
            Ok(values)
        };
        let weight = read("weight", vec![c_out, c_in, 3, 3])?;
        let bias = read("bias", vec![c_out])?;
        out.push(ConvWeights { c_in, c_out, weight, bias });
    }
    Ok((out, preprocess))
}

fn declared_preprocess(meta: &HashMap<String, String>) -> Option<Preprocess> {
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
