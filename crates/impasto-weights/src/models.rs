//! The models impasto knows how to download (name, URL, file name, SHA-256 prefix, architecture),
//! and the URL a download uses (the table's, or an override the caller got from
//! `IMPASTO_MODEL_URL`).

use crate::arch::Arch;
use crate::error::{Error, Result};
use crate::preprocess::Preprocess;

/// A downloadable model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownModel {
    /// The name used on the command line (`vgg16`, `vgg19`).
    pub name: &'static str,
    /// Where the PyTorch checkpoint is downloaded from.
    pub url: &'static str,
    /// The checkpoint's file name (torch-hub style: `<name>-<sha256 prefix>.pth`).
    pub file_name: &'static str,
    /// The first hex digits of the checkpoint's SHA-256 (from its file name).
    pub sha256_prefix: &'static str,
    /// The architecture.
    pub arch: Arch,
    /// How the weights expect their input.
    pub preprocess: Preprocess,
}

/// The caffe-converted VGG checkpoints of jcjohnson/neural-style-pt (torchvision key names; BGR
/// 0–255 input with the ImageNet mean subtracted).
pub const KNOWN_MODELS: &[KnownModel] = &[
    KnownModel {
        name: "vgg16",
        url: "https://web.eecs.umich.edu/~justincj/models/vgg16-00b39a1b.pth",
        file_name: "vgg16-00b39a1b.pth",
        sha256_prefix: "00b39a1b",
        arch: Arch::Vgg16,
        preprocess: Preprocess::Caffe,
    },
    KnownModel {
        name: "vgg19",
        url: "https://web.eecs.umich.edu/~justincj/models/vgg19-d01eb7cb.pth",
        file_name: "vgg19-d01eb7cb.pth",
        sha256_prefix: "d01eb7cb",
        arch: Arch::Vgg19,
        preprocess: Preprocess::Caffe,
    },
];

/// The known model of architecture `arch`.
pub fn known_model_for(arch: Arch) -> &'static KnownModel {
    match arch {
        Arch::Vgg16 => &KNOWN_MODELS[0],
        Arch::Vgg19 => &KNOWN_MODELS[1],
    }
}

/// The known model called `name` (case-insensitive).
pub fn known_model(name: &str) -> Result<&'static KnownModel> {
    KNOWN_MODELS.iter().find(|m| m.name.eq_ignore_ascii_case(name)).ok_or_else(|| Error::UnknownModel {
        name: name.to_string(),
        known: KNOWN_MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", "),
    })
}

/// The URL to download model `name` from: the table's, unless `override_url` (the CLI passes
/// `IMPASTO_MODEL_URL`) is given and non-empty. An override may name a mirror folder: `{file}` in
/// it is replaced by the model's file name, and one ending in `/` gets the file name appended;
/// otherwise it is used as it is.
pub fn model_url(name: &str, override_url: Option<&str>) -> Result<String> {
    let m = known_model(name)?;
    Ok(match override_url.map(str::trim) {
        Some(u) if u.contains("{file}") => u.replace("{file}", m.file_name),
        Some(u) if u.ends_with('/') => format!("{u}{}", m.file_name),
        Some(u) if !u.is_empty() => u.to_string(),
        _ => m.url.to_string(),
    })
}
