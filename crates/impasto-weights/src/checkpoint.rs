//! A VGG checkpoint in any format impasto reads, told apart by its first bytes and never by its
//! name: safetensors, or a PyTorch `.pth` (zip or legacy). Reading its `features.*` tensors under
//! their torchvision names (also under a prefix such as `state_dict.` or `module.`), the input
//! convention it declares or that its SHA-256 tells, and turning a `.pth` held in memory into the
//! very bytes an import writes to the cache.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::arch::Arch;
use crate::checksum::{sha256_hex, sha256_matches};
use crate::convert::conv_safetensors_bytes;
use crate::error::{Error, Result};
use crate::models::KNOWN_MODELS;
use crate::preprocess::Preprocess;
use crate::pth::{read_pth_filtered, read_pth_named};
use crate::tensor::{DType, StateDict, Tensor, f16_to_f32};

/// torchvision's VGG checkpoints (`download.pytorch.org/models/NAME-HEX.pth`): their SHA-256 prefixes
/// tell that they take torch preprocessing.
const TORCHVISION: &[(&str, &str)] =
    &[("vgg16-397923af.pth", "397923af"), ("vgg19-dcbb9e9d.pth", "dcbb9e9d")];

/// The format of a weights file, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// A safetensors file (an 8-byte header length, then a JSON header).
    Safetensors,
    /// A PyTorch checkpoint in the zip format of PyTorch ≥ 1.6.
    PthZip,
    /// A PyTorch checkpoint in the legacy format (a stream of pickles).
    PthLegacy,
}

impl Format {
    /// The format `head` (the first bytes of a file, at least 9 for safetensors) starts like: a zip
    /// archive or a pickle is a PyTorch checkpoint, an 8-byte length followed by `{` is safetensors;
    /// `None` for anything else.
    pub fn detect(head: &[u8]) -> Option<Format> {
        if head.starts_with(b"PK\x03\x04") {
            Some(Format::PthZip)
        } else if head.len() >= 2 && head[0] == 0x80 {
            Some(Format::PthLegacy)
        } else if head.len() >= 9 && head[8] == b'{' {
            Some(Format::Safetensors)
        } else {
            None
        }
    }

    /// Whether this is a PyTorch checkpoint.
    pub fn is_pth(self) -> bool {
        matches!(self, Format::PthZip | Format::PthLegacy)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Safetensors => "safetensors file",
            Format::PthZip => "PyTorch checkpoint (zip format)",
            Format::PthLegacy => "PyTorch checkpoint (legacy format)",
        })
    }
}

/// The convolution tensors of a checkpoint and what it says about them.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The format its bytes are in.
    pub format: Format,
    /// Its `features.*` tensors under their torchvision names, as f32.
    pub tensors: StateDict,
    /// The input convention its safetensors metadata declares (a `.pth` declares none).
    pub declared: Option<Preprocess>,
}

/// The torchvision name of a checkpoint key, if it is a `features.*` key (directly, or under a
/// prefix: `state_dict.features.0.weight`, `module.features.0.weight` → `features.0.weight`).
pub fn conv_key(key: &str) -> Option<&str> {
    if key.starts_with("features.") {
        return Some(key);
    }
    key.rfind(".features.").map(|i| &key[i + 1..])
}

/// Renames the keys of `sd` to their torchvision names; two keys with one name are an error.
fn normalise(path: &Path, format: Format, sd: StateDict) -> Result<StateDict> {
    let mut out = StateDict::new();
    for (key, t) in sd {
        let Some(name) = conv_key(&key) else { continue };
        let name = name.to_string();
        if out.insert(name.clone(), t).is_some() {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                format,
                reason: format!(
                    "holds `{name}` twice (under different prefixes); extract one state dict first"
                ),
            });
        }
    }
    Ok(out)
}

/// Reads the checkpoint at `path` (see [`read_checkpoint_bytes`]). A `.pth` is read from the file
/// without loading what is not a convolution (a VGG checkpoint's classifier is most of it).
pub fn read_checkpoint(path: &Path) -> Result<Checkpoint> {
    let mut head = Vec::with_capacity(9);
    std::fs::File::open(path)
        .and_then(|f| f.take(9).read_to_end(&mut head))
        .map_err(|e| Error::io("cannot read", path, e))?;
    match Format::detect(&head) {
        Some(Format::Safetensors) => {
            let bytes = std::fs::read(path).map_err(|e| Error::io("cannot read", path, e))?;
            read_safetensors(&bytes, path)
        }
        // Not safetensors: the PyTorch reader names what it is (empty, the old tar format, neither).
        format => {
            let format = format.unwrap_or(Format::PthLegacy);
            let sd = read_pth_filtered(path, &|k| conv_key(k).is_some())?;
            Ok(Checkpoint { format, tensors: normalise(path, format, sd)?, declared: None })
        }
    }
}

