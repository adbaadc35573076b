//! The values the restricted unpickler builds (a Python subset: ints, strings, tuples, shared lists
//! and dicts, storages and tensors), the allowlist of globals a state dict may name, and an
//! iterative drop so that hostile nesting cannot overflow the stack.

use std::cell::RefCell;
use std::rc::Rc;

use crate::tensor::DType;

/// A storage named by a persistent id: where a tensor's bytes live.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StorageRef {
    /// The storage key: `data/<key>` in a zip checkpoint, a key of the trailing storage list in a
    /// legacy one.
    pub(crate) key: String,
    /// The element type.
    pub(crate) dtype: DType,
    /// Elements in the storage, as the pickle declares.
    pub(crate) numel: u64,
    /// Legacy storage views: `(offset, numel)` within the root storage `key`.
    pub(crate) view: Option<(u64, u64)>,
}

/// A tensor as the pickle describes it: a strided view of a storage.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TensorRef {
    pub(crate) storage: Rc<StorageRef>,
    pub(crate) offset: u64,
    pub(crate) shape: Vec<usize>,
    pub(crate) stride: Vec<usize>,
}

/// The globals a state dict may name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Global {
    OrderedDict,
    RebuildTensor,
    RebuildParameter,
    Storage(DType),
}

/// A Python value, as far as state dicts need them. Lists and dicts are shared (`Rc<RefCell>`) so
/// that a memoised reference sees later `SETITEMS`/`APPENDS`, as in Python.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i128),
    Float,
    Str(Rc<str>),
    Bytes,
    Tuple(Rc<Vec<Value>>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

/// Drops nested values iteratively: a hostile pickle can nest a million tuples, which a recursive
/// drop would overflow the stack on.
impl Drop for Value {
    fn drop(&mut self) {
        /// Moves the children of a container this value alone owns into `out`.
        fn take(v: &mut Value, out: &mut Vec<Value>) {
            match v {
                Value::Tuple(t) => {
                    if let Some(items) = Rc::get_mut(t) {
                        out.append(items);
                    }
                }
                Value::List(l) => {
                    if let Some(items) = Rc::get_mut(l) {
                        out.append(items.get_mut());
                    }
                }
                Value::Dict(d) => {
                    if let Some(items) = Rc::get_mut(d) {
                        for (k, v) in items.get_mut().drain(..) {
                            out.push(k);
                            out.push(v);
                        }
                    }
                }
                _ => {}
            }
        }
        if !matches!(self, Value::Tuple(_) | Value::List(_) | Value::Dict(_)) {
            return;
        }
        let mut pending = Vec::new();
        take(self, &mut pending);
        while let Some(mut v) = pending.pop() {
            take(&mut v, &mut pending);
        }
    }
}

impl Value {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float => "float",
            Value::Str(_) => "str",
            Value::Bytes => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }

    /// The value as an integer, if it is one.
    pub(crate) fn as_int(&self) -> Option<i128> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i128::from(*b)),
            _ => None,
        }
    }

    /// The value as a string, if it is one.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The items of a tuple or list.
    pub(crate) fn items(&self) -> Option<Vec<Value>> {
        match self {
            Value::Tuple(t) => Some(t.as_ref().clone()),
            Value::List(l) => Some(l.borrow().clone()),
            _ => None,
        }
    }
}

/// Maps `module.name` to an allowed global, or `None` when it is not allowed.
pub(super) fn allowed_global(module: &str, name: &str) -> Option<Global> {
    match (module, name) {
        ("collections", "OrderedDict") => Some(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => Some(Global::RebuildTensor),
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            Some(Global::RebuildParameter)
        }
        ("torch", storage) => DType::from_storage_name(storage).map(Global::Storage),
        _ => None,
    }
}
