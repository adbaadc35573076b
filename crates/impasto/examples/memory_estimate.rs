//! Prints the library's peak-memory estimate of a run at the given sizes (default settings), whole and
//! in tiles, to compare with `/usr/bin/time -v` of the same runs, and what a GPU run holds on the card.
//!
//! `cargo run --release -p impasto --example memory_estimate -- WEIGHTS|vgg16|vgg19 SIZE|WxH[,...] [TILE]`
//!
//! `vgg16` or `vgg19` in place of a weights file: a network of that shape with zero weights (the
//! estimates depend on the shapes alone). The GPU figure is for an adapter whose storage bindings
//! hold 2047 MiB and whose buffers 4094 MiB (NVIDIA's Vulkan driver).

use impasto::tiles::{GpuLimits, estimate_gpu_peak, estimate_peak, estimate_tiled_peak, fmt_bytes};
use impasto::{Arch, LayerKind, Pooling, Preprocess, StyleConfig, Vgg};

/// A network of `arch`'s shapes up to relu5_1, every weight zero.
fn zero_vgg(arch: Arch) -> Result<Vgg, impasto::Error> {
    let weights = arch
        .layers()
        .iter()
        .filter_map(|l| match l.kind {
            LayerKind::Conv { c_in, c_out, .. } => Some((vec![0.0; c_out * c_in * 9], vec![0.0; c_out])),
            _ => None,
        })
        .take(if arch == Arch::Vgg16 { 11 } else { 13 })
        .collect();
    Vgg::from_tensors(arch, Pooling::Max, Preprocess::Torch, weights)
}

#[allow(clippy::print_stdout)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (weights, sizes) = match args.as_slice() {
        [w, s] | [w, s, _] => (w, s),
        _ => return Err("usage: memory_estimate WEIGHTS|vgg16|vgg19 SIZE[,SIZE...] [TILE]".into()),
    };
    let net = match weights.as_str() {
        "vgg16" => zero_vgg(Arch::Vgg16)?,
        "vgg19" => zero_vgg(Arch::Vgg19)?,
        path => Vgg::load(path.as_ref(), Arch::Vgg16, Pooling::Max, None, "relu5_1")?,
    };
    let config = StyleConfig::default();
    let gpu = GpuLimits {
        adapter: "a GPU with 2047 MiB bindings".into(),
        tensor: 2047 << 20,
        tensor_limit: "max_storage_buffer_binding_size",
        buffer: 4094 << 20,
        memory: None,
        available: None,
        fitted: None,
    };
    let tile: Option<u32> = args.get(2).map(|t| t.parse()).transpose()?;
    for s in sizes.split(',') {
        let (w, h): (u32, u32) = match s.split_once('x') {
            Some((w, h)) => (w.parse()?, h.parse()?),
            None => (s.parse()?, s.parse()?),
        };
        print!("{w}x{h}: whole {}", fmt_bytes(estimate_peak(&net, &config, w, h)));
        if let Some(t) = tile {
            print!(", tiles of {t} px {}", fmt_bytes(estimate_tiled_peak(&net, &config, w, h, t)));
        }
        println!(", on a GPU {} MiB", estimate_gpu_peak(&net, &config, w, h, &gpu) >> 20);
    }
    Ok(())
}
