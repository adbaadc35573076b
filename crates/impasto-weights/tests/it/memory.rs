//! Checkpoints read from memory (`read_pth_bytes`, `read_state_dict_pickle`) agree with files, and
//! hostile checkpoints that would make the reader allocate without bound are refused up front
//! (regressions of what fuzzing the reader, `fuzz/`, looks for).

use std::io::Write;

use impasto_weights::{DType, Error, TensorSpec, read_pth, read_pth_bytes, read_state_dict_pickle};

use crate::fixtures::data;

/// A pickle int (BININT, or LONG1 of 8 bytes beyond i32).
fn int(n: u64) -> Vec<u8> {
    match i32::try_from(n) {
        Ok(n) => [&[b'J'][..], &n.to_le_bytes()].concat(),
        Err(_) => [&b"\x8a\x08"[..], &n.to_le_bytes()].concat(),
    }
}

/// A pickle str (BINUNICODE).
fn text(s: &str) -> Vec<u8> {
    [&[b'X'][..], &(s.len() as u32).to_le_bytes(), s.as_bytes()].concat()
}

/// A tuple of ints (MARK ... TUPLE).
fn ints(v: &[u64]) -> Vec<u8> {
    [&b"("[..], &v.iter().flat_map(|&n| int(n)).collect::<Vec<_>>(), b"t"].concat()
}

/// `_rebuild_tensor_v2(storage, offset, shape, stride)`, its storage a persistent id.
fn tensor(storage: &str, dtype: &str, numel: u64, shape: &[u64], stride: &[u64]) -> Vec<u8> {
    [
        &b"ctorch._utils\n_rebuild_tensor_v2\n("[..],
        b"(",
        &text("storage"),
        format!("ctorch\n{dtype}\n").as_bytes(),
        &text(storage),
        &text("cpu"),
        &int(numel),
        b"tQ",
        &int(0),
        &ints(shape),
        &ints(stride),
        b"tR",
    ]
    .concat()
}

/// The pickle of a state dict `{name: tensor}`.
fn state_dict(tensors: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut p = b"\x80\x02}".to_vec();
    for (name, t) in tensors {
        p.extend(text(name));
        p.extend(t);
        p.push(b's');
    }
    p.push(b'.');
    p
}

/// A legacy checkpoint: magic, protocol and sys-info pickles, the state dict, the storage keys,
/// then each storage as an element count and its bytes.
fn legacy(state_dict: &[u8], storages: &[(&str, u64, &[u8])]) -> Vec<u8> {
    let mut f = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.".to_vec();
    f.extend(b"\x80\x02M\xe9\x03.\x80\x02}.");
    f.extend(state_dict);
    f.extend(b"\x80\x02(");
    for (key, ..) in storages {
        f.extend(text(key));
    }
    f.extend(b"l.");
    for (_, numel, bytes) in storages {
        f.extend(numel.to_le_bytes());
        f.extend(*bytes);
    }
    f
}

/// A zip checkpoint with `data.pkl` and the given deflated storages.
fn zip(pickle: &[u8], storages: &[(&str, &[u8])]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    z.start_file("archive/data.pkl", opts).unwrap();
    z.write_all(pickle).unwrap();
    for (key, bytes) in storages {
        z.start_file(format!("archive/data/{key}"), opts).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap().into_inner()
}

#[test]
fn reading_bytes_agrees_with_reading_files() {
    for f in ["vgg_zip.pth", "vgg_zip_p4.pth", "vgg_legacy.pth", "nested.pth", "malicious_zip.pth"] {
        let from_file = read_pth(&data(f));
        let from_bytes = read_pth_bytes(&std::fs::read(data(f)).unwrap(), &|_| true);
        match (from_file, from_bytes) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{f}"),
            (Err(a), Err(b)) => {
                assert_eq!(std::mem::discriminant(&a), std::mem::discriminant(&b), "{f}: {a} / {b}");
                assert!(b.to_string().contains("<memory>"), "{f}: {b}");
            }
            (a, b) => panic!("{f}: file {:?}, bytes {:?}", a.map(|s| s.len()), b.map(|s| s.len())),
        }
    }
    let kept =
        read_pth_bytes(&std::fs::read(data("vgg_zip.pth")).unwrap(), &|k| k.ends_with(".bias")).unwrap();
    assert_eq!(
        kept.keys().collect::<Vec<_>>(),
        ["classifier.0.bias", "features.0.bias", "features.2.bias", "features.5.bias"]
    );
}

