//! Hand-written PyTorch checkpoints for the import, download and `--weights FILE.pth` tests, in the
//! legacy `torch.save` format (PyTorch < 1.6): five protocol-2 pickles (magic number, protocol, sys
//! info, the state dict whose tensors name their storages by persistent id, the storage keys), then
//! each storage as a little-endian element count and its f32 values; and in the zip format of
//! PyTorch ≥ 1.6 (`archive/data.pkl`, the same state-dict pickle, `archive/data/<key>` storages,
//! `archive/byteorder`). Simple enough to write without Python. A run, a pack and a serve given the
//! `.pth` get exactly what they get from its import.

use std::io::Write;

use impasto::{Arch, Pooling, Preprocess, Vgg};

use crate::common::{Sandbox, TINY_LAYERS, pseudo_random};

/// A named tensor: key, shape, row-major values.
pub type Named = (String, Vec<usize>, Vec<f32>);

/// The torchvision `features` indices of VGG-16's 13 convolutions.
pub const VGG16_CONVS: [usize; 13] = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28];

/// A state dict shaped like VGG-16's where it matters to the tests: conv1_1 is real-sized (64 filters of
/// 3×3×3, so a run that uses only `relu1_1` works), the 12 later convolutions have 2 filters each (so
/// the channels chain and the file stays small), and a `classifier.0.weight` that conversion drops.
/// `prefix` goes before every key (`state_dict.`, `module.` or nothing).
pub fn tiny_vgg16(prefix: &str) -> Vec<Named> {
    let mut out = Vec::new();
    let mut c_in = 3;
    for (n, i) in VGG16_CONVS.into_iter().enumerate() {
        let c_out = if n == 0 { 64 } else { 2 };
        let seed = 10 + 2 * n as u64;
        out.push((
            format!("{prefix}features.{i}.weight"),
            vec![c_out, c_in, 3, 3],
            pseudo_random(c_out * c_in * 9, seed),
        ));
        out.push((format!("{prefix}features.{i}.bias"), vec![c_out], pseudo_random(c_out, seed + 1)));
        c_in = c_out;
    }
    out.push((format!("{prefix}classifier.0.weight"), vec![3, 2], pseudo_random(6, 99)));
    out
}

/// One protocol-2 pickle being written.
struct Pickle(Vec<u8>);

impl Pickle {
    fn new() -> Pickle {
        Pickle(vec![0x80, 2])
    }

    fn op(&mut self, bytes: &[u8]) -> &mut Pickle {
        self.0.extend_from_slice(bytes);
        self
    }

    /// BINUNICODE.
    fn str(&mut self, s: &str) -> &mut Pickle {
        self.0.push(b'X');
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.op(s.as_bytes())
    }

    /// BININT.
    fn int(&mut self, v: usize) -> &mut Pickle {
        self.0.push(b'J');
        self.op(&(v as i32).to_le_bytes())
    }

    /// GLOBAL.
    fn global(&mut self, module: &str, name: &str) -> &mut Pickle {
        self.op(format!("c{module}\n{name}\n").as_bytes())
    }

    /// MARK, the ints, TUPLE.
    fn int_tuple(&mut self, values: &[usize]) -> &mut Pickle {
        self.op(b"(");
        for &v in values {
            self.int(v);
        }
        self.op(b"t")
    }

    /// STOP.
    fn done(&mut self) -> Vec<u8> {
        self.0.push(b'.');
        std::mem::take(&mut self.0)
    }
}

