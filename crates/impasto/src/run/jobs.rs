//! Tiles as independent jobs: the last scale of a run cut into tiles that separate processes (or
//! machines) optimise, each writing its finished tiles into a shared folder, and a stitch of them into
//! the image. `prepare_tiles` runs the scales before the last and writes what the tiles start from;
//! `run_tiles` optimises any tiles (skipping stored ones, so reruns are idempotent, and continuing
//! one that a process stopped from its partial state), round after
//! round where the tiles are coupled (a round starts once every tile of the one before is stored);
//! `stitch_tiles` blends them. The in-process tiled run uses the same setup, tile optimisation,
//! carried L-BFGS pairs and blend, so the result is the same, bit for bit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use image::Rgb32FImage;
use serde::{Deserialize, Serialize};

use super::coupling::RoundShift;
use super::tiled::{Carry, TiledScale};
use super::{Plan, with_run_inputs};
use crate::color::{ColorMode, preserve_colors};
use crate::config::StyleConfig;
use crate::error::{Error, GpuFailure, GpuFault, Result};
use crate::model::Vgg;
use crate::observer::{Observer, StopReason, Weights};
use crate::pixels::{to_image, to_planar};
use crate::tiles::{self, TilePlan, TileStore, read_tensor, write_tensor};

const FORMAT: &str = "impasto-tile-job-1";

/// The last scale of a run as tile jobs: written by [`prepare_tiles`] as `job.json` (with the image the
/// tiles start from in `base.safetensors`) in a folder that every process taking tiles can read; the
/// finished tiles go to `tiles/` in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TileJob {
    /// `impasto-tile-job-1`.
    pub format: String,
    /// The run's fingerprint (settings and images), hex: tiles of other runs are refused.
    pub fingerprint: String,
    /// The tiled scale (0-based; the last of the run).
    pub scale: usize,
    /// Its tiles.
    pub plan: TilePlan,
    /// Rounds over the tiles, coupled through the whole image's style (`tile_rounds`, or 1 when
    /// the tiles are not coupled): every tile of a round is finished before the next one starts.
    #[serde(default = "one_round")]
    pub rounds: usize,
    /// Size of the image the tiles start from (the previous scale's result), before resizing.
    pub base_width: u32,
    /// See `base_width`.
    pub base_height: u32,
    /// Free for the caller: the CLI records the command line that made the job.
    pub args: Vec<String>,
    /// The first round's style shift, as [`prepare_tiles`] computed it: [`TileJob::write`] writes
    /// it beside the job, so that the processes taking the tiles need not each compute it.
    #[serde(skip)]
    first_shift: Option<Vec<Vec<f32>>>,
}

fn one_round() -> usize {
    1
}

/// How far a tile job is ([`TileJob::progress`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobProgress {
    /// The first round (0-based) with tiles not finished yet; the job's `rounds` when all are.
    pub round: usize,
    /// Those tiles (0-based, within the round).
    pub missing: Vec<usize>,
}

impl TileJob {
    /// The job file in a job folder.
    pub fn file(dir: &Path) -> PathBuf {
        dir.join("job.json")
    }

    /// The store of finished tiles in a job folder.
    pub fn store(&self, dir: &Path) -> Result<TileStore> {
        Ok(TileStore::new(dir.join("tiles"), self.fingerprint_value()?, self.scale))
    }

    fn fingerprint_value(&self) -> Result<u64> {
        u64::from_str_radix(&self.fingerprint, 16).map_err(|_| Error::TileFile {
            path: PathBuf::from("job.json"),
            reason: format!("bad fingerprint `{}`", self.fingerprint),
        })
    }

    /// Writes the job and its base image into `dir` (created if needed).
    pub fn write(&self, dir: &Path, base: &Rgb32FImage) -> Result<()> {
        let io = |e: std::io::Error| Error::Io { action: "cannot write", path: dir.to_path_buf(), error: e };
        std::fs::create_dir_all(dir).map_err(io)?;
        let meta = HashMap::from([
            ("width".to_string(), base.width().to_string()),
            ("height".to_string(), base.height().to_string()),
        ]);
        write_tensor(&dir.join("base.safetensors"), meta, &to_planar(base))?;
        if let Some(shift) = &self.first_shift {
            self.write_shift(dir, 0, shift)?;
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| io(std::io::Error::other(e)))?;
        std::fs::write(Self::file(dir), text + "\n").map_err(io)
    }

