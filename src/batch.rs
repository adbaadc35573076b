//! `impasto batch`: runs the jobs of a plan (a TOML file or a command-line grid), or the part of them
//! that is this shard's, each through the same run path as `impasto CONTENT STYLE -o OUT`. Everything
//! is checked before the first job starts; a job already done is skipped, a failed one is logged and
//! the others go on; the exit status says whether every job of the shard is done. The policy (plan,
//! names, shards, claims, log, index) is `impasto-batch`'s; `crate::shard` reads which shard this
//! process takes (Slurm, Kubernetes) and the host name; this file runs the jobs.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, CommandFactory, Parser};
use impasto_batch::claim::{self, Claimed, Owner, Staleness};
use impasto_batch::log::{self, Losses, Record};
use impasto_batch::{FlagKind, Flags, Job, JobList, Plan, Shard, index, shard};

use crate::args::RunArgs;
use crate::progress::note;
use crate::run::{self, Outcome};
use crate::settings::{self, Env, Settings};
use crate::shard::{ShardEnv, shard_from};
use crate::{interrupt, settings::parse_duration};

const AFTER_HELP: &str = "\
Examples:
  impasto batch plan.toml
  impasto batch --content photos/ --style starry.jpg --style scream.jpg \\
      --grid style-weight=10,100,1000 --set size=256 -o results
  sbatch --array=0-3 docs/batch/impasto-batch.sbatch plan.toml   # 4 shards on Slurm
  impasto batch plan.toml --index                                   # contact sheet + HTML only

Each result is OUT/NAME.png, NAME from the inputs and settings (with a hash of the inputs' bytes
and the settings); a result that exists with the same fingerprint is skipped, so a rerun does only
what is missing. A job stopped early (SIGTERM, Ctrl-C) leaves its checkpoint in
OUT/batch-checkpoints/NAME.ckpt, from which the next run continues it (`checkpoint-every = N` also
writes one every N iterations). Attempts are logged in OUT/batch-log/shard-I-of-N.jsonl. When every
job is done, OUT/index.png (contact sheet) and OUT/index.html are written.

The shard is --shard I/N, else $SLURM_ARRAY_TASK_ID - $SLURM_ARRAY_TASK_MIN of
$SLURM_ARRAY_TASK_COUNT (a Slurm job array), else $JOB_COMPLETION_INDEX (Kubernetes Indexed Job) of
--shard-count or $IMPASTO_SHARD_COUNT, else 0/1 (everything). Shards split the jobs by cost (pixels
× iterations); a job is claimed by an owner marker OUT/.NAME.png.lock, taken over when its process
has ended on this host or it was not refreshed for --stale-after (its node died).

Exit status: 0 every job of the shard is done, 1 a job failed or is held by another live owner or
the plan is invalid (nothing runs), 2 bad command line, 130 interrupted.";

/// `impasto batch`.
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub struct BatchArgs {
    /// Plan file (TOML): `output`, `[settings]`, `[grid]`, `[[job]]` (see the README)
    #[arg(value_name = "PLAN")]
    pub plan: Option<PathBuf>,

    /// Content image or folder of images: a grid axis (repeat for more)
    #[arg(long, value_name = "FILE|DIR", help_heading = "Grid")]
    pub content: Vec<String>,

    /// Style image or folder of images, or A+B for a blend: a grid axis (repeat for more)
    #[arg(long, value_name = "FILE|DIR", help_heading = "Grid")]
    pub style: Vec<String>,

    /// A grid axis over any run flag, e.g. style-weight=10,100,1000 (repeat for more axes)
    #[arg(long, value_name = "FLAG=V1,V2", help_heading = "Grid")]
    pub grid: Vec<String>,

    /// A run flag for every job, e.g. size=256 or preserve-colors=true (repeat)
    #[arg(long, value_name = "FLAG=VALUE", help_heading = "Grid")]
    pub set: Vec<String>,

    /// Results folder [default: the plan's `output`]
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,

    /// Run part I of N (0-based) [default: from Slurm or Kubernetes, see below, else 0/1]
    #[arg(long, value_name = "I/N", help_heading = "Shards")]
    pub shard: Option<String>,

    /// The shard count with $JOB_COMPLETION_INDEX [default: $IMPASTO_SHARD_COUNT]
    #[arg(long, value_name = "N", help_heading = "Shards")]
    pub shard_count: Option<usize>,

    /// Take over a job whose claim was not refreshed for this long (its owner's node died)
    #[arg(long, value_name = "DURATION", default_value = "2m", help_heading = "Shards")]
    pub stale_after: String,

    /// Only write the contact sheet and HTML page of the results there are; run nothing
    #[arg(long)]
    pub index: bool,

    /// Only list this shard's jobs on stdout (name, cost, status: done, started (it has a
    /// checkpoint) or todo); run nothing
    #[arg(long, conflicts_with = "index")]
    pub list: bool,

    /// Print nothing but errors
    #[arg(short, long)]
    pub quiet: bool,
}