/// The bytes of a legacy-format checkpoint holding `tensors` (f32, contiguous, one storage each).
pub fn legacy_pth(tensors: &[Named]) -> Vec<u8> {
    let mut out = Vec::new();
    // The magic number 0x1950a86a20f9469cfc6c as a LONG1, and protocol 1001.
    out.extend(
        Pickle::new().op(&[0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]).done(),
    );
    out.extend(Pickle::new().op(b"M").op(&1001u16.to_le_bytes()).done());
    out.extend(Pickle::new().op(b"}(").str("little_endian").op(&[0x88]).op(b"u").done());
    out.extend(state_dict_pickle(tensors));
    let mut keys = Pickle::new();
    keys.op(b"](");
    for i in 0..tensors.len() {
        keys.str(&i.to_string());
    }
    out.extend(keys.op(b"e").done());
    for (_, _, values) in tensors {
        out.extend_from_slice(&(values.len() as u64).to_le_bytes());
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// The bytes of a zip-format checkpoint holding `tensors` (f32, contiguous, one storage each).
pub fn zip_pth(tensors: &[Named]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut entry = |name: &str, bytes: &[u8]| {
        z.start_file(name, stored).unwrap();
        z.write_all(bytes).unwrap();
    };
    entry("archive/data.pkl", &state_dict_pickle(tensors));
    entry("archive/byteorder", b"little");
    for (i, (_, _, values)) in tensors.iter().enumerate() {
        entry(
            &format!("archive/data/{i}"),
            &values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
        );
    }
    z.finish().unwrap().into_inner()
}

/// The state-dict pickle: each tensor a `_rebuild_tensor_v2` of storage `i` (by persistent id).
fn state_dict_pickle(tensors: &[Named]) -> Vec<u8> {
    let mut p = Pickle::new();
    p.op(b"}(");
    for (i, (key, shape, values)) in tensors.iter().enumerate() {
        let mut stride = vec![1; shape.len()];
        for d in (0..shape.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1] * shape[d + 1];
        }
        p.str(key).global("torch._utils", "_rebuild_tensor_v2").op(b"(");
        // The storage, by persistent id: ('storage', torch.FloatStorage, key, 'cpu', numel).
        p.op(b"(").str("storage").global("torch", "FloatStorage").str(&i.to_string()).str("cpu");
        p.int(values.len()).op(b"tQ");
        p.int(0).int_tuple(shape).int_tuple(&stride).op(&[0x89]);
        p.global("collections", "OrderedDict").op(b")R").op(b"tR");
    }
    p.op(b"u").done()
}

/// The tensor keys and the metadata of a safetensors file, read from its JSON header.
pub fn safetensors_keys(path: &std::path::Path) -> (Vec<String>, serde_json::Map<String, serde_json::Value>) {
    let bytes = std::fs::read(path).expect("read safetensors");
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).expect("safetensors header");
    let mut obj = header.as_object().expect("header object").clone();
    let meta = obj.remove("__metadata__").and_then(|m| m.as_object().cloned()).unwrap_or_default();
    let mut keys: Vec<String> = obj.keys().cloned().collect();
    keys.sort_by_key(|k| {
        let i: usize = k.split('.').nth(1).and_then(|n| n.parse().ok()).unwrap_or(usize::MAX);
        (i, k.clone())
    });
    (keys, meta)
}

#[test]
fn the_hand_written_checkpoint_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.pth");
    let tensors = tiny_vgg16("state_dict.");
    std::fs::write(&path, legacy_pth(&tensors)).unwrap();
    let sd = impasto_weights::read_pth(&path).expect("reads");
    assert_eq!(sd.len(), tensors.len());
    for (key, shape, values) in &tensors {
        assert_eq!(&sd[key].shape, shape, "{key}");
        assert_eq!(&sd[key].data, values, "{key}");
    }
}

/// The features of `net` at the tiny layers for a fixed 32×24 image.
fn features(net: &Vgg) -> Vec<u32> {
    let (w, h) = (32, 24);
    let rgb: Vec<f32> = pseudo_random(3 * w * h, 5).iter().map(|v| v * 0.5 + 0.5).collect();
    let out = net.features(&rgb, w, h, &["relu1_1"]).unwrap();
    out.into_iter().flat_map(|(v, _)| v).map(f32::to_bits).collect()
}

