//! Fuzzes the restricted unpickler on arbitrary bytes, as a zip checkpoint's `data.pkl`: it must
//! return the state dict's tensor list or an error, never panic, hang or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = impasto_weights::read_state_dict_pickle(data);
});
