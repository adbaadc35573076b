//! The `parameters` metadata of every written image: the run's fully resolved command line (every
//! setting spelled out, defaults included), pasteable into a shell, ending in a comment with the impasto
//! version and the weights file, e.g. `impasto c.png s.png -o out.png --size 512 … # impasto 0.1.0, …`.

use std::fmt::Write as _;
use std::path::Path;

use impasto::{ColorMatch, ColorMode, Init, Optimizer, Pooling, Preprocess};

use crate::settings::{InitSource, Settings};
use crate::weights::{BUILTIN, Source};

/// The metadata key of the parameters text (the name other image tools use for generation settings).
pub const KEY: &str = "parameters";

/// A shell word: as is when it is plainly safe, else in single quotes.
fn quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./,:=+@%".contains(c))
        && !word.starts_with('-');
    if safe { word.to_string() } else { format!("'{}'", word.replace('\'', r"'\''")) }
}

fn path(p: &Path) -> String {
    quote(&p.to_string_lossy())
}

fn list<T: ToString>(values: &[T]) -> String {
    values.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

/// The parameters text of a run whose network was loaded from `weights` with input convention
/// `preprocess` (known only once the weights file is read).
pub fn text(s: &Settings, weights: &Source, preprocess: Preprocess) -> String {
    let c = &s.config;
    let mut t = String::from("impasto");
    let mut arg = |flag: &str, value: String| {
        let _ = write!(t, " {flag}");
        if !value.is_empty() {
            let _ = write!(t, " {value}");
        }
    };
    arg(&path(&s.content), String::new());
    for style in &s.styles {
        arg(&path(style), String::new());
    }
    arg("-o", path(&s.output));
    arg("--size", c.size.to_string());
    arg("--save-every", s.save_every.to_string());
    arg("--quality", s.save.quality.to_string());
    arg("--depth", s.save.depth.to_string());
    arg("--content-weight", c.content_weight.to_string());
    arg("--style-weight", c.style_weight.to_string());
    arg("--tv-weight", c.tv_weight.to_string());
    arg("--content-layers", quote(&c.content_layers.join(",")));
    arg("--style-layers", quote(&c.style_layers.join(",")));
    arg("--style-loss", c.style_loss.name().into());
    if let Some(w) = &c.style_layer_weights {
        arg("--style-layer-weights", list(w));
    }
    if let Some(b) = &c.style_blend {
        arg("--style-blend", list(b));
    }
    match c.style_size {
        Some(px) => arg("--style-size", px.to_string()),
        None => arg("--style-scale", c.style_scale.to_string()),
    }
    arg("--iterations", c.iterations.to_string());
    match c.optimizer {
        Optimizer::Lbfgs { history } => {
            arg("--optimizer", "lbfgs".into());
            arg("--lbfgs-history", history.to_string());
        }
        Optimizer::Adam { learning_rate } => {
            arg("--optimizer", "adam".into());
            arg("--learning-rate", learning_rate.to_string());
            arg("--ema-decay", c.ema_decay.to_string());
        }
    }
    match &s.init {
        InitSource::Content => arg("--init", "content".into()),
        InitSource::Noise => arg("--init", "noise".into()),
        InitSource::Gray => arg("--init", "gray".into()),
        InitSource::StyleStats => arg("--init", "style-stats".into()),
        InitSource::Style => arg("--init", "style".into()),
        InitSource::File(p) => arg("--init", path(p)),
    }
    if matches!(c.init, Init::Noise | Init::Gray | Init::StyleStats) {
        arg("--seed", c.seed.to_string());
    }
    if c.min_size >= c.size {
        arg("--no-multiscale", String::new());
    } else {
        arg("--min-size", c.min_size.to_string());
    }
    arg("--scale-ratio", c.scale_ratio.to_string());
    if let Some(n) = c.scale_iterations {
        arg("--scale-iterations", n.to_string());
    }
    match c.color {
        ColorMode::Style => {}
        ColorMode::PreserveContent => arg("--preserve-colors", String::new()),
        ColorMode::Luminance => arg("--luminance-only", String::new()),
    }
    match c.color_match {
        None => {}
        Some(ColorMatch::Cholesky) => arg("--color-transfer", "cholesky".into()),
        Some(ColorMatch::Pca) => arg("--color-transfer", "pca".into()),
    }
    if let Some(m) = &s.mask {
        arg("--mask", path(m));
    }
    for m in &s.style_masks {
        arg("--style-mask", path(m));
    }
    arg("--model", c.model.name().into());
    match (weights, &s.weights.explicit) {
        (Source::Builtin, _) => arg("--weights", BUILTIN.into()),
        (Source::File(_), Some(w)) => arg("--weights", path(w)),
        (Source::File(_), None) => {}
    }
    arg(
        "--preprocess",
        match preprocess {
            Preprocess::Caffe => "caffe",
            Preprocess::Torch => "torch",
        }
        .into(),
    );
    arg(
        "--pooling",
        match c.pooling {
            Pooling::Max => "max",
            Pooling::Avg => "avg",
            Pooling::L2 => "l2",
        }
        .into(),
    );
    if let Some(limit) = &s.time_limit_text {
        arg("--time-limit", quote(limit));
    }
    if let Some(p) = c.checkpoint.as_ref().filter(|_| !s.own_checkpoint) {
        arg("--checkpoint", path(p));
        arg("--checkpoint-every", c.checkpoint_every.to_string());
    }
    if let Some(p) = c.resume.as_ref().filter(|_| !s.own_checkpoint) {
        arg("--resume", path(p));
    }
    arg("--threads", c.threads.to_string());
    let weights_name = match weights {
        Source::File(p) => p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        Source::Builtin => format!("{BUILTIN} ({})", impasto::COMPACT_FORMAT),
    };
    let _ = write!(t, " # {}, weights {weights_name}", impasto::SOFTWARE);
    t
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::Cli;
    use crate::settings::{Env, resolve};

    fn params(extra: &[&str]) -> String {
        let mut argv = vec!["impasto", "c.png", "my style.png", "-o", "o.png"];
        argv.extend_from_slice(extra);
        let s = resolve(Cli::try_parse_from(argv).expect("parses").run, &Env::default()).expect("resolves");
        let file = Source::File("/cache/impasto/vgg16-conv-imagenet.safetensors".into());
        text(&s, &file, Preprocess::Caffe)
    }

    #[test]
    fn defaults_are_spelled_out() {
        assert_eq!(
            params(&[]),
            format!(
                "impasto c.png 'my style.png' -o o.png --size 512 --save-every 0 --quality 95 --depth 8 \
                 --content-weight 5 --style-weight 100 --tv-weight 1000000 --content-layers relu4_2 \
                 --style-layers relu1_1,relu2_1,relu3_1,relu4_1,relu5_1 --style-loss gram --style-scale 1 --iterations 500 \
                 --optimizer lbfgs --lbfgs-history 100 --init content --no-multiscale --scale-ratio 2 \
                 --model vgg16 --preprocess caffe --pooling max --threads 0 # {}, weights \
                 vgg16-conv-imagenet.safetensors",
                impasto::SOFTWARE
            )
        );
    }

    #[test]
    fn every_setting_is_in_the_text() {
        let t = params(&[
            "--size=1024",
            "--optimizer=adam",
            "--ema-decay=0.5",
            "--init=noise",
            "--seed=3",
            "--scale-iterations=60",
            "--luminance-only",
            "--time-limit=1h30m",
            "--checkpoint=run's.ckpt",
            "--checkpoint-every=10",
            "--style-blend=2",
            "--weights=w.safetensors",
        ]);
        for part in [
            " --size 1024 ",
            " --optimizer adam --learning-rate 0.02 --ema-decay 0.5 ",
            " --init noise --seed 3 --min-size 512 --scale-ratio 2 --scale-iterations 60 ",
            " --luminance-only ",
            " --style-blend 2 ",
            " --weights w.safetensors ",
            " --time-limit 1h30m --checkpoint 'run'\\''s.ckpt' --checkpoint-every 10 ",
        ] {
            assert!(t.contains(part), "{part:?} not in {t}");
        }
    }

    #[test]
    fn the_starts_are_spelled_out_with_their_seed_where_they_draw_one() {
        for (flag, text) in [
            ("--init=grey", " --init gray --seed 4 "),
            ("--init=style-stats", " --init style-stats --seed 4 "),
            ("--init=style", " --init style --no-multiscale "),
        ] {
            let t = params(&[flag, "--seed=4"]);
            assert!(t.contains(text), "{text:?} not in {t}");
        }
    }
}
