//! `impasto models import FILE`: reads a VGG checkpoint the user already has (a PyTorch `.pth`, or a
//! `.safetensors` file, with torchvision key names, possibly under a prefix such as `state_dict.` or
//! `module.`), tells VGG-16 from VGG-19 by its convolutions, settles its input convention (the flag,
//! the file's own declaration, or the SHA-256 of a known checkpoint) and writes the cache's form with
//! `impasto_weights::to_conv_safetensors`.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use impasto::Arch;
use impasto_weights::{
    DType, KNOWN_MODELS, Preprocessing, StateDict, Tensor, arch_for_conv_count, conv_indices, known_model,
    read_pth_filtered, sha256_file, sha256_matches, to_conv_safetensors,
};

use crate::args::PreprocessArg;
use crate::models::ImportArgs;
use crate::progress::{Display, note};
use crate::weights;

/// torchvision's VGG checkpoints (`download.pytorch.org/models/NAME-HEX.pth`): their SHA-256 prefixes
/// tell an import that they take torch preprocessing.
const TORCHVISION: &[(&str, &str)] =
    &[("vgg16-397923af.pth", "397923af"), ("vgg19-dcbb9e9d.pth", "dcbb9e9d")];

/// The torchvision name of a checkpoint key, if it is a `features.*` key (directly, or under a prefix:
/// `state_dict.features.0.weight`, `module.features.0.weight` → `features.0.weight`).
fn conv_key(key: &str) -> Option<&str> {
    if key.starts_with("features.") {
        return Some(key);
    }
    key.rfind(".features.").map(|i| &key[i + 1..])
}

/// Renames the keys of `sd` to their torchvision names; two keys with one name are an error.
fn normalise(path: &Path, sd: StateDict) -> Result<StateDict> {
    let mut out = StateDict::new();
    for (key, t) in sd {
        let Some(name) = conv_key(&key) else { continue };
        let name = name.to_string();
        if out.insert(name.clone(), t).is_some() {
            bail!(
                "{} holds `{name}` twice (under different prefixes); extract one state dict first",
                path.display()
            );
        }
    }
    Ok(out)
}

/// Whether the file starts like a safetensors file (an 8-byte header length, then `{`).
fn looks_like_safetensors(path: &Path) -> Result<bool> {
    let mut head = [0u8; 9];
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]).with_context(|| format!("cannot read {}", path.display()))? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n == head.len() && head[8] == b'{')
}

/// The safetensors header of `path` as JSON (reads the header only).
fn safetensors_header(path: &Path) -> Option<serde_json::Value> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).ok()?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return None;
    }
    let mut header = vec![0u8; usize::try_from(len).ok()?];
    f.read_exact(&mut header).ok()?;
    serde_json::from_slice(&header).ok()
}

/// The input convention a safetensors metadata map declares: `preprocessing = caffe|torch`, or an
/// `input` text naming BGR (caffe) or RGB (torch), as impasto reads it.
fn declared(meta: &HashMap<String, String>) -> Option<Preprocessing> {
    if let Some(p) = meta.get("preprocessing").and_then(|s| Preprocessing::from_name(s)) {
        return Some(p);
    }
    let input = meta.get("input")?;
    if input.contains("BGR") {
        Some(Preprocessing::Caffe)
    } else if input.contains("RGB") {
        Some(Preprocessing::Torch)
    } else {
        None
    }
}

/// `caffe` or `torch`: what a safetensors weights file declares (for `impasto models list`).
pub fn declared_preprocessing(path: &Path) -> Option<String> {
    let header = safetensors_header(path)?;
    let meta: HashMap<String, String> = serde_json::from_value(header.get("__metadata__")?.clone()).ok()?;
    declared(&meta).map(|p| p.as_str().to_string())
}

/// f16 bits → f32.
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    match exp {
        0 => {
            let v = man as f32 / (1u32 << 24) as f32;
            if sign != 0 { -v } else { v }
        }
        0x1f => f32::from_bits(sign | 0x7f80_0000 | (man << 13)),
        _ => f32::from_bits(sign | ((exp + 112) << 23) | (man << 13)),
    }
}

/// The `features.*` tensors of a safetensors file (f32, f64, f16 or bf16) and its declared input
/// convention.
fn read_safetensors(path: &Path) -> Result<(StateDict, Option<Preprocessing>)> {
    use safetensors::{Dtype, SafeTensors};
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bad = |e: safetensors::SafeTensorError| {
        anyhow::anyhow!("{} is not a valid safetensors file: {e}", path.display())
    };
    let st = SafeTensors::deserialize(&bytes).map_err(bad)?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(bad)?;
    let pre = meta.metadata().as_ref().and_then(declared);
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
            other => bail!("{}: tensor `{key}` is {other:?}; weights must be floats", path.display()),
        };
        sd.insert(key, Tensor { shape: view.shape().to_vec(), data, dtype });
    }
    Ok((normalise(path, sd)?, pre))
}

