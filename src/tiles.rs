//! `impasto tiles plan|run|stitch|seams`: the last scale of a large run as tile jobs that several
//! processes or machines take (`run --shard I/N`, or from a Slurm array or a Kubernetes Indexed Job as
//! `impasto batch` does), then blended into the image. The job folder holds the plan, the image the
//! tiles start from and the finished tiles; the library does the work (`impasto::tiles`), the same
//! as an in-process `--tile` run, so the pixels are the same.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use impasto::tiles::{JobProgress, TileJob, TilePlan};
use impasto::{SaveOptions, StopReason, Vgg};

use crate::args::RunArgs;
use crate::inputs::{self, Inputs};
use crate::interrupt;
use crate::progress::{Display, Progress, note};
use crate::run::Outcome;
use crate::settings::{self, Env, Settings};
use crate::shard::{ShardEnv, shard_from};
use crate::weights::{Got, Located};

const AFTER_HELP: &str = "\
Examples:
  impasto tiles plan --job poster photo.jpg style.jpg --size 8192 --tile 1024 -o poster.png
  impasto tiles run --job poster --shard 0/4        # on four machines: 0/4 .. 3/4
  impasto tiles stitch --job poster                 # writes poster.png
  impasto tiles seams poster.png --job poster       # border vs inside gradient ratio
On Slurm, one array per round (the shard from the array task):
  a=$(sbatch --parsable --array=0-3 --wrap 'impasto tiles run --job poster --round 1')
  sbatch --array=0-3 --dependency=afterok:$a --wrap 'impasto tiles run --job poster --round 2'

`plan` runs the scales before the last one (as a plain run would) and writes the job folder:
job.json (the tile plan, the run's command line and folder), base.safetensors (the image the
tiles start from) and tiles/ (finished tiles). `run` optimises the tiles of its shard (--shard
I/N, else $SLURM_ARRAY_TASK_ID - $SLURM_ARRAY_TASK_MIN of $SLURM_ARRAY_TASK_COUNT, else
$JOB_COMPLETION_INDEX of --shard-count or $IMPASTO_SHARD_COUNT, else all) or the --index tiles;
a tile already in tiles/ is skipped, so reruns only do what is missing. The tiles run in
--tile-rounds rounds (2 by default), coupled through the whole picture's style: a round starts
once every tile of the one before is finished, and `run` goes on from round to round as far as
the finished tiles allow (--round R: that round only). `stitch` blends the last round's tiles
into the plan's -o image. The result is the same, pixel for pixel, as the same command line run
in one process.";

/// `impasto tiles`.
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub struct TilesArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TilesCommand,
}

/// The `impasto tiles` subcommands.
#[derive(Debug, Subcommand)]
pub enum TilesCommand {
    /// Run the scales before the last and write the last scale's tiles as jobs into a folder
    Plan(Box<PlanArgs>),
    /// Optimise tiles of a job folder (finished ones are skipped, so reruns are safe)
    Run(RunTilesArgs),
    /// Blend the finished tiles of a job folder into the run's output image
    Stitch(StitchArgs),
    /// Print the seam measure of an image: gradients across tile borders against inside tiles
    Seams(SeamsArgs),
}

/// `impasto tiles plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Job folder (created): job.json, base.safetensors and tiles/
    #[arg(long, value_name = "DIR", required = true)]
    pub job: PathBuf,

    /// The run, as for `impasto` itself (--tile is needed)
    #[command(flatten)]
    pub run: RunArgs,
}

/// `impasto tiles run`.
#[derive(Debug, Args)]
pub struct RunTilesArgs {
    /// Job folder written by `impasto tiles plan`
    #[arg(long, value_name = "DIR")]
    pub job: PathBuf,

    /// Optimise this tile (0-based; repeat for more) instead of a shard
    #[arg(long, value_name = "I", conflicts_with_all = ["shard", "shard_count"])]
    pub index: Vec<usize>,

    /// Optimise part I of N of the tiles (0-based) [default: from Slurm or Kubernetes, else all]
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,

    /// The shard count with $JOB_COMPLETION_INDEX [default: $IMPASTO_SHARD_COUNT]
    #[arg(long, value_name = "N")]
    pub shard_count: Option<usize>,

