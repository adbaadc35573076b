//! Reading PyTorch checkpoints: both formats to the exact values torch reads, the restricted
//! unpickler refusing foreign globals, and corrupt or truncated files failing cleanly.

use impasto_weights::{DType, Error, read_pth, read_pth_filtered};

use crate::fixtures::{data, expected};

fn check_vgg(name: &str) {
    let sd = read_pth(&data(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let want = expected();
    let keys: Vec<&String> = sd.keys().collect();
    let want_keys: Vec<&String> = want.keys().filter(|k| *k != "param").collect();
    assert_eq!(keys, want_keys, "{name}");
    for (k, (shape, values)) in &want {
        if k == "param" {
            continue;
        }
        let t = &sd[k];
        assert_eq!(&t.shape, shape, "{name} {k}");
        assert_eq!(t.data.len(), t.numel());
        // Bit-exact: f16 and f64 convert to f32 exactly as torch's .float() does.
        let same = t.data.iter().zip(values).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{name} {k}: values differ");
    }
    assert_eq!(sd["features.2.bias"].dtype, DType::F16);
    assert_eq!(sd["features.5.bias"].dtype, DType::F64);
    assert_eq!(sd["features.0.weight"].dtype, DType::F32);
}

#[test]
fn zip_format_reads_exact_values() {
    check_vgg("vgg_zip.pth");
}

#[test]
fn zip_format_protocol_4_reads_exact_values() {
    check_vgg("vgg_zip_p4.pth");
}

#[test]
fn legacy_format_reads_exact_values() {
    check_vgg("vgg_legacy.pth");
}

#[test]
fn nested_checkpoint_is_flattened_with_dotted_names() {
    let sd = read_pth(&data("nested.pth")).unwrap();
    let want = expected();
    assert_eq!(sd["param"].data, want["param"].1);
    assert_eq!(sd["state_dict.features.0.weight"].data, want["features.0.weight"].1);
    assert!(!sd.contains_key("epoch") && !sd.contains_key("lr"));
    assert_eq!(sd.len(), want.len());
}

#[test]
fn filter_reads_only_kept_tensors() {
    for f in ["vgg_zip.pth", "vgg_legacy.pth"] {
        let sd = read_pth_filtered(&data(f), &|k| k.starts_with("features.")).unwrap();
        assert_eq!(sd.len(), 6, "{f}");
        assert!(sd.keys().all(|k| k.starts_with("features.")));
    }
}

#[test]
fn malicious_globals_are_refused() {
    for f in ["malicious_legacy.pth", "malicious_zip.pth"] {
        let path = data(f);
        let err = read_pth(&path).unwrap_err();
        assert!(matches!(&err, Error::RefusedGlobal { global, .. } if global == "os.system"), "{f}: {err:?}");
        let msg = err.to_string();
        assert!(msg.contains("refusing to load `os.system`"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("only state-dict globals are allowed"), "{msg}");
    }
}

#[test]
fn other_globals_are_refused_too() {
    let dir = tempfile::tempdir().unwrap();
    // builtins.eval via GLOBAL, and torchvision's VGG class (a whole pickled model, not a state dict).
    for (pickle, global) in [
        (&b"\x80\x02cbuiltins\neval\nq\x00."[..], "builtins.eval"),
        (&b"\x80\x02ctorchvision.models.vgg\nVGG\nq\x00)\x81q\x01."[..], "torchvision.models.vgg.VGG"),
    ] {
        let path = dir.path().join("x.pth");
        std::fs::write(&path, pickle).unwrap();
        match read_pth(&path) {
            Err(Error::RefusedGlobal { global: g, .. }) => assert_eq!(g, global),
            other => panic!("{global}: {other:?}"),
        }
    }
}

#[test]
fn truncated_files_error_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["vgg_zip.pth", "vgg_legacy.pth", "vgg_zip_p4.pth"] {
        let bytes = std::fs::read(data(f)).unwrap();
        // Every prefix length up to the whole file, stepping through the pickle and the storages.
        for cut in (0..bytes.len()).step_by(7) {
            let path = dir.path().join(format!("cut-{cut}-{f}"));
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let r = read_pth(&path);
            assert!(r.is_err(), "{f} cut at {cut} of {} read as {:?}", bytes.len(), r.map(|s| s.len()));
            std::fs::remove_file(&path).unwrap();
        }
    }
}

#[test]
fn corrupt_bytes_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["vgg_zip.pth", "vgg_legacy.pth"] {
        let bytes = std::fs::read(data(f)).unwrap();
        // Flip bytes all over the file (a deterministic walk): any outcome but a panic is fine.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for i in 0..300 {
            let mut b = bytes.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state % b.len() as u64) as usize;
                b[at] ^= (state >> 32) as u8 | 1;
            }
            let path = dir.path().join(format!("corrupt-{i}-{f}"));
            std::fs::write(&path, &b).unwrap();
            let _ = read_pth(&path);
            std::fs::remove_file(&path).unwrap();
        }
    }
}

#[test]
fn non_checkpoints_are_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pth");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.path().join("text.pth");
    std::fs::write(&text, b"hello, I am not a checkpoint").unwrap();
    for p in [&empty, &text] {
        let err = read_pth(p).unwrap_err();
        assert!(matches!(err, Error::Format { .. }), "{err:?}");
        assert!(err.to_string().contains(&p.display().to_string()));
    }
    let missing = dir.path().join("missing.pth");
    assert!(matches!(read_pth(&missing), Err(Error::Io { .. })));
}

#[test]
fn hostile_structures_neither_overflow_nor_loop() {
    let dir = tempfile::tempdir().unwrap();
    // A million nested tuples: refused (not a dict), and dropped without recursing.
    let mut deep = b"\x80\x02K\x00".to_vec();
    deep.extend(std::iter::repeat_n(0x85u8, 1_000_000));
    deep.push(b'.');
    let p = dir.path().join("deep.pth");
    std::fs::write(&p, &deep).unwrap();
    assert!(matches!(read_pth(&p), Err(Error::Format { .. })));
    // A dict that holds itself (legacy framing is not even needed to reach the walk: use a zip).
    let selfref = b"\x80\x02}q\x00X\x01\x00\x00\x00ah\x00s.";
    let p = dir.path().join("selfref.pth");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
    z.start_file(
        "archive/data.pkl",
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored),
    )
    .unwrap();
    std::io::Write::write_all(&mut z, selfref).unwrap();
    z.finish().unwrap();
    assert_eq!(read_pth(&p).unwrap().len(), 0);
}