#[test]
fn a_state_dict_pickle_lists_its_tensors() {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(data("vgg_zip.pth")).unwrap()).unwrap();
    let mut pkl = Vec::new();
    std::io::Read::read_to_end(&mut archive.by_name("vgg_zip/data.pkl").unwrap(), &mut pkl).unwrap();
    let specs = read_state_dict_pickle(&pkl).unwrap();
    assert_eq!(specs.len(), 9);
    let bias = specs.iter().find(|s| s.name == "features.2.bias").unwrap();
    assert_eq!(bias.dtype, DType::F16);
    assert_eq!(bias.shape, [4]);
    let w: &TensorSpec = specs.iter().find(|s| s.name == "features.5.weight").unwrap();
    assert_eq!((w.dtype, w.shape.as_slice()), (DType::F32, &[6, 4, 3, 3][..]));
    // Two tensors share one storage (a view with an offset, and the rest of it).
    let key = |n: &str| specs.iter().find(|s| s.name == n).unwrap().storage_key.clone();
    assert_eq!(key("features.2.weight"), key("classifier.1.weight"));

    let evil = std::fs::read(data("malicious_legacy.pth")).unwrap();
    let err = read_state_dict_pickle(&evil).unwrap_err();
    assert!(matches!(&err, Error::RefusedGlobal { global, .. } if global == "os.system"), "{err:?}");
    assert!(matches!(read_state_dict_pickle(b"\x80\x02]."), Err(Error::Format { .. })));
}

#[test]
fn a_zero_stride_view_may_not_repeat_one_element_a_billion_times() {
    let one = 1.0f32.to_le_bytes();
    // A legitimate broadcast (torch.zeros(1).expand(8)) still reads.
    let small =
        legacy(&state_dict(&[("b".into(), tensor("0", "FloatStorage", 1, &[8], &[0]))]), &[("0", 1, &one)]);
    assert_eq!(read_pth_bytes(&small, &|_| true).unwrap()["b"].data, [1.0; 8]);
    // 2^30 copies of one f32 from a file of 300 bytes: 4 GiB, refused before allocating.
    let bomb = legacy(
        &state_dict(&[("b".into(), tensor("0", "FloatStorage", 1, &[1 << 30], &[0]))]),
        &[("0", 1, &one)],
    );
    let err = read_pth_bytes(&bomb, &|_| true).unwrap_err();
    assert!(matches!(&err, Error::Tensor { key, .. } if key == "b"), "{err:?}");
    assert!(err.to_string().contains("times the checkpoint's"), "{err}");
    // Shapes whose element count overflows are refused the same way.
    let overflow = legacy(
        &state_dict(&[(
            "b".into(),
            tensor("0", "FloatStorage", 1, &[1 << 32, 1 << 32, 1 << 32], &[0, 0, 0]),
        )]),
        &[("0", 1, &one)],
    );
    assert!(matches!(read_pth_bytes(&overflow, &|_| true), Err(Error::Tensor { .. })));
}

#[test]
fn many_tensors_over_one_compressed_storage_are_refused() {
    // 4 MiB of zero bytes deflate to a few KB; 64 tensors each viewing all of it would decode to
    // 1 GiB of f32.
    let n = 4u64 << 20;
    let tensors: Vec<(String, Vec<u8>)> =
        (0..64).map(|i| (format!("t{i}"), tensor("0", "ByteStorage", n, &[n], &[1]))).collect();
    let file = zip(&state_dict(&tensors), &[("0", &vec![0u8; n as usize])]);
    assert!(file.len() < 64 << 10, "{}", file.len());
    let err = read_pth_bytes(&file, &|_| true).unwrap_err();
    assert!(err.to_string().contains("decompression bomb"), "{err}");
    // One of them is fine.
    let one = read_pth_bytes(&file, &|k| k == "t7").unwrap();
    assert_eq!(one["t7"].data.len(), n as usize);
}
