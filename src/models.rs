//! `impasto models`: its arguments, and the subcommands that list the known models and the cache,
//! download one into the cache, print where the cache (or a cached model) is, and import a checkpoint
//! the user already has (`import.rs` does the reading and converting).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use impasto::Arch;
use impasto_weights::{KNOWN_MODELS, known_model};

use crate::args::{ModelArg, PreprocessArg};
use crate::import;
use crate::progress::{Display, note};
use crate::settings::Env;
use crate::weights::{self, BUILTIN, CACHE_DIR_ENV, MODEL_URL_ENV, OFFLINE_ENV, WEIGHTS_ENV};

const AFTER_HELP: &str = "\
The cache folder is ~/.cache/impasto on Linux ($XDG_CACHE_HOME/impasto; the platform's user cache
folder elsewhere), or $IMPASTO_CACHE_DIR. A run without --weights and $IMPASTO_WEIGHTS uses
<model>-conv-imagenet.safetensors there, and downloads it on first use unless offline. Offline (or
without network), a vgg16 run uses the compact VGG-16 built into impasto (`builtin`: 8-bit, layers
up to relu4_2), made by `impasto models pack`.

Environment:
  IMPASTO_CACHE_DIR  use this folder as the cache
  IMPASTO_MODEL_URL  download from there instead: a mirror folder (ending in / or with {file}), or
                     a file NAME-HEX.pth, whose SHA-256 must then start with HEX
  IMPASTO_OFFLINE    1: never download

Examples:
  impasto models list
  impasto models download vgg19
  impasto models import vgg16-00b39a1b.pth
  impasto models import vgg16-397923af.pth --preprocess torch
  impasto models path vgg16
  impasto models pack --weights vgg16-conv-imagenet.safetensors -o vgg16-q8.safetensors";

/// Arguments of `impasto models`.
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP, subcommand_required = true, arg_required_else_help = true)]
pub struct ModelsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ModelsCommand,
}

/// The subcommands of `impasto models`.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Show the known models, whether each is cached (input convention, size), and the cache folder
    List,
    /// Download a model into the cache and convert it (nothing to do if it is cached already)
    Download(DownloadArgs),
    /// Print the cache folder, or the cached weights file of NAME (exit status 1 if it is not cached)
    Path(PathArgs),
    /// Convert a VGG checkpoint you have (.pth, or .safetensors with torchvision key names) into the
    /// cache
    Import(ImportArgs),
    /// Make the compact VGG-16 built into impasto from full VGG-16 weights: conv1_1..conv4_2,
    /// quantised to 8 bits per output channel
    Pack(PackArgs),
}

/// Arguments of `impasto models pack`.
#[derive(Debug, Args)]
pub struct PackArgs {
    /// The full VGG-16 weights (safetensors f32, or a PyTorch .pth, packed as its import would be)
    /// [default: $IMPASTO_WEIGHTS, else the cached vgg16]
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,

    /// Where to write the compact file (the one built in is crates/impasto/assets/vgg16-q8.safetensors)
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,

    /// Print nothing but errors
    #[arg(short, long)]
    pub quiet: bool,
}

/// Arguments of `impasto models download`.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The model
    #[arg(value_enum, value_name = "NAME")]
    pub name: ModelArg,

    /// Print nothing but errors
    #[arg(short, long)]
    pub quiet: bool,
}

/// Arguments of `impasto models path`.
#[derive(Debug, Args)]
pub struct PathArgs {
    /// The model whose cached weights file to print [default: print the cache folder]
    #[arg(value_enum, value_name = "NAME")]
    pub name: Option<ModelArg>,
}

/// Arguments of `impasto models import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The checkpoint: a PyTorch .pth (torch.save of a state dict) or a .safetensors file, with
    /// torchvision key names (features.N.weight|bias)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// The network [default: from the number of convolutions: 13 = vgg16, 16 = vgg19]
    #[arg(long, value_enum, value_name = "vgg16|vgg19", hide_possible_values = true)]
    pub model: Option<ModelArg>,

    /// Input convention of the weights: caffe (BGR 0..255 minus the mean) or torch (RGB 0..1,
    /// mean/std) [default: what a .safetensors file declares, else caffe for the known downloads'
    /// checkpoints and torch for torchvision's; required for any other file]
    #[arg(long, value_enum, value_name = "caffe|torch", hide_possible_values = true)]
    pub preprocess: Option<PreprocessArg>,

    /// Print nothing but errors
    #[arg(short, long)]
    pub quiet: bool,
}

