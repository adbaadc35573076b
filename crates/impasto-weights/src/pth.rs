//! Reading PyTorch checkpoints (`torch.save` of a state dict) in pure Rust: the zip format of
//! PyTorch ≥ 1.6 (`<prefix>/data.pkl`, `<prefix>/data/<key>` storages, `<prefix>/byteorder`) and
//! the legacy format (magic-number, protocol and sys-info pickles, the state-dict pickle, the
//! storage-key list, then each storage as a little-endian element count and raw bytes). The pickle
//! goes through the restricted unpickler of [`crate::pickle`].

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::Path;
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::pickle::{self, TensorRef, Value};
use crate::tensor::{DType, StateDict, Tensor, gather};

/// The name errors give to a checkpoint read from memory ([`read_pth_bytes`], [`read_state_dict_pickle`]).
const MEMORY: &str = "<memory>";

/// The legacy format's magic number, the first pickle of the file.
const LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;
/// The legacy format's protocol version, the second pickle.
const LEGACY_PROTOCOL: i128 = 1001;
/// How deep nested dicts are followed when collecting tensors (`{"state_dict": {...}}`).
const MAX_DEPTH: usize = 16;
/// At most this many bytes of f32 values are decoded per byte of checkpoint file: the 1024:1
/// expansion a zip entry may claim, times 4 for byte-sized storages widened to f32. Only a hostile
/// file comes near it (a view repeating one element a billion times through a zero stride, or the
/// same compressed storage named by a thousand tensors); it is refused before anything is allocated.
const MAX_EXPANSION: u64 = 4096;

/// Reads every tensor of a PyTorch checkpoint (zip or legacy format) as f32.
///
/// The top-level object must be a dict (a state dict, or a dict holding one: nested dicts are
/// flattened with dotted names, e.g. `state_dict.features.0.weight`); values that are not tensors
/// or dicts (epoch numbers, lists) are skipped. A global outside the state-dict allowlist is refused
/// with [`Error::RefusedGlobal`] before anything is built.
pub fn read_pth(path: &Path) -> Result<StateDict> {
    read_pth_filtered(path, &|_| true)
}

/// Like [`read_pth`], but only reads the storages of tensors whose name passes `keep`: converting
/// the 13 convolutions of a 528 MB VGG-16 checkpoint then never reads its 500 MB classifier.
pub fn read_pth_filtered(path: &Path, keep: &dyn Fn(&str) -> bool) -> Result<StateDict> {
    let file = File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
    let len = file.metadata().map_err(|e| Error::io("cannot read", path, e))?.len();
    read_checkpoint(path, file, len, keep)
}

/// Like [`read_pth_filtered`], but reads a checkpoint (zip or legacy format) held in memory; errors
/// name the file `<memory>`. Whatever the bytes, it returns an error rather than panicking, and it
/// never allocates much more than the checkpoint's declared contents can justify.
///
/// ```
/// let err = impasto_weights::read_pth_bytes(b"not a checkpoint", &|_| true).unwrap_err();
/// assert!(err.to_string().contains("neither a zip archive"));
/// ```
pub fn read_pth_bytes(bytes: &[u8], keep: &dyn Fn(&str) -> bool) -> Result<StateDict> {
    read_pth_named(bytes, Path::new(MEMORY), keep)
}

/// [`read_pth_bytes`] with errors naming the checkpoint `name`.
pub(crate) fn read_pth_named(bytes: &[u8], name: &Path, keep: &dyn Fn(&str) -> bool) -> Result<StateDict> {
    read_checkpoint(name, Cursor::new(bytes), bytes.len() as u64, keep)
}

/// A tensor as a checkpoint's state-dict pickle declares it, before any storage bytes are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// The state-dict name, nested dicts flattened with dots (as [`read_pth`] names it).
    pub name: String,
    /// The storage's element type.
    pub dtype: DType,
    /// The dimensions, outermost first.
    pub shape: Vec<usize>,
    /// The key of the storage holding its values (`<prefix>/data/<key>` in a zip checkpoint).
    pub storage_key: String,
}

