//! Scores a saved image with the definitions of `../shared/reference/README.md`: content = mean squared
//! relu4_2 difference to the content image, style = Σ over relu1_1..relu5_1 of the mean squared
//! difference of Gram matrices (C·H·W-normalised; style resized to the image's longest side),
//! tv = mean absolute neighbour difference in 0..1.
//!
//! `cargo run --release -p impasto --example score -- WEIGHTS CONTENT STYLE IMAGE`

use impasto::{Arch, Pooling, StyleConfig, Vgg};

#[allow(clippy::print_stdout)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [weights, content, style, image] = args.as_slice() else {
        return Err("usage: score WEIGHTS CONTENT STYLE IMAGE".into());
    };
    let net = Vgg::load(weights.as_ref(), Arch::Vgg16, Pooling::Max, None, "relu5_1")?;
    let content = impasto::load_image(content.as_ref())?;
    let style = impasto::load_image(style.as_ref())?;
    let image = impasto::load_image(image.as_ref())?;
    let config = StyleConfig {
        size: image.width().max(image.height()),
        content_weight: 1.0,
        style_weight: 1.0,
        tv_weight: 0.0,
        ..StyleConfig::default()
    };
    let l = impasto::score(&net, &config, &content, &[style], &image)?;
    let (w, h) = (image.width(), image.height());
    let (mut sum, mut n) = (0.0f64, 0usize);
    for y in 0..h {
        for x in 0..w {
            let p = image.get_pixel(x, y);
            for c in 0..3 {
                if x + 1 < w {
                    sum += (image.get_pixel(x + 1, y)[c] - p[c]).abs() as f64;
                    n += 1;
                }
                if y + 1 < h {
                    sum += (image.get_pixel(x, y + 1)[c] - p[c]).abs() as f64;
                    n += 1;
                }
            }
        }
    }
    println!("content {:.0}  style {:.0}  tv {:.4}", l.content, l.style, sum / n.max(1) as f64);
    Ok(())
}