/// The checkpoint's `features.*` tensors under their torchvision names, and the input convention the
/// file declares (safetensors metadata; a `.pth` declares none).
pub fn read_checkpoint(path: &Path) -> Result<(StateDict, Option<Preprocessing>)> {
    if looks_like_safetensors(path)? {
        return read_safetensors(path);
    }
    let sd = read_pth_filtered(path, &|k| conv_key(k).is_some())?;
    Ok((normalise(path, sd)?, None))
}

/// The input convention of a file known by its SHA-256 (a known download's checkpoint: caffe;
/// torchvision's: torch), and the name of that checkpoint.
fn known_by_hash(path: &Path) -> Result<Option<(Preprocessing, &'static str)>> {
    let hash = sha256_file(path)?;
    if let Some(m) = KNOWN_MODELS.iter().find(|m| sha256_matches(&hash, m.sha256_prefix)) {
        return Ok(Some((m.preprocessing, m.file_name)));
    }
    Ok(TORCHVISION
        .iter()
        .find(|(_, p)| sha256_matches(&hash, p))
        .map(|&(name, _)| (Preprocessing::Torch, name)))
}

/// Runs `impasto models import`: writes `cache_dir/<arch>-conv-imagenet.safetensors` and returns it.
pub fn import(args: &ImportArgs, cache_dir: &Path, display: Display) -> Result<PathBuf> {
    let file = &args.file;
    if !file.exists() {
        bail!("cannot import {}: no such file", file.display());
    }
    if file.is_dir() {
        bail!("cannot import {}: it is a folder", file.display());
    }
    let (sd, declared) = read_checkpoint(file)?;
    let idx = conv_indices(&sd);
    let n = idx.len();
    let list = idx.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    let arch = match args.model {
        Some(m) => Arch::from(m),
        None => match arch_for_conv_count(n).and_then(Arch::from_name) {
            Some(a) => a,
            None => bail!(
                "cannot import {}: it has {n} convolutions (features.N.weight for N in [{list}]), \
                 neither vgg16 (13) nor vgg19 (16); is it a VGG checkpoint with torchvision key names?",
                file.display()
            ),
        },
    };
    let expected = known_model(arch.name())?.conv_count;
    if n != expected {
        bail!(
            "cannot import {} as {}: it has {n} convolutions (features.N.weight for N in [{list}]); {} has {expected}",
            file.display(),
            arch.name(),
            arch.name()
        );
    }
    let (pre, why) = match (args.preprocess, declared) {
        (Some(PreprocessArg::Caffe), _) => (Preprocessing::Caffe, "--preprocess".to_string()),
        (Some(PreprocessArg::Torch), _) => (Preprocessing::Torch, "--preprocess".to_string()),
        (None, Some(p)) => (p, "as the file declares".to_string()),
        (None, None) => match known_by_hash(file)? {
            Some((p, name)) => (p, format!("the file is {name}")),
            None => bail!(
                "cannot import {}: its input convention is unknown; pass --preprocess caffe (BGR 0..255 minus the mean: \
                 the original Caffe VGG weights, e.g. vgg16-00b39a1b.pth) or --preprocess torch (RGB 0..1, mean/std: \
                 torchvision's, e.g. vgg16-397923af.pth)",
                file.display()
            ),
        },
    };
    std::fs::create_dir_all(cache_dir)
        .with_context(|| format!("cannot create the cache folder {}", cache_dir.display()))?;
    let out = weights::cached_file(cache_dir, arch);
    let replaced = out.is_file();
    to_conv_safetensors(&sd, arch.name(), n, pre, &out)?;
    if display != Display::Quiet {
        note(&format!(
            "imported {} as {} ({n} convolutions, {} input: {why}){}: {} ({})",
            file.display(),
            arch.name(),
            pre.as_str(),
            if replaced { ", replacing the cached one" } else { "" },
            out.display(),
            weights::size_text(&out)
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_under_a_prefix_are_found() {
        assert_eq!(conv_key("features.0.weight"), Some("features.0.weight"));
        assert_eq!(conv_key("state_dict.features.0.bias"), Some("features.0.bias"));
        assert_eq!(conv_key("module.features.28.weight"), Some("features.28.weight"));
        assert_eq!(conv_key("classifier.0.weight"), None);
        assert_eq!(conv_key("myfeatures.0.weight"), None);
    }

    #[test]
    fn half_floats() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8000), -0.0);
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn declarations() {
        let m = |k: &str, v: &str| HashMap::from([(k.to_string(), v.to_string())]);
        assert_eq!(declared(&m("preprocessing", "torch")), Some(Preprocessing::Torch));
        assert_eq!(declared(&m("input", "BGR 0..255 minus mean")), Some(Preprocessing::Caffe));
        assert_eq!(declared(&m("input", "RGB 0..1")), Some(Preprocessing::Torch));
        assert_eq!(declared(&m("other", "x")), None);
    }
}
