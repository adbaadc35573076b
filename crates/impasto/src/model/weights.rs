//! Reading VGG convolution weights from a weights file of any format impasto accepts, told apart by
//! its bytes: safetensors (f32 with torchvision key names, or the compact 8-bit form), or a PyTorch
//! `.pth` (zip or legacy), which impasto-weights converts in memory to exactly the safetensors bytes
//! an import writes. Every key and shape is checked. Also the built-in model's weights, and finding
//! the weights file (a named file, an environment value, the cache folder).

use std::path::{Path, PathBuf};

use impasto_weights::{Format, Located, Preprocess, WeightsOptions};
use safetensors::SafeTensors;
use safetensors::tensor::Dtype;

use super::arch::{Arch, LayerKind};
use super::compact::{self, EMBEDDED_PATH, embedded_model};
use super::tensors::{ConvWeights, f32_values, tensor};
use crate::error::{Error, Result};

/// Finds the weights file: `explicit` (a `--weights` flag) first, then `env` (the value of
/// `IMPASTO_WEIGHTS`, passed in by the caller: the library never reads the environment), then
/// `cache_dir/<arch>-conv-imagenet.safetensors`. An explicit path or environment value that does not
/// exist is an error rather than a fall-through, so a typo is never silently ignored; nothing found is
/// [`Error::WeightsNotFound`]. [`impasto_weights::locate`] is the rule; it also says how to download.
pub fn locate_weights(
    arch: Arch,
    explicit: Option<&Path>,
    env: Option<&Path>,
    cache_dir: Option<&Path>,
) -> Result<PathBuf> {
    let options = WeightsOptions {
        explicit: explicit.map(Path::to_path_buf),
        env: env.map(Path::to_path_buf),
        cache_dir: cache_dir.map(Path::to_path_buf),
        ..WeightsOptions::default()
    };
    match impasto_weights::locate(arch, &options) {
        Ok(Located::File(p)) => Ok(p),
        Ok(Located::Missing(m)) => Err(Error::WeightsNotFound {
            model: arch.name().into(),
            searched: impasto_weights::cached_file(&m.cache_dir, arch).display().to_string(),
        }),
        Err(impasto_weights::Error::NoCacheFolder { .. }) => {
            Err(Error::WeightsNotFound { model: arch.name().into(), searched: "no cache folder".into() })
        }
        Err(e) => Err(e.into()),
    }
}

/// Reads the convolutions `0..n_convs` of `arch` from a weights file (see [`parse_conv_weights`]).
pub(crate) fn read_conv_weights(
    path: &Path,
    arch: Arch,
    n_convs: usize,
    deepest: &str,
) -> Result<(Vec<ConvWeights>, Option<Preprocess>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        action: "cannot read weights",
        path: path.into(),
        error: e,
    })?;
    parse_conv_weights(&bytes, path, arch, n_convs, deepest)
}

/// The bytes of the cache-form safetensors file for `bytes`: a PyTorch checkpoint is converted in
/// memory (the same bytes `impasto models import` writes for it); anything else is taken as
/// safetensors.
pub(crate) fn as_safetensors<'a>(
    bytes: &'a [u8],
    path: &Path,
    arch: Arch,
) -> Result<std::borrow::Cow<'a, [u8]>> {
    if Format::detect(bytes).is_some_and(Format::is_pth) {
        return Ok(impasto_weights::pth_to_conv_safetensors(bytes, path, arch, None)?.into());
    }
    Ok(bytes.into())
}

/// Reads the convolutions `0..n_convs` of `arch` from the bytes of a weights file (safetensors f32,
/// the compact 8-bit form of [`super::compact`], or a PyTorch checkpoint), checking every tensor's
/// presence, dtype and shape. Also returns the preprocessing the file declares (`preprocessing =
/// caffe|torch` in safetensors metadata, or a known checkpoint's by its SHA-256), if any. `path` names
/// the file in errors; `deepest` names the layer that needs the last convolution.
pub(crate) fn parse_conv_weights(
    bytes: &[u8],
    path: &Path,
    arch: Arch,
    n_convs: usize,
    deepest: &str,
) -> Result<(Vec<ConvWeights>, Option<Preprocess>)> {
    let bytes = as_safetensors(bytes, path, arch)?;
    let format_err = |reason: String| Error::WeightsFormat { path: path.into(), reason };
    let st = SafeTensors::deserialize(&bytes).map_err(|e| format_err(e.to_string()))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| format_err(e.to_string()))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    let preprocess = Preprocess::declared(&meta);
    if compact::is_compact(&meta) {
        let convs = compact::read(&st, &meta, path, arch, n_convs, deepest)?;
        return Ok((convs, preprocess));
    }
    let mut out = Vec::with_capacity(n_convs);
    for layer in arch.layers() {
        let LayerKind::Conv { conv, torch_index, c_in, c_out } = layer.kind else { continue };
        if conv >= n_convs {
            break;
        }
        let read = |suffix: &str, shape: Vec<usize>| -> Result<Vec<f32>> {
            let key = format!("features.{torch_index}.{suffix}");
            let view = tensor(&st, path, &key, &layer.name, arch, &shape, Dtype::F32)?;
            let values = f32_values(view.data());
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

/// The built-in model's convolutions up to layer `deepest`, as f32, and its declared input convention.
pub(crate) fn read_embedded(deepest: &str) -> Result<(Vec<ConvWeights>, Option<Preprocess>)> {
    let bytes = embedded_model().ok_or(Error::NoEmbeddedModel)?;
    let last = Arch::Vgg16.layer_index(deepest)?;
    let n_convs =
        Arch::Vgg16.layers()[..=last].iter().filter(|l| matches!(l.kind, LayerKind::Conv { .. })).count();
    parse_conv_weights(bytes, Path::new(EMBEDDED_PATH), Arch::Vgg16, n_convs, deepest)
}
