//! Conversion of a state dict to impasto's conv-only safetensors form, and file hashing.

use impasto_weights::{
    DType, Error, Preprocess, StateDict, Tensor, conv_indices, read_pth, sha256_file, to_conv_safetensors,
};
use safetensors::SafeTensors;

use crate::fixtures::{data, expected};

#[test]
fn conversion_keeps_only_convolutions_with_metadata() {
    let want = expected();
    let dir = tempfile::tempdir().unwrap();
    for f in ["vgg_zip.pth", "vgg_legacy.pth"] {
        let sd = read_pth(&data(f)).unwrap();
        assert_eq!(conv_indices(&sd), [0, 2, 5]);
        let out = dir.path().join(format!("{f}.safetensors"));
        let keys = to_conv_safetensors(&sd, "tiny", 3, Preprocess::Caffe, &out).unwrap();
        assert_eq!(
            keys,
            [
                "features.0.weight",
                "features.0.bias",
                "features.2.weight",
                "features.2.bias",
                "features.5.weight",
                "features.5.bias"
            ]
        );
        let bytes = std::fs::read(&out).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut names = st.names();
        names.sort();
        assert_eq!(names.len(), 6);
        assert!(names.iter().all(|n| n.starts_with("features.")), "{names:?}");
        for k in &keys {
            let v = st.tensor(k).unwrap();
            assert_eq!(v.dtype(), safetensors::Dtype::F32);
            assert_eq!(v.shape(), want[k].0.as_slice(), "{k}");
            let vals: Vec<f32> =
                v.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            assert_eq!(vals, want[k].1, "{k}");
        }
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta = meta.metadata().clone().unwrap();
        assert_eq!(meta["preprocessing"], "caffe");
        assert_eq!(meta["architecture"], "tiny");
        // No temporary file is left beside the output.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(names.iter().all(|n| !n.to_string_lossy().ends_with(".tmp")), "{names:?}");
    }
}

#[test]
fn preprocessing_is_a_parameter() {
    let sd = read_pth(&data("vgg_zip.pth")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.safetensors");
    to_conv_safetensors(&sd, "tiny", 3, Preprocess::Torch, &out).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["preprocessing"], "torch");
    assert_eq!(Preprocess::from_name("Caffe"), Some(Preprocess::Caffe));
}

#[test]
fn wrong_conv_count_or_shapes_are_named() {
    let sd = read_pth(&data("vgg_zip.pth")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.safetensors");
    let err = to_conv_safetensors(&sd, "vgg16", 13, Preprocess::Caffe, &out).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Convert { .. }));
    assert!(
        msg.contains("3 convolutions") && msg.contains("[0, 2, 5]") && msg.contains("vgg16 has 13"),
        "{msg}"
    );

    let mut no_bias = sd.clone();
    no_bias.remove("features.2.bias");
    let msg = to_conv_safetensors(&no_bias, "tiny", 3, Preprocess::Caffe, &out).unwrap_err().to_string();
    assert!(msg.contains("`features.2.bias` is missing"), "{msg}");

    let mut bad: StateDict = sd.clone();
    bad.insert(
        "features.2.weight".into(),
        Tensor { shape: vec![4, 5, 3, 3], data: vec![0.0; 180], dtype: DType::F32 },
    );
    let msg = to_conv_safetensors(&bad, "tiny", 3, Preprocess::Caffe, &out).unwrap_err().to_string();
    assert!(msg.contains("features.2.weight") && msg.contains("[4, 5, 3, 3]"), "{msg}");

    let mut nan = sd.clone();
    nan.get_mut("features.0.bias").unwrap().data[1] = f32::NAN;
    let msg = to_conv_safetensors(&nan, "tiny", 3, Preprocess::Caffe, &out).unwrap_err().to_string();
    assert!(msg.contains("features.0.bias") && msg.contains("non-finite"), "{msg}");
    assert!(!out.exists());
}

#[test]
fn sha256_of_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("abc");
    std::fs::write(&p, b"abc").unwrap();
    assert_eq!(sha256_file(&p).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert!(matches!(sha256_file(&dir.path().join("missing")), Err(Error::Io { .. })));
}