    /// Reads the job and its base image from `dir`.
    pub fn read(dir: &Path) -> Result<(TileJob, Rgb32FImage)> {
        let file = Self::file(dir);
        let bad = |reason: String| Error::TileFile { path: file.clone(), reason };
        let text = std::fs::read_to_string(&file).map_err(|e| Error::Io {
            action: "cannot read",
            path: file.clone(),
            error: e,
        })?;
        let job: TileJob = serde_json::from_str(&text).map_err(|e| bad(format!("not a tile job: {e}")))?;
        if job.format != FORMAT {
            return Err(bad(format!("format `{}`, expected {FORMAT}", job.format)));
        }
        if job.rounds == 0 {
            return Err(bad("0 rounds".into()));
        }
        let (_, x) = read_tensor(&dir.join("base.safetensors"))?;
        if x.len() != 3 * job.base_width as usize * job.base_height as usize {
            return Err(bad("its base image does not match".into()));
        }
        let base = to_image(&x, job.base_width, job.base_height);
        Ok((job, base))
    }

    /// The tiles of round `round` (0-based) not finished yet.
    pub fn missing_in(&self, dir: &Path, round: usize) -> Result<Vec<usize>> {
        let store = self.store(dir)?;
        let n = self.plan.len();
        Ok((0..n).filter(|&i| !store.has(round * n + i, self.plan.rect(i))).collect())
    }

    /// The tiles of the last round not finished yet: those the stitch still needs.
    pub fn missing(&self, dir: &Path) -> Result<Vec<usize>> {
        self.missing_in(dir, self.rounds - 1)
    }

    /// The first round with tiles not finished yet, and those tiles.
    pub fn progress(&self, dir: &Path) -> Result<JobProgress> {
        for round in 0..self.rounds {
            let missing = self.missing_in(dir, round)?;
            if !missing.is_empty() {
                return Ok(JobProgress { round, missing });
            }
        }
        Ok(JobProgress { round: self.rounds, missing: Vec::new() })
    }

    /// Writes round `round`'s style shift (see `coupling`: one Gram difference per style term, or
    /// with the Wasserstein style loss the whole image's statistics).
    fn write_shift(&self, dir: &Path, round: usize, shift: &[Vec<f32>]) -> Result<()> {
        let meta = HashMap::from([
            ("fingerprint".to_string(), self.fingerprint.clone()),
            ("round".to_string(), round.to_string()),
            ("sizes".to_string(), sizes(shift.iter().map(Vec::len))),
        ]);
        write_tensor(&shift_path(dir, round), meta, &shift.concat())
    }

    /// Round `round`'s style shift if a process wrote it (`None`: not yet), of `lens` values a term
    /// (`coupling::shift_len`).
    fn read_shift(&self, dir: &Path, round: usize, lens: &[usize]) -> Result<Option<Vec<Vec<f32>>>> {
        let path = shift_path(dir, round);
        if !path.exists() {
            return Ok(None);
        }
        let again = "delete it: the round's processes compute it again";
        let (meta, x) = read_tensor(&path).map_err(|e| match e {
            Error::TileFile { path, reason } => {
                Error::TileFile { path, reason: format!("{reason} ({again})") }
            }
            e => e,
        })?;
        let get = |k: &str| meta.get(k).map(String::as_str).unwrap_or("");
        if get("fingerprint") != self.fingerprint
            || get("round") != round.to_string()
            || get("sizes") != sizes(lens.iter().copied())
            || x.len() != lens.iter().sum::<usize>()
        {
            return Err(Error::TileFile { path, reason: format!("it belongs to another job ({again})") });
        }
        let mut rest = &x[..];
        Ok(Some(
            lens.iter()
                .map(|&n| {
                    let (g, tail) = rest.split_at(n);
                    rest = tail;
                    g.to_vec()
                })
                .collect(),
        ))
    }

