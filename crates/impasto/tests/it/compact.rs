//! The compact VGG-16: packing (deterministic, within half a quantisation step, metadata kept), loading
//! a packed file and the built-in copy, the typed error past relu4_2, and the built-in model's features
//! against the full f32 weights.

use std::collections::HashMap;
use std::path::Path;

use impasto::{Arch, Error, LayerKind, Pooling, Vgg, pack_compact};
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};

use crate::common::{Lcg, real_weights};

/// A full VGG-16 weights file (f32) with random convolutions conv1_1..conv4_2 (what packing reads),
/// plus the metadata given.
fn random_full_weights(meta: &[(&str, &str)]) -> Vec<u8> {
    let mut rng = Lcg(7);
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for l in Arch::Vgg16.layers() {
        let LayerKind::Conv { conv, torch_index, c_in, c_out } = l.kind else { continue };
        if conv >= 9 {
            break;
        }
        let mut w = rng.vec(c_out * c_in * 9, 0.05);
        w[c_in * 9] = 0.4; // an outlier in channel 1
        let le = |v: Vec<f32>| v.into_iter().flat_map(f32::to_le_bytes).collect::<Vec<u8>>();
        tensors.push((format!("features.{torch_index}.weight"), vec![c_out, c_in, 3, 3], le(w)));
        tensors.push((format!("features.{torch_index}.bias"), vec![c_out], le(rng.vec(c_out, 0.5))));
    }
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .map(|(k, s, b)| (k.as_str(), TensorView::new(Dtype::F32, s.clone(), b).unwrap()))
        .collect();
    let meta: HashMap<String, String> = meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    safetensors::serialize(views, Some(meta)).unwrap()
}

/// The random full weights (with metadata `input` and `source`) and their packed form, made once.
fn packed_pair() -> &'static (Vec<u8>, Vec<u8>) {
    static PAIR: std::sync::OnceLock<(Vec<u8>, Vec<u8>)> = std::sync::OnceLock::new();
    PAIR.get_or_init(|| {
        let full = random_full_weights(&[("input", "BGR 0..255"), ("source", "test weights")]);
        let packed = pack_compact(&full, Path::new("full.safetensors")).unwrap();
        (full, packed)
    })
}