/// The shard: the flag, else Slurm's array, else Kubernetes' index with a count, else everything.
pub fn resolve_shard(args: &BatchArgs, env: &ShardEnv) -> Result<Shard> {
    shard_from(args.shard.as_deref(), args.shard_count, env)
}

/// A parser of one job's run arguments (the plain run's flags, nothing else).
#[derive(Debug, Parser)]
#[command(name = "impasto", no_binary_name = false)]
struct JobCli {
    #[command(flatten)]
    run: RunArgs,
}

/// Why a batch does not take a checkpoint file.
const OWN_CHECKPOINTS: &str = "the batch keeps each job's checkpoint itself, in OUT/batch-checkpoints, and the \
     next run continues a job stopped early from it (set how often with `checkpoint-every`)";

/// Run flags a batch job may not set (each job's own, or the batch's), with why.
const NOT_IN_A_BATCH: [(&str, &str); 5] = [
    ("output", "the batch names each output itself (set the folder with `output`)"),
    ("checkpoint", OWN_CHECKPOINTS),
    ("resume", OWN_CHECKPOINTS),
    ("help", "it is not a setting (see `impasto --help` for the run flags)"),
    ("quiet", "every job runs quietly; `impasto batch --quiet` quiets the batch itself"),
];

/// The run flags a plan may set, from the run's own clap definition.
fn run_flags() -> Flags {
    let cmd = JobCli::command();
    Flags::new(cmd.get_arguments().filter_map(|a| {
        let long = a.get_long()?;
        if NOT_IN_A_BATCH.iter().any(|(n, _)| *n == long) {
            return None;
        }
        let kind = match long {
            _ if !a.get_action().takes_values() => FlagKind::Switch,
            "mask" | "style-mask" | "init" => FlagKind::File,
            "weights" => FlagKind::Path,
            "checkpoint-every" => FlagKind::Runtime,
            _ => FlagKind::Value,
        };
        Some((long.to_string(), kind))
    }))
    .excluding(NOT_IN_A_BATCH)
}

/// A job ready to run: its resolved settings and estimated cost.
struct Ready<'a> {
    job: &'a Job,
    settings: Settings,
    cost: u64,
}

/// Resolves one job exactly as `impasto CONTENT STYLE… -o OUT FLAGS…` would, plus the fingerprint.
fn prepare<'a>(job: &'a Job, flags: &Flags, out: &Path, env: &Env) -> Result<Ready<'a>> {
    let output = claim::output_path(out, &job.name);
    let mut argv: Vec<String> = vec!["impasto".into(), job.content.to_string_lossy().into_owned()];
    argv.extend(job.styles.iter().map(|s| s.to_string_lossy().into_owned()));
    argv.extend(["-o".into(), output.to_string_lossy().into_owned(), "--quiet".into()]);
    // Every job has a checkpoint (which `checkpoint-every` requires); its folder is made and the
    // path set when the job runs (`run_shard`).
    let ckpt = claim::checkpoint_path(out, &job.name);
    argv.extend(["--checkpoint".into(), ckpt.to_string_lossy().into_owned()]);
    argv.extend(job.args(flags));
    let mut parsed = JobCli::try_parse_from(&argv).map_err(|e| {
        let text = e.to_string();
        anyhow!("{}", text.lines().next().unwrap_or_default().trim_start_matches("error: "))
    })?;
    parsed.run.checkpoint = None;
    let mut s = settings::resolve(parsed.run, env)?;
    s.save.metadata.push((claim::FINGERPRINT_KEY.into(), job.fingerprint.clone()));
    let (w, h) = impasto::image::image_dimensions(&job.content)
        .with_context(|| format!("content image {}", job.content.display()))?;
    // The masks are read only when the job runs: check them now, as the run checks an `--init` file.
    let masks = s.mask.iter().map(|m| ("--mask", m)).chain(s.style_masks.iter().map(|m| ("--style-mask", m)));
    for (flag, mask) in masks {
        impasto::image::image_dimensions(mask).with_context(|| format!("{flag} image {}", mask.display()))?;
    }
    let (w, h) = impasto::fit_longest_side(w, h, s.config.size);
    let cost = u64::from(w) * u64::from(h) * s.config.iterations.max(1) as u64;
    Ok(Ready { job, settings: s, cost })
}

