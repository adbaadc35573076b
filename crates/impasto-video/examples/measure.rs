//! The README's video measurement: on a clip panned and zoomed across a photo and on a clip with a
//! moving object (both made here, so the true motion is known), the temporal warping error between
//! consecutive outputs, mean |O_t − warp(O_{t−1})| on the pixels visible in both frames (warped with
//! the true motion), for independent per-frame stylisation and for the video pipeline (warped
//! initialisation + temporal loss), with the style loss and the seconds per frame.
//!
//! `cargo run --release -p impasto-video --example measure -- IMAGES_DIR OUT_DIR [size] [frames]
//! [first_iters] [frame_iters,...] [temporal weights,...] [long-term offsets/...] [passes]
//! [pass_iters]` (uses IMPASTO_WEIGHTS, else the built-in model; offsets such as `1/1,2,4`): every
//! combination is measured; with passes above 1, each later pass of the multi-pass algorithm is
//! reported too; the strip shows the last. Also reported: the warping error between outputs four frames apart (what
//! long-term consistency is for) and the share of the pixels visible in consecutive frames that the
//! temporal mask keeps.

#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use impasto::image::{Rgb, Rgb32FImage};
use impasto::{AlphaPlane, Arch, Init, NoObserver, Pooling, StyleConfig, Temporal, Vgg};
use impasto_video::{
    Earlier, Flow, FlowParams, Plane, blend, carry_over, masked_mean_abs, pass_frames, revisit, warp,
};

/// The frames apart over which the long-range warping error is measured.
const LONG_RANGE: usize = 4;

/// A clip: frames, and the true flow from frame t to frame s with where that flow is valid (the pixel
/// is visible in both).
struct Clip {
    frames: Vec<Rgb32FImage>,
    truth: Box<dyn Fn(usize, usize) -> (Flow, Plane)>,
}

fn sample(img: &Rgb32FImage, x: f32, y: f32) -> Rgb<f32> {
    let (w, h) = (img.width() as f32 - 1.0, img.height() as f32 - 1.0);
    let (x, y) = (x.clamp(0.0, w), y.clamp(0.0, h));
    let (x0, y0) = (x.floor() as u32, y.floor() as u32);
    let (x1, y1) = ((x0 + 1).min(w as u32), (y0 + 1).min(h as u32));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let p = |a: u32, b: u32| img.get_pixel(a, b).0;
    Rgb([0, 1, 2].map(|c| {
        let top = p(x0, y0)[c] * (1.0 - fx) + p(x1, y0)[c] * fx;
        let bot = p(x0, y1)[c] * (1.0 - fx) + p(x1, y1)[c] * fx;
        top * (1.0 - fy) + bot * fy
    }))
}

/// Pan and zoom: frame t shows the photo at `o_t + s_t·p`.
fn pan_zoom(photo: &Rgb32FImage, size: u32, n: usize) -> Clip {
    let view = |t: usize| {
        let s = 2.2 * (1.0 - 0.012 * t as f32);
        (40.0 + 3.0 * t as f32, 30.0 + 1.5 * t as f32, s)
    };
    let frames = (0..n)
        .map(|t| {
            let (ox, oy, s) = view(t);
            Rgb32FImage::from_fn(size, size, |x, y| sample(photo, ox + s * x as f32, oy + s * y as f32))
        })
        .collect();
    let truth = move |t: usize, s: usize| {
        let ((ox, oy, s), (px, py, ps)) = (view(t), view(s));
        let n = size as usize;
        let q = |x: usize, y: usize| ((ox + s * x as f32 - px) / ps, (oy + s * y as f32 - py) / ps);
        let u = Plane::from_fn(n, n, |x, y| q(x, y).0 - x as f32);
        let v = Plane::from_fn(n, n, |x, y| q(x, y).1 - y as f32);
        let m = Plane::from_fn(n, n, |x, y| {
            let (a, b) = q(x, y);
            let hi = (n - 1) as f32;
            f32::from((0.0..=hi).contains(&a) && (0.0..=hi).contains(&b))
        });
        (Flow { u, v }, m)
    };
    Clip { frames, truth: Box::new(truth) }
}

