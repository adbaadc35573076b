//! A restricted unpickler for PyTorch state dicts: the binary opcodes of pickle protocols 2–5 and an
//! allowlist of globals (`collections.OrderedDict`, `torch._utils._rebuild_tensor*`,
//! `torch._utils._rebuild_parameter*`, `torch.*Storage`). Any other global is refused before anything
//! is called, so a checkpoint can never run code. Persistent ids (`('storage', type, key, location,
//! numel[, view])`) become [`StorageRef`]s; the caller fetches the bytes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::tensor::DType;

mod value;

use value::allowed_global;
pub(crate) use value::{Global, StorageRef, TensorRef, Value};

/// One unpickled object and the storages its persistent ids named. Borrow `value`, don't move it
/// out (the `Drop` forbids that): dropping a `Loaded` empties every list and dict the pickle built.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// The object.
    pub(crate) value: Value,
    /// Every storage named, by key (with its element type), whether or not a tensor uses it.
    pub(crate) storages: HashMap<String, DType>,
    /// Every list and dict the pickle built, emptied on drop (see [`break_cycles`]).
    containers: Vec<Value>,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        break_cycles(&mut self.containers);
    }
}

/// Empties every list and dict in `containers`. A pickle can append a list to itself (or build
/// any other reference cycle through lists and dicts), which reference counting alone would never
/// free: the unpickler keeps each container it builds, and this breaks every cycle when the result
/// (or the failed unpickler) is dropped.
fn break_cycles(containers: &mut Vec<Value>) {
    for c in containers.drain(..) {
        let items = match &c {
            Value::List(l) => std::mem::take(&mut *l.borrow_mut()),
            Value::Dict(d) => {
                std::mem::take(&mut *d.borrow_mut()).into_iter().flat_map(|(k, v)| [k, v]).collect()
            }
            _ => Vec::new(),
        };
        drop(items);
    }
}

/// Reads one pickle (up to and including its STOP opcode) from `r`. `path` only names the file in
/// errors.
pub(crate) fn load(r: &mut impl Read, path: &Path) -> Result<Loaded> {
    let mut u = Unpickler {
        r,
        pos: 0,
        path,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        storages: HashMap::new(),
        containers: Vec::new(),
    };
    let value = u.run()?;
    Ok(Loaded {
        value,
        storages: std::mem::take(&mut u.storages),
        containers: std::mem::take(&mut u.containers),
    })
}

struct Unpickler<'a, R: Read> {
    r: &'a mut R,
    pos: u64,
    path: &'a Path,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    storages: HashMap<String, DType>,
    /// Every list and dict built so far, so that cycles among them can be broken.
    containers: Vec<Value>,
}

/// A failed unpickling frees its containers too.
impl<R: Read> Drop for Unpickler<'_, R> {
    fn drop(&mut self) {
        break_cycles(&mut self.containers);
    }
}