    /// The error of a tile of round `round` that is not stored.
    fn unfinished(&self, store: &TileStore, round: usize, i: usize) -> Error {
        let n = self.plan.len();
        let of_round = if self.rounds > 1 {
            format!(" of round {} of {}", round + 1, self.rounds)
        } else {
            String::new()
        };
        Error::TileFile {
            path: store.path(round * n + i),
            reason: format!("tile {i} of {n}{of_round} is not finished"),
        }
    }

    /// The image round `round` (0-based) starts from, at the scale: the job's base resized, then each
    /// round before blended over the image it started from (as the in-process loop does, so to the
    /// same bits); with `round` = `rounds`, the finished image. Every tile of those rounds is needed;
    /// with `near`, only those reaching into the tiles `near`, and the image is right only there (a
    /// process taking a few tiles of a large job reads a few tiles of each round before, not all).
    fn round_start(
        &self,
        base: &Rgb32FImage,
        store: &TileStore,
        round: usize,
        near: Option<&[usize]>,
    ) -> Result<Rgb32FImage> {
        let n = self.plan.len();
        let which: Vec<usize> = match near {
            Some(of) => tiles::reaching(&self.plan, of),
            None => (0..n).collect(),
        };
        let mut start = crate::pixels::resize(base, self.plan.width, self.plan.height);
        for r in 0..round {
            start = tiles::stitch_some(&self.plan, &start, &which, |i| {
                store.read(r * n + i, self.plan.rect(i))?.ok_or_else(|| self.unfinished(store, r, i))
            })?;
        }
        Ok(start)
    }
}

/// The run's plan with its last scale tiled in tiles of `config.tile` (even when the image is no
/// larger: one tile), and the job's fingerprint: the run's, with the tiling of the earlier scales left
/// out (the job's base image is their result, and machines with other memory may tile them otherwise).
fn job_plan<'a>(
    net: &'a Vgg,
    config: &'a StyleConfig,
    content: &Rgb32FImage,
    styles: &[Rgb32FImage],
) -> Result<(Plan<'a>, u64)> {
    let mut plan = Plan::new(net, config, content, styles)?;
    let k = plan.scales.len() - 1;
    let s = plan.scales[k];
    // The job's tiles are those of the tile size alone, whatever this machine would choose on its own
    // (one tile when the image is no larger; on a GPU that needs smaller ones, one line naming its
    // limit), so that every process taking tiles has the same plan.
    let wanted = match (config.tile, &plan.tiles[k]) {
        (Some(tile), _) => Some(TilePlan::new(s.width, s.height, tile, config.tile_overlap)?),
        (None, None) => {
            return Err(Error::Config { what: "tile size", reason: "tile jobs need a tile size".into() });
        }
        (None, Some(_)) => None,
    };
    if let Some(tp) = wanted.filter(|tp| plan.tiles[k].as_ref() != Some(tp)) {
        if let Some(m) = plan.gpu_misfit(&s, Some(tp.tile)) {
            let reason = format!(
                "the job's tiles of {} px at {}x{} do not fit this GPU: {m}; take them on the CPU (--device cpu) or plan the job with a smaller --tile",
                tp.tile, s.width, s.height
            );
            return Err(GpuFault::new(GpuFailure::Limit, reason).into());
        }
        let planned = plan.tiles[k].as_ref().map_or(1, TilePlan::len);
        plan.scales[k].iterations = plan.scales[k].iterations / planned * tp.len();
        plan.tiles[k] = Some(tp);
    }
    let earlier: Vec<Option<TilePlan>> = plan.tiles[..k].iter_mut().map(Option::take).collect();
    let fingerprint = plan.fingerprint(content, styles);
    plan.tiles.splice(..k, earlier);
    Ok((plan, fingerprint))
}