/// The results folder: `--output`, else the plan's.
fn output_folder(args: &BatchArgs, plan: &Plan) -> Result<PathBuf> {
    match (&args.output, &plan.output) {
        (Some(o), _) => Ok(o.clone()),
        (None, Some(o)) => Ok(plan.base.join(o)),
        (None, None) => bail!("no results folder: give --output DIR or `output = \"DIR\"` in the plan"),
    }
}

/// Makes the results folder if missing and checks that it is writable (`batch`, `serve --output`).
pub(crate) fn make_writable(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out)
        .with_context(|| format!("results folder {} cannot be made", out.display()))?;
    let probe = out.join(format!(".impasto-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .with_context(|| format!("results folder {} is not writable", out.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Whether a process of this host runs (without /proc, assume it does: only --stale-after frees it).
fn alive(pid: u32) -> bool {
    !Path::new("/proc/self").exists() || Path::new(&format!("/proc/{pid}")).exists()
}

/// Runs `impasto batch`.
pub fn run(args: BatchArgs, env: &Env, shard_env: &ShardEnv) -> Result<Outcome> {
    let shard = resolve_shard(&args, shard_env)?;
    let stale_after = parse_duration(&args.stale_after)
        .map_err(|e| anyhow!("{}", e.to_string().replace("--time-limit", "--stale-after")))?;
    // Claims are refreshed every quarter of it, but at most once a second.
    if stale_after < Duration::from_secs(1) {
        bail!(
            "invalid --stale-after `{}`: it must be at least 1s, or the claims of running jobs would be taken over",
            args.stale_after
        );
    }
    let plan = match &args.plan {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("plan {}", p.display()))?;
            Plan::parse(p, &text)?
        }
        None if args.content.is_empty() && args.style.is_empty() => {
            bail!("nothing to run: give a PLAN file, or --content and --style (see impasto batch --help)")
        }
        None => Plan::empty(PathBuf::from(".")),
    };
    let plan = plan.with_command_line(&args.content, &args.style, &args.grid, &args.set)?;
    let flags = run_flags();
    let list = impasto_batch::expand(&plan, &flags)?;
    let out = output_folder(&args, &plan)?;
    let mut ready = Vec::new();
    for job in &list.jobs {
        ready.push(
            prepare(job, &flags, &out, env).with_context(|| format!("job {} ({})", job.name, job.place))?,
        );
    }
    make_writable(&out)?;
    if args.index {
        return write_index(&list, &out, shard_env, args.quiet).map(|()| Outcome::Done);
    }
    let costs: Vec<(&str, u64)> = ready.iter().map(|r| (r.job.name.as_str(), r.cost)).collect();
    let parts = shard::assign(&costs, shard.count);
    let mine: Vec<Ready<'_>> =
        ready.into_iter().zip(&parts).filter(|(_, p)| **p == shard.index).map(|(r, _)| r).collect();
    if args.list {
        let mut stdout = std::io::stdout().lock();
        for r in &mine {
            let status = if claim::is_done(&claim::output_path(&out, &r.job.name), &r.job.fingerprint) {
                "done"
            } else if claim::checkpoint_path(&out, &r.job.name).is_file() {
                "started"
            } else {
                "todo"
            };
            let _ = writeln!(stdout, "{}\t{}\t{status}", r.job.name, r.cost);
        }
        return Ok(Outcome::Done);
    }
    run_shard(&args, &list, mine, &out, shard, shard_env, stale_after)
}

/// Runs one job's settings, its checkpoint's folder made first.
fn run_job(settings: Settings, ckpt: &Path) -> Result<run::Ran> {
    if let Some(dir) = ckpt.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("checkpoint folder {}", dir.display()))?;
    }
    run::run_settings(settings)
}

/// Removes a job's checkpoint and the folder of finished tiles beside it (a tiled job's).
fn remove_checkpoint(ckpt: &Path) {
    let _ = std::fs::remove_file(ckpt);
    let _ = std::fs::remove_dir_all(impasto::tiles::TileStore::beside(ckpt));
    // The folder stays, even empty: another shard's job may be about to write its checkpoint there.
}