impl<R: Read> Unpickler<'_, R> {
    /// A new list holding `items`, tracked for [`break_cycles`].
    fn new_list(&mut self, items: Vec<Value>) -> Value {
        let l = Value::List(Rc::new(RefCell::new(items)));
        self.containers.push(l.clone());
        l
    }

    /// A new dict holding `items`, tracked for [`break_cycles`].
    fn new_dict(&mut self, items: Vec<(Value, Value)>) -> Value {
        let d = Value::Dict(Rc::new(RefCell::new(items)));
        self.containers.push(d.clone());
        d
    }

    fn err(&self, reason: impl Into<String>) -> Error {
        Error::Pickle { path: self.path.to_path_buf(), offset: self.pos, reason: reason.into() }
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).map_err(|e| self.read_err(e))?;
        self.pos += N as u64;
        Ok(b)
    }

    fn read_err(&self, e: std::io::Error) -> Error {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            self.err("truncated: the data ends inside the pickle")
        } else {
            Error::io("cannot read", self.path, e)
        }
    }

    /// Reads `n` bytes without trusting `n` for the allocation.
    fn vec(&mut self, n: u64) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        let got = self.r.by_ref().take(n).read_to_end(&mut v).map_err(|e| self.read_err(e))?;
        self.pos += got as u64;
        if (got as u64) < n {
            return Err(self.err("truncated: the data ends inside the pickle"));
        }
        Ok(v)
    }

    fn line(&mut self) -> Result<String> {
        let mut v = Vec::new();
        loop {
            let [b] = self.bytes::<1>()?;
            if b == b'\n' {
                break;
            }
            if v.len() > 1024 {
                return Err(self.err("GLOBAL name longer than 1024 bytes"));
            }
            v.push(b);
        }
        String::from_utf8(v).map_err(|_| self.err("GLOBAL name is not UTF-8"))
    }

    fn text(&self, b: Vec<u8>) -> Result<Value> {
        let s = String::from_utf8(b).map_err(|_| self.err("string is not UTF-8"))?;
        Ok(Value::Str(s.into()))
    }

    fn pop(&mut self) -> Result<Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let m = self.marks.pop().ok_or_else(|| self.err("no MARK on the stack"))?;
        Ok(self.stack.split_off(m))
    }

    fn top(&mut self) -> Result<&mut Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err("stack underflow"));
        }
        let n = self.stack.len();
        Ok(&mut self.stack[n - 1])
    }

    fn memo_get(&self, i: u32) -> Result<Value> {
        self.memo.get(&i).cloned().ok_or_else(|| self.err(format!("memo key {i} was never stored")))
    }

    fn memo_put(&mut self, i: u32) -> Result<()> {
        let v = self.top()?.clone();
        self.memo.insert(i, v);
        Ok(())
    }

    fn global(&self, module: &str, name: &str) -> Result<Value> {
        match allowed_global(module, name) {
            Some(g) => Ok(Value::Global(g)),
            None => Err(Error::RefusedGlobal {
                path: self.path.to_path_buf(),
                global: format!("{module}.{name}"),
            }),
        }
    }

    fn set_items(&mut self, dict: &Value, items: Vec<Value>) -> Result<()> {
        let Value::Dict(d) = dict else {
            return Err(self.err(format!("SETITEM(S) on a {}, not a dict", dict.kind())));
        };
        if !items.len().is_multiple_of(2) {
            return Err(self.err("SETITEMS with an odd number of items"));
        }
        let mut d = d.borrow_mut();
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            d.push((k, v));
        }
        Ok(())
    }

    fn append(&mut self, list: &Value, items: Vec<Value>) -> Result<()> {
        match list {
            Value::List(l) => {
                l.borrow_mut().extend(items);
                Ok(())
            }
            other => Err(self.err(format!("APPEND(S) on a {}, not a list", other.kind()))),
        }
    }

    fn run(&mut self) -> Result<Value> {
        loop {
            let [op] = self.bytes::<1>()?;
            match op {
                0x80 => {
                    let [p] = self.bytes::<1>()?;
                    if p > 5 {
                        return Err(self.err(format!("pickle protocol {p} is newer than 5")));
                    }
                }
                0x95 => {
                    self.bytes::<8>()?; // FRAME: a length hint only
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = self.global(&module, &name)?;
                    self.stack.push(g);
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(m), Some(n)) = (module.as_str(), name.as_str()) else {
                        return Err(self.err("STACK_GLOBAL operands are not strings"));
                    };
                    let g = self.global(m, n)?;
                    self.stack.push(g);
                }
                b'X' => {
                    let n = u32::from_le_bytes(self.bytes()?);
                    let b = self.vec(n.into())?;
                    let v = self.text(b)?;
                    self.stack.push(v);
                }
                0x8c | b'U' => {
                    let [n] = self.bytes::<1>()?;
                    let b = self.vec(n.into())?;
                    let v = self.text(b)?;
                    self.stack.push(v);
                }
                0x8d => {
                    let n = u64::from_le_bytes(self.bytes()?);
                    let b = self.vec(n)?;
                    let v = self.text(b)?;
                    self.stack.push(v);
                }
                b'T' => {
                    let n = i32::from_le_bytes(self.bytes()?);
                    let n = u64::try_from(n).map_err(|_| self.err("negative BINSTRING length"))?;
                    let b = self.vec(n)?;
                    let v = self.text(b)?;
                    self.stack.push(v);
                }
                b'C' => {
                    let [n] = self.bytes::<1>()?;
                    self.vec(n.into())?;
                    self.stack.push(Value::Bytes);
                }
                b'B' => {
                    let n = u32::from_le_bytes(self.bytes()?);
                    self.vec(n.into())?;
                    self.stack.push(Value::Bytes);
                }
                0x8e => {
                    let n = u64::from_le_bytes(self.bytes()?);
                    self.vec(n)?;
                    self.stack.push(Value::Bytes);
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.bytes()?);
                    self.stack.push(Value::Int(v.into()));
                }
                b'K' => {
                    let [v] = self.bytes::<1>()?;
                    self.stack.push(Value::Int(v.into()));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.bytes()?);
                    self.stack.push(Value::Int(v.into()));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        u64::from(self.bytes::<1>()?[0])
                    } else {
                        let n = i32::from_le_bytes(self.bytes()?);
                        u64::try_from(n).map_err(|_| self.err("negative LONG4 length"))?
                    };
                    if n > 16 {
                        return Err(self.err(format!("integer of {n} bytes is too large")));
                    }
                    let b = self.vec(n)?;
                    let mut buf = if b.last().is_some_and(|&x| x & 0x80 != 0) { [0xff; 16] } else { [0; 16] };
                    buf[..b.len()].copy_from_slice(&b);
                    self.stack.push(Value::Int(i128::from_le_bytes(buf)));
                }
                b'G' => {
                    self.bytes::<8>()?;
                    self.stack.push(Value::Float);
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b')' => self.stack.push(Value::Tuple(Rc::new(Vec::new()))),
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                b'(' => self.marks.push(self.stack.len()),
                b']' | 0x8f => {
                    let l = self.new_list(Vec::new());
                    self.stack.push(l);
                }
                b'l' | 0x91 => {
                    let items = self.pop_mark()?;
                    let l = self.new_list(items);
                    self.stack.push(l);
                }
                b'a' => {
                    let v = self.pop()?;
                    let list = self.top()?.clone();
                    self.append(&list, vec![v])?;
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    let list = self.top()?.clone();
                    self.append(&list, items)?;
                }
                b'}' => {
                    let d = self.new_dict(Vec::new());
                    self.stack.push(d);
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let d = self.new_dict(Vec::new());
                    self.set_items(&d, items)?;
                    self.stack.push(d);
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?.clone();
                    self.set_items(&d, vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let d = self.top()?.clone();
                    self.set_items(&d, items)?;
                }
                b'q' => {
                    let [i] = self.bytes::<1>()?;
                    self.memo_put(i.into())?;
                }
                b'r' => {
                    let i = u32::from_le_bytes(self.bytes()?);
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = u32::try_from(self.memo.len()).map_err(|_| self.err("memo overflow"))?;
                    self.memo_put(i)?;
                }
                b'h' => {
                    let [i] = self.bytes::<1>()?;
                    let v = self.memo_get(i.into())?;
                    self.stack.push(v);
                }
                b'j' => {
                    let i = u32::from_le_bytes(self.bytes()?);
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = self.reduce(func, args)?;
                    self.stack.push(v);
                }
                b'b' => {
                    let _state = self.pop()?;
                    let obj = self.top()?;
                    // OrderedDict `_metadata` and parameter state: attributes a state dict can drop.
                    if !matches!(obj, Value::Dict(_) | Value::Tensor(_)) {
                        let kind = obj.kind();
                        return Err(self.err(format!("BUILD on a {kind}")));
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(&pid)?;
                    self.stack.push(v);
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v);
                }
                b'.' => {
                    let v = self.pop()?;
                    return Ok(v);
                }
                other => {
                    return Err(self.err(format!(
                        "unsupported pickle opcode 0x{other:02x} (not needed by a state dict)"
                    )));
                }
            }
        }
    }

    fn reduce(&mut self, func: Value, args: Value) -> Result<Value> {
        let Value::Global(g) = func else {
            return Err(self.err(format!("REDUCE calls a {}, not an allowed global", func.kind())));
        };
        let Value::Tuple(args) = &args else {
            return Err(self.err("REDUCE arguments are not a tuple"));
        };
        match g {
            Global::OrderedDict => {
                let mut items = Vec::new();
                // Python 2 pickles an OrderedDict as OrderedDict([[k, v], ...]).
                if let Some(pairs) = args.first() {
                    let pairs = pairs.items().ok_or_else(|| self.err("OrderedDict argument"))?;
                    for p in pairs {
                        match p.items().as_deref() {
                            Some([k, v]) => items.push((k.clone(), v.clone())),
                            _ => return Err(self.err("OrderedDict item is not a pair")),
                        }
                    }
                }
                Ok(self.new_dict(items))
            }
            Global::RebuildTensor => {
                let [storage, offset, size, stride, ..] = args.as_slice() else {
                    return Err(self.err("_rebuild_tensor with fewer than 4 arguments"));
                };
                let Value::Storage(storage) = storage else {
                    return Err(self.err(format!("_rebuild_tensor of a {}, not a storage", storage.kind())));
                };
                let offset = offset
                    .as_int()
                    .and_then(|o| u64::try_from(o).ok())
                    .ok_or_else(|| self.err("tensor storage offset is not a non-negative int"))?;
                let dims = |v: &Value, what: &str| -> Result<Vec<usize>> {
                    v.items()
                        .ok_or_else(|| self.err(format!("tensor {what} is not a tuple")))?
                        .iter()
                        .map(|d| d.as_int().and_then(|d| usize::try_from(d).ok()))
                        .collect::<Option<Vec<usize>>>()
                        .ok_or_else(|| {
                            self.err(format!("tensor {what} holds a non-integer or negative value"))
                        })
                };
                let shape = dims(size, "size")?;
                let stride = dims(stride, "stride")?;
                if shape.len() != stride.len() {
                    return Err(
                        self.err(format!("tensor size {shape:?} and stride {stride:?} differ in rank"))
                    );
                }
                Ok(Value::Tensor(Rc::new(TensorRef { storage: storage.clone(), offset, shape, stride })))
            }
            Global::RebuildParameter => match args.first() {
                Some(t @ Value::Tensor(_)) => Ok(t.clone()),
                _ => Err(self.err("_rebuild_parameter of something that is not a tensor")),
            },
            Global::Storage(d) => {
                Err(self.err(format!("calling torch.{} is not supported", d.storage_name())))
            }
        }
    }

    fn persistent_load(&mut self, pid: &Value) -> Result<Value> {
        let items = pid.items().ok_or_else(|| self.err("persistent id is not a tuple"))?;
        match items.as_slice() {
            [tag, ty, key, _location, numel, rest @ ..] if tag.as_str() == Some("storage") => {
                let Value::Global(Global::Storage(dtype)) = ty else {
                    return Err(self.err(format!("storage type is a {}, not a torch.*Storage", ty.kind())));
                };
                let key = match key {
                    Value::Str(s) => s.to_string(),
                    Value::Int(i) => i.to_string(),
                    _ => return Err(self.err("storage key is not a string")),
                };
                let numel = numel
                    .as_int()
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or_else(|| self.err("storage size is not a non-negative int"))?;
                let view = match rest.first() {
                    None | Some(Value::None) => None,
                    Some(v) => match v.items().as_deref() {
                        Some([_view_key, off, size]) => {
                            let get = |x: &Value| x.as_int().and_then(|x| u64::try_from(x).ok());
                            match (get(off), get(size)) {
                                (Some(o), Some(s)) => Some((o, s)),
                                _ => return Err(self.err("storage view offset/size are not ints")),
                            }
                        }
                        _ => return Err(self.err("storage view metadata is not (key, offset, size)")),
                    },
                };
                self.storages.insert(key.clone(), *dtype);
                Ok(Value::Storage(Rc::new(StorageRef { key, dtype: *dtype, numel, view })))
            }
            [tag, ..] if tag.as_str() == Some("module") => {
                Err(self.err("the checkpoint holds a whole pickled module (source code), not a state dict"))
            }
            _ => Err(self.err("persistent id is not ('storage', type, key, location, numel)")),
        }
    }
}

#[cfg(test)]
mod tests;