    /// Optimise only round R's tiles (every tile of the rounds before must be finished) [default: from the first unfinished round on, as far as finished rounds allow]
    #[arg(long, value_name = "R", value_parser = clap::value_parser!(u32).range(1..))]
    pub round: Option<u32>,

    /// Where this process's tiles run, whatever the planned command line said: cpu, auto (a hardware
    /// GPU if there is one, else the CPU), gpu or gpu:N (see `impasto devices`) [default: the
    /// planned run's]
    #[arg(long, value_name = "auto|cpu|gpu|gpu:N", value_parser = crate::devices::parse_device)]
    pub device: Option<impasto::Device>,

    /// Print nothing but errors
    #[arg(short, long)]
    pub quiet: bool,
}

/// `impasto tiles stitch`.
#[derive(Debug, Args)]
pub struct StitchArgs {
    /// Job folder written by `impasto tiles plan`
    #[arg(long, value_name = "DIR")]
    pub job: PathBuf,

    /// Write here instead of the planned run's -o
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,

    /// Print nothing but errors
    #[arg(short, long)]
    pub quiet: bool,
}

/// `impasto tiles seams`.
#[derive(Debug, Args)]
pub struct SeamsArgs {
    /// The image to measure
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,

    /// The tiles of this job folder
    #[arg(long, value_name = "DIR", required_unless_present = "tile", conflicts_with = "tile")]
    pub job: Option<PathBuf>,

    /// Or the tiles a run with --tile PX (or a --max-memory that chose PX) used on this image
    #[arg(long, value_name = "PX")]
    pub tile: Option<u32>,

    /// With --tile: the tiles' overlap
    #[arg(long, value_name = "PX", default_value_t = impasto::tiles::TILE_OVERLAP)]
    pub tile_overlap: u32,
}

/// A parser of the recorded run arguments, with the main command line's rules: a flag given twice
/// takes its last value there, so it must here too, or a job planned so could never run.
#[derive(Debug, Parser)]
#[command(name = "impasto", args_override_self = true)]
struct RecordedRun {
    #[command(flatten)]
    run: RunArgs,
}

/// Runs `impasto tiles …`.
pub fn run(args: TilesArgs, env: &Env, shard_env: &ShardEnv) -> Result<Outcome> {
    match args.command {
        TilesCommand::Plan(a) => plan(*a, env),
        TilesCommand::Run(a) => run_tiles(a, env, shard_env),
        TilesCommand::Stitch(a) => stitch(a, env),
        TilesCommand::Seams(a) => seams(&a).map(|()| Outcome::Done),
    }
}

/// The arguments of this `impasto tiles plan` command line, without `--job DIR`.
fn recorded_args() -> Vec<String> {
    let argv: Vec<String> = std::env::args().collect();
    let start = argv.iter().position(|a| a == "plan").map_or(argv.len(), |p| p + 1);
    let mut out = Vec::new();
    let mut it = argv[start..].iter();
    while let Some(a) = it.next() {
        if a == "--job" {
            it.next();
        } else if !a.starts_with("--job=") {
            out.push(a.clone());
        }
    }
    out
}

/// The network of the settings: the weights file, the built-in model, or downloaded once.
fn load_net(s: &mut Settings, inputs: &mut Inputs) -> Result<Vgg> {
    let builtin = match s.weights.locate(s.config.model)? {
        Located::File(p) => Some(p),
        Located::Builtin => None,
        Located::Missing(missing) => match missing.get(s.display)? {
            Got::File(p) => Some(p),
            Got::Builtin(why) => {
                s.use_builtin()?;
                inputs.config.style_layers = s.config.style_layers.clone();
                if s.display != Display::Quiet {
                    note(&format!("{why}: using {}", impasto::EMBEDDED_LABEL));
                }
                None
            }
        },
    };
    let config = &inputs.config;
    Ok(match builtin {
        Some(p) => Vgg::load(&p, config.model, config.pooling, s.preprocess, &s.deepest_layer)?,
        None => Vgg::embedded(config.pooling, &s.deepest_layer)?,
    })
}

