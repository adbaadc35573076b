//! Fuzzes the whole `.pth` reader (format detection, zip container, legacy pickle sequence and
//! storage table, strided gathers) on arbitrary bytes: a state dict or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sd) = impasto_weights::read_pth_bytes(data, &|_| true) {
        for t in sd.values() {
            assert_eq!(t.data.len(), t.numel());
        }
    }
});
