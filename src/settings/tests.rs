//! The resolved layer's unit tests: flags and environment into settings, and the one-line errors.

use clap::{CommandFactory, Parser};

use super::*;
use crate::args::{Cli, DEFAULT_LEARNING_RATE};

fn parse(extra: &[&str]) -> RunArgs {
    let mut argv = vec!["impasto", "c.png", "s.png", "-o", "o.png"];
    argv.extend_from_slice(extra);
    Cli::try_parse_from(argv).expect("valid command line").run
}

fn resolve_ok(extra: &[&str]) -> Settings {
    resolve(parse(extra), &Env::default()).expect("resolves")
}

fn resolve_err(extra: &[&str]) -> String {
    format!("{:#}", resolve(parse(extra), &Env::default()).expect_err("must fail"))
}

#[test]
fn clap_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn defaults_are_the_library_defaults() {
    let s = resolve_ok(&[]);
    assert_eq!(s.config, StyleConfig::default());
    assert!(!s.device_given);
    assert_eq!(s.init, InitSource::Content);
    assert_eq!(s.preprocess, None);
    assert_eq!(s.save_every, 0);
    assert_eq!(s.deepest_layer, "relu5_1");
    assert_eq!(s.display, Display::Plain { every: crate::args::DEFAULT_PRINT_EVERY });
}

#[test]
fn every_flag_reaches_the_config() {
    let s = resolve_ok(&[
        "--size=64",
        "-n=7",
        "--content-weight=2",
        "--style-weight=3",
        "--tv-weight=0",
        "--content-layers=relu3_2",
        "--style-layers=relu1_1,relu2_1",
        "--style-layer-weights=0.5,2",
        "--style-scale=0.5",
        "--optimizer=adam",
        "--learning-rate=0.1",
        "--init=noise",
        "--seed=9",
        "--model=vgg19",
        "--pooling=avg",
        "--preprocess=torch",
        "--threads=3",
        "--device=gpu:1",
        "--save-every=5",
        "--quiet",
        "--quality=80",
        "--depth=16",
        "--ema-decay=0.5",
        "--min-size=100",
        "--scale-ratio=1.5",
        "--scale-iterations=20",
        "--preserve-colors",
        "--color-transfer=pca",
        "--mask=m.png",
        "--style-mask=sm.png",
        "--time-limit=1m30s",
        "--checkpoint=ck",
        "--checkpoint-every=4",
    ]);
    let c = &s.config;
    assert_eq!((c.size, c.iterations), (64, 7));
    assert_eq!((c.content_weight, c.style_weight, c.tv_weight), (2.0, 3.0, 0.0));
    assert_eq!(c.content_layers, ["relu3_2"]);
    assert_eq!(c.style_layers, ["relu1_1", "relu2_1"]);
    assert_eq!(c.style_layer_weights.as_deref(), Some(&[0.5, 2.0][..]));
    assert_eq!(c.style_scale, 0.5);
    assert_eq!(c.optimizer, Optimizer::Adam { learning_rate: 0.1 });
    assert_eq!((c.init.clone(), c.seed), (Init::Noise, 9));
    assert_eq!((c.model, c.pooling, c.threads), (Arch::Vgg19, Pooling::Avg, 3));
    assert_eq!((c.device, s.device_given), (impasto::Device::Gpu(Some(1)), true));
    assert_eq!(s.preprocess, Some(Preprocess::Torch));
    assert_eq!(s.save_every, 5);
    assert_eq!(s.display, Display::Quiet);
    assert_eq!(s.deepest_layer, "relu3_2");
    assert_eq!((s.save.quality, s.save.depth), (80, 16));
    assert_eq!((c.ema_decay, c.min_size, c.scale_ratio, c.scale_iterations), (0.5, 100, 1.5, Some(20)));
    assert_eq!((c.color, c.color_match), (ColorMode::PreserveContent, Some(ColorMatch::Pca)));
    assert_eq!(
        (s.mask.as_deref(), &s.style_masks[..]),
        (Some(Path::new("m.png")), &[PathBuf::from("sm.png")][..])
    );
    assert_eq!(c.time_limit, Some(Duration::from_secs(90)));
    assert_eq!((c.checkpoint.as_deref(), c.checkpoint_every), (Some(Path::new("ck")), 4));
    assert_eq!(resolve_ok(&["--luminance-only"]).config.color, ColorMode::Luminance);
    assert_eq!(resolve_ok(&["--size=2048", "--no-multiscale"]).config.min_size, 2048);
}