/// A square cut from `object` moving over a static `background`.
fn moving_object(background: &Rgb32FImage, object: &Rgb32FImage, size: u32, n: usize) -> Clip {
    let side = size as f32 * 0.35;
    let at = move |t: usize| (size as f32 * 0.15 + 3.0 * t as f32, size as f32 * 0.3 + 1.0 * t as f32);
    let bs = background.width().min(background.height()) as f32 / size as f32;
    let os = object.width().min(object.height()) as f32 / size as f32 * 0.5;
    let inside = move |t: usize, x: f32, y: f32| {
        let (cx, cy) = at(t);
        x >= cx && x < cx + side && y >= cy && y < cy + side
    };
    let frames = (0..n)
        .map(|t| {
            Rgb32FImage::from_fn(size, size, |x, y| {
                let (x, y) = (x as f32, y as f32);
                let (cx, cy) = at(t);
                if inside(t, x, y) {
                    sample(object, 60.0 + os * (x - cx), 40.0 + os * (y - cy))
                } else {
                    sample(background, bs * x, bs * y)
                }
            })
        })
        .collect();
    let truth = move |t: usize, s: usize| {
        let n = size as usize;
        let ((cx, cy), (px, py)) = (at(t), at(s));
        let d = |x: usize, y: usize| {
            if inside(t, x as f32, y as f32) { (px - cx, py - cy) } else { (0.0, 0.0) }
        };
        let u = Plane::from_fn(n, n, |x, y| d(x, y).0);
        let v = Plane::from_fn(n, n, |x, y| d(x, y).1);
        // Background now visible that the object covered before has no match.
        let m = Plane::from_fn(n, n, |x, y| {
            let (a, b) = (x as f32 + d(x, y).0, y as f32 + d(x, y).1);
            let occluded = !inside(t, x as f32, y as f32) && inside(s, x as f32, y as f32);
            let hi = (n - 1) as f32;
            f32::from(!occluded && (0.0..=hi).contains(&a) && (0.0..=hi).contains(&b))
        });
        (Flow { u, v }, m)
    };
    Clip { frames, truth: Box::new(truth) }
}

struct Result {
    warp_error: f64,
    /// Mean |O_t − warp(O_{t−LONG_RANGE})| (None for a shorter clip).
    long_error: Option<f64>,
    /// The share of the pixels visible in frames t and t−1 that the temporal mask kept (video only).
    coverage: Option<f64>,
    style: f64,
    later_style: f64,
    /// The mean content loss per frame.
    content: f64,
    first_seconds: f64,
    later_seconds: f64,
    outputs: Vec<Rgb32FImage>,
    raw_style: Vec<f64>,
    raw_content: Vec<f64>,
}

/// The mean warping error between outputs `k` frames apart.
fn warp_error(clip: &Clip, outputs: &[Rgb32FImage], k: usize) -> Option<f64> {
    let pairs: Vec<f64> = (k..outputs.len())
        .map(|t| {
            let (flow, mask) = (clip.truth)(t, t - k);
            masked_mean_abs(&outputs[t], &warp(&outputs[t - k], &flow), &mask)
        })
        .collect();
    (!pairs.is_empty()).then(|| pairs.iter().sum::<f64>() / pairs.len() as f64)
}

/// `losses`: each frame's style and content loss; `secs`: each frame's seconds; `masks`: the temporal
/// masks.
fn evaluate(
    clip: &Clip,
    outputs: Vec<Rgb32FImage>,
    losses: (&[f64], &[f64]),
    secs: &[f64],
    masks: &[Plane],
) -> Result {
    let (style, content) = losses;
    let coverage = (!masks.is_empty()).then(|| {
        let (mut kept, mut visible) = (0.0, 0.0);
        for (t, m) in masks.iter().enumerate() {
            let (_, truth) = (clip.truth)(t + 1, t);
            kept += truth.data.iter().zip(&m.data).map(|(v, k)| f64::from(v * k)).sum::<f64>();
            visible += truth.data.iter().map(|&v| f64::from(v)).sum::<f64>();
        }
        kept / visible
    });
    Result {
        warp_error: warp_error(clip, &outputs, 1).unwrap_or(0.0),
        long_error: warp_error(clip, &outputs, LONG_RANGE),
        coverage,
        style: style.iter().sum::<f64>() / style.len() as f64,
        later_style: style[1..].iter().sum::<f64>() / (style.len() - 1) as f64,
        content: content.iter().sum::<f64>() / content.len() as f64,
        first_seconds: secs[0],
        later_seconds: secs[1..].iter().sum::<f64>() / (secs.len() - 1) as f64,
        outputs,
        raw_style: style.to_vec(),
        raw_content: content.to_vec(),
    }
}

