//! The resolved layer: command-line arguments plus the environment → a validated `impasto::StyleConfig`
//! and the other settings of a run (files, weights search, progress display).
//!
//! Everything here is cheap and touches no image or weights data, so every mistake in the command line
//! is reported before any heavy work starts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use impasto::{
    Arch, ColorMatch, ColorMode, Init, MAX_SIZE, Optimizer, Pooling, Preprocess, SaveOptions, StyleConfig,
    StyleLoss,
};

use crate::args::{
    ColorTransferArg, ModelArg, OptimizerArg, PoolingArg, PreprocessArg, RunArgs, StyleLossArg,
};
use crate::progress::Display;
use crate::weights::{self, BUILTIN, WEIGHTS_ENV, WeightsSearch};

/// What the CLI reads from its environment. Gathered once in `main`, passed in, so resolving is testable.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `IMPASTO_WEIGHTS`, if set and not empty.
    pub weights: Option<PathBuf>,
    /// `IMPASTO_CACHE_DIR`, else the user's cache folder for impasto (e.g. `~/.cache/impasto`), if there
    /// is a home folder.
    pub cache_dir: Option<PathBuf>,
    /// `IMPASTO_OFFLINE` is set (to anything but `0`, `false`, `no`, `off`): never download.
    pub offline: bool,
    /// `IMPASTO_MODEL_URL`, if set and not empty: where downloads come from instead.
    pub model_url: Option<String>,
    /// Whether stderr is a terminal (progress bar) or not (plain log lines).
    pub stderr_is_terminal: bool,
    /// This machine's memory (bytes), when known: `--max-memory` defaults to a share of it.
    pub memory: Option<u64>,
}

impl Env {
    /// Reads the real environment.
    pub fn from_process() -> Env {
        use std::io::IsTerminal;
        Env {
            weights: std::env::var_os(WEIGHTS_ENV).filter(|v| !v.is_empty()).map(PathBuf::from),
            cache_dir: weights::cache_dir_from_env(),
            offline: std::env::var(weights::OFFLINE_ENV).is_ok_and(|v| weights::is_truthy(&v)),
            model_url: std::env::var(weights::MODEL_URL_ENV).ok().filter(|v| !v.trim().is_empty()),
            stderr_is_terminal: std::io::stderr().is_terminal(),
            memory: machine_memory(),
        }
    }

    /// How progress is shown by a command with a `--quiet` flag.
    pub fn display(&self, quiet: bool, print_every: usize) -> Display {
        if quiet {
            Display::Quiet
        } else if self.stderr_is_terminal {
            Display::Bar
        } else {
            Display::Plain { every: print_every }
        }
    }
}

/// The machine's memory from /proc/meminfo (`MemTotal`), where there is one.
fn machine_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The share of the machine's memory a run may take unless `--max-memory` says otherwise.
pub const DEFAULT_MEMORY_SHARE: f64 = 0.75;

/// `--max-memory`: `3G`, `1.5GiB`, `800M`, `512k` (binary units, `B`/`iB` optional) or bytes.
pub fn parse_memory(text: &str) -> Result<u64> {
    parse_size("--max-memory", text)
}

/// A size given to `flag` (`--max-memory`, `--max-gpu-memory`): see [`parse_memory`].
fn parse_size(flag: &str, text: &str) -> Result<u64> {
    let bad = || anyhow!("invalid {flag} `{text}`: expected a size such as 3G, 1.5GiB or 800M");
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let unit_at = lower.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(lower.len());
    let (num, unit) = lower.split_at(unit_at);
    let value: f64 = num.trim().parse().map_err(|_| bad())?;
    let shift = match unit.trim().trim_end_matches('b').trim_end_matches('i') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(bad()),
    };
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// Where the optimisation starts, before any file is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitSource {
    /// `--init content`.
    Content,
    /// `--init noise`.
    Noise,
    /// `--init gray` (or `grey`).
    Gray,
    /// `--init style-stats`.
    StyleStats,
    /// `--init style`.
    Style,
    /// `--init FILE`.
    File(PathBuf),
}

