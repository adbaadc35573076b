//! The known-model table, URL overrides and the torch-hub hash prefix in file names.

use impasto_weights::{
    Arch, Error, KNOWN_MODELS, Preprocess, known_model, known_model_for, model_url, sha256_matches,
    sha256_prefix_from_file_name,
};

#[test]
fn known_models_are_consistent() {
    assert_eq!(KNOWN_MODELS.len(), 2);
    for m in KNOWN_MODELS {
        assert!(m.url.ends_with(m.file_name), "{m:?}");
        assert_eq!(sha256_prefix_from_file_name(m.file_name), Some(m.sha256_prefix));
        assert_eq!(m.arch.name(), m.name);
        assert_eq!(m.preprocess, Preprocess::Caffe);
        assert_eq!(Arch::from_conv_count(m.arch.conv_count()), Some(m.arch));
        assert_eq!(known_model_for(m.arch), m);
    }
    assert_eq!(
        known_model("VGG16").unwrap().url,
        "https://web.eecs.umich.edu/~justincj/models/vgg16-00b39a1b.pth"
    );
    assert_eq!(known_model("vgg19").unwrap().arch.conv_count(), 16);
    assert_eq!(Arch::Vgg16.conv_count(), 13);
    assert_eq!(Arch::from_conv_count(3), None);
}

#[test]
fn model_url_takes_an_override() {
    let table = known_model("vgg19").unwrap().url;
    assert_eq!(model_url("vgg19", None).unwrap(), table);
    assert_eq!(model_url("vgg19", Some("  ")).unwrap(), table);
    assert_eq!(model_url("vgg19", Some("http://mirror/x.pth")).unwrap(), "http://mirror/x.pth");
    assert_eq!(model_url("vgg19", Some("http://mirror/m/")).unwrap(), "http://mirror/m/vgg19-d01eb7cb.pth");
    assert_eq!(model_url("vgg16", Some("file-{file}")).unwrap(), "file-vgg16-00b39a1b.pth");
    let err = model_url("alexnet", None).unwrap_err();
    assert!(matches!(err, Error::UnknownModel { .. }));
    assert!(err.to_string().contains("alexnet") && err.to_string().contains("vgg16, vgg19"));
}

#[test]
fn hash_prefixes() {
    assert_eq!(sha256_prefix_from_file_name("vgg16-00b39a1b.pth"), Some("00b39a1b"));
    assert_eq!(sha256_prefix_from_file_name("model.pth"), None);
    assert_eq!(sha256_prefix_from_file_name("my-model.pth"), None);
    assert!(sha256_matches("00B39A1Bffff", "00b39a1b"));
    assert!(!sha256_matches("00b39a1c", "00b39a1b"));
    assert!(!sha256_matches("00b", "00b39a1b"));
}