#[test]
fn a_pth_builds_the_network_its_import_builds() {
    let tensors = tiny_vgg16("module.");
    for (name, bytes) in [("legacy.pth", legacy_pth(&tensors)), ("zip.pth", zip_pth(&tensors))] {
        let sb = Sandbox::new();
        let pth = sb.file(name, &bytes);
        sb.run(&["models", "import", &pth, "--preprocess", "torch"]).assert_ok();
        let imported = sb.cache_dir().join("vgg16-conv-imagenet.safetensors");
        // In memory, the .pth becomes the very file the import wrote.
        let converted = impasto_weights::pth_to_conv_safetensors(
            &bytes,
            name.as_ref(),
            Arch::Vgg16,
            Some(Preprocess::Torch),
        )
        .unwrap();
        assert_eq!(converted, std::fs::read(&imported).unwrap(), "{name}");
        // So the networks are the same, bit for bit.
        let load = |p: &std::path::Path| {
            Vgg::load(p, Arch::Vgg16, Pooling::Max, Some(Preprocess::Torch), "relu1_1").unwrap()
        };
        let (from_pth, from_import) = (load(&sb.path(name)), load(&imported));
        assert_eq!(features(&from_pth), features(&from_import), "{name}");
        assert_eq!(from_pth.preprocess(), Preprocess::Torch);
    }
}

#[test]
fn a_run_given_a_pth_writes_what_its_import_writes() {
    let sb = Sandbox::new();
    sb.png("c.png", 40, 30);
    sb.png("s.png", 24, 24);
    let pth = sb.file("vgg16-mine.pth", &zip_pth(&tiny_vgg16("")));
    sb.run(&["models", "import", &pth, "--preprocess", "caffe", "-q"]).assert_ok();
    let imported = sb.cache_dir().join("vgg16-conv-imagenet.safetensors");
    let imported = imported.to_str().unwrap();
    let mut pixels = Vec::new();
    for (weights, out) in [(pth.as_str(), "a.png"), (imported, "b.png")] {
        let mut args =
            vec!["c.png", "s.png", "-o", out, "--weights", weights, "--size", "32", "-n", "2", "-q"];
        args.extend(TINY_LAYERS);
        sb.run(&args).assert_ok();
        pixels.push(image::open(sb.path(out)).unwrap().to_rgb8().into_raw());
    }
    assert_eq!(pixels[0], pixels[1]);
}

/// A VGG-16 state dict that `impasto models pack` takes: conv1_1..conv4_2 real-sized (what the
/// compact model keeps), the four later convolutions 2 filters wide.
fn packable_vgg16() -> Vec<Named> {
    let mut out = Vec::new();
    let mut c_in = 3;
    for layer in Arch::Vgg16.layers() {
        let impasto::LayerKind::Conv { conv, torch_index, c_out, .. } = layer.kind else { continue };
        let c_out = if conv < 9 { c_out } else { 2 };
        let seed = 100 + 2 * conv as u64;
        let w = pseudo_random(c_out * c_in * 9, seed).iter().map(|v| v * 0.05).collect();
        out.push((format!("features.{torch_index}.weight"), vec![c_out, c_in, 3, 3], w));
        out.push((format!("features.{torch_index}.bias"), vec![c_out], pseudo_random(c_out, seed + 1)));
        c_in = c_out;
    }
    out
}

#[test]
fn pack_given_a_pth_packs_what_it_packs_from_the_import() {
    let sb = Sandbox::new();
    let pth = sb.file("full.pth", &legacy_pth(&packable_vgg16()));
    sb.run(&["models", "import", &pth, "--preprocess", "caffe", "-q"]).assert_ok();
    let imported = sb.cache_dir().join("vgg16-conv-imagenet.safetensors");
    sb.run(&["models", "pack", "--weights", &pth, "-o", "a.safetensors", "-q"]).assert_ok();
    sb.run(&["models", "pack", "--weights", imported.to_str().unwrap(), "-o", "b.safetensors", "-q"])
        .assert_ok();
    let (a, b) =
        (std::fs::read(sb.path("a.safetensors")).unwrap(), std::fs::read(sb.path("b.safetensors")).unwrap());
    assert!(a == b, "packing the .pth and packing its import differ");
}