/// Whether a run failed because it could not continue from checkpoint `ckpt`
/// ([`impasto::Error::checkpoint_refusal`]): kept, it would fail every later run of the job too.
fn refuses_checkpoint(e: &anyhow::Error, ckpt: &Path) -> bool {
    e.chain()
        .any(|c| c.downcast_ref::<impasto::Error>().is_some_and(|e| e.checkpoint_refusal(ckpt).is_some()))
}

/// Counts of a shard's run.
#[derive(Debug, Default)]
struct Tally {
    done: usize,
    skipped: usize,
    failed: usize,
    busy: usize,
}

fn run_shard(
    args: &BatchArgs,
    list: &JobList,
    mine: Vec<Ready<'_>>,
    out: &Path,
    shard: Shard,
    shard_env: &ShardEnv,
    stale_after: Duration,
) -> Result<Outcome> {
    let pid = std::process::id();
    let started = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let me = Owner {
        host: shard_env.host.clone(),
        pid,
        shard: shard.to_string(),
        token: format!("{}-{pid}-{started}", shard_env.host),
    };
    let stale = Staleness { host: &shard_env.host, alive, after: stale_after };
    let log_file = log::log_path(out, shard);
    let say = |line: String| {
        if !args.quiet {
            note(&line);
        }
    };
    let record = |job: &Job,
                  status: &str,
                  reason: Option<String>,
                  seconds: f64,
                  result: Option<(usize, impasto::Losses, f64)>,
                  resumed: bool| {
        let losses =
            result.map(|(_, l, _)| Losses { content: l.content, style: l.style, tv: l.tv, total: l.total() });
        let rec = Record {
            time: log::timestamp(SystemTime::now()),
            job: job.name.clone(),
            status: status.into(),
            reason,
            seconds,
            iterations: result.map(|(n, _, _)| n),
            losses,
            resumed,
            shard: shard.to_string(),
            host: shard_env.host.clone(),
            pid,
        };
        log::append(&log_file, &rec)
    };
    interrupt::install(crate::progress::Display::Quiet);
    let total = mine.len();
    say(format!("shard {shard}: {total} of {} jobs, results in {}", list.jobs.len(), out.display()));
    let mut tally = Tally::default();
    let mut interrupted = false;
    for (k, r) in mine.into_iter().enumerate() {
        let tag = format!("[{}/{total}] {}", k + 1, r.job.name);
        if interrupt::requested() {
            interrupted = true;
            break;
        }
        let output = claim::output_path(out, &r.job.name);
        let ckpt = claim::checkpoint_path(out, &r.job.name);
        if claim::is_done(&output, &r.job.fingerprint) {
            // A job finished by a process stopped before it removed its checkpoint.
            remove_checkpoint(&ckpt);
            record(r.job, "skipped", None, 0.0, None, false)?;
            tally.skipped += 1;
            say(format!("{tag}: already done"));
            continue;
        }
        let held = match claim::claim(&claim::lock_path(out, &r.job.name), &me, &stale)? {
            Claimed::Mine(c) => c,
            Claimed::Busy(owner) => {
                let who = owner.map_or("another process".into(), |o| {
                    format!("{} pid {} (shard {})", o.host, o.pid, o.shard)
                });
                record(r.job, "busy", Some(format!("claimed by {who}")), 0.0, None, false)?;
                tally.busy += 1;
                say(format!("{tag}: claimed by {who}; left to it"));
                continue;
            }
        };
        // Finished by another owner between the check and the claim.
        if claim::is_done(&output, &r.job.fingerprint) {
            held.release();
            tally.skipped += 1;
            continue;
        }
        let resumed = ckpt.is_file();
        let mut settings = r.settings;
        settings.config.checkpoint = Some(ckpt.clone());
        settings.config.resume = resumed.then(|| ckpt.clone());
        settings.own_checkpoint = true;
        let start = Instant::now();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let ran = std::thread::scope(|scope| {
            let held = &held;
            scope.spawn(move || {
                let every = (stale_after / 4).max(Duration::from_secs(1));
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(every) {
                    held.refresh();
                }
            });
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_job(settings, &ckpt)));
            let _ = stop_tx.send(());
            ran
        });
        let seconds = start.elapsed().as_secs_f64();
        let ran = ran.unwrap_or_else(|_| Err(anyhow!("the run panicked")));
        match ran {
            Ok(run::Ran { outcome: Outcome::Done, result }) => {
                remove_checkpoint(&ckpt);
                record(r.job, "done", None, seconds, result, resumed)?;
                tally.done += 1;
                let losses = result.map_or(String::new(), |(n, l, _)| {
                    format!(", {n} iterations, total loss {:.3e}", l.total())
                });
                let from = if resumed { ", continued from its checkpoint" } else { "" };
                say(format!("{tag}: done ({seconds:.1} s{losses}{from})"));
            }
            Ok(run::Ran { outcome: Outcome::Interrupted, result }) => {
                // An interrupted run writes its current image; it is not a result.
                let _ = std::fs::remove_file(&output);
                let kept = if ckpt.is_file() {
                    format!("; the next run continues it from {}", ckpt.display())
                } else {
                    String::new()
                };
                record(
                    r.job,
                    "interrupted",
                    Some(format!("interrupted (Ctrl-C or SIGTERM){kept}")),
                    seconds,
                    result,
                    resumed,
                )?;
                interrupted = true;
            }
            Err(e) => {
                // A failed run may have written its last good image; it is not a result either.
                let _ = std::fs::remove_file(&output);
                let mut reason = format!("{e:#}").lines().map(str::trim).collect::<Vec<_>>().join(" ");
                if resumed && refuses_checkpoint(&e, &ckpt) {
                    remove_checkpoint(&ckpt);
                    reason.push_str("; the checkpoint was removed, so the next run starts the job over");
                }
                record(r.job, "failed", Some(reason.clone()), seconds, None, resumed)?;
                tally.failed += 1;
                say(format!("{tag}: failed: {reason}"));
            }
        }
        held.release();
        if interrupted {
            break;
        }
    }
    say(format!(
        "shard {shard}: {} done, {} already done, {} failed, {} claimed by others; log {}",
        tally.done,
        tally.skipped,
        tally.failed,
        tally.busy,
        log_file.display()
    ));
    if interrupted {
        return Ok(Outcome::Interrupted);
    }
    let all_done =
        list.jobs.iter().all(|j| claim::is_done(&claim::output_path(out, &j.name), &j.fingerprint));
    if all_done {
        write_index(list, out, shard_env, args.quiet)?;
    }
    if tally.failed > 0 {
        bail!("{} of {total} jobs of shard {shard} failed (reasons in {})", tally.failed, log_file.display());
    }
    if tally.busy > 0 {
        bail!("{} of {total} jobs of shard {shard} are held by other live processes", tally.busy);
    }
    Ok(Outcome::Done)
}

