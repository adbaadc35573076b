//! Configuration validation, weights lookup and loading errors (missing keys, wrong shapes), VGG-19 loading.

use std::collections::HashMap;

use impasto::{Arch, Error, Pooling, StyleConfig, Vgg};
use safetensors::tensor::{Dtype, TensorView};

#[test]
fn defaults_are_valid_and_bad_values_are_refused() {
    StyleConfig::default().validate(1).unwrap();
    StyleConfig { threads: impasto::MAX_THREADS, ..Default::default() }.validate(1).unwrap();
    let cases: Vec<(StyleConfig, usize, &str)> = vec![
        (StyleConfig { size: 0, ..Default::default() }, 1, "size"),
        (StyleConfig { size: 100_000, ..Default::default() }, 1, "size"),
        (StyleConfig { content_weight: -1.0, ..Default::default() }, 1, "content weight"),
        (StyleConfig { style_weight: f32::NAN, ..Default::default() }, 1, "style weight"),
        (StyleConfig { style_blend: Some(vec![1.0]), ..Default::default() }, 2, "style blend"),
        (
            StyleConfig { style_layer_weights: Some(vec![1.0, 2.0]), ..Default::default() },
            1,
            "style layer weights",
        ),
        (StyleConfig { content_layers: vec!["relu9_9".into()], ..Default::default() }, 1, "relu9_9"),
        (StyleConfig::default(), 0, "style image"),
        (StyleConfig { threads: impasto::MAX_THREADS + 1, ..Default::default() }, 1, "at most 1024"),
    ];
    for (cfg, n, needle) in cases {
        let err = cfg.validate(n).expect_err(needle).to_string();
        assert!(err.contains(needle), "`{err}` should mention `{needle}`");
    }
}

#[test]
fn layer_names_cover_both_architectures() {
    assert_eq!(Arch::Vgg16.layer_index("relu5_1").unwrap(), 25);
    assert_eq!(Arch::Vgg19.layer_index("relu5_1").unwrap(), 29);
    assert_eq!(Arch::Vgg19.layer_index("relu5_4").unwrap(), 35);
    assert!(Arch::Vgg16.layer_index("relu5_4").is_err());
    assert_eq!(Arch::Vgg16.layers().len(), 31);
    assert_eq!(Arch::Vgg19.layers().len(), 37);
}

/// Writes a safetensors file with the torchvision keys of `arch`'s first `n` convolutions.
fn write_weights(path: &std::path::Path, arch: Arch, n: usize, corrupt: Option<(&str, Vec<usize>)>) {
    let mut bufs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for l in arch.layers() {
        if let impasto::LayerKind::Conv { conv, torch_index, c_in, c_out } = l.kind {
            if conv >= n {
                break;
            }
            for (suffix, shape) in [("weight", vec![c_out, c_in, 3, 3]), ("bias", vec![c_out])] {
                let key = format!("features.{torch_index}.{suffix}");
                let shape = match &corrupt {
                    Some((k, s)) if *k == key => s.clone(),
                    _ => shape,
                };
                if shape.is_empty() {
                    continue; // "corrupt" with an empty shape = leave the key out
                }
                let count: usize = shape.iter().product();
                let bytes = (0..count).flat_map(|i| ((i % 7) as f32 * 0.01).to_le_bytes()).collect();
                bufs.push((key, shape, bytes));
            }
        }
    }
    let views: HashMap<String, TensorView<'_>> = bufs
        .iter()
        .map(|(k, s, b)| (k.clone(), TensorView::new(Dtype::F32, s.clone(), b).unwrap()))
        .collect();
    let meta = HashMap::from([("preprocessing".to_string(), "torch".to_string())]);
    safetensors::serialize_to_file(views, Some(meta), path).unwrap();
}

#[test]
fn vgg19_loads_from_torchvision_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vgg19.safetensors");
    write_weights(&path, Arch::Vgg19, 16, None);
    let net = Vgg::load(&path, Arch::Vgg19, Pooling::Avg, None, "relu5_4").unwrap();
    assert_eq!(net.preprocess(), impasto::Preprocess::Torch);
    assert_eq!(net.layers().last().unwrap().name, "relu5_4");
    let x = vec![0.5; 3 * 32 * 32];
    let f = net.features(&x, 32, 32, &["relu5_4", "conv3_4"]).unwrap();
    assert_eq!(f[0].1, [512, 2, 2]);
    assert_eq!(f[1].1, [256, 8, 8]);
}

