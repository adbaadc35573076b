//! Any checkpoint impasto accepts, told apart by its bytes (not its name): the format detection,
//! `.pth` and safetensors read to the same tensors, key prefixes, the input convention a file
//! declares, errors that name the format and say their cause once, and a `.pth` converted in memory
//! to exactly the file an import writes.

use std::collections::HashMap;
use std::error::Error as _;

use impasto_weights::{
    Arch, Error, Format, Preprocess, StateDict, Tensor, conv_key, read_checkpoint, read_checkpoint_bytes,
    read_pth, read_pth_bytes, to_conv_safetensors,
};

use crate::fixtures::{data, expected};

#[test]
fn the_format_comes_from_the_bytes() {
    let zip = std::fs::read(data("vgg_zip.pth")).unwrap();
    let legacy = std::fs::read(data("vgg_legacy.pth")).unwrap();
    let st = std::fs::read(data("expected.safetensors")).unwrap();
    assert_eq!(Format::detect(&zip), Some(Format::PthZip));
    assert_eq!(Format::detect(&legacy), Some(Format::PthLegacy));
    assert_eq!(Format::detect(&st), Some(Format::Safetensors));
    assert_eq!(Format::detect(b"hello, not weights"), None);
    assert_eq!(Format::PthZip.to_string(), "PyTorch checkpoint (zip format)");
    // A .pth under a .safetensors name (and the reverse) is read for what it is.
    let dir = tempfile::tempdir().unwrap();
    let renamed = dir.path().join("w.safetensors");
    std::fs::write(&renamed, &zip).unwrap();
    let ckpt = read_checkpoint(&renamed).unwrap();
    assert_eq!(ckpt.format, Format::PthZip);
    assert_eq!(ckpt.tensors.len(), 6);
}

#[test]
fn files_and_bytes_give_the_same_convolutions() {
    let want = expected();
    for f in ["vgg_zip.pth", "vgg_zip_p4.pth", "vgg_legacy.pth", "nested.pth"] {
        let from_file = read_checkpoint(&data(f)).unwrap();
        let bytes = std::fs::read(data(f)).unwrap();
        let from_bytes = read_checkpoint_bytes(&bytes, &data(f)).unwrap();
        assert_eq!(from_file, from_bytes, "{f}");
        assert_eq!(from_file.declared, None);
        let keys: Vec<&str> = from_file.tensors.keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 6, "{f}: {keys:?}");
        for (k, t) in &from_file.tensors {
            assert!(t.data.iter().zip(&want[k].1).all(|(a, b)| a.to_bits() == b.to_bits()), "{f} {k}");
        }
    }
}

#[test]
fn keys_under_a_prefix_are_found() {
    assert_eq!(conv_key("features.0.weight"), Some("features.0.weight"));
    assert_eq!(conv_key("state_dict.features.0.bias"), Some("features.0.bias"));
    assert_eq!(conv_key("module.features.28.weight"), Some("features.28.weight"));
    assert_eq!(conv_key("classifier.0.weight"), None);
    assert_eq!(conv_key("myfeatures.0.weight"), None);
}

#[test]
fn declarations() {
    let m = |k: &str, v: &str| HashMap::from([(k.to_string(), v.to_string())]);
    assert_eq!(Preprocess::declared(&m("preprocessing", "torch")), Some(Preprocess::Torch));
    assert_eq!(Preprocess::declared(&m("input", "BGR 0..255 minus mean")), Some(Preprocess::Caffe));
    assert_eq!(Preprocess::declared(&m("input", "RGB 0..1")), Some(Preprocess::Torch));
    assert_eq!(Preprocess::declared(&m("other", "x")), None);
}

/// A VGG-16-shaped state dict: conv1_1 real-sized, later convolutions 2 filters wide.
fn tiny_vgg16() -> StateDict {
    let mut sd = StateDict::new();
    let mut c_in = 3;
    for layer in Arch::Vgg16.layers() {
        let impasto_weights::LayerKind::Conv { conv, torch_index, .. } = layer.kind else { continue };
        let c_out = if conv == 0 { 64 } else { 2 };
        let w = (0..c_out * c_in * 9).map(|i| ((i * 7 + conv) % 23) as f32 * 0.01 - 0.1).collect();
        let t =
            |shape: Vec<usize>, data: Vec<f32>| Tensor { shape, data, dtype: impasto_weights::DType::F32 };
        sd.insert(format!("features.{torch_index}.weight"), t(vec![c_out, c_in, 3, 3], w));
        sd.insert(format!("features.{torch_index}.bias"), t(vec![c_out], vec![0.5; c_out]));
        c_in = c_out;
    }
    sd
}

#[test]
fn conversion_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.safetensors"), dir.path().join("b.safetensors"));
    to_conv_safetensors(&tiny_vgg16(), "vgg16", 13, Preprocess::Torch, &a).unwrap();
    to_conv_safetensors(&tiny_vgg16(), "vgg16", 13, Preprocess::Torch, &b).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let back = read_checkpoint(&a).unwrap();
    assert_eq!(back.format, Format::Safetensors);
    assert_eq!(back.declared, Some(Preprocess::Torch));
    assert_eq!(back.tensors, tiny_vgg16());
}

#[test]
fn a_checkpoint_that_is_not_the_architecture_names_its_format() {
    let bytes = std::fs::read(data("vgg_zip.pth")).unwrap();
    let err =
        impasto_weights::pth_to_conv_safetensors(&bytes, "w.pth".as_ref(), Arch::Vgg16, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "PyTorch checkpoint (zip format) w.pth: the state dict has 3 convolutions (features.N.weight for N in \
         [0, 2, 5]); vgg16 has 13"
    );
}

#[test]
fn a_cut_zip_says_its_cause_once() {
    let bytes = std::fs::read(data("vgg_zip.pth")).unwrap();
    let cut = &bytes[..bytes.len() / 2];
    let err = read_pth_bytes(cut, &|_| true).unwrap_err();
    assert!(matches!(err, Error::Zip { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "PyTorch checkpoint <memory>: bad zip archive: invalid Zip archive: Could not find EOCD"
    );
    assert!(err.source().is_none(), "the cause is in the message, so not also the source");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pth");
    let err = read_pth(&missing).unwrap_err();
    assert!(err.source().is_none() && err.to_string().contains("No such file"), "{err}");
}
