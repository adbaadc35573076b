//! Conversion of a VGG state dict to impasto's cache form: a safetensors file holding only the
//! convolutions (`features.N.weight|bias`, torchvision key names, OIHW f32), with `architecture` and
//! `preprocessing` metadata. Classifier (`classifier.*`) and other keys are dropped. The bytes are
//! deterministic (sorted header), so the same weights always give the same file, whether written by
//! an import or built in memory from a `.pth` for a run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::preprocess::Preprocess;
use crate::tensor::StateDict;

/// The metadata `format` of impasto's cache files.
pub const CONV_FORMAT: &str = "impasto-conv";

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

/// The keys of the convolutions of `sd` in network order, after checking that there are exactly
/// `conv_count` of them, that each has a bias of its output width, that channels chain from 3 (RGB),
/// and that every value is finite. The error is the reason alone; callers name the file.
fn checked_keys(sd: &StateDict, architecture: &str, conv_count: usize) -> Result<Vec<String>, String> {
    let idx = conv_indices(sd);
    if idx.len() != conv_count {
        let list = idx.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
        return Err(format!(
            "the state dict has {} convolutions (features.N.weight for N in [{list}]); {architecture} has {conv_count}",
            idx.len()
        ));
    }
    let mut keys = Vec::with_capacity(2 * conv_count);
    let mut c_prev = 3;
    for &i in &idx {
        let wk = format!("features.{i}.weight");
        let bk = format!("features.{i}.bias");
        let w = &sd[&wk];
        let &[c_out, c_in, _, _] = w.shape.as_slice() else {
            return Err(format!("`{wk}` has shape {:?}, not 4 dimensions", w.shape));
        };
        if c_in != c_prev {
            return Err(format!(
                "`{wk}` has shape {:?}: {c_in} input channels, but the layer before gives {c_prev}",
                w.shape
            ));
        }
        let b = sd.get(&bk).ok_or_else(|| format!("`{bk}` is missing (weight `{wk}` is present)"))?;
        if b.shape != [c_out] {
            return Err(format!("`{bk}` has shape {:?}, expected [{c_out}]", b.shape));
        }
        for (k, t) in [(&wk, w), (&bk, b)] {
            if let Some(p) = t.data.iter().position(|v| !v.is_finite()) {
                return Err(format!("`{k}` (shape {:?}) has a non-finite value at {p}", t.shape));
            }
        }
        keys.push(wk);
        keys.push(bk);
        c_prev = c_out;
    }
    Ok(keys)
}

/// The cache form of `sd` as bytes, and the keys written in network order (see
/// [`to_conv_safetensors`]). The error is the reason alone.
pub(crate) fn conv_safetensors_bytes(
    sd: &StateDict,
    architecture: &str,
    conv_count: usize,
    preprocess: Preprocess,
) -> Result<(Vec<u8>, Vec<String>), String> {
    let keys = checked_keys(sd, architecture, conv_count)?;
    let meta = BTreeMap::from([
        ("architecture".to_string(), architecture.to_string()),
        ("format".to_string(), CONV_FORMAT.to_string()),
        ("preprocessing".to_string(), preprocess.name().to_string()),
    ]);
    let tensors = keys.iter().map(|k| {
        let t = &sd[k];
        ("F32", (k.clone(), t.shape.clone(), t.data.iter().flat_map(|v| v.to_le_bytes()).collect()))
    });
    let out = sorted_safetensors(&meta, tensors);
    Ok((out, keys))
}

/// A safetensors file with its header's keys in sorted order (the `safetensors` crate writes the
/// metadata in hash order, which changes from run to run), so the same tensors always give the same
/// bytes: 8-byte length, JSON padded with spaces to a multiple of 8, then each `(dtype, (key, shape,
/// bytes))` tensor's bytes in the order given.
pub fn sorted_safetensors<'a>(
    metadata: &BTreeMap<String, String>,
    tensors: impl Iterator<Item = (&'a str, (String, Vec<usize>, Vec<u8>))>,
) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!(metadata));
    let mut data = Vec::new();
    for (dtype, (key, shape, bytes)) in tensors {
        let start = data.len();
        data.extend_from_slice(&bytes);
        let info = serde_json::json!({ "dtype": dtype, "shape": shape, "data_offsets": [start, data.len()] });
        header.insert(key, info);
    }
    // serde_json's map is sorted by key: the header, and so the file, is the same on every run.
    let mut json = serde_json::Value::Object(header).to_string();
    while !json.len().is_multiple_of(8) {
        json.push(' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(&data);
    out
}

/// Writes the convolutions of `sd` to `out` as safetensors (f32, torchvision key names), with
/// metadata `architecture`, `preprocessing` and `format = impasto-conv`. Checks that there are
/// exactly `conv_count` convolutions, that each has a bias of its output width, that channels chain
/// from 3 (RGB), and that every value is finite. Writes `out` atomically (a temporary file renamed
/// into place); the same weights always give the same bytes. Returns the keys written, in network
/// order.
pub fn to_conv_safetensors(
    sd: &StateDict,
    architecture: &str,
    conv_count: usize,
    preprocess: Preprocess,
    out: &Path,
) -> Result<Vec<String>> {
    let (bytes, keys) = conv_safetensors_bytes(sd, architecture, conv_count, preprocess)
        .map_err(|reason| Error::Convert { out: out.to_path_buf(), reason })?;
    let tmp = temp_path(out);
    std::fs::write(&tmp, &bytes).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("cannot write", &tmp, e)
    })?;
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
