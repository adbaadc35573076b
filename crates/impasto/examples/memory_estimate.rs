//! Prints the library's peak-memory estimate of a run at the given sizes (default settings, VGG-16),
//! whole and in tiles, to compare with `/usr/bin/time -v` of the same runs.
//!
//! `cargo run --release -p impasto --example memory_estimate -- WEIGHTS SIZE|WxH[,...] [TILE]`

use impasto::{Arch, Pooling, StyleConfig, Vgg};

#[allow(clippy::print_stdout)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (weights, sizes) = match args.as_slice() {
        [w, s] | [w, s, _] => (w, s),
        _ => return Err("usage: memory_estimate WEIGHTS SIZE[,SIZE...] [TILE]".into()),
    };
    let net = Vgg::load(weights.as_ref(), Arch::Vgg16, Pooling::Max, None, "relu5_1")?;
    let config = StyleConfig::default();
    let tile: Option<u32> = args.get(2).map(|t| t.parse()).transpose()?;
    for s in sizes.split(',') {
        let (w, h): (u32, u32) = match s.split_once('x') {
            Some((w, h)) => (w.parse()?, h.parse()?),
            None => (s.parse()?, s.parse()?),
        };
        let whole = impasto::tiles::estimate_peak(&net, &config, w, h);
        print!("{w}x{h}: whole {}", impasto::tiles::fmt_bytes(whole));
        if let Some(t) = tile {
            print!(
                ", tiles of {t} px {}",
                impasto::tiles::fmt_bytes(impasto::tiles::estimate_tiled_peak(&net, &config, w, h, t))
            );
        }
        println!();
    }
    Ok(())
}
