//! Regression tests of the unpickler on hostile inputs the fuzzer (`fuzz/`, target `unpickle`)
//! found: each must give an error or a value, and free everything it built.

use std::path::Path;
use std::rc::{Rc, Weak};

use super::*;

fn load_bytes(bytes: &[u8]) -> Result<Loaded> {
    load(&mut &bytes[..], Path::new("test.pkl"))
}

/// A weak reference to a list or dict, to tell whether it was freed.
fn weak_container(v: &Value) -> Option<Weak<dyn std::any::Any>> {
    match v {
        Value::List(l) => Some(Rc::downgrade(&(l.clone() as Rc<dyn std::any::Any>))),
        Value::Dict(d) => Some(Rc::downgrade(&(d.clone() as Rc<dyn std::any::Any>))),
        _ => None,
    }
}

#[test]
fn a_list_appended_to_itself_is_freed() {
    // PROTO 2, EMPTY_LIST, DUP, APPEND (the list into itself), STOP: `l = []; l.append(l)`.
    let loaded = load_bytes(b"\x80\x02]2a.").unwrap();
    let Value::List(l) = &loaded.value else { panic!("not a list: {:?}", loaded.value) };
    assert!(Rc::ptr_eq(
        l,
        match &l.borrow()[0] {
            Value::List(inner) => inner,
            other => panic!("{other:?}"),
        }
    ));
    let weak = weak_container(&loaded.value).unwrap();
    drop(loaded);
    assert!(weak.upgrade().is_none(), "the self-referencing list leaked");
}

#[test]
fn a_dict_cycle_left_by_a_failed_unpickling_is_freed() {
    // `d = {}; d[0] = [d]`: EMPTY_DICT, BINPUT 0, BININT1 0, EMPTY_LIST, BINGET 0, APPEND, SETITEM;
    // then the data ends without STOP.
    let bytes = b"\x80\x02}q\x00K\x00]h\x00as";
    let mut r = &bytes[..];
    let mut u = Unpickler {
        r: &mut r,
        pos: 0,
        path: Path::new("test.pkl"),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        storages: HashMap::new(),
        containers: Vec::new(),
    };
    let err = u.run().unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    let weak = weak_container(&u.containers[0]).unwrap();
    drop(u);
    assert!(weak.upgrade().is_none(), "the dict cycle of a failed unpickling leaked");
}