fn f32s(v: &TensorView<'_>) -> Vec<f32> {
    v.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

#[test]
fn packing_is_deterministic_within_half_a_step_and_keeps_the_metadata() {
    let (full, packed) = packed_pair();
    assert_eq!(*packed, pack_compact(full, Path::new("elsewhere")).unwrap(), "same bytes every time");
    let src = SafeTensors::deserialize(full).unwrap();
    let st = SafeTensors::deserialize(packed).unwrap();
    let (_, meta) = SafeTensors::read_metadata(packed).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert_eq!(meta["format"], impasto::COMPACT_FORMAT);
    assert_eq!(meta["format_version"], impasto::COMPACT_FORMAT_VERSION);
    assert_eq!(meta["input"], "BGR 0..255");
    assert_eq!(meta["source"], "test weights");
    assert_eq!(meta["preprocessing"], "caffe");
    assert_eq!(meta["last_layer"], "relu4_2");
    assert_eq!(meta["layers"], "conv1_1,conv1_2,conv2_1,conv2_2,conv3_1,conv3_2,conv3_3,conv4_1,conv4_2");
    assert!(meta["license"].starts_with("CC BY 4.0"), "{}", meta["license"]);
    assert!(meta["attribution"].contains("Karen Simonyan and Andrew Zisserman"), "{}", meta["attribution"]);
    let sha = meta["source_sha256"].clone();
    assert_eq!(sha.len(), 64);
    // 8 bits a weight, and nothing past conv4_2.
    assert!(packed.len() < full.len() / 3, "{} of {}", packed.len(), full.len());
    assert!(st.tensor("features.21.weight_q").is_err());
    for i in [0, 2, 5, 7, 10, 12, 14, 17, 19] {
        let w = f32s(&src.tensor(&format!("features.{i}.weight")).unwrap());
        let q = st.tensor(&format!("features.{i}.weight_q")).unwrap();
        assert_eq!(q.dtype(), Dtype::I8);
        let scales = f32s(&st.tensor(&format!("features.{i}.weight_scale")).unwrap());
        let bias = st.tensor(&format!("features.{i}.bias")).unwrap();
        assert_eq!(f32s(&bias), f32s(&src.tensor(&format!("features.{i}.bias")).unwrap()), "biases stay f32");
        let k = w.len() / scales.len();
        let mut clipped = 0;
        for (j, (&v, &b)) in w.iter().zip(q.data()).enumerate() {
            let (q, s) = (b as i8, scales[j / k]);
            if v.abs() <= 127.0 * s {
                assert!(
                    (f32::from(q) * s - v).abs() <= s / 2.0 * 1.0001,
                    "features.{i} [{j}]: {v} vs {q}·{s}"
                );
            } else {
                // Clipped: the threshold is at least half the channel's largest magnitude.
                assert_eq!(i32::from(q).abs(), 127);
                assert!(v.abs() <= 2.0 * 127.0 * s * 1.0001, "features.{i} [{j}]: {v} vs {q}·{s}");
                clipped += 1;
            }
        }
        assert!(clipped <= w.len() / 50, "features.{i}: {clipped} clipped");
    }
    let e = pack_compact(packed, Path::new("q.safetensors")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "weights file q.safetensors is not a valid safetensors file: it is a compact file already; pack the full f32 weights"
    );
}

#[test]
fn a_packed_file_loads_up_to_relu4_2_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q8.safetensors");
    std::fs::write(&path, &packed_pair().1).unwrap();
    let net = Vgg::load(&path, Arch::Vgg16, Pooling::Max, None, "relu4_2").unwrap();
    assert_eq!(net.layers().last().unwrap().name, "relu4_2");
    let e = Vgg::load(&path, Arch::Vgg16, Pooling::Max, None, "relu5_1").unwrap_err();
    assert!(matches!(e, Error::WeightsTooShallow { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "weights file {} (a compact VGG-16 made by `impasto models pack`) stops at relu4_2; relu5_1 needs the \
             full vgg16 weights",
            path.display()
        )
    );
    let e = Vgg::load(&path, Arch::Vgg19, Pooling::Max, None, "relu1_1").unwrap_err();
    assert!(matches!(e, Error::NotVgg16 { .. }), "{e}");
    assert!(e.to_string().contains("vgg19 needs vgg19 weights"), "{e}");
    assert!(!e.to_string().contains("--weights"), "no command-line advice in the library: {e}");
}

#[test]
fn the_built_in_model_stops_at_relu4_2() {
    let net = Vgg::embedded(Pooling::Avg, "relu4_2").unwrap();
    assert_eq!(
        (net.arch(), net.pooling(), net.preprocess()),
        (Arch::Vgg16, Pooling::Avg, impasto::Preprocess::Caffe)
    );
    assert_eq!(net.layers().len(), Arch::Vgg16.layer_index("relu4_2").unwrap() + 1);
    assert_eq!(Vgg::embedded(Pooling::Max, "relu1_1").unwrap().layers().len(), 2);
    for deeper in ["conv4_3", "pool4", "relu5_1"] {
        let e = Vgg::embedded(Pooling::Max, deeper).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("the built-in compact VGG-16 stops at relu4_2; {deeper} needs the full vgg16 weights")
        );
    }
    assert!(matches!(Vgg::embedded(Pooling::Max, "relu9_9"), Err(Error::UnknownLayer { .. })));
    let bytes = impasto::embedded_model().unwrap();
    assert!(bytes.len() < 6 << 20, "{} bytes", bytes.len());
}

/// Relative L2 error of `a` against the reference `b`.
fn rel(a: &[f32], b: &[f32]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2)).sum();
    let n: f64 = b.iter().map(|&y| f64::from(y).powi(2)).sum();
    (d / n).sqrt()
}

#[test]
fn the_built_in_model_is_close_to_the_full_weights() {
    let Some(path) = real_weights() else { return };
    let layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2"];
    let full = Vgg::load(&path, Arch::Vgg16, Pooling::Max, None, "relu4_2").unwrap();
    let q = Vgg::embedded(Pooling::Max, "relu4_2").unwrap();
    let img = impasto::load_image(&crate::common::shared_dir().join("images/chelsea.png")).unwrap();
    let (w, h) = impasto::fit_longest_side(img.width(), img.height(), 96);
    let px = impasto::to_planar(&impasto::resize(&img, w, h));
    let a = full.features(&px, w as usize, h as usize, &layers).unwrap();
    let b = q.features(&px, w as usize, h as usize, &layers).unwrap();
    for (name, ((fa, _), (fb, _))) in layers.iter().zip(a.iter().zip(&b)) {
        let e = rel(fb, fa);
        eprintln!("compact vs full, chelsea at 96 px, {name}: relative feature error {:.2} %", 100.0 * e);
        // Measured 0.3–2.1 % at 256 px on the shared photos.
        assert!(e < 0.04, "{name}: {e}");
    }
}