/// Everything a run needs, resolved and validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The library configuration. `init` is `Content` here for an init file, which is loaded later.
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
    /// Whether `--style-layers` was given (else the built-in model gets its own default).
    pub style_layers_given: bool,
    /// Whether `--device` was given (`auto` then says so when it falls back to the CPU).
    pub device_given: bool,
    /// `--save-every` (0 = never).
    pub save_every: usize,
    /// How images are written: `--quality` and `--depth` (alpha and metadata are added once the inputs
    /// are loaded).
    pub save: SaveOptions,
    /// `--mask`: the stylised region (loaded into `config.mask` with the images).
    pub mask: Option<PathBuf>,
    /// `--style-mask`, one per style image or none (loaded into `config.style_masks`).
    pub style_masks: Vec<PathBuf>,
    /// `--time-limit` as the user wrote it (for the metadata; the value is in `config.time_limit`).
    pub time_limit_text: Option<String>,
    /// How progress is shown.
    pub display: Display,
    /// Whether `config.checkpoint` (and `resume`) is the caller's own bookkeeping, as a batch job's
    /// is, rather than the user's: then it is not part of the image's parameters, and a finished run
    /// does not write it (the caller removes it once the image is written).
    pub own_checkpoint: bool,
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
            PoolingArg::L2 => Pooling::L2,
        }
    }
}

impl From<StyleLossArg> for StyleLoss {
    fn from(l: StyleLossArg) -> StyleLoss {
        match l {
            StyleLossArg::Gram => StyleLoss::Gram,
            StyleLossArg::W2 => StyleLoss::Wasserstein,
        }
    }
}