fn independent(net: &Vgg, config: &StyleConfig, clip: &Clip, styles: &[Rgb32FImage]) -> Result {
    let (mut outs, mut style, mut content, mut secs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for f in &clip.frames {
        let t = Instant::now();
        let out = impasto::stylize(net, config, f, styles, &mut NoObserver).unwrap();
        secs.push(t.elapsed().as_secs_f64());
        style.push(out.losses.style);
        content.push(out.losses.content);
        outs.push(out.image);
    }
    evaluate(clip, outs, (&style, &content), &secs, &[])
}

fn video(
    net: &Vgg,
    config: &StyleConfig,
    clip: &Clip,
    styles: &[Rgb32FImage],
    iters: usize,
    weight: f32,
    offsets: &[usize],
) -> Result {
    let (mut outs, mut style, mut secs) = (Vec::<Rgb32FImage>::new(), Vec::new(), Vec::new());
    let mut content = Vec::new();
    let mut masks = Vec::new();
    for (t, f) in clip.frames.iter().enumerate() {
        let start = Instant::now();
        let out = if t == 0 {
            impasto::stylize(net, config, f, styles, &mut NoObserver).unwrap()
        } else {
            let earlier: Vec<Earlier> = offsets
                .iter()
                .filter(|&&j| j <= t)
                .map(|&j| Earlier { content: &clip.frames[t - j], result: &outs[t - j] })
                .collect();
            let (target, mask) = carry_over(&earlier, f, &FlowParams::default());
            let cfg = StyleConfig {
                iterations: iters,
                init: Init::Image(blend(&target, f, &mask)),
                min_size: config.size,
                ..config.clone()
            };
            masks.push(mask.clone());
            let reliability = AlphaPlane::from_raw(f.width(), f.height(), mask.data).unwrap();
            let temporal = Temporal { target, reliability, weight };
            impasto::stylize_frame(net, &cfg, f, styles, &temporal, &mut NoObserver).unwrap()
        };
        secs.push(start.elapsed().as_secs_f64());
        style.push(out.losses.style);
        content.push(out.losses.content);
        outs.push(out.image);
    }
    evaluate(clip, outs, (&style, &content), &secs, &masks)
}

/// Pass `pass` (2, 3, …) of the multi-pass algorithm over a clip whose last pass gave `last`.
fn later_pass(
    net: &Vgg,
    config: &StyleConfig,
    clip: &Clip,
    styles: &[Rgb32FImage],
    last: Result,
    pass: usize,
    iters: usize,
    weight: f32,
) -> Result {
    let mut outs = last.outputs.clone();
    let mut style = last.raw_style.clone();
    let mut content = last.raw_content.clone();
    let mut secs = vec![0.0; outs.len()];
    for (t, neighbour) in pass_frames(pass, outs.len()) {
        let start = Instant::now();
        let f = &clip.frames[t];
        let mut cfg = StyleConfig { iterations: iters, min_size: config.size, ..config.clone() };
        let out = match neighbour {
            Some(j) => {
                let near = Earlier { content: &clip.frames[j], result: &outs[j] };
                let r = revisit(&outs[t], f, near, &FlowParams::default());
                cfg.init = Init::Image(r.init);
                let reliability = AlphaPlane::from_raw(f.width(), f.height(), r.mask.data).unwrap();
                let temporal = Temporal { target: r.target, reliability, weight };
                impasto::stylize_frame(net, &cfg, f, styles, &temporal, &mut NoObserver).unwrap()
            }
            None => {
                cfg.init = Init::Image(outs[t].clone());
                impasto::stylize(net, &cfg, f, styles, &mut NoObserver).unwrap()
            }
        };
        secs[t] = start.elapsed().as_secs_f64();
        style[t] = out.losses.style;
        content[t] = out.losses.content;
        outs[t] = out.image;
    }
    let mut r = evaluate(clip, outs, (&style, &content), &secs, &[]);
    r.coverage = last.coverage;
    r
}

fn strip(rows: &[&[Rgb32FImage]], path: &Path) {
    let (w, h) = (rows[0][0].width(), rows[0][0].height());
    let cols = rows[0].len() as u32;
    let img = Rgb32FImage::from_fn(cols * w, rows.len() as u32 * h, |x, y| {
        *rows[(y / h) as usize][(x / w) as usize].get_pixel(x % w, y % h)
    });
    impasto::save_image(&img, path).unwrap();
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let images = PathBuf::from(&a[1]);
    let out_dir = PathBuf::from(&a[2]);
    let arg = |i: usize, d: usize| a.get(i).and_then(|v| v.parse().ok()).unwrap_or(d);
    let (size, n, first) = (arg(3, 96) as u32, arg(4, 8), arg(5, 100));
    let list = |i: usize, d: &str| -> Vec<f64> {
        a.get(i).map_or(d, String::as_str).split(',').map(|v| v.parse().unwrap()).collect()
    };
    let laters: Vec<usize> = list(6, "100").into_iter().map(|v| v as usize).collect();
    let weights: Vec<f32> = list(7, "1e8").into_iter().map(|v| v as f32).collect();
    let offset_sets: Vec<Vec<usize>> = a
        .get(8)
        .map_or("1", String::as_str)
        .split('/')
        .map(|o| impasto_video::parse_offsets(o).unwrap())
        .collect();
    let passes = arg(9, 1);
    let pass_iters = arg(10, 50);
    let load = |n: &str| impasto::load_image(&images.join(n)).unwrap();
    let (net, layers) = match std::env::var_os("IMPASTO_WEIGHTS") {
        Some(p) => (Vgg::load(Path::new(&p), Arch::Vgg16, Pooling::Max, None, "relu5_1").unwrap(), None),
        None => (Vgg::embedded(Pooling::Max, "relu4_2").unwrap(), Some(impasto::COMPACT_STYLE_LAYERS)),
    };
    let mut config = StyleConfig { size, iterations: first, min_size: size, ..StyleConfig::default() };
    if let Some(l) = layers {
        config.style_layers = l.iter().map(|s| s.to_string()).collect();
    }
    let styles = [load("starry_night.jpg")];
    let clips = [
        ("pan + zoom (astronaut.png)", pan_zoom(&load("astronaut.png"), size, n)),
        (
            "moving object (chelsea.png over coffee.png)",
            moving_object(&load("coffee.png"), &load("chelsea.png"), size, n),
        ),
    ];
    println!(
        "| clip | method | warping error | {LONG_RANGE} frames apart | mask keeps | style loss | s/frame (first) \
         | s/frame (later) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (k, (name, clip)) in clips.iter().enumerate() {
        let ind = independent(&net, &config, clip, &styles);
        let row = |m: &str, r: &Result| {
            let long = r.long_error.map_or("–".to_string(), |e| format!("{e:.4}"));
            let kept = r.coverage.map_or("–".to_string(), |c| format!("{:.1} %", 100.0 * c));
            println!(
                "| {name} | {m} | {:.4} | {long} | {kept} | {:.4e} | {:.2} | {:.2} |",
                r.warp_error, r.style, r.first_seconds, r.later_seconds
            )
        };
        row(&format!("independent, {first} iterations each"), &ind);
        let mut last = None;
        let settings = laters.iter().flat_map(|l| weights.iter().map(move |w| (l, w)));
        for ((&later, &w), offsets) in settings.flat_map(|s| offset_sets.iter().map(move |o| (s, o))) {
            let ratio = |v: &Result| {
                let long = match (ind.long_error, v.long_error) {
                    (Some(i), Some(v)) => format!("{:.2}× lower", i / v),
                    _ => "–".to_string(),
                };
                println!(
                    "|  | ratio | {:.2}× lower | {long} |  | {:+.1} % (later frames {:+.1} %; content {:+.1} %) |  |  |",
                    ind.warp_error / v.warp_error,
                    100.0 * (v.style / ind.style - 1.0),
                    100.0 * (v.later_style / ind.later_style - 1.0),
                    100.0 * (v.content / ind.content - 1.0)
                )
            };
            let mut vid = video(&net, &config, clip, &styles, later, w, offsets);
            let o = offsets.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
            row(&format!("impasto video, {first} + {later}/frame, temporal weight {w:e}, offsets {o}"), &vid);
            ratio(&vid);
            for p in 2..=passes {
                vid = later_pass(&net, &config, clip, &styles, vid, p, pass_iters, w);
                row(&format!("after pass {p} ({pass_iters} iterations a frame)"), &vid);
                ratio(&vid);
            }
            last = Some(vid);
        }
        let vid = last.unwrap();
        strip(&[&clip.frames, &ind.outputs, &vid.outputs], &out_dir.join(format!("video-strip-{k}.png")));
    }
}
