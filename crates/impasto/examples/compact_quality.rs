//! Measures the built-in compact VGG-16 (8-bit, up to relu4_2) against the full f32 weights.
//!
//! `features FULL SIZE IMAGE...`: for each image at SIZE px, the relative error ‖f_q − f‖ / ‖f‖ of the
//! features and of the Gram matrices at relu1_1 … relu4_2.
//!
//! `stylize FULL SIZE ITERATIONS CONTENT STYLE OUT_FULL OUT_COMPACT [SIDE_BY_SIDE]`: the same run
//! (style layers relu1_1..relu4_1, content relu4_2, L-BFGS from the content) with the full and with
//! the compact weights, both results scored with the full weights (`impasto::score`), and optionally
//! a side-by-side picture (full | compact).
//!
//! `join LEFT RIGHT OUT`: only the side-by-side picture of two saved images.
//!
//! `cargo run --release -p impasto --example compact_quality -- features WEIGHTS 256 a.png b.png`
//!
//! Set `IMPASTO_COMPACT=FILE` to measure a packed file instead of the built-in one.

use impasto::{Arch, COMPACT_STYLE_LAYERS, NoObserver, Pooling, StyleConfig, Vgg};

const LAYERS: [&str; 10] =
    ["relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1", "relu3_2", "relu3_3", "relu4_1", "relu4_2", ""];

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn compact(deepest: &str) -> Res<Vgg> {
    Ok(match std::env::var_os("IMPASTO_COMPACT") {
        Some(p) => Vgg::load(p.as_ref(), Arch::Vgg16, Pooling::Max, None, deepest)?,
        None => Vgg::embedded(Pooling::Max, deepest)?,
    })
}

fn rel(a: &[f32], b: &[f32]) -> f64 {
    let (mut d, mut n) = (0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        d += (f64::from(x) - f64::from(y)).powi(2);
        n += f64::from(y).powi(2);
    }
    (d / n.max(f64::MIN_POSITIVE)).sqrt()
}

#[allow(clippy::print_stdout)]
fn features(full: &str, size: u32, images: &[String]) -> Res<()> {
    let layers: Vec<&str> = LAYERS.iter().copied().filter(|l| !l.is_empty()).collect();
    let f = Vgg::load(full.as_ref(), Arch::Vgg16, Pooling::Max, None, "relu4_2")?;
    let q = compact("relu4_2")?;
    println!("relative error of the compact model's features (and Gram matrices), {size} px");
    println!("{:<14} {}", "image", layers.iter().map(|l| format!("{l:>16}")).collect::<String>());
    for path in images {
        let img = impasto::load_image(path.as_ref())?;
        let (w, h) = impasto::fit_longest_side(img.width(), img.height(), size);
        let px = impasto::to_planar(&impasto::resize(&img, w, h));
        let (w, h) = (w as usize, h as usize);
        let a = f.features(&px, w, h, &layers)?;
        let b = q.features(&px, w, h, &layers)?;
        let name = std::path::Path::new(path).file_stem().map(|s| s.to_string_lossy()).unwrap_or_default();
        let mut line = format!("{name:<14}");
        for ((fa, [c, hh, ww]), (fb, _)) in a.iter().zip(&b) {
            let ga = impasto::gram_matrix(fa, *c, hh * ww);
            let gb = impasto::gram_matrix(fb, *c, hh * ww);
            line.push_str(&format!("  {:>6.2}% ({:>5.2}%)", 100.0 * rel(fb, fa), 100.0 * rel(&gb, &ga)));
        }
        println!("{line}");
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
fn stylize(full_path: &str, size: u32, iterations: usize, files: &[String]) -> Res<()> {
    let [content, style, out_full, out_compact, rest @ ..] = files else {
        return Err("stylize needs CONTENT STYLE OUT_FULL OUT_COMPACT [SIDE_BY_SIDE]".into());
    };
    let config = StyleConfig {
        size,
        iterations,
        style_layers: COMPACT_STYLE_LAYERS.iter().map(|s| s.to_string()).collect(),
        ..StyleConfig::default()
    };
    let content = impasto::load_image(content.as_ref())?;
    let style = impasto::load_image(style.as_ref())?;
    let full = Vgg::load(full_path.as_ref(), Arch::Vgg16, Pooling::Max, None, "relu4_2")?;
    let q = compact("relu4_2")?;
    let mut results = Vec::new();
    for (name, net, out) in [("full", &full, out_full), ("compact", &q, out_compact)] {
        let t = std::time::Instant::now();
        let r = impasto::stylize(net, &config, &content, std::slice::from_ref(&style), &mut NoObserver)?;
        let secs = t.elapsed().as_secs_f64();
        impasto::save_image(&r.image, out.as_ref())?;
        // Scored on the saved 8-bit picture, with the full weights.
        let saved = impasto::load_image(out.as_ref())?;
        let s = impasto::score(&full, &config, &content, std::slice::from_ref(&style), &saved)?;
        println!(
            "{name:<8} own losses: content {:.4e} style {:.4e} | scored with the full weights: content {:.4e} style {:.4e} tv {:.4e} ({secs:.0} s)",
            r.losses.content, r.losses.style, s.content, s.style, s.tv
        );
        results.push(saved);
    }
    if let Some(path) = rest.first() {
        join(&results[0], &results[1], path)?;
    }
    Ok(())
}

/// Writes `a | b` side by side with a white gap (a JPEG at quality 90).
fn join(a: &impasto::image::Rgb32FImage, b: &impasto::image::Rgb32FImage, path: &str) -> Res<()> {
    let gap = 8;
    let mut img = impasto::image::Rgb32FImage::from_pixel(
        a.width() + b.width() + gap,
        a.height().max(b.height()),
        impasto::image::Rgb([1.0, 1.0, 1.0]),
    );
    impasto::image::imageops::replace(&mut img, a, 0, 0);
    impasto::image::imageops::replace(&mut img, b, i64::from(a.width() + gap), 0);
    let options = impasto::SaveOptions { quality: 90, ..impasto::SaveOptions::default() };
    impasto::save_image_with(&img, path.as_ref(), &options)?;
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [mode, full, size, images @ ..] if mode == "features" => features(full, size.parse()?, images),
        [mode, full, size, iterations, files @ ..] if mode == "stylize" => {
            stylize(full, size.parse()?, iterations.parse()?, files)
        }
        [mode, a, b, out] if mode == "join" => {
            join(&impasto::load_image(a.as_ref())?, &impasto::load_image(b.as_ref())?, out)
        }
        _ => Err("usage: compact_quality features FULL SIZE IMAGE... | \
                  compact_quality stylize FULL SIZE ITERATIONS CONTENT STYLE OUT_FULL OUT_COMPACT [SIDE_BY_SIDE] | \
                  compact_quality join LEFT RIGHT SIDE_BY_SIDE"
            .into()),
    }
}