impl From<ColorTransferArg> for ColorMatch {
    fn from(c: ColorTransferArg) -> ColorMatch {
        match c {
            ColorTransferArg::Cholesky => ColorMatch::Cholesky,
            ColorTransferArg::Pca => ColorMatch::Pca,
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

/// `--init`: a keyword, or else an image file. jcjohnson/neural-style's `-init random|image` are taken
/// as `noise` and `content`.
fn resolve_init(value: &str) -> Result<InitSource> {
    match value {
        "content" | "image" => Ok(InitSource::Content),
        "noise" | "random" => Ok(InitSource::Noise),
        "gray" | "grey" => Ok(InitSource::Gray),
        "style-stats" => Ok(InitSource::StyleStats),
        "style" => Ok(InitSource::Style),
        path => {
            let p = Path::new(path);
            let expected = "expected content, noise, gray, style-stats, style or an image file";
            if !p.exists() {
                bail!("invalid --init `{path}`: {expected} (no such file)");
            }
            if p.is_dir() {
                bail!("invalid --init `{path}`: {expected} (it is a folder)");
            }
            Ok(InitSource::File(p.to_path_buf()))
        }
    }
}

/// Parses `--time-limit`: `90s`, `5m`, `1h30m`, `1.5h`, `250ms` or plain seconds (`90`, `2.5`).
pub fn parse_duration(text: &str) -> Result<Duration> {
    let bad = |why: &str| {
        anyhow::anyhow!(
            "invalid --time-limit `{text}`: {why}; expected a duration like 90s, 5m, 1h30m or plain seconds"
        )
    };
    let t = text.trim();
    if t.is_empty() {
        return Err(bad("empty"));
    }
    if let Ok(secs) = t.parse::<f64>() {
        return seconds(secs).ok_or_else(|| bad("not a finite number ≥ 0"));
    }
    let mut total = 0.0f64;
    let mut rest = t;
    let mut last_unit = f64::INFINITY;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let value: f64 = num.parse().map_err(|_| bad("a number is missing or malformed"))?;
        let scale = match unit {
            "h" => 3600.0,
            "m" | "min" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "" => return Err(bad("a unit is missing after a number")),
            other => return Err(bad(&format!("unknown unit `{other}` (use h, m, s or ms)"))),
        };
        if scale >= last_unit {
            return Err(bad("units must go from larger to smaller, each once"));
        }
        last_unit = scale;
        total += value * scale;
        rest = after;
    }
    seconds(total).ok_or_else(|| bad("too long"))
}

fn seconds(s: f64) -> Option<Duration> {
    (s.is_finite() && s >= 0.0).then(|| Duration::try_from_secs_f64(s).ok()).flatten()
}

/// Checks that `--resume` names a file (its contents are checked against the run by the library).
fn resolve_resume(path: Option<PathBuf>) -> Result<Option<PathBuf>> {
    if let Some(p) = &path {
        if !p.exists() {
            bail!("invalid --resume `{}`: no such file", p.display());
        }
        if p.is_dir() {
            bail!("invalid --resume `{}`: it is a folder", p.display());
        }
    }
    Ok(path)
}

/// Checks that `--checkpoint` can be written: not a folder, in a folder that exists.
pub fn check_checkpoint_path(path: &Path) -> Result<()> {
    if path.is_dir() {
        bail!("invalid --checkpoint `{}`: it is a folder", path.display());
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!("invalid --checkpoint `{}`: folder {} does not exist", path.display(), dir.display());
    }
    Ok(())
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
    let size = resolve_size(args.size)?;
    let time_limit = args.time_limit.as_deref().map(parse_duration).transpose()?;
    if !args.style_mask.is_empty() && args.style_mask.len() != args.styles.len() {
        bail!(
            "invalid --style-mask: {} masks for {} style images (give one per style image, in order)",
            args.style_mask.len(),
            args.styles.len()
        );
    }
    if let Some(p) = &args.checkpoint {
        check_checkpoint_path(p)?;
    }
    let color = if args.luminance_only {
        ColorMode::Luminance
    } else if args.preserve_colors {
        ColorMode::PreserveContent
    } else {
        ColorMode::Style
    };
    let config = StyleConfig {
        size,
        iterations: args.iterations,
        content_weight: args.content_weight,
        style_weight: args.style_weight,
        tv_weight: args.tv_weight,
        content_layers: args.content_layers,
        style_layers: args.style_layers.clone().unwrap_or_else(|| StyleConfig::default().style_layers),
        style_loss: args.style_loss.into(),
        style_layer_weights: args.style_layer_weights,
        style_blend: args.style_blend,
        style_scale: args.style_scale,
        style_size: args.style_size,
        optimizer,
        init: match init {
            InitSource::Noise => Init::Noise,
            InitSource::Gray => Init::Gray,
            InitSource::StyleStats => Init::StyleStats,
            InitSource::Style => Init::Style,
            InitSource::Content | InitSource::File(_) => Init::Content,
        },
        seed: args.seed,
        model: args.model.into(),
        pooling: args.pooling.into(),
        threads: args.threads,
        min_size: if args.no_multiscale { size } else { args.min_size },
        scale_ratio: args.scale_ratio,
        scale_iterations: args.scale_iterations,
        ema_decay: args.ema_decay,
        time_limit,
        color,
        color_match: args.color_transfer.map(ColorMatch::from),
        checkpoint: args.checkpoint,
        checkpoint_every: args.checkpoint_every,
        resume: resolve_resume(args.resume)?,
        // Set for the run itself (`run::run_settings`), beside the output.
        scratch: None,
        // Loaded with the images.
        mask: None,
        style_masks: None,
        device: args.device.unwrap_or(impasto::Device::Cpu),
        gpu_faults: args.gpu_fault.unwrap_or_default(),
        max_memory: match &args.max_memory {
            Some(text) => Some(parse_memory(text)?),
            None => env.memory.map(|m| (m as f64 * DEFAULT_MEMORY_SHARE) as u64),
        },
        max_gpu_memory: args
            .max_gpu_memory
            .as_deref()
            .map(|t| parse_size("--max-gpu-memory", t))
            .transpose()?,
        tile: args.tile,
        tile_overlap: args.tile_overlap,
        tile_rounds: args.tile_rounds,
    };
    config.validate(args.styles.len())?;
    let display = env.display(args.quiet, args.print_every);
    let offline = if args.offline {
        Some("--offline")
    } else if env.offline {
        Some("IMPASTO_OFFLINE is set")
    } else {
        None
    };
    let builtin = args.weights.as_deref() == Some(Path::new(BUILTIN));
    let mut settings = Settings {
        deepest_layer: impasto::deepest_layer(&config)?,
        style_layers_given: args.style_layers.is_some(),
        device_given: args.device.is_some(),
        config,
        content,
        styles: args.styles,
        init,
        output,
        weights: WeightsSearch {
            explicit: args.weights.filter(|_| !builtin),
            builtin,
            env: env.weights.clone(),
            cache_dir: env.cache_dir.clone(),
            offline,
            model_url: env.model_url.clone(),
        },
        preprocess: args.preprocess.map(Preprocess::from),
        save_every: args.save_every,
        save: SaveOptions { quality: args.quality, depth: args.depth, ..SaveOptions::default() },
        mask: args.mask,
        style_masks: args.style_mask,
        time_limit_text: args.time_limit,
        own_checkpoint: false,
        display,
    };
    settings.check_nothing_written_is_read()?;
    if builtin {
        settings.use_builtin()?;
    }
    Ok(settings)
}

/// Refuses a flag of the other optimizer, or `--quality` for an output that is not a JPEG: given a value
/// other than its default, it would do nothing. For a single run (`impasto` itself); a batch's settings
/// are shared by jobs of both optimizers and all formats, so it does not ask this.
pub fn check_flags_apply(args: &RunArgs) -> Result<()> {
    let defaults = StyleConfig::default();
    let adam = matches!(args.optimizer, OptimizerArg::Adam);
    let unused = [
        (
            !adam && args.learning_rate != crate::args::DEFAULT_LEARNING_RATE,
            "--learning-rate",
            "Adam only (--optimizer adam)",
        ),
        (!adam && args.ema_decay != defaults.ema_decay, "--ema-decay", "Adam only (--optimizer adam)"),
        (
            adam && args.lbfgs_history != crate::args::default_lbfgs_history(),
            "--lbfgs-history",
            "L-BFGS only",
        ),
    ];
    if let Some((_, flag, only)) = unused.iter().find(|u| u.0) {
        bail!("{flag} applies to {only}");
    }
    let jpeg = args.output.as_deref().and_then(|o| o.extension()).and_then(|e| e.to_str()).is_some_and(|e| {
        let e = e.to_ascii_lowercase();
        e == "jpg" || e == "jpeg"
    });
    if !jpeg && args.quality != SaveOptions::default().quality {
        bail!("--quality applies to JPEG output only (-o NAME.jpg)");
    }
    Ok(())
}

/// Whether two paths name one existing file or folder (a path that does not exist yet is no input).
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

impl Settings {
    /// Refuses an `--output` or `--checkpoint` that is one of the run's inputs (or each other): the
    /// run would overwrite the picture or weights it reads, or its own checkpoint with its image.
    /// `--checkpoint` and `--resume` may be the same file: that is how a run goes on.
    fn check_nothing_written_is_read(&self) -> Result<()> {
        let mut inputs: Vec<(&Path, &str)> = vec![(&self.content, "the content image")];
        inputs.extend(self.styles.iter().map(|p| (p.as_path(), "a style image")));
        inputs.extend(self.mask.iter().map(|p| (p.as_path(), "the --mask image")));
        inputs.extend(self.style_masks.iter().map(|p| (p.as_path(), "a --style-mask image")));
        if let InitSource::File(p) = &self.init {
            inputs.push((p, "the --init image"));
        }
        inputs.extend(self.weights.explicit.iter().map(|p| (p.as_path(), "the --weights file")));
        let resume = self.config.resume.as_deref().map(|p| (p, "the --resume checkpoint"));
        let checkpoint = self.config.checkpoint.as_deref();
        let written = [(Some(self.output.as_path()), "--output"), (checkpoint, "--checkpoint")];
        for (path, flag) in written.into_iter().filter_map(|(p, f)| p.map(|p| (p, f))) {
            let mut read = inputs.iter().copied().chain(resume.filter(|_| flag == "--output"));
            if let Some((_, what)) = read.find(|(input, _)| same_file(path, input)) {
                bail!("invalid {flag} `{}`: it is {what}, which the run would overwrite", path.display());
            }
        }
        if let Some(c) = checkpoint
            && (same_file(c, &self.output) || c == self.output)
        {
            bail!("invalid --checkpoint `{}`: it is the --output image; give each its own file", c.display());
        }
        Ok(())
    }
}

impl Settings {
    /// Settles `--device` before the work starts: `auto` becomes `gpu:N` or `cpu`, saying so (and
    /// which GPU) on stderr when it was asked for and the display is not quiet
    /// ([`crate::devices::settle`]).
    pub fn settle_device(&mut self) -> Result<()> {
        let announce = self.device_given && self.display != Display::Quiet;
        self.config.device = crate::devices::settle(self.config.device, announce)?;
        Ok(())
    }

    /// Switches the run to the built-in compact VGG-16: its default style layers (relu1_1..relu4_1)
    /// unless `--style-layers` was given, and a check that every layer is one it has.
    pub fn use_builtin(&mut self) -> Result<()> {
        if let Some(p) = self.preprocess.filter(|&p| p != Preprocess::Caffe) {
            bail!(
                "--preprocess {} does not apply to {}: it takes caffe input",
                p.name(),
                impasto::EMBEDDED_LABEL
            );
        }
        if !self.style_layers_given {
            self.config.style_layers =
                impasto::default_style_layers(self.config.model, impasto::COMPACT_LAST_LAYER)?;
            self.config.validate(self.styles.len())?;
        }
        self.deepest_layer = impasto::deepest_layer(&self.config)?;
        impasto::check_compact_depth(impasto::EMBEDDED_LABEL, self.config.model, &self.deepest_layer)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
