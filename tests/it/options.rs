//! Run options beyond the basics, with tiny weights: multi-scale, Adam averaging, colour control, masks,
//! JPEG quality and bit depth, the content's alpha kept, and the `parameters` metadata of every image.

use image::GenericImageView;

use crate::common::{Sandbox, TINY_LAYERS, grey_png, png_text_value, run_tiny, tiny};

fn rgb8(sb: &Sandbox, name: &str) -> image::RgbImage {
    image::open(sb.path(name)).unwrap_or_else(|e| panic!("{name}: {e}")).to_rgb8()
}

/// Mean absolute difference of two same-sized images, 0..255.
fn mean_diff(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a.as_raw().iter().zip(b.as_raw()).map(|(&x, &y)| u64::from(x.abs_diff(y))).sum();
    sum as f64 / a.as_raw().len() as f64
}

#[test]
fn multi_scale_schedule_and_log() {
    let sb = tiny();
    let out = run_tiny(
        &sb,
        &[
            "--min-size",
            "16",
            "-n",
            "4",
            "--scale-iterations",
            "2",
            "--optimizer",
            "adam",
            "--print-every",
            "2",
        ],
    );
    out.assert_ok();
    let filters = vec![
        (r"\d\.\d{3}e-?\d+", "[L]"),
        (r"\d+\.\d+ s/it", "[T] s/it"),
        (r"eta \d+s", "eta [ETA]"),
        (r", \d+\.\d s\)", ", [T] s)"),
    ];
    insta::with_settings!({ filters => filters }, { insta::assert_snapshot!(out.stderr, @"
    start 16x8, 6 iterations in 2 scales (16x8 ×4, 32x16 ×2)  content [L]  style [L]  tv [L]  total [L]
    iter 2/6  scale 1/2 16x8  content [L]  style [L]  tv [L]  total [L]  [T] s/it  eta [ETA]
    iter 4/6  scale 1/2 16x8  content [L]  style [L]  tv [L]  total [L]  [T] s/it  eta [ETA]
    iter 6/6  scale 2/2 32x16  content [L]  style [L]  tv [L]  total [L]  [T] s/it  eta [ETA]
    wrote out.png (32x16, 6 iterations, content [L], style [L], tv [L], [T] s)
    ") });
    assert_eq!(rgb8(&sb, "out.png").dimensions(), (32, 16));
}

#[test]
fn scale_ratio_and_no_multiscale() {
    let sb = tiny();
    let out = run_tiny(&sb, &["--min-size", "16", "--scale-ratio", "1.5", "--print-every", "0", "-n", "2"]);
    out.assert_ok();
    // 32 → 21 → 14 (< 16, dropped): two scales, the later one with the halved-but-capped count.
    assert!(out.stderr.starts_with("wrote out.png (32x16, 4 iterations, "), "{}", out.stderr);
    let out = run_tiny(&sb, &["--min-size", "16", "--no-multiscale", "--print-every", "1", "-n", "2"]);
    assert!(out.code == Some(2) && out.stderr.contains("cannot be used with"), "{}", out.stderr);
    let out = run_tiny(&sb, &["--no-multiscale", "--print-every", "0", "-n", "2"]);
    assert!(out.stderr.starts_with("wrote out.png (32x16, 2 iterations, "), "{}", out.stderr);
}

#[test]
fn ema_decay_runs_and_is_recorded() {
    let sb = tiny();
    for (decay, name) in [("0", "plain.png"), ("0.5", "avg.png")] {
        run_tiny(&sb, &["--optimizer", "adam", "-n", "6", "--ema-decay", decay, "-o", name, "-q"])
            .assert_ok();
        let text = png_text_value(&sb.path(name), "parameters").unwrap();
        assert!(text.contains(&format!(" --ema-decay {decay} ")), "{text}");
    }
}

#[test]
fn colour_options_run() {
    let sb = tiny();
    let base = ["--style-weight", "1e4", "-n", "5", "-q"];
    let run = |name: &str, extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend(["-o", name]);
        args.extend(extra);
        run_tiny(&sb, &args).assert_ok();
        rgb8(&sb, name)
    };
    let plain = run("plain.png", &[]);
    for (name, extra) in [
        ("preserve.png", &["--preserve-colors"][..]),
        ("lum.png", &["--luminance-only"]),
        ("chol.png", &["--color-transfer", "cholesky"]),
        ("pca.png", &["--color-transfer", "pca", "--preserve-colors"]),
    ] {
        let img = run(name, extra);
        assert_ne!(img, plain, "{name} is the same as without colour options");
    }
}

#[test]
fn black_mask_keeps_the_content() {
    let sb = tiny();
    grey_png(&sb, "black.png", 8, 4, 0);
    grey_png(&sb, "white.png", 8, 4, 255);
    let args = ["--style-weight", "1e4", "-n", "5", "-q", "--depth", "16"];
    let mut kept = args.to_vec();
    kept.extend(["--mask", "black.png", "-o", "kept.png"]);
    run_tiny(&sb, &kept).assert_ok();
    let mut styled = args.to_vec();
    styled.extend(["--mask", "white.png", "-o", "styled.png"]);
    run_tiny(&sb, &styled).assert_ok();
    let content = image::imageops::resize(
        &image::open(sb.path("c.png")).unwrap().to_rgb8(),
        32,
        16,
        image::imageops::FilterType::Lanczos3,
    );
    let (kept, styled) = (rgb8(&sb, "kept.png"), rgb8(&sb, "styled.png"));
    assert!(
        mean_diff(&kept, &content) < mean_diff(&styled, &content) / 4.0,
        "the black mask kept the content"
    );
}

/// A mask of another shape than the content's is stretched to it, and a note says so (not with -q).
#[test]
fn a_mask_of_another_shape_is_stretched_with_a_note() {
    let sb = tiny();
    grey_png(&sb, "square.png", 8, 8, 255);
    let args = ["-n", "1", "--print-every", "0", "--mask", "square.png", "-o", "o.png"];
    let out = run_tiny(&sb, &args);
    out.assert_ok();
    let note = out.stderr.lines().find(|l| l.contains("stretched")).unwrap_or_default().to_string();
    insta::assert_snapshot!(note, @"impasto: the --mask image square.png is 8x8 and the content 40x20: it is stretched to the content's shape");
    let quiet = run_tiny(&sb, &[&args[..], &["-q"]].concat());
    quiet.assert_ok();
    assert!(!quiet.stderr.contains("stretched"), "{}", quiet.stderr);
}

#[test]
fn style_masks_one_per_style() {
    let sb = tiny();
    sb.png("s2.png", 30, 18);
    grey_png(&sb, "left.png", 8, 4, 255);
    grey_png(&sb, "right.png", 8, 4, 0);
    let mut args =
        vec!["c.png", "s.png", "s2.png", "-o", "out.png", "--weights", "w.safetensors", "--size", "32"];
    args.extend(TINY_LAYERS);
    args.extend(["-n", "2", "-q", "--style-mask", "left.png", "--style-mask", "right.png"]);
    sb.run(&args).assert_ok();
    assert_eq!(rgb8(&sb, "out.png").dimensions(), (32, 16));
}

#[test]
fn jpeg_quality_and_bit_depth() {
    let sb = tiny();
    run_tiny(&sb, &["-o", "low.jpg", "--quality", "5", "-q"]).assert_ok();
    run_tiny(&sb, &["-o", "high.jpg", "--quality", "100", "-q"]).assert_ok();
    let size = |n: &str| std::fs::metadata(sb.path(n)).unwrap().len();
    assert!(size("low.jpg") < size("high.jpg"), "{} vs {}", size("low.jpg"), size("high.jpg"));
    for name in ["deep.png", "deep.tif"] {
        run_tiny(&sb, &["-o", name, "--depth", "16", "-q"]).assert_ok();
        assert_eq!(image::open(sb.path(name)).unwrap().color(), image::ColorType::Rgb16, "{name}");
    }
    run_tiny(&sb, &["-o", "flat.png", "--depth", "8", "-q"]).assert_ok();
    assert_eq!(image::open(sb.path("flat.png")).unwrap().color(), image::ColorType::Rgb8);
}

#[test]
fn content_alpha_is_kept() {
    let sb = tiny();
    let rgba = image::RgbaImage::from_fn(40, 20, |x, y| {
        image::Rgba([200, (y * 10) as u8, 50, if x < 20 { 0 } else { 255 }])
    });
    rgba.save(sb.path("ca.png")).unwrap();
    let mut args = vec!["ca.png", "s.png", "-o", "out.png", "--weights", "w.safetensors", "--size", "32"];
    args.extend(TINY_LAYERS);
    args.extend(["-n", "2", "-q", "--save-every", "2"]);
    sb.run(&args).assert_ok();
    for name in ["out.png", "out_0002.png"] {
        let img = image::open(sb.path(name)).unwrap();
        assert_eq!(img.color(), image::ColorType::Rgba8, "{name}");
        assert_eq!((img.get_pixel(2, 8).0[3], img.get_pixel(29, 8).0[3]), (0, 255), "{name}");
    }
    // An opaque content gives an RGB output.
    run_tiny(&sb, &["-q"]).assert_ok();
    assert_eq!(image::open(sb.path("out.png")).unwrap().color(), image::ColorType::Rgb8);
}

#[test]
fn parameters_are_embedded_in_every_image() {
    let sb = tiny();
    run_tiny(&sb, &["-q", "--save-every", "2", "--style-weight", "50", "--time-limit", "1h"]).assert_ok();
    let final_text = png_text_value(&sb.path("out.png"), "parameters").expect("parameters in out.png");
    let snapshot_text = png_text_value(&sb.path("out_0002.png"), "parameters").expect("in the snapshot");
    assert_eq!(final_text, snapshot_text);
    insta::with_settings!({ filters => vec![(env!("CARGO_PKG_VERSION"), "[VERSION]")] }, {
        insta::assert_snapshot!(final_text, @"impasto c.png s.png -o out.png --size 32 --save-every 2 --quality 95 --depth 8 --content-weight 5 --style-weight 50 --tv-weight 1000000 --content-layers relu1_1 --style-layers relu1_1 --style-loss gram --style-scale 1 --iterations 3 --optimizer lbfgs --lbfgs-history 100 --init content --no-multiscale --scale-ratio 2 --model vgg16 --weights w.safetensors --preprocess caffe --pooling max --time-limit 1h --threads 0 # impasto [VERSION], weights w.safetensors")
    });
    assert_eq!(
        png_text_value(&sb.path("out.png"), "Software"),
        Some(format!("impasto {}", env!("CARGO_PKG_VERSION")))
    );
}

/// More threads than cores are allowed, with a note that they slow the run down.
#[test]
fn more_threads_than_cores_get_a_note() {
    let sb = tiny();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores + 1).to_string();
    let out = run_tiny(&sb, &["--threads", &threads]);
    out.assert_ok();
    let first = out.stderr.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!(
            "note: --threads {threads} is more than the {cores} cores here: the extra threads slow the run down \
             (--threads 0 uses one per core)"
        ),
        "{}",
        out.stderr
    );
    let out = run_tiny(&sb, &["--threads", &threads, "-q"]);
    out.assert_ok();
    assert_eq!(out.stderr, "");
    let out = run_tiny(&sb, &["--threads", "1"]);
    assert!(!out.stderr.contains("note: --threads"), "{}", out.stderr);
}

/// jcjohnson/neural-style's `--init random` and `--init image` are noise and content.
#[test]
fn init_random_and_image_are_synonyms() {
    let sb = tiny();
    for (synonym, keyword) in [("random", "noise"), ("image", "content")] {
        run_tiny(&sb, &["--init", synonym, "-o", "a.png", "-q"]).assert_ok();
        run_tiny(&sb, &["--init", keyword, "-o", "b.png", "-q"]).assert_ok();
        assert!(rgb8(&sb, "a.png") == rgb8(&sb, "b.png"), "--init {synonym} differs from {keyword}");
        let params = png_text_value(&sb.path("a.png"), "parameters").unwrap();
        assert!(params.contains(&format!(" --init {keyword} ")), "{params}");
    }
}