fn plan(a: PlanArgs, env: &Env) -> Result<Outcome> {
    if a.run.checkpoint.is_some() || a.run.checkpoint_every > 0 {
        bail!(
            "--checkpoint does not apply to `impasto tiles plan` (the job folder keeps every finished tile \
             and the state of a tile stopped early: `tiles run` skips the first and continues the second)"
        );
    }
    let recorded = recorded_args();
    let mut s = settings::resolve(a.run, env)?;
    s.settle_device()?;
    let Some(tile) = s.config.tile else {
        bail!("impasto tiles plan needs --tile PX: the side of the tiles of the last scale");
    };
    impasto::check_writable(&s.output)?;
    let cwd = std::env::current_dir().context("the current folder")?;
    let mut inputs = inputs::load(&s)?;
    let net = load_net(&mut s, &mut inputs)?;
    interrupt::install(s.display);
    let mut progress = Progress::new(s.display, 0, &s.output, &interrupt::STOP_REQUESTED);
    progress.stage("running the scales before the last");
    let prepared =
        impasto::tiles::prepare_tiles(&net, &inputs.config, &inputs.content, &inputs.styles, &mut progress);
    progress.finish();
    if interrupt::requested() {
        note("interrupted: no job written");
        return Ok(Outcome::Interrupted);
    }
    let (mut job, base) = prepared?;
    job.args = std::iter::once(cwd.to_string_lossy().into_owned()).chain(recorded).collect();
    job.write(&a.job, &base)?;
    if s.display != Display::Quiet {
        let p = &job.plan;
        let rounds = if job.rounds > 1 { format!(" in {} rounds", job.rounds) } else { String::new() };
        let dir = a.job.display();
        note(&format!(
            "planned {} tiles of {tile} px ({}x{}){rounds} in {dir}: run them with `impasto tiles run --job {dir}` \
             (--shard I/N to split them), then `impasto tiles stitch --job {dir}`",
            p.len(),
            p.width,
            p.height,
        ));
    }
    Ok(Outcome::Done)
}

/// The job folder as an absolute path (the recorded run's folder becomes the current one).
fn absolute(dir: &Path) -> Result<PathBuf> {
    std::path::absolute(dir).with_context(|| format!("job folder {}", dir.display()))
}

/// The job of `dir` and the settings of its recorded run, resolved in the folder it was planned in.
fn open_job(dir: &Path, env: &Env, quiet: bool) -> Result<(TileJob, impasto::image::Rgb32FImage, Settings)> {
    let (job, base) = TileJob::read(dir)?;
    let Some((cwd, args)) = job.args.split_first() else {
        bail!("job {}: no recorded run (it was not planned by `impasto tiles plan`)", dir.display());
    };
    std::env::set_current_dir(cwd).with_context(|| format!("the job's folder {cwd}"))?;
    let run = RecordedRun::try_parse_from(std::iter::once("impasto").chain(args.iter().map(String::as_str)))
        .map_err(|e| {
            anyhow::anyhow!("job {}: its recorded command line: {}", dir.display(), e.to_string().trim())
        })?
        .run;
    let mut s = settings::resolve(run, env)?;
    if quiet {
        s.display = Display::Quiet;
    }
    Ok((job, base, s))
}