/// Runs every scale but the last of `config` (as [`stylize`](crate::stylize) would) and returns the
/// last scale as a tile job with the image its tiles start from. `config.tile` gives the tile size.
/// Stopped by the observer: an error.
pub fn prepare_tiles(
    net: &Vgg,
    config: &StyleConfig,
    content: &Rgb32FImage,
    styles: &[Rgb32FImage],
    observer: &mut dyn Observer,
) -> Result<(TileJob, Rgb32FImage)> {
    with_run_inputs(config, content, styles, |config, content_in, styles_in| {
        let (mut plan, fingerprint) = job_plan(net, config, content_in, styles_in)?;
        let k = plan.scales.len() - 1;
        let prev = plan.run_scales(content_in, styles_in, k, observer).map_err(|e| plan.explain(e))?;
        if prev.as_ref().is_some_and(|p| p.stop != StopReason::Finished && p.stop != StopReason::Converged) {
            return Err(Error::Config { what: "tile job", reason: "stopped before the tiled scale".into() });
        }
        let base = plan.base_of(k, content_in, styles_in, prev.as_ref());
        let tiles = plan.tiles[k].clone().expect("the last scale is tiled");
        let image = to_image(&base.2, base.0, base.1);
        // The first round's shift, once here rather than in every process taking tiles (the base is
        // a result in 0..1, so the same as they read it back).
        let ts = plan.tiled_setup(k, &tiles, content_in, styles_in, base.clone())?;
        let first_shift = ts.coupled.then(|| plan.style_shift(&ts, &ts.base)).transpose()?;
        drop(ts);
        let mut job = TileJob {
            format: FORMAT.into(),
            fingerprint: format!("{fingerprint:016x}"),
            scale: k,
            rounds: plan.rounds(k, &tiles),
            plan: tiles,
            base_width: base.0,
            base_height: base.1,
            args: Vec::new(),
            first_shift: None,
        };
        job.first_shift = first_shift;
        Ok((job, image))
    })
}