/// Reads a checkpoint held in memory, whatever its format (told from the bytes; anything that is
/// not a PyTorch checkpoint is read as safetensors): its `features.*` tensors under their
/// torchvision names, as f32 (safetensors f32, f64, f16 or bf16; any float a `.pth` holds), and the
/// input convention it declares. `name` names it in errors.
pub fn read_checkpoint_bytes(bytes: &[u8], name: &Path) -> Result<Checkpoint> {
    match Format::detect(bytes) {
        Some(format) if format.is_pth() => {
            let sd = read_pth_named(bytes, name, &|k| conv_key(k).is_some())?;
            Ok(Checkpoint { format, tensors: normalise(name, format, sd)?, declared: None })
        }
        _ => read_safetensors(bytes, name),
    }
}

/// The `features.*` tensors of a safetensors file and its declared input convention.
fn read_safetensors(bytes: &[u8], path: &Path) -> Result<Checkpoint> {
    let format = Format::Safetensors;
    let err = |reason: String| Error::Checkpoint { path: path.to_path_buf(), format, reason };
    let bad = |e: safetensors::SafeTensorError| err(format!("not a valid safetensors file: {e}"));
    let st = SafeTensors::deserialize(bytes).map_err(bad)?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(bad)?;
    let declared = meta.metadata().as_ref().and_then(Preprocess::declared);
    let mut sd = StateDict::new();
    for (key, view) in st.tensors() {
        if conv_key(&key).is_none() {
            continue;
        }
        let b = view.data();
        let (data, dtype): (Vec<f32>, DType) = match view.dtype() {
            Dtype::F32 => (
                b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
                DType::F32,
            ),
            Dtype::F64 => (
                b.chunks_exact(8)
                    .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
                    .collect(),
                DType::F64,
            ),
            Dtype::F16 => (
                b.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect(),
                DType::F16,
            ),
            Dtype::BF16 => (
                b.chunks_exact(2)
                    .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
                    .collect(),
                DType::BF16,
            ),
            other => return Err(err(format!("tensor `{key}` is {other:?}; weights must be floats"))),
        };
        sd.insert(key, Tensor { shape: view.shape().to_vec(), data, dtype });
    }
    Ok(Checkpoint { format, tensors: normalise(path, format, sd)?, declared })
}

/// The input convention of a checkpoint known by its SHA-256 (hex): a known download's checkpoint
/// (caffe) or torchvision's (torch), with that checkpoint's file name.
pub fn known_checkpoint(sha256: &str) -> Option<(Preprocess, &'static str)> {
    if let Some(m) = KNOWN_MODELS.iter().find(|m| sha256_matches(sha256, m.sha256_prefix)) {
        return Some((m.preprocess, m.file_name));
    }
    TORCHVISION.iter().find(|(_, p)| sha256_matches(sha256, p)).map(|&(name, _)| (Preprocess::Torch, name))
}

/// The cache form (see [`crate::to_conv_safetensors`]) of the PyTorch checkpoint `bytes`, built in
/// memory: exactly the file `impasto models import` writes for it, so a run or a pack from a `.pth`
/// gives what it gives from the imported file. The input convention is `preprocess` if given, else
/// the one its SHA-256 tells, else caffe. `name` names it in errors.
pub fn pth_to_conv_safetensors(
    bytes: &[u8],
    name: &Path,
    arch: Arch,
    preprocess: Option<Preprocess>,
) -> Result<Vec<u8>> {
    let ckpt = read_checkpoint_bytes(bytes, name)?;
    let preprocess =
        preprocess.or_else(|| known_checkpoint(&sha256_hex(bytes)).map(|(p, _)| p)).unwrap_or_default();
    conv_safetensors_bytes(&ckpt.tensors, arch.name(), arch.conv_count(), preprocess)
        .map(|(bytes, _)| bytes)
        .map_err(|reason| Error::Checkpoint { path: name.to_path_buf(), format: ckpt.format, reason })
}

/// The metadata map of the safetensors file at `path`, reading its header only (for callers that
/// list files); `None` when it is not a readable safetensors file or has no metadata.
pub fn safetensors_metadata(path: &Path) -> Option<HashMap<String, String>> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).ok()?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return None;
    }
    let mut header = vec![0u8; usize::try_from(len).ok()?];
    f.read_exact(&mut header).ok()?;
    let header: serde_json::Value = serde_json::from_slice(&header).ok()?;
    serde_json::from_value(header.get("__metadata__")?.clone()).ok()
}