fn run_tiles(a: RunTilesArgs, env: &Env, shard_env: &ShardEnv) -> Result<Outcome> {
    let dir = absolute(&a.job)?;
    let (job, base, mut s) = open_job(&dir, env, a.quiet)?;
    // The device is not part of a job's result (its fingerprint), so each machine takes its own.
    if let Some(device) = a.device {
        (s.config.device, s.device_given) = (device, true);
    }
    s.settle_device()?;
    let n = job.plan.len();
    let indices: Vec<usize> = if a.index.is_empty() {
        let shard = shard_from(a.shard.as_deref(), a.shard_count, shard_env)?;
        let names: Vec<String> = (0..n).map(|i| format!("{i:05}")).collect();
        let costs: Vec<(&str, u64)> =
            names.iter().zip(job.plan.rects()).map(|(n, r)| (n.as_str(), r.pixels())).collect();
        let parts = impasto_batch::shard::assign(&costs, shard.count);
        (0..n).filter(|&i| parts[i] == shard.index).collect()
    } else {
        a.index.clone()
    };
    if let Some(&i) = indices.iter().find(|&&i| i >= n) {
        bail!("invalid --index {i}: the job has tiles 0 to {}", n - 1);
    }
    let mut inputs = inputs::load(&s)?;
    let net = load_net(&mut s, &mut inputs)?;
    interrupt::install(s.display);
    let mut progress = Progress::new(s.display, 0, &s.output, &interrupt::STOP_REQUESTED);
    // Tiles finished over the rounds: those of the rounds before the first unfinished one, and its own.
    let finished = |p: &JobProgress| p.round * n + if p.missing.is_empty() { 0 } else { n - p.missing.len() };
    let before = job.progress(&dir)?;
    let round = a.round.map(|r| r as usize - 1);
    let stop = impasto::tiles::run_tiles(
        &net,
        &inputs.config,
        &inputs.content,
        &inputs.styles,
        &job,
        &base,
        &dir,
        &indices,
        round,
        &mut progress,
    );
    progress.finish();
    let stop = stop?;
    let after = job.progress(&dir)?;
    if s.display != Display::Quiet {
        let here = finished(&after) - finished(&before);
        let line = if after.round == job.rounds {
            let all = if job.rounds > 1 { format!("all {} rounds of ", job.rounds) } else { String::new() };
            format!("{all}{n} of {n} finished; stitch with `impasto tiles stitch --job {}`", a.job.display())
        } else if job.rounds > 1 {
            format!(
                "round {} of {}: {} of {n} finished",
                after.round + 1,
                job.rounds,
                n - after.missing.len()
            )
        } else {
            format!("{} of {n} finished", n - after.missing.len())
        };
        note(&format!("tiles: {here} optimised here, {line}"));
    }
    Ok(if stop == StopReason::Cancelled { Outcome::Interrupted } else { Outcome::Done })
}

fn stitch(a: StitchArgs, env: &Env) -> Result<Outcome> {
    let dir = absolute(&a.job)?;
    let output = a.output.as_deref().map(std::path::absolute).transpose().context("--output")?;
    let (job, base, s) = open_job(&dir, env, a.quiet)?;
    let output = output.unwrap_or_else(|| s.output.clone());
    impasto::check_writable(&output)?;
    s.save.check(&output)?;
    let p = job.progress(&dir)?;
    if let Some(first) = p.missing.first() {
        let of_round = if job.rounds > 1 {
            format!(" of round {} of {}", p.round + 1, job.rounds)
        } else {
            String::new()
        };
        bail!(
            "job {}: {} of {} tiles{of_round} are not finished (the first is {first}): run `impasto tiles run --job {}` first",
            a.job.display(),
            p.missing.len(),
            job.plan.len(),
            a.job.display()
        );
    }
    let inputs = inputs::load(&s)?;
    let save = SaveOptions { alpha: inputs.alpha.clone(), ..s.save.clone() };
    let (w, h) = impasto::output_size(inputs.content.dimensions(), &inputs.config);
    let mut reserved = impasto::reserve_output(&output, w, h, &save)?;
    let image = impasto::tiles::stitch_tiles(&inputs.config, &inputs.content, &job, &base, &dir)?;
    reserved.save(&image, &save)?;
    if s.display != Display::Quiet {
        note(&format!(
            "wrote {} ({}x{}, {} tiles)",
            output.display(),
            image.width(),
            image.height(),
            job.plan.len()
        ));
    }
    Ok(Outcome::Done)
}

fn seams(a: &SeamsArgs) -> Result<()> {
    let image = impasto::load_image(&a.image).context("image")?;
    let plan = match (&a.job, a.tile) {
        (Some(dir), _) => TileJob::read(dir)?.0.plan,
        (None, Some(tile)) => TilePlan::new(image.width(), image.height(), tile, a.tile_overlap)?,
        (None, None) => bail!("give --job DIR or --tile PX"),
    };
    if image.dimensions() != (plan.width, plan.height) {
        bail!(
            "{} is {}x{}, the tiles are of a {}x{} image",
            a.image.display(),
            image.width(),
            image.height(),
            plan.width,
            plan.height
        );
    }
    let m = impasto::tiles::seams(&image, &plan);
    let line = format!(
        "seams: border {:.5}, inside {:.5}, ratio {:.3}; 16 to {} px from the borders {:.5}, ratio {:.3} ({} tiles of {} px, overlap {} px)",
        m.border,
        m.inside,
        m.ratio(),
        impasto::tiles::NEARBY,
        m.nearby,
        m.nearby_ratio(),
        plan.len(),
        plan.tile,
        plan.overlap
    );
    let _ = writeln!(std::io::stdout().lock(), "{line}");
    Ok(())
}