/// Unpickles a state-dict pickle on its own (a zip checkpoint's `<prefix>/data.pkl`) with the
/// restricted unpickler and lists the tensors it declares, in pickle order, without reading any
/// storage. Refuses foreign globals as [`read_pth`] does; errors name the file `<memory>`.
///
/// ```
/// // The pickle of `{}`: protocol 2, EMPTY_DICT, STOP.
/// assert!(impasto_weights::read_state_dict_pickle(b"\x80\x02}.")?.is_empty());
/// # Ok::<(), impasto_weights::Error>(())
/// ```
pub fn read_state_dict_pickle(bytes: &[u8]) -> Result<Vec<TensorSpec>> {
    let path = Path::new(MEMORY);
    let loaded = pickle::load(&mut &bytes[..], path)?;
    let tensors = collect_tensors(path, &loaded.value)?;
    Ok(tensors
        .into_iter()
        .map(|(name, t)| TensorSpec {
            name,
            dtype: t.storage.dtype,
            shape: t.shape.clone(),
            storage_key: t.storage.key.clone(),
        })
        .collect())
}

/// Tells the format from the first bytes of `file` (`file_len` bytes long) and reads it.
fn read_checkpoint<R: Read + Seek>(
    path: &Path,
    mut file: R,
    file_len: u64,
    keep: &dyn Fn(&str) -> bool,
) -> Result<StateDict> {
    let mut head = [0u8; 4];
    let n = read_up_to(&mut file, &mut head).map_err(|e| Error::io("cannot read", path, e))?;
    file.seek(SeekFrom::Start(0)).map_err(|e| Error::io("cannot read", path, e))?;
    let format_err = |reason: &str| Error::Format { path: path.to_path_buf(), reason: reason.into() };
    if n == 4 && head == *b"PK\x03\x04" {
        read_zip(path, file, file_len, keep)
    } else if n >= 2 && head[0] == 0x80 {
        read_legacy(path, file, file_len, keep)
    } else if is_tar(&mut file) {
        Err(format_err(
            "it is the tar format of PyTorch < 0.4, which is not supported; re-save it with torch.save",
        ))
    } else if n == 0 {
        Err(format_err("the file is empty"))
    } else {
        Err(format_err("neither a zip archive (PyTorch ≥ 1.6) nor a legacy pickle stream"))
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn is_tar(file: &mut (impl Read + Seek)) -> bool {
    let mut b = [0u8; 262];
    let ok = read_up_to(file, &mut b).is_ok_and(|n| n == b.len()) && &b[257..262] == b"ustar";
    let _ = file.seek(SeekFrom::Start(0));
    ok
}

/// The named tensors of the unpickled object, in pickle order.
fn collect_tensors(path: &Path, root: &Value) -> Result<Vec<(String, Rc<TensorRef>)>> {
    /// Each dict is walked once (by address), so a dict that holds itself cannot loop.
    fn walk(
        v: &Value,
        prefix: &str,
        depth: usize,
        seen: &mut HashSet<*const ()>,
        out: &mut Vec<(String, Rc<TensorRef>)>,
    ) {
        let Value::Dict(d) = v else { return };
        if depth > MAX_DEPTH || !seen.insert(Rc::as_ptr(d).cast()) {
            return;
        }
        for (k, v) in d.borrow().iter() {
            let Some(k) = k.as_str() else { continue };
            let name = if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
            match v {
                Value::Tensor(t) => out.push((name, t.clone())),
                Value::Dict(_) => walk(v, &name, depth + 1, seen, out),
                _ => {}
            }
        }
    }
    if !matches!(root, Value::Dict(_)) {
        let what = match root {
            Value::Tensor(_) => "a single tensor",
            Value::List(_) | Value::Tuple(_) => "a list or tuple",
            _ => "not a dict",
        };
        return Err(Error::Format {
            path: path.to_path_buf(),
            reason: format!("the saved object is {what}; a state dict (dict of tensors) is expected"),
        });
    }
    let mut out = Vec::new();
    walk(root, "", 0, &mut HashSet::new(), &mut out);
    Ok(out)
}

/// Turns the tensors that pass `keep` into f32, fetching each storage once through `storage`.
/// Refuses to decode more than [`MAX_EXPANSION`] times `file_len` bytes in all.
fn materialize(
    path: &Path,
    file_len: u64,
    tensors: Vec<(String, Rc<TensorRef>)>,
    keep: &dyn Fn(&str) -> bool,
    big_endian: bool,
    mut storage: impl FnMut(&str, DType) -> Result<Vec<u8>>,
) -> Result<StateDict> {
    let mut cache: HashMap<String, Rc<Vec<u8>>> = HashMap::new();
    let mut out = StateDict::new();
    let budget = file_len.saturating_mul(MAX_EXPANSION);
    let mut decoded = 0u64;
    for (name, t) in tensors {
        if !keep(&name) {
            continue;
        }
        let tensor_err = |reason: String| Error::Tensor {
            path: path.to_path_buf(),
            key: name.clone(),
            shape: t.shape.clone(),
            reason,
        };
        decoded = t
            .shape
            .iter()
            .try_fold(4u64, |a, &d| a.checked_mul(d as u64))
            .and_then(|b| b.checked_add(decoded))
            .filter(|&total| total <= budget)
            .ok_or_else(|| {
                tensor_err(format!(
                    "decoding it would bring the tensors read to more than {budget} bytes of f32, \
                     {MAX_EXPANSION} times the checkpoint's {file_len} bytes (a view repeating its \
                     storage through zero strides, or a decompression bomb)"
                ))
            })?;
        let s = &t.storage;
        let bytes = match cache.get(&s.key) {
            Some(b) => b.clone(),
            None => {
                let b = Rc::new(storage(&s.key, s.dtype)?);
                cache.insert(s.key.clone(), b.clone());
                b
            }
        };
        let es = s.dtype.size() as u64;
        if s.view.is_none() && (bytes.len() as u64) < s.numel.saturating_mul(es) {
            return Err(tensor_err(format!(
                "storage `{}` holds {} bytes but the pickle declares {} elements of {} bytes",
                s.key,
                bytes.len(),
                s.numel,
                es
            )));
        }
        let view: &[u8] = match s.view {
            None => &bytes,
            Some((off, n)) => {
                let (a, b) = (off.saturating_mul(es), off.saturating_add(n).saturating_mul(es));
                if b > bytes.len() as u64 {
                    return Err(tensor_err(format!(
                        "storage view [{off}, +{n}) lies outside storage `{}` of {} bytes",
                        s.key,
                        bytes.len()
                    )));
                }
                &bytes[a as usize..b as usize]
            }
        };
        let data = gather(view, s.dtype, big_endian, t.offset, &t.shape, &t.stride).map_err(tensor_err)?;
        out.insert(name, Tensor { shape: t.shape.clone(), data, dtype: s.dtype });
    }
    Ok(out)
}

fn read_zip<R: Read + Seek>(
    path: &Path,
    file: R,
    file_len: u64,
    keep: &dyn Fn(&str) -> bool,
) -> Result<StateDict> {
    let zip_err = |error| Error::Zip { path: path.to_path_buf(), error };
    let format_err = |reason: String| Error::Format { path: path.to_path_buf(), reason };
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(zip_err)?;
    let names = zip.file_names().collect::<Result<Vec<_>, _>>().map_err(zip_err)?;
    let pkl = names
        .iter()
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .map(|n| n.to_string())
        .ok_or_else(|| {
            format_err("a zip archive without `<name>/data.pkl`: not a PyTorch checkpoint".into())
        })?;
    let prefix = pkl.trim_end_matches("data.pkl").to_owned();
    let mut read_entry = |name: &str| -> Result<Option<Vec<u8>>> {
        let mut entry = match zip.by_name(name) {
            Ok(e) => e,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(zip_err(e)),
        };
        if entry.size() > file_len.saturating_mul(1024) {
            return Err(format_err(format!("entry `{name}` claims {} bytes", entry.size())));
        }
        let mut v = Vec::new();
        entry.read_to_end(&mut v).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData => {
                format_err(format!("entry `{name}` is truncated or corrupt: {e}"))
            }
            _ => Error::io("cannot read", path, e),
        })?;
        Ok(Some(v))
    };
    let pickle_bytes = read_entry(&pkl)?.unwrap_or_default();
    let big_endian = match read_entry(&format!("{prefix}byteorder"))? {
        None => false,
        Some(b) => match b.trim_ascii() {
            b"little" => false,
            b"big" => true,
            other => return Err(format_err(format!("byteorder is {:?}", String::from_utf8_lossy(other)))),
        },
    };
    let loaded = pickle::load(&mut pickle_bytes.as_slice(), path)?;
    let tensors = collect_tensors(path, &loaded.value)?;
    materialize(path, file_len, tensors, keep, big_endian, |key, _| {
        let name = format!("{prefix}data/{key}");
        read_entry(&name)?.ok_or_else(|| format_err(format!("storage entry `{name}` is missing")))
    })
}