/// Optimises the tiles `indices` of `job` (folder `dir`, base image `base` as [`TileJob::read`] gives
/// them) that are not stored yet, storing each when finished; tiles already stored are skipped
/// ([`Observer::on_tile`] with `skipped`; tiles are counted over the rounds). With `round` (0-based)
/// only that round's tiles, which needs every tile of the rounds before it; without, from the first
/// round with tiles to do on, going on to the next round whenever every tile of one is stored (by
/// this process or others). A coupled tile carries its L-BFGS pairs into its next round in a file
/// beside it, as an in-process run with a checkpoint does. The settings and images must be the
/// job's. Returns how the last tile stopped ([`StopReason::Cancelled`]: the observer stopped it,
/// and it was not stored). A GPU failure or a non-finite loss while the tiles are set up or
/// optimised is an error carrying the last good image ([`Error::last_good_image`]): the image the
/// round started from with every stored tile of the round blended in; the tiles finished before it
/// stay stored.
#[allow(clippy::too_many_arguments)]
pub fn run_tiles(
    net: &Vgg,
    config: &StyleConfig,
    content: &Rgb32FImage,
    styles: &[Rgb32FImage],
    job: &TileJob,
    base: &Rgb32FImage,
    dir: &Path,
    indices: &[usize],
    round: Option<usize>,
    observer: &mut dyn Observer,
) -> Result<StopReason> {
    with_run_inputs(config, content, styles, |config, content_in, styles_in| {
        let (plan, fingerprint) = job_plan(net, config, content_in, styles_in)?;
        let k = plan.scales.len() - 1;
        if format!("{fingerprint:016x}") != job.fingerprint
            || k != job.scale
            || plan.tiles[k].as_ref() != Some(&job.plan)
            || plan.rounds(k, &job.plan) != job.rounds
        {
            return Err(Error::TileFile {
                path: TileJob::file(dir),
                reason: "it was planned with other settings or images (the same images, model and flags are needed)".into(),
            });
        }
        let n = job.plan.len();
        if let Some(&i) = indices.iter().find(|&&i| i >= n) {
            return Err(Error::Config {
                what: "tile index",
                reason: format!("{i} (the job has tiles 0 to {})", n - 1),
            });
        }
        let progress = job.progress(dir)?;
        let rounds = match round {
            Some(r) if r >= job.rounds => {
                return Err(Error::Config {
                    what: "tile round",
                    reason: format!("{} (the job has {} round{})", r + 1, job.rounds, plural(job.rounds)),
                });
            }
            Some(r) if r > progress.round => {
                return Err(Error::Config {
                    what: "tile round",
                    reason: format!(
                        "round {} needs every tile of round {} first: {} of {n} are not finished (the first is {})",
                        r + 1,
                        progress.round + 1,
                        progress.missing.len(),
                        progress.missing[0]
                    ),
                });
            }
            Some(r) => r..r + 1,
            None => progress.round..job.rounds,
        };
        let store = job.store(dir)?;
        // A GPU failure (or a non-finite loss) from here on stops the job as it stops a run: one
        // line, with the last good image, the round's start with every finished tile blended in.
        let keep = |e: Error, r: usize| {
            let e = plan.explain(e);
            if !matches!(e, Error::Gpu { .. } | Error::NonFinite { .. } | Error::CheckpointWrite { .. }) {
                return e;
            }
            match finished_so_far(job, base, &store, r) {
                Ok(image) => e.with_last_good(image),
                Err(_) => e,
            }
        };
        // The tiles' setup, made at the first tile to optimise, and the round its base is the start of.
        let mut tiled = None;
        let mut base_round = 0;
        let mut carry = Carry {
            fingerprint,
            gpu: Default::default(),
            total: 0,
            start: Instant::now(),
            done: 0,
            weights: Weights::of(config),
            announce: true,
        };
        // A round's shift: written by the process that finished the round before (the first by
        // `plan`), else computed here from the whole image's start (the tiles' base holds only their
        // part of it after the first round) and written for the others.
        let shift_of = |ts: &TiledScale, r: usize| -> Result<Option<Vec<Vec<f32>>>> {
            if !ts.coupled {
                return Ok(None);
            }
            let lens: Vec<usize> = ts.style.iter().map(super::coupling::shift_len).collect();
            if let Some(shift) = job.read_shift(dir, r, &lens)? {
                return Ok(Some(shift));
            }
            let whole;
            let start = if r == 0 {
                &ts.base
            } else {
                whole = job.round_start(base, &store, r, None)?;
                &whole
            };
            let shift = plan.style_shift(ts, start)?;
            job.write_shift(dir, r, &shift)?;
            Ok(Some(shift))
        };
        let count = job.rounds * n;
        let mut stop = StopReason::Finished;
        for r in rounds {
            let todo: Vec<usize> =
                indices.iter().copied().filter(|&i| !store.has(r * n + i, job.plan.rect(i))).collect();
            for &i in indices.iter().filter(|i| !todo.contains(i)) {
                observer.on_tile(r * n + i, count, true);
            }
            if !todo.is_empty() {
                if tiled.is_none() {
                    let base_small = Arc::new((base.width(), base.height(), to_planar(base)));
                    let ts = plan
                        .tiled_setup(k, &job.plan, content_in, styles_in, base_small)
                        .map_err(|e| keep(e, r))?;
                    let carried = plan.carried(&ts, Some(store.clone()), fingerprint).only_on_disk();
                    tiled = Some((ts, carried));
                }
                let (ts, carried) = tiled.as_mut().expect("set up above");
                if r != base_round {
                    ts.base = job.round_start(base, &store, r, Some(&todo))?;
                    base_round = r;
                }
                let shift = shift_of(ts, r)
                    .and_then(|v| v.map(|v| RoundShift::new(&ts.style, v)).transpose())
                    .map_err(|e| keep(e, r))?;
                carry.total = carry.done + todo.len() * ts.round_iterations(r);
                // The folder a stopped tile's state goes to (the tiles go there too).
                store.create_dir()?;
                for i in todo {
                    let (g, rect) = (r * n + i, job.plan.rect(i));
                    // A tile another process stopped goes on from its state (which holds its L-BFGS
                    // pairs, so the round's carried ones are not needed), as a resumed run's does.
                    let partial = store.partial(g);
                    let resumed = plan.partial_tile(&partial, fingerprint, k, rect, carry.done);
                    let warm = carried.starting(g, rect, resumed.is_some())?;
                    let (res, opt) = plan
                        .optimise_tile(
                            ts,
                            r,
                            i,
                            shift.as_ref(),
                            resumed,
                            warm,
                            &mut carry,
                            observer,
                            Some(&partial),
                        )
                        .map_err(|e| keep(e, r))?;
                    stop = res.stop;
                    if matches!(stop, StopReason::Cancelled | StopReason::TimeLimit) {
                        return Ok(stop);
                    }
                    let x = to_planar(&res.image);
                    carried.finished(g, rect, opt, x.clone())?;
                    store.write(g, rect, &x)?;
                    let _ = std::fs::remove_file(&partial);
                    carried.stored(g);
                    observer.on_tile(g, count, false);
                }
            }
            // The next round starts from every tile of this one: other processes may still be on theirs.
            if !job.missing_in(dir, r)?.is_empty() {
                break;
            }
            // This process finished the round: it writes the next one's shift for the processes
            // that take its tiles (unless one that finished it too already has).
            if let Some((ts, _)) = tiled.as_ref().filter(|(ts, _)| ts.coupled && r + 1 < job.rounds) {
                shift_of(ts, r + 1).map_err(|e| keep(e, r + 1))?;
            }
        }
        Ok(stop)
    })
}

