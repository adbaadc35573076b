//! `impasto models import FILE`: reads a VGG checkpoint the user already has with
//! `impasto_weights::read_checkpoint` (a PyTorch `.pth` or a safetensors file, told apart by its
//! bytes, with torchvision key names, possibly under a prefix such as `state_dict.` or `module.`),
//! tells VGG-16 from VGG-19 by its convolutions, settles its input convention (the flag, the file's
//! own declaration, or the SHA-256 of a known checkpoint) and writes the cache's form with
//! `impasto_weights::to_conv_safetensors`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use impasto::{Arch, Preprocess};
use impasto_weights::{conv_indices, known_checkpoint, read_checkpoint, sha256_file, to_conv_safetensors};

use crate::args::PreprocessArg;
use crate::models::ImportArgs;
use crate::progress::{Display, note};
use crate::weights;

/// `caffe` or `torch`: what a safetensors weights file declares (for `impasto models list`).
pub fn declared_preprocessing(path: &Path) -> Option<String> {
    let meta = impasto_weights::safetensors_metadata(path)?;
    Preprocess::declared(&meta).map(|p| p.name().to_string())
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
    let ckpt = read_checkpoint(file)?;
    let (sd, declared) = (ckpt.tensors, ckpt.declared);
    let idx = conv_indices(&sd);
    let n = idx.len();
    let list = idx.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    let arch = match args.model {
        Some(m) => Arch::from(m),
        None => match Arch::from_conv_count(n) {
            Some(a) => a,
            None => bail!(
                "cannot import {}: it has {n} convolutions (features.N.weight for N in [{list}]), \
                 neither vgg16 (13) nor vgg19 (16); is it a VGG checkpoint with torchvision key names?",
                file.display()
            ),
        },
    };
    let expected = arch.conv_count();
    if n != expected {
        bail!(
            "cannot import {} as {}: it has {n} convolutions (features.N.weight for N in [{list}]); {} has {expected}",
            file.display(),
            arch.name(),
            arch.name()
        );
    }
    let (pre, why) = match (args.preprocess, declared) {
        (Some(PreprocessArg::Caffe), _) => (Preprocess::Caffe, "--preprocess".to_string()),
        (Some(PreprocessArg::Torch), _) => (Preprocess::Torch, "--preprocess".to_string()),
        (None, Some(p)) => (p, "as the file declares".to_string()),
        (None, None) => match known_checkpoint(&sha256_file(file)?) {
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
            pre.name(),
            if replaced { ", replacing the cached one" } else { "" },
            out.display(),
            weights::size_text(&out)
        ));
    }
    Ok(out)
}
