//! Measures how far from a tile's edge its loss gradient differs from the whole image's: the overlap
//! tiles need. A tile (the left columns of the image, its right edge inside the image) and the whole
//! image are evaluated under a content loss at a deep layer (relu4_2, the content layer, and relu5_1,
//! the deepest style layer), each with the content's features of its own pixels as target; the tile's
//! gradient (rescaled for its smaller mean) is compared with the whole image's over bands of columns
//! by distance from the tile's edge: relative L1 error per band.
//!
//! `cargo run --release -p impasto --example tile_overlap -- WEIGHTS IMAGE [SIZE]`

use impasto::tiles::{Rect, crop_planar};
use impasto::{Arch, Objective, Pooling, Vgg};

#[allow(clippy::print_stdout)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (weights, image) = match args.as_slice() {
        [w, i] | [w, i, _] => (w, i),
        _ => return Err("usage: tile_overlap WEIGHTS IMAGE [SIZE]".into()),
    };
    let size: u32 = args.get(2).map_or(Ok(256), |s| s.parse())?;
    let net = Vgg::load(weights.as_ref(), Arch::Vgg16, Pooling::Max, None, "relu5_1")?;
    let content = impasto::resize(&impasto::load_image(image.as_ref())?, size, size);
    // The point where the gradients are compared: the content with deterministic noise.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let noisy = impasto::image::Rgb32FImage::from_fn(size, size, |x, y| {
        let p = content.get_pixel(x, y);
        impasto::image::Rgb([0, 1, 2].map(|c| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (p[c] + ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2).clamp(0.0, 1.0)
        }))
    });
    let tile = size / 2 / 16 * 16;
    let (s, t) = (size as usize, tile as usize);
    println!(
        "{size}x{size} image, tile = columns 0..{tile}; relative L1 error of the tile's gradient by distance from its edge"
    );
    for layer in ["relu4_2", "relu5_1"] {
        let grad = |rect: Rect| -> Result<(Vec<f32>, usize), impasto::Error> {
            let px = crop_planar(&noisy, rect);
            let target = crop_planar(&content, rect);
            let (w, h) = (rect.width as usize, rect.height as usize);
            let f = net.features(&target, w, h, &[layer])?.remove(0).0;
            let n = f.len();
            let mut o = Objective::new(&net, w, h);
            o.add_content(layer, f, 1.0)?;
            Ok((o.evaluate(&px).1, n))
        };
        let (gw, nw) = grad(Rect::whole(size, size))?;
        let (gt, nt) = grad(Rect { x: 0, y: 0, width: tile, height: size })?;
        let scale = nt as f32 / nw as f32;
        print!("{layer}:");
        for band in (0..t).step_by(16) {
            let (mut e, mut m) = (0.0f64, 0.0f64);
            for c in 0..3 {
                for y in 0..s {
                    for d in band..(band + 16).min(t) {
                        let x = t - 1 - d;
                        let a = gw[c * s * s + y * s + x];
                        let b = gt[c * t * s + y * t + x] * scale;
                        e += f64::from((a - b).abs());
                        m += f64::from(a.abs());
                    }
                }
            }
            print!("  {band}-{}: {:.3}", band + 15, e / m);
        }
        println!();
    }
    Ok(())
}