/// The file of round `round`'s style shift in a job folder.
fn shift_path(dir: &Path, round: usize) -> PathBuf {
    dir.join(format!("round-{}.shift.safetensors", round + 1))
}

/// `lens` as the shift file records them.
fn sizes(lens: impl Iterator<Item = usize>) -> String {
    lens.map(|n| n.to_string()).collect::<Vec<_>>().join(",")
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The image of tile job `job` so far in round `round`: the image the round started from with every
/// stored tile of the round blended in (once all are stored, the next round's start).
fn finished_so_far(
    job: &TileJob,
    base: &Rgb32FImage,
    store: &TileStore,
    round: usize,
) -> Result<Rgb32FImage> {
    let start = job.round_start(base, store, round, None)?;
    let n = job.plan.len();
    let mut out = start.clone();
    for i in 0..n {
        if let Some(x) = store.read(round * n + i, job.plan.rect(i))? {
            tiles::blend_tile(&mut out, &start, &job.plan, i, &x);
        }
    }
    tiles::finish(&mut out);
    Ok(out)
}

/// The image of a finished tile job: every tile of `job` (folder `dir`) blended over its base, then the
/// colour options of `config` applied as a run applies them (`content`: the content image).
pub fn stitch_tiles(
    config: &StyleConfig,
    content: &Rgb32FImage,
    job: &TileJob,
    base: &Rgb32FImage,
    dir: &Path,
) -> Result<Rgb32FImage> {
    let store = job.store(dir)?;
    let mut image = job.round_start(base, &store, job.rounds, None)?;
    if matches!(config.color, ColorMode::PreserveContent | ColorMode::Luminance) {
        image = preserve_colors(&image, content);
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_start_near_some_tiles_reads_only_the_tiles_reaching_them() {
        // Three tiles in a row: the first and the last do not meet.
        let plan = TilePlan::new(160, 16, 64, 0).unwrap();
        assert_eq!(plan.len(), 3);
        assert_eq!(tiles::reaching(&plan, &[0]), [0, 1]);
        let job = TileJob {
            format: FORMAT.into(),
            fingerprint: "00000000000000ab".into(),
            scale: 0,
            plan: plan.clone(),
            rounds: 3,
            base_width: 80,
            base_height: 8,
            args: Vec::new(),
            first_shift: None,
        };
        let dir = tempfile::tempdir().unwrap();
        let base = to_image(&(0..3 * 80 * 8).map(|v| (v % 97) as f32 / 97.0).collect::<Vec<_>>(), 80, 8);
        let store = job.store(dir.path()).unwrap();
        for g in 0..2 * plan.len() {
            let rect = plan.rect(g % plan.len());
            let x: Vec<f32> =
                (0..3 * rect.pixels()).map(|v| ((v * 7 + g as u64 * 13) % 101) as f32 / 101.0).collect();
            store.write(g, rect, &x).unwrap();
        }
        let whole = job.round_start(&base, &store, 2, None).unwrap();
        // Without the last tile's files, the image near the first tile is the same, bit for bit.
        std::fs::remove_file(store.path(2)).unwrap();
        std::fs::remove_file(store.path(5)).unwrap();
        let near = job.round_start(&base, &store, 2, Some(&[0])).unwrap();
        let r = plan.rect(0);
        let crop =
            |img: &Rgb32FImage| tiles::crop_planar(img, r).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(crop(&near), crop(&whole));
        assert!(job.round_start(&base, &store, 2, None).is_err(), "the whole image needs every tile");
    }
}
