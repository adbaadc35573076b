//! Fuzzes impasto's safetensors weights loading (header parsing, then every key, dtype and shape
//! checked against VGG-16 or VGG-19) on arbitrary bytes. The first byte picks the architecture and
//! how deep the network is loaded; the rest is the file.
#![no_main]

use impasto::{Arch, Pooling, Vgg};
use libfuzzer_sys::fuzz_target;

/// Where the network is cut: the shallow cuts let a small input load successfully, the deepest
/// one makes every layer's keys matter.
const DEEPEST: [&str; 4] = ["relu1_1", "relu1_2", "relu2_1", "deepest"];

fuzz_target!(|data: &[u8]| {
    let Some((&select, file)) = data.split_first() else { return };
    let arch = if select & 1 == 0 { Arch::Vgg16 } else { Arch::Vgg19 };
    let deepest = match DEEPEST[usize::from(select >> 1) % DEEPEST.len()] {
        "deepest" if arch == Arch::Vgg16 => "relu5_3",
        "deepest" => "relu5_4",
        name => name,
    };
    let _ = Vgg::from_safetensors_bytes(file, arch, Pooling::Max, None, deepest);
});
