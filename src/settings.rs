//! The resolved layer: command-line arguments plus the environment → a validated `impasto::StyleConfig`
//! and the other settings of a run (files, weights search, progress display).
//!
//! Everything here is cheap and touches no image or weights data, so every mistake in the command line
//! is reported before any heavy work starts.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use impasto::{Arch, Init, MAX_SIZE, Optimizer, Pooling, Preprocess, StyleConfig};

use crate::args::{ModelArg, OptimizerArg, PoolingArg, PreprocessArg, RunArgs};
use crate::progress::Display;

/// The environment variable naming a weights file.
pub const WEIGHTS_ENV: &str = "IMPASTO_WEIGHTS";

/// What the CLI reads from its environment. Gathered once in `main`, passed in, so resolving is testable.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `IMPASTO_WEIGHTS`, if set and not empty.
    pub weights: Option<PathBuf>,
    /// The user's cache folder for impasto (e.g. `~/.cache/impasto`), if there is a home folder.
    pub cache_dir: Option<PathBuf>,
    /// Whether stderr is a terminal (progress bar) or not (plain log lines).
    pub stderr_is_terminal: bool,
}

impl Env {
    /// Reads the real environment.
    pub fn from_process() -> Env {
        use std::io::IsTerminal;
        Env {
            weights: std::env::var_os(WEIGHTS_ENV).filter(|v| !v.is_empty()).map(PathBuf::from),
            cache_dir: directories::ProjectDirs::from("", "", "impasto").map(|d| d.cache_dir().to_path_buf()),
            stderr_is_terminal: std::io::stderr().is_terminal(),
        }
    }
}

/// Where the optimisation starts, before any file is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitSource {
    /// `--init content`.
    Content,
    /// `--init noise`.
    Noise,
    /// `--init FILE`.
    File(PathBuf),
}

/// The places the weights file may be, in the order `impasto::locate_weights` tries them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WeightsSearch {
    /// `--weights`.
    pub explicit: Option<PathBuf>,
    /// `IMPASTO_WEIGHTS`.
    pub env: Option<PathBuf>,
    /// The user cache folder.
    pub cache_dir: Option<PathBuf>,
}

impl WeightsSearch {
    /// Finds the weights file for `arch`.
    pub fn locate(&self, arch: Arch) -> Result<PathBuf> {
        let (explicit, env, cache) =
            (self.explicit.as_deref(), self.env.as_deref(), self.cache_dir.as_deref());
        Ok(impasto::locate_weights(arch, explicit, env, cache)?)
    }
}

/// Everything a run needs, resolved and validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The library configuration. `init` is `Content` or `Noise` here; an init file is loaded later.
    pub config: StyleConfig,
    /// The content image file.
    pub content: PathBuf,
    /// The style image files.
    pub styles: Vec<PathBuf>,
    /// The starting image.
    pub init: InitSource,
    /// The output image file.
    pub output: PathBuf,
    /// Where to look for the weights.
    pub weights: WeightsSearch,
    /// `--preprocess`, overriding the weights file's declaration.
    pub preprocess: Option<Preprocess>,
    /// The deepest layer the run uses: the network is loaded up to it.
    pub deepest_layer: String,
    /// `--save-every` (0 = never).
    pub save_every: usize,
    /// How progress is shown.
    pub display: Display,
}

impl From<ModelArg> for Arch {
    fn from(m: ModelArg) -> Arch {
        match m {
            ModelArg::Vgg16 => Arch::Vgg16,
            ModelArg::Vgg19 => Arch::Vgg19,
        }
    }
}

impl From<PoolingArg> for Pooling {
    fn from(p: PoolingArg) -> Pooling {
        match p {
            PoolingArg::Max => Pooling::Max,
            PoolingArg::Avg => Pooling::Avg,
        }
    }
}

impl From<PreprocessArg> for Preprocess {
    fn from(p: PreprocessArg) -> Preprocess {
        match p {
            PreprocessArg::Caffe => Preprocess::Caffe,
            PreprocessArg::Torch => Preprocess::Torch,
        }
    }
}

fn resolve_size(size: i64) -> Result<u32> {
    match u32::try_from(size) {
        Ok(s) => Ok(s),
        Err(_) => bail!("invalid size: {size} (must be between 1 and {MAX_SIZE} pixels)"),
    }
}

fn resolve_init(value: &str) -> Result<InitSource> {
    match value {
        "content" => Ok(InitSource::Content),
        "noise" => Ok(InitSource::Noise),
        path => {
            let p = Path::new(path);
            if !p.exists() {
                bail!("invalid --init `{path}`: expected `content`, `noise` or an image file (no such file)");
            }
            if p.is_dir() {
                bail!(
                    "invalid --init `{path}`: expected `content`, `noise` or an image file (it is a folder)"
                );
            }
            Ok(InitSource::File(p.to_path_buf()))
        }
    }
}