/// Writes one line to stdout (the command's output), ignoring a closed stdout.
fn out(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// The cache folder, or an error saying how to get one.
fn cache_dir(env: &Env) -> Result<&Path> {
    match &env.cache_dir {
        Some(dir) => Ok(dir),
        None => bail!("no user cache folder (no home folder): set {CACHE_DIR_ENV} to a folder"),
    }
}

/// Runs `impasto models`.
pub fn run(args: ModelsArgs, env: &Env) -> Result<()> {
    match args.command {
        ModelsCommand::List => list(env),
        ModelsCommand::Download(a) => download(&a, env),
        ModelsCommand::Path(a) => path(&a, env),
        ModelsCommand::Import(a) => {
            let dir = cache_dir(env)?;
            import::import(&a, dir, env.display(a.quiet, 0)).map(|_| ())
        }
        ModelsCommand::Pack(a) => pack(&a, env),
    }
}

/// `impasto models pack`: the full weights (`--weights`, `IMPASTO_WEIGHTS` or the cache) → the compact
/// file, written atomically.
fn pack(args: &PackArgs, env: &Env) -> Result<()> {
    let input = match (&args.weights, &env.weights) {
        (Some(p), _) | (None, Some(p)) => p.clone(),
        (None, None) => {
            let file = weights::cached_file(cache_dir(env)?, Arch::Vgg16);
            if !file.is_file() {
                bail!(
                    "no VGG-16 weights to pack: pass --weights FILE, set {WEIGHTS_ENV}, or get them with \
                     `impasto models download vgg16`"
                );
            }
            file
        }
    };
    if crate::settings::same_file(&args.output, &input) {
        bail!(
            "invalid -o `{}`: it is the full weights file being packed, which it would overwrite",
            args.output.display()
        );
    }
    let full = std::fs::read(&input).with_context(|| format!("cannot read {}", input.display()))?;
    let packed =
        impasto::pack_compact(&full, &input).with_context(|| format!("cannot pack {}", input.display()))?;
    let tmp = args.output.with_extension("safetensors.tmp");
    std::fs::write(&tmp, &packed)
        .and_then(|()| std::fs::rename(&tmp, &args.output))
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    if !args.quiet {
        note(&format!(
            "packed {} ({}) into {} ({}): conv1_1..conv4_2, 8 bits per output channel",
            input.display(),
            weights::mib(full.len() as u64),
            args.output.display(),
            weights::mib(packed.len() as u64)
        ));
    }
    Ok(())
}

/// `impasto models list`.
fn list(env: &Env) -> Result<()> {
    let dir = cache_dir(env)?;
    out(&format!("cache folder: {}", dir.display()));
    out(&format!("{:<7}  {:<6}  {:<5}  {:>9}  file", "model", "cached", "input", "size"));
    for m in KNOWN_MODELS {
        let file = weights::cached_file(dir, m.arch);
        if file.is_file() {
            let input = import::declared_preprocessing(&file).unwrap_or_else(|| "?".into());
            let size = weights::size_text(&file);
            out(&format!("{:<7}  {:<6}  {input:<5}  {size:>9}  {}", m.name, "yes", file.display()));
        } else {
            let hint = format!("(get it with: impasto models download {})", m.name);
            out(&format!("{:<7}  {:<6}  {:<5}  {:>9}  {hint}", m.name, "no", "-", "-"));
        }
    }
    if let Some(bytes) = impasto::embedded_model() {
        let size = weights::mib(bytes.len() as u64);
        let input = safetensors::SafeTensors::read_metadata(bytes)
            .ok()
            .and_then(|(_, m)| m.metadata().as_ref()?.get("preprocessing").cloned())
            .unwrap_or_else(|| "?".into());
        out(&format!(
            "{BUILTIN:<7}  {:<6}  {input:<5}  {size:>9}  (in impasto: VGG-16 up to {}, 8-bit; the offline \
             fallback, or --weights {BUILTIN})",
            "-",
            impasto::COMPACT_LAST_LAYER
        ));
    }
    if let Some(w) = &env.weights {
        out(&format!("note: {WEIGHTS_ENV}={} is set: runs use it instead of the cache", w.display()));
    }
    if env.offline {
        out(&format!("note: {OFFLINE_ENV} is set: nothing is downloaded"));
    }
    if let Some(url) = &env.model_url {
        out(&format!("note: {MODEL_URL_ENV}={url} is set: downloads come from there"));
    }
    Ok(())
}

/// `impasto models download NAME`.
fn download(args: &DownloadArgs, env: &Env) -> Result<()> {
    let dir = cache_dir(env)?;
    let arch = Arch::from(args.name);
    let file = weights::cached_file(dir, arch);
    let display = env.display(args.quiet, 0);
    if file.is_file() {
        if display != Display::Quiet {
            note(&format!("{} is already cached: {}", arch.name(), file.display()));
        }
        return Ok(());
    }
    if env.offline {
        bail!(
            "{OFFLINE_ENV} is set: not downloading {0} (unset it, or get the weights with `impasto models import FILE`)",
            arch.name()
        );
    }
    let m = known_model(arch.name())?;
    weights::download(m, dir, env.model_url.as_deref(), display)?;
    Ok(())
}

/// `impasto models path [NAME]`.
fn path(args: &PathArgs, env: &Env) -> Result<()> {
    let dir = cache_dir(env)?;
    let Some(name) = args.name else {
        out(&dir.display().to_string());
        return Ok(());
    };
    let arch = Arch::from(name);
    let file = weights::cached_file(dir, arch);
    if !file.is_file() {
        bail!(
            "{0} is not cached (no {1}); get it with `impasto models download {0}`, or `impasto models import FILE`",
            arch.name(),
            file.display()
        );
    }
    out(&file.display().to_string());
    Ok(())
}
