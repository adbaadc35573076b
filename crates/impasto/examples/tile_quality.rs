//! Scores a tiled run against the untiled run with the same settings (whole-image losses by
//! `impasto::score` under the untiled objective): how much tiling costs.
//!
//! `cargo run --release -p impasto --example tile_quality -- WEIGHTS CONTENT STYLE SIZE TILE [OVERLAP] [ITERATIONS]`

use impasto::{Arch, NoObserver, Pooling, StyleConfig, Vgg};

#[allow(clippy::print_stdout)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [weights, content, style, size, tile, rest @ ..] = args.as_slice() else {
        return Err("usage: tile_quality WEIGHTS CONTENT STYLE SIZE TILE [OVERLAP] [ITERATIONS]".into());
    };
    let net = Vgg::load(weights.as_ref(), Arch::Vgg16, Pooling::Max, None, "relu5_1")?;
    let content = impasto::load_image(content.as_ref())?;
    let styles = [impasto::load_image(style.as_ref())?];
    let d = StyleConfig::default();
    let plain = StyleConfig {
        size: size.parse()?,
        tile_overlap: rest.first().map_or(Ok(d.tile_overlap), |s| s.parse())?,
        iterations: rest.get(1).map_or(Ok(d.iterations), |s| s.parse())?,
        ..d
    };
    let tiled = StyleConfig { tile: Some(tile.parse()?), ..plain.clone() };
    for (name, config) in [("untiled", &plain), ("tiled", &tiled)] {
        let t = std::time::Instant::now();
        let out = impasto::stylize(&net, config, &content, &styles, &mut NoObserver)?;
        let secs = t.elapsed().as_secs_f64();
        let l = impasto::score(&net, &plain, &content, &styles, &out.image)?;
        println!(
            "{name:>8}: content {:.4e}  style {:.4e}  tv {:.4e}  total {:.4e}  ({secs:.1} s)",
            l.content,
            l.style,
            l.tv,
            l.total()
        );
    }
    Ok(())
}