/// The deepest of the content and style layers of a validated config (the network is cut after it).
pub fn deepest_layer(config: &StyleConfig) -> Result<String> {
    let mut deepest: Option<(usize, &str)> = None;
    for name in config.content_layers.iter().chain(&config.style_layers) {
        let i = config.model.layer_index(name)?;
        if deepest.is_none_or(|(d, _)| i > d) {
            deepest = Some((i, name));
        }
    }
    match deepest {
        Some((_, name)) => Ok(name.to_string()),
        None => bail!("invalid layers: no content and no style layers"),
    }
}

/// Resolves and validates the arguments of a run. Reads no file contents (it only checks whether an
/// `--init` file exists, to tell a mistyped keyword from a path).
pub fn resolve(args: RunArgs, env: &Env) -> Result<Settings> {
    let (Some(content), Some(output)) = (args.content, args.output) else {
        bail!("CONTENT, STYLE and --output are required");
    };
    let optimizer = match args.optimizer {
        OptimizerArg::Lbfgs => Optimizer::Lbfgs { history: args.lbfgs_history },
        OptimizerArg::Adam => Optimizer::Adam { learning_rate: args.learning_rate },
    };
    let init = resolve_init(&args.init)?;
    let config = StyleConfig {
        size: resolve_size(args.size)?,
        iterations: args.iterations,
        content_weight: args.content_weight,
        style_weight: args.style_weight,
        tv_weight: args.tv_weight,
        content_layers: args.content_layers,
        style_layers: args.style_layers,
        style_layer_weights: args.style_layer_weights,
        style_blend: args.style_blend,
        style_scale: args.style_scale,
        optimizer,
        init: match init {
            InitSource::Noise => Init::Noise,
            InitSource::Content | InitSource::File(_) => Init::Content,
        },
        seed: args.seed,
        model: args.model.into(),
        pooling: args.pooling.into(),
        threads: args.threads,
        // Settings without a flag yet (multi-scale, EMA, time limit) keep the library's defaults.
        ..StyleConfig::default()
    };
    config.validate(args.styles.len())?;
    let display = if args.quiet {
        Display::Quiet
    } else if env.stderr_is_terminal {
        Display::Bar
    } else {
        Display::Plain { every: args.print_every }
    };
    Ok(Settings {
        deepest_layer: deepest_layer(&config)?,
        config,
        content,
        styles: args.styles,
        init,
        output,
        weights: WeightsSearch {
            explicit: args.weights,
            env: env.weights.clone(),
            cache_dir: env.cache_dir.clone(),
        },
        preprocess: args.preprocess.map(Preprocess::from),
        save_every: args.save_every,
        display,
    })
}

#[cfg(test)]
mod tests {
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
            "--save-every=5",
            "--quiet",
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
        assert_eq!(s.preprocess, Some(Preprocess::Torch));
        assert_eq!(s.save_every, 5);
        assert_eq!(s.display, Display::Quiet);
        assert_eq!(s.deepest_layer, "relu3_2");
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
        let e = resolve_err(&["--init", "nosie"]);
        assert_eq!(e, "invalid --init `nosie`: expected `content`, `noise` or an image file (no such file)");
        let e = resolve_err(&["--init", dir.path().to_str().unwrap()]);
        assert!(e.ends_with("(it is a folder)"), "{e}");
    }

    #[test]
    fn weights_search_takes_env_and_cache() {
        let env = Env {
            weights: Some("/w/env.safetensors".into()),
            cache_dir: Some("/cache".into()),
            stderr_is_terminal: true,
        };
        let s = resolve(parse(&["--weights", "/w/flag.safetensors"]), &env).unwrap();
        assert_eq!(s.weights.explicit.as_deref(), Some(Path::new("/w/flag.safetensors")));
        assert_eq!(s.weights.env.as_deref(), Some(Path::new("/w/env.safetensors")));
        assert_eq!(s.weights.cache_dir.as_deref(), Some(Path::new("/cache")));
        assert_eq!(s.display, Display::Bar);
    }

    #[test]
    fn deepest_layer_is_by_position_not_name() {
        let config = StyleConfig {
            content_layers: vec!["conv5_1".into()],
            style_layers: vec!["relu1_1".into(), "pool4".into()],
            ..StyleConfig::default()
        };
        assert_eq!(deepest_layer(&config).unwrap(), "conv5_1");
    }

    #[test]
    fn validation_errors_come_from_the_library() {
        let e = resolve_err(&["--style-blend", "1,2"]);
        assert_eq!(e, "invalid style blend weights: 2 weights for 1 style images");
        let e = resolve_err(&["--style-layers", "relu9_9"]);
        assert!(e.starts_with("unknown layer `relu9_9` for vgg16"), "{e}");
    }
}
