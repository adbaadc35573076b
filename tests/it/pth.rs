//! Hand-written PyTorch checkpoints for the import and download tests, in the legacy `torch.save`
//! format (PyTorch < 1.6): five protocol-2 pickles (magic number, protocol, sys info, the state dict
//! whose tensors name their storages by persistent id, the storage keys), then each storage as a
//! little-endian element count and its f32 values. Simple enough to write without Python.

use crate::common::pseudo_random;

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
    out.extend(p.op(b"u").done());
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
