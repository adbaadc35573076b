//! Conversion of a VGG state dict to impasto's cache form: a safetensors file holding only the
//! convolutions (`features.N.weight|bias`, torchvision key names, OIHW f32), with `architecture` and
//! `preprocessing` metadata. Classifier (`classifier.*`) and other keys are dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use safetensors::tensor::{Dtype, TensorView};

use crate::error::{Error, Result};
use crate::tensor::{StateDict, Tensor};

/// How the network's input must be prepared for a set of weights; written to the safetensors
/// metadata as `preprocessing`, which impasto reads back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preprocessing {
    /// The original Caffe VGG weights (and the caffe-converted `.pth` files of neural-style-pt):
    /// BGR, 0–255, ImageNet mean subtracted.
    Caffe,
    /// torchvision's weights: RGB, 0–1, normalised by the ImageNet mean and standard deviation.
    Torch,
}

impl Preprocessing {
    /// The metadata value: `caffe` or `torch`.
    pub fn as_str(self) -> &'static str {
        match self {
            Preprocessing::Caffe => "caffe",
            Preprocessing::Torch => "torch",
        }
    }

    /// Parses `caffe` / `torch` (case-insensitive).
    pub fn from_name(s: &str) -> Option<Preprocessing> {
        match s.to_ascii_lowercase().as_str() {
            "caffe" => Some(Preprocessing::Caffe),
            "torch" => Some(Preprocessing::Torch),
            _ => None,
        }
    }
}

/// The torchvision `features` indices of the convolutions in `sd` (keys `features.N.weight` of rank
/// 4), ascending. Its length tells VGG-16 (13) from VGG-19 (16).
pub fn conv_indices(sd: &StateDict) -> Vec<usize> {
    let mut idx: Vec<usize> = sd
        .iter()
        .filter(|(_, t)| t.shape.len() == 4)
        .filter_map(|(k, _)| k.strip_prefix("features.")?.strip_suffix(".weight")?.parse().ok())
        .collect();
    idx.sort_unstable();
    idx
}

/// Writes the convolutions of `sd` to `out` as safetensors (f32, torchvision key names), with
/// metadata `architecture` and `preprocessing`. Checks that there are exactly `conv_count`
/// convolutions, that each has a bias of its output width, that channels chain from 3 (RGB), and
/// that every value is finite. Writes `out` atomically (a temporary file renamed into place).
/// Returns the keys written, in network order.
pub fn to_conv_safetensors(
    sd: &StateDict,
    architecture: &str,
    conv_count: usize,
    preprocessing: Preprocessing,
    out: &Path,
) -> Result<Vec<String>> {
    let err = |reason: String| Error::Convert { out: out.to_path_buf(), reason };
    let idx = conv_indices(sd);
    if idx.len() != conv_count {
        let list = idx.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
        return Err(err(format!(
            "the state dict has {} convolutions (features.N.weight for N in [{list}]); {architecture} has {conv_count}",
            idx.len()
        )));
    }
    let mut keys = Vec::with_capacity(2 * conv_count);
    let mut c_prev = 3;
    for &i in &idx {
        let wk = format!("features.{i}.weight");
        let bk = format!("features.{i}.bias");
        let w = &sd[&wk];
        let &[c_out, c_in, _, _] = w.shape.as_slice() else {
            return Err(err(format!("`{wk}` has shape {:?}, not 4 dimensions", w.shape)));
        };
        if c_in != c_prev {
            return Err(err(format!(
                "`{wk}` has shape {:?}: {c_in} input channels, but the layer before gives {c_prev}",
                w.shape
            )));
        }
        let b = sd.get(&bk).ok_or_else(|| err(format!("`{bk}` is missing (weight `{wk}` is present)")))?;
        if b.shape != [c_out] {
            return Err(err(format!("`{bk}` has shape {:?}, expected [{c_out}]", b.shape)));
        }
        for (k, t) in [(&wk, w), (&bk, b)] {
            if let Some(p) = t.data.iter().position(|v| !v.is_finite()) {
                return Err(err(format!("`{k}` (shape {:?}) has a non-finite value at {p}", t.shape)));
            }
        }
        keys.push(wk);
        keys.push(bk);
        c_prev = c_out;
    }
    let bytes: Vec<(&String, &Tensor, Vec<u8>)> = keys
        .iter()
        .map(|k| {
            let t = &sd[k];
            (k, t, t.data.iter().flat_map(|v| v.to_le_bytes()).collect())
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(k, t, b)| {
            TensorView::new(Dtype::F32, t.shape.clone(), b)
                .map(|v| (k.as_str(), v))
                .map_err(|e| Error::Safetensors { path: out.to_path_buf(), source: e })
        })
        .collect::<Result<Vec<_>>>()?;
    let meta = HashMap::from([
        ("architecture".to_string(), architecture.to_string()),
        ("preprocessing".to_string(), preprocessing.as_str().to_string()),
        ("format".to_string(), "impasto-conv".to_string()),
    ]);
    let tmp = temp_path(out);
    safetensors::serialize_to_file(views, Some(meta), &tmp)
        .map_err(|e| Error::Safetensors { path: out.to_path_buf(), source: e })?;
    std::fs::rename(&tmp, out).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("cannot move into place", out, e)
    })?;
    Ok(keys)
}

/// A temporary name beside `out` (so the rename stays on one file system), unique to this process
/// and call, so that concurrent conversions never write into one another's file.
fn temp_path(out: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}-{n}.tmp", std::process::id()));
    out.with_file_name(name)
}