#[test]
fn durations() {
    let d = |t: &str| parse_duration(t).map_err(|e| e.to_string());
    assert_eq!(d("90"), Ok(Duration::from_secs(90)));
    assert_eq!(d("2.5"), Ok(Duration::from_millis(2500)));
    assert_eq!(d("90s"), Ok(Duration::from_secs(90)));
    assert_eq!(d("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(d("1h30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(d("1.5h"), Ok(Duration::from_secs(5400)));
    assert_eq!(d("1m250ms"), Ok(Duration::from_millis(60_250)));
    assert_eq!(d("0s"), Ok(Duration::ZERO));
    let err = |t: &str| d(t).expect_err(t);
    assert!(err("5x").contains("unknown unit `x`"));
    assert!(err("m").contains("a number is missing"));
    assert!(err("5m1h").contains("larger to smaller"));
    assert!(err("5s5s").contains("larger to smaller"));
    assert!(err("-3").contains("not a finite number"));
    assert!(err("").contains("empty"));
    assert!(err("1e400").contains("not a finite number"));
}

#[test]
fn masks_must_match_the_styles() {
    let e = resolve_err(&["--style-mask=a.png", "--style-mask=b.png"]);
    assert_eq!(e, "invalid --style-mask: 2 masks for 1 style images (give one per style image, in order)");
}

#[test]
fn checkpoint_and_resume_paths_are_checked() {
    let e = resolve_err(&["--resume=nope.ckpt"]);
    assert_eq!(e, "invalid --resume `nope.ckpt`: no such file");
    let e = resolve_err(&["--checkpoint=nodir/ck"]);
    assert_eq!(e, "invalid --checkpoint `nodir/ck`: folder nodir does not exist");
    let dir = tempfile::tempdir().unwrap();
    let e = resolve_err(&["--checkpoint", dir.path().to_str().unwrap()]);
    assert!(e.ends_with("it is a folder"), "{e}");
}

#[test]
fn adam_gets_the_default_learning_rate() {
    let s = resolve_ok(&["--optimizer", "adam"]);
    assert_eq!(s.config.optimizer, Optimizer::Adam { learning_rate: DEFAULT_LEARNING_RATE });
}

#[test]
fn negative_and_huge_sizes_are_refused() {
    assert_eq!(resolve_err(&["--size", "-5"]), "invalid size: -5 (must be between 1 and 16384 pixels)");
    assert!(resolve_err(&["--size", "100000"]).starts_with("invalid size: 100000"));
    assert!(resolve_err(&["--size", "0"]).starts_with("invalid size: 0"));
    assert!(resolve_err(&["--size", "99999999999"]).starts_with("invalid size: 99999999999"));
}

#[test]
fn init_keywords_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("start.png");
    std::fs::write(&file, b"x").unwrap();
    let s = resolve_ok(&["--init", file.to_str().unwrap()]);
    assert_eq!(s.init, InitSource::File(file));
    assert_eq!(s.config.init, Init::Content);
    assert_eq!(resolve_ok(&["--init", "random"]).init, InitSource::Noise);
    assert_eq!(resolve_ok(&["--init", "random"]).config.init, Init::Noise);
    assert_eq!(resolve_ok(&["--init", "image"]).init, InitSource::Content);
    assert_eq!(resolve_ok(&["--init", "image"]).config.init, Init::Content);
    for (word, source, init) in [
        ("gray", InitSource::Gray, Init::Gray),
        ("grey", InitSource::Gray, Init::Gray),
        ("style-stats", InitSource::StyleStats, Init::StyleStats),
        ("style", InitSource::Style, Init::Style),
    ] {
        let s = resolve_ok(&["--init", word]);
        assert_eq!((s.init, s.config.init), (source, init), "{word}");
    }
    let e = resolve_err(&["--init", "nosie"]);
    assert_eq!(
        e,
        "invalid --init `nosie`: expected content, noise, gray, style-stats, style or an image file (no such file)"
    );
    let e = resolve_err(&["--init", dir.path().to_str().unwrap()]);
    assert!(e.ends_with("(it is a folder)"), "{e}");
}

#[test]
fn weights_search_takes_env_and_cache() {
    let env = Env {
        weights: Some("/w/env.safetensors".into()),
        cache_dir: Some("/cache".into()),
        offline: true,
        model_url: Some("http://mirror/".into()),
        stderr_is_terminal: true,
        memory: None,
    };
    let s = resolve(parse(&["--weights", "/w/flag.safetensors"]), &env).unwrap();
    assert_eq!(s.weights.explicit.as_deref(), Some(Path::new("/w/flag.safetensors")));
    assert_eq!(s.weights.env.as_deref(), Some(Path::new("/w/env.safetensors")));
    assert_eq!(s.weights.cache_dir.as_deref(), Some(Path::new("/cache")));
    assert_eq!(s.display, Display::Bar);
    assert_eq!(s.weights.offline, Some("IMPASTO_OFFLINE is set"));
    assert_eq!(s.weights.model_url.as_deref(), Some("http://mirror/"));
    let s = resolve(parse(&["--offline"]), &Env::default()).unwrap();
    assert_eq!((s.weights.offline, s.weights.model_url), (Some("--offline"), None));
}

#[test]
fn builtin_weights_take_their_own_style_layers() {
    let s = resolve_ok(&["--weights", "builtin"]);
    assert!(s.weights.builtin && s.weights.explicit.is_none());
    assert_eq!(s.config.style_layers, impasto::COMPACT_STYLE_LAYERS);
    assert_eq!(s.config.content_layers, ["relu4_2"]);
    assert_eq!(s.deepest_layer, "relu4_2");
    let s = resolve_ok(&["--weights", "builtin", "--style-layers", "relu2_1"]);
    assert_eq!(
        (&s.config.style_layers[..], s.deepest_layer.as_str()),
        (&["relu2_1".to_string()][..], "relu4_2")
    );
    let s = resolve_ok(&["--weights", "./builtin"]);
    assert!(!s.weights.builtin);
    assert_eq!(s.weights.explicit.as_deref(), Some(Path::new("./builtin")));
    assert_eq!(s.deepest_layer, "relu5_1");
    let e = resolve_err(&["--weights", "builtin", "--style-layers", "relu5_1"]);
    assert!(e.starts_with("the built-in compact VGG-16 stops at relu4_2; relu5_1 needs"), "{e}");
}

#[test]
fn absurd_thread_counts_are_refused() {
    assert_eq!(resolve_ok(&["--threads", "1024"]).config.threads, 1024);
    let e = resolve_err(&["--threads", "100000"]);
    assert_eq!(e, "invalid threads: 100000 (must be at most 1024; 0 = one per core)");
}

#[test]
fn validation_errors_come_from_the_library() {
    let e = resolve_err(&["--style-blend", "1,2"]);
    assert_eq!(e, "invalid style blend weights: 2 weights for 1 style images");
    let e = resolve_err(&["--style-layers", "relu9_9"]);
    assert!(e.starts_with("unknown layer `relu9_9` for vgg16"), "{e}");
}