fn read_legacy<R: Read + Seek>(
    path: &Path,
    file: R,
    file_len: u64,
    keep: &dyn Fn(&str) -> bool,
) -> Result<StateDict> {
    let format_err = |reason: String| Error::Format { path: path.to_path_buf(), reason };
    let io_err = |e: std::io::Error| Error::io("cannot read", path, e);
    let mut r = BufReader::new(file);
    if pickle::load(&mut r, path)?.value.as_int() != Some(LEGACY_MAGIC) {
        return Err(format_err("a pickle stream without PyTorch's magic number".into()));
    }
    let protocol = pickle::load(&mut r, path)?.value.as_int();
    if protocol != Some(LEGACY_PROTOCOL) {
        return Err(format_err(format!(
            "legacy protocol {}, expected {LEGACY_PROTOCOL}",
            protocol.map_or_else(|| "(not an int)".to_string(), |p| p.to_string())
        )));
    }
    let sys_info = pickle::load(&mut r, path)?;
    if let Value::Dict(d) = &sys_info.value {
        let little =
            d.borrow().iter().find(|(k, _)| k.as_str() == Some("little_endian")).map(|(_, v)| v.as_int());
        if little == Some(Some(0)) {
            return Err(format_err("big-endian legacy checkpoints are not supported".into()));
        }
    }
    let state = pickle::load(&mut r, path)?;
    let keys = pickle::load(&mut r, path)?
        .value
        .items()
        .and_then(|k| k.iter().map(|k| k.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>())
        .ok_or_else(|| format_err("the storage-key list is not a list of strings".into()))?;
    // Where each storage's bytes start, and how many elements it holds.
    let mut located: HashMap<String, (u64, u64)> = HashMap::new();
    for key in keys {
        let dtype = *state
            .storages
            .get(&key)
            .ok_or_else(|| format_err(format!("storage `{key}` is listed but no tensor names it")))?;
        let mut n = [0u8; 8];
        r.read_exact(&mut n).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => format_err(format!("truncated before storage `{key}`")),
            _ => io_err(e),
        })?;
        let numel = u64::from_le_bytes(n);
        let start = r.stream_position().map_err(io_err)?;
        let len = numel
            .checked_mul(dtype.size() as u64)
            .filter(|&len| start.checked_add(len).is_some_and(|end| end <= file_len))
            .ok_or_else(|| {
                format_err(format!("truncated: storage `{key}` of {numel} elements runs past the end"))
            })?;
        r.seek_relative(len as i64).map_err(io_err)?;
        located.insert(key, (start, numel));
    }
    let tensors = collect_tensors(path, &state.value)?;
    materialize(path, file_len, tensors, keep, false, |key, dtype| {
        let &(start, numel) =
            located.get(key).ok_or_else(|| format_err(format!("storage `{key}` is not in the file")))?;
        r.seek(SeekFrom::Start(start)).map_err(io_err)?;
        let mut v = vec![0u8; (numel as usize) * dtype.size()];
        r.read_exact(&mut v).map_err(io_err)?;
        Ok(v)
    })
}