fn write_index(list: &JobList, out: &Path, shard_env: &ShardEnv, quiet: bool) -> Result<()> {
    let tag = format!("{}-{}", shard_env.host, std::process::id());
    let (sheet, html) = index::write(list, out, &tag)?;
    if !quiet {
        note(&format!("wrote {} and {}", sheet.display(), html.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_flags_know_switches_files_and_refuse_the_batch_s_own() {
        let list = impasto_batch::expand(
            &Plan::empty(".".into())
                .with_command_line(
                    &["Cargo.toml".into()],
                    &["Cargo.lock".into()],
                    &["preserve-colors=true,false".into()],
                    &["size=64".into()],
                )
                .unwrap(),
            &run_flags(),
        )
        .unwrap();
        assert_eq!(list.jobs[0].args(&run_flags()), ["--preserve-colors", "--size", "64"]);
        assert_eq!(list.jobs[1].args(&run_flags()), ["--size", "64"]);
        let e = Plan::empty(".".into())
            .with_command_line(&["Cargo.toml".into()], &["Cargo.lock".into()], &[], &["checkpoint=x".into()])
            .unwrap();
        let e = impasto_batch::expand(&e, &run_flags()).unwrap_err().to_string();
        assert_eq!(
            e,
            "[settings] checkpoint: `checkpoint` does not apply in a batch: the batch keeps each job's \
             checkpoint itself, in OUT/batch-checkpoints, and the next run continues a job stopped early \
             from it (set how often with `checkpoint-every`)"
        );
        let list = Plan::empty(".".into())
            .with_command_line(
                &["Cargo.toml".into()],
                &["Cargo.lock".into()],
                &[],
                &["checkpoint-every=5".into()],
            )
            .unwrap();
        let list = impasto_batch::expand(&list, &run_flags()).unwrap();
        assert_eq!(list.jobs[0].args(&run_flags()), ["--checkpoint-every", "5"]);
    }
}