#[test]
fn weights_errors_name_key_and_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    write_weights(&path, Arch::Vgg16, 13, Some(("features.7.weight", vec![128, 64, 3, 3])));
    let err = Vgg::load(&path, Arch::Vgg16, Pooling::Max, None, "relu5_1").unwrap_err();
    assert!(matches!(err, Error::WeightsShape { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("features.7.weight")
            && msg.contains("[128, 64, 3, 3]")
            && msg.contains("[128, 128, 3, 3]"),
        "{msg}"
    );

    write_weights(&path, Arch::Vgg16, 13, Some(("features.24.bias", vec![])));
    let msg = Vgg::load(&path, Arch::Vgg16, Pooling::Max, None, "relu5_1").unwrap_err().to_string();
    assert!(msg.contains("features.24.bias") && msg.contains("conv5_1"), "{msg}");
    // The cut network never reads layers it does not need.
    Vgg::load(&path, Arch::Vgg16, Pooling::Max, None, "relu4_2").unwrap();

    std::fs::write(&path, b"not a safetensors file").unwrap();
    let msg = Vgg::load(&path, Arch::Vgg16, Pooling::Max, None, "relu5_1").unwrap_err().to_string();
    assert!(msg.contains("not a valid safetensors"), "{msg}");
}

#[test]
fn weights_lookup_order_and_message() {
    let dir = tempfile::tempdir().unwrap();
    let cached = dir.path().join(impasto::cache_file_name(Arch::Vgg16));
    let err = impasto::locate_weights(Arch::Vgg16, None, None, Some(dir.path())).unwrap_err().to_string();
    assert_eq!(err, format!("no vgg16 weights found (looked in: {})", cached.display()));
    std::fs::write(&cached, b"x").unwrap();
    assert_eq!(impasto::locate_weights(Arch::Vgg16, None, None, Some(dir.path())).unwrap(), cached);
    let other = dir.path().join("other.safetensors");
    std::fs::write(&other, b"x").unwrap();
    assert_eq!(impasto::locate_weights(Arch::Vgg16, None, Some(&other), Some(dir.path())).unwrap(), other);
    assert_eq!(impasto::locate_weights(Arch::Vgg16, Some(&cached), Some(&other), None).unwrap(), cached);
    let missing = dir.path().join("nope.safetensors");
    let err =
        impasto::locate_weights(Arch::Vgg16, None, Some(&missing), Some(dir.path())).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "no vgg16 weights: the weights file the environment names, {} does not exist",
            missing.display()
        )
    );
}

#[test]
fn lbfgs_history_is_capped_by_memory_on_large_images() {
    let px = |side: usize| 3 * side * side;
    assert_eq!(impasto::lbfgs_history_for(100, px(512)), 100);
    assert_eq!(impasto::lbfgs_history_for(100, px(1024)), 32);
    assert_eq!(impasto::lbfgs_history_for(100, px(2048)), 8);
    assert_eq!(impasto::lbfgs_history_for(100, px(8192)), 5);
    assert_eq!(impasto::lbfgs_history_for(3, px(8192)), 3);
}

#[test]
fn weights_from_bytes_are_checked_as_files_are() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vgg19.safetensors");
    write_weights(&path, Arch::Vgg19, 2, None);
    let bytes = std::fs::read(&path).unwrap();
    let net = Vgg::from_safetensors_bytes(&bytes, Arch::Vgg19, Pooling::Max, None, "relu1_2").unwrap();
    assert_eq!(net.preprocess(), impasto::Preprocess::Torch);
    assert_eq!(net.layers().last().unwrap().name, "relu1_2");
    let err = Vgg::from_safetensors_bytes(&bytes, Arch::Vgg19, Pooling::Max, None, "relu2_1").unwrap_err();
    assert!(matches!(&err, Error::WeightsMissingKey { key, .. } if key == "features.5.weight"), "{err}");
    assert!(err.to_string().contains("<memory>"), "{err}");
    // Every truncation is an error, never a panic.
    for cut in (0..bytes.len()).step_by(997) {
        assert!(
            Vgg::from_safetensors_bytes(&bytes[..cut], Arch::Vgg19, Pooling::Max, None, "relu1_1").is_err()
        );
    }
}

#[test]
fn huge_or_overflowing_declared_tensors_are_errors_not_allocations() {
    /// A safetensors file whose header declares `features.0.weight` of `shape` at bytes `0..end`,
    /// followed by `present` bytes.
    fn file(shape: &str, end: u64, present: usize) -> Vec<u8> {
        let header =
            format!(r#"{{"features.0.weight":{{"dtype":"F32","shape":{shape},"data_offsets":[0,{end}]}}}}"#);
        [&(header.len() as u64).to_le_bytes()[..], header.as_bytes(), &vec![0u8; present]].concat()
    }
    for bytes in [
        // 1 TB declared, in the shape and the offsets, with 16 bytes present.
        file("[262144,1048576,1,1]", 1 << 40, 16),
        file("[262144,1048576,1,1]", 16, 16),
        // An element count that overflows.
        file("[4294967296,4294967296,4294967296,3]", 16, 16),
        // A header length of 2^63.
        [&(1u64 << 63).to_le_bytes()[..], b"{}"].concat(),
    ] {
        let err =
            Vgg::from_safetensors_bytes(&bytes, Arch::Vgg16, Pooling::Max, None, "relu1_1").unwrap_err();
        assert!(matches!(err, Error::WeightsFormat { .. }), "{err}");
    }
}
