//! A scale optimised in tiles: when a scale is tiled (the memory budget or the tile size), and the
//! loop over its tiles: each tile starts from its crop of the upscaled previous scale, has its own
//! content targets, masks and optimiser and the scale's global style targets, and is blended into
//! the output when finished. Checkpoints record the tile being optimised; finished tiles are stored
//! beside them, so a resumed run skips them.

use std::path::Path;
use std::sync::Arc;

use image::Rgb32FImage;

use super::coupling::RoundShift;
use super::scale::{ScaleRun, Steerable};
use super::{Plan, Stylized, keep_unmasked};
use crate::checkpoint::{GpuPlan, OptState, State, TileState};
use crate::error::{Error, GpuFailure, GpuFault, Result};
use crate::observer::{Losses, Observer, Scale, StopReason, Weights};
use crate::pixels::{resize, to_image, to_planar};
use crate::tiles::{self, TilePlan, TileStore, estimate_peak, estimate_tiled_peak, fmt_bytes, min_tile};

/// A GPU limit that stops a run before it starts: one line naming it.
fn gpu_limit(reason: String) -> Error {
    GpuFault::new(GpuFailure::Limit, reason).into()
}

/// What the loop over the scales carries from one scale to the next.
pub(super) struct Carry {
    pub(super) fingerprint: u64,
    /// What the tiles followed on the GPU so far ([`State::gpu`]).
    pub(super) gpu: GpuPlan,
    /// Iterations planned, all scales together.
    pub(super) total: usize,
    pub(super) start: std::time::Instant,
    /// Iterations done so far.
    pub(super) done: usize,
    /// The weights in force.
    pub(super) weights: Weights,
    /// Call `on_start` at the next scale's first evaluation.
    pub(super) announce: bool,
}

impl Plan<'_> {
    /// The tile plan of scale `s`, or `None` when it is optimised whole: tiled when `config.tile` is
    /// smaller than its longest side, or when its whole-image peak would exceed `config.max_memory`,
    /// or, on a GPU, when the whole image does not fit the adapter's limits or `config.max_gpu_memory`
    /// (then in the largest tiles that fit).
    pub(super) fn tiling(&self, s: &Scale) -> Result<Option<TilePlan>> {
        let (c, net) = (self.config, self.net);
        let (w, h) = (s.width, s.height);
        let tile = match c.tile {
            Some(t) if s.long_side() > t => {
                if let Some(b) = c.max_memory
                    && estimate_tiled_peak(net, c, w, h, t) > b
                {
                    return Err(Error::Config {
                        what: "memory budget",
                        reason: format!(
                            "{} is less than tiles of {t} px need at {w}x{h} (about {}): give a smaller tile or more memory",
                            fmt_bytes(b),
                            fmt_bytes(estimate_tiled_peak(net, c, w, h, t))
                        ),
                    });
                }
                if let Some(m) = self.gpu_misfit(s, Some(t)) {
                    return Err(gpu_limit(format!("tiles of {t} px at {w}x{h}: {m}; give a smaller tile")));
                }
                t
            }
            // An explicit tile no smaller than the scale leaves it whole on the CPU.
            _ if (c.tile.is_some() || c.max_memory.is_none_or(|b| estimate_peak(net, c, w, h) <= b))
                && self.gpu_misfit(s, None).is_none() =>
            {
                return Ok(None);
            }
            _ => self.largest_tile(s)?,
        };
        if self.pools > tiles::TILE_ALIGN.trailing_zeros() {
            return Err(Error::Config {
                what: "tile size",
                reason: format!(
                    "tiles need layers after at most 4 poolings; the deepest layer used has {}",
                    self.pools
                ),
            });
        }
        TilePlan::new(w, h, tile, c.tile_overlap).map(Some)
    }

    /// Why scale `s` does not fit the run's GPU whole (`tile`: `None`) or in tiles of side `tile` (at
    /// most `tile + 15` px); `None` when it fits, or when the run is on the CPU.
    pub(super) fn gpu_misfit(&self, s: &Scale, tile: Option<u32>) -> Option<tiles::Misfit> {
        let limits = self.gpu_limits()?;
        let side = |v: u32| tile.map_or(v, |t| v.min(t + tiles::TILE_ALIGN - 1));
        tiles::objective_misfit(self.net, self.config, side(s.width), side(s.height), &limits)
    }

    /// The largest tile (a multiple of 16 pixels) whose tiled scale fits in `config.max_memory` and,
    /// on a GPU, its limits and `config.max_gpu_memory`.
    fn largest_tile(&self, s: &Scale) -> Result<u32> {
        let (c, net) = (self.config, self.net);
        let cpu_fits =
            |t| c.max_memory.is_none_or(|b| estimate_tiled_peak(net, c, s.width, s.height, t) <= b);
        let least = min_tile(c.tile_overlap).div_ceil(tiles::TILE_ALIGN) * tiles::TILE_ALIGN;
        let mut t = s.long_side() / tiles::TILE_ALIGN * tiles::TILE_ALIGN;
        while t >= least {
            if cpu_fits(t) && self.gpu_misfit(s, Some(t)).is_none() {
                return Ok(t);
            }
            t -= tiles::TILE_ALIGN;
        }
        if let Some(m) = self.gpu_misfit(s, Some(least)) {
            return Err(gpu_limit(format!(
                "even the smallest tiles ({least} px) do not fit the GPU at {}x{}: {m}",
                s.width, s.height
            )));
        }
        let budget = c.max_memory.unwrap_or(0);
        Err(Error::Config {
            what: "memory budget",
            reason: format!(
                "{} is less than even the smallest tiles ({least} px) need at {}x{} (about {})",
                fmt_bytes(budget),
                s.width,
                s.height,
                fmt_bytes(estimate_tiled_peak(net, c, s.width, s.height, least))
            ),
        })
    }

    /// Scale `k` ready to be optimised tile by tile in `plan`, starting from `base_small` (the previous
    /// scale's result, or the initial image: width, height, planar RGB), which is resized to the scale.
    pub(super) fn tiled_setup(
        &self,
        k: usize,
        plan: &TilePlan,
        content: &Rgb32FImage,
        styles: &[Rgb32FImage],
        base_small: Arc<(u32, u32, Vec<f32>)>,
    ) -> Result<TiledScale> {
        let Scale { width, height, iterations } = self.scales[k];
        let base = resize(&to_image(&base_small.2, base_small.0, base_small.1), width, height);
        let long = self.scales[k].long_side();
        let per_tile = iterations / plan.len();
        // One tile is the whole image: nothing to couple.
        let coupled = self.coupled() && plan.len() > 1;
        let rounds = self.rounds(k, plan);
        Ok(TiledScale {
            k,
            plan: plan.clone(),
            base,
            // Kept only for checkpoints.
            base_small: self.config.checkpoint.is_some().then_some(base_small),
            inputs: self.inputs_at(content, long),
            style: self.style_targets(styles, long, Some(plan.tile))?,
            per_tile,
            rounds,
            coupled,
        })
    }

    /// The image a tiled scale `k` starts from, before resizing to the scale: `prev` (the previous
    /// scale's result), else the initial image.
    pub(super) fn base_of(
        &self,
        k: usize,
        content: &Rgb32FImage,
        styles: &[Rgb32FImage],
        prev: Option<&Stylized>,
    ) -> Arc<(u32, u32, Vec<f32>)> {
        match prev {
            Some(p) => Arc::new((p.image.width(), p.image.height(), to_planar(&p.image))),
            None => {
                let Scale { width, height, .. } = self.scales[k];
                Arc::new((width, height, self.initial_pixels(k, content, styles)))
            }
        }
    }

    /// The state of a tile that a tile job stopped before finishing it, from its partial checkpoint
    /// `path` ([`TileStore::partial`]), if there is one of this job's scale `k` and of the tile's
    /// `rect`; its iterations are counted on from `done`. One that cannot be read (damaged, or of
    /// another version of impasto) is removed, and the tile starts over.
    pub(super) fn partial_tile(
        &self,
        path: &Path,
        fingerprint: u64,
        k: usize,
        rect: tiles::Rect,
        done: usize,
    ) -> Option<State> {
        if !path.is_file() {
            return None;
        }
        match self.read_state(path) {
            Ok(mut s)
                if s.fingerprint == fingerprint
                    && s.scale == k
                    && s.tile.is_none()
                    && (s.width, s.height) == (rect.width, rect.height) =>
            {
                s.done = done + s.scale_done;
                Some(s)
            }
            _ => {
                let _ = std::fs::remove_file(path);
                None
            }
        }
    }

    /// Optimises tile `i` of `ts` in round `round` (continuing `resumed` when given), starting from
    /// its crop of `ts.base` (the image the round starts from) and held to the scale's style targets,
    /// or in a coupled round (`shift`: the round's [`Plan::style_shift`]) to the tile's own
    /// ([`Plan::tile_targets`]). A fresh tile starts with `warm` (its optimiser from the round
    /// before, see `curvature`), else a new one. Its state is written to `checkpoint` (the run's, or
    /// a tile job's partial tile) as [`ScaleRun::checkpoint`] says. Returns its result (planar RGB
    /// 0..1 of the tile's rectangle), losses and how it stopped, and the optimiser's final state.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn optimise_tile(
        &self,
        ts: &TiledScale,
        round: usize,
        i: usize,
        shift: Option<&RoundShift>,
        resumed: Option<State>,
        warm: Option<OptState>,
        carry: &mut Carry,
        observer: &mut dyn Observer,
        checkpoint: Option<&Path>,
    ) -> Result<(Stylized, OptState)> {
        let n = ts.plan.len();
        let (g, count) = (round * n + i, ts.rounds * n);
        let rect = ts.plan.rect(i);
        let style = self.tile_targets(ts, i, shift)?;
        let mut objective = Steerable::new(self.objective_on(&ts.inputs, rect, &style)?, self.config);
        objective.set(carry.weights);
        let state = match resumed {
            Some(s) => s,
            None => {
                let mut x = tiles::crop_planar(&ts.base, rect);
                let content_px = tiles::crop_planar(&ts.inputs.content, rect);
                keep_unmasked(&mut x, &content_px, objective.objective.pixel_mask.as_deref());
                let opt = warm.unwrap_or_else(|| self.fresh_optimiser(&x));
                let tile = ts.base_small.as_ref().map(|b| TileState { index: g, count, base: b.clone() });
                State {
                    gpu: carry.gpu.clone(),
                    fingerprint: carry.fingerprint,
                    scale: ts.k,
                    scale_done: 0,
                    done: carry.done,
                    width: rect.width,
                    height: rect.height,
                    x,
                    opt,
                    tile,
                }
            }
        };
        let run = ScaleRun {
            config: self.config,
            scales: &self.scales,
            total: carry.total,
            start: carry.start,
            last: false,
            tiles: &self.tiles,
            tile: Some((g, count)),
            checkpoint,
        };
        let iterations = ts.round_iterations(round);
        let (r, opt) = run.optimise(&mut objective, state, iterations, observer, &mut carry.announce)?;
        // The next tile (mostly of the same size) and its target passes take these buffers again.
        self.pool.absorb(std::mem::take(&mut objective.objective.buffers));
        carry.weights = objective.weights;
        carry.done = r.iterations;
        Ok((r, opt))
    }

    /// Optimises scale `k` tile by tile, in `ts.rounds` rounds, starting from `prev` (the previous
    /// scale's result; `None`: the initial image), or continuing `resumed` (a checkpoint inside this
    /// scale: the tiles finished before it are read back from beside it and blended again).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn tiled_scale(
        &self,
        k: usize,
        plan: &TilePlan,
        content: &Rgb32FImage,
        styles: &[Rgb32FImage],
        prev: Option<&Stylized>,
        resumed: Option<State>,
        carry: &mut Carry,
        observer: &mut dyn Observer,
    ) -> Result<Stylized> {
        let base_small = match &resumed {
            Some(State { tile: Some(t), .. }) => t.base.clone(),
            _ => self.base_of(k, content, styles, prev),
        };
        let mut ts = self.tiled_setup(k, plan, content, styles, base_small)?;
        let n = plan.len();
        let count = ts.rounds * n;
        let store = self
            .config
            .checkpoint
            .as_ref()
            .map(|p| TileStore::new(TileStore::beside(p), carry.fingerprint, k));
        // Each round starts from `ts.base`: the upscaled previous scale, then (no longer needed) the
        // result of the round before, copied into the same buffer.
        let mut out = ts.base.clone();
        let mut resumed = resumed;
        let first = resumed.as_ref().and_then(|s| s.tile.as_ref()).map_or(0, |t| t.index);
        let mut carried = self.carried(&ts, store.clone(), carry.fingerprint);
        if first > 0 {
            let path = self.config.resume.as_deref().unwrap_or(std::path::Path::new(""));
            let from = TileStore::new(TileStore::beside(path), carry.fingerprint, k);
            for g in 0..first {
                let (round, i) = (g / n, g % n);
                if i == 0 && round > 0 {
                    tiles::finish(&mut out);
                    ts.base.copy_from_slice(&out);
                }
                let rect = plan.rect(i);
                let x = from.read(g, rect)?.ok_or_else(|| Error::Checkpoint {
                    path: from.path(g),
                    reason: "missing: the checkpoint's finished tiles are kept beside it".into(),
                })?;
                if let Some(s) = &store {
                    s.write(g, rect, &x)?;
                }
                tiles::blend_tile(&mut out, &ts.base, plan, i, &x);
                carried.replayed(&from, g, first, rect, x)?;
                observer.on_tile(g, count, true);
            }
        }
        let (mut sum, mut pixels) = (Losses::default(), 0.0f64);
        let mut stop = StopReason::Finished;
        let mut shift = None;
        for g in first..count {
            let (round, i) = (g / n, g % n);
            if i == 0 && round > 0 {
                tiles::finish(&mut out);
                ts.base.copy_from_slice(&out);
                (sum, pixels) = (Losses::default(), 0.0);
            }
            if shift.is_none() || i == 0 {
                shift = ts
                    .coupled
                    .then(|| RoundShift::new(&ts.style, self.style_shift(&ts, &ts.base)?))
                    .transpose()?;
            }
            let rect = plan.rect(i);
            let warm = carried.starting(g, rect, resumed.is_some())?;
            let tile = self.optimise_tile(
                &ts,
                round,
                i,
                shift.as_ref(),
                resumed.take(),
                warm,
                carry,
                observer,
                self.config.checkpoint.as_deref(),
            );
            let (r, opt) = match tile {
                Ok(r) => r,
                // The tiles blended so far are the last good image, not the tile's own pixels that
                // a non-finite loss or an unwritable checkpoint carries (before the first tile, a
                // GPU failure building its objective keeps the previous scale's result: `run_scales`).
                Err(e) if g > 0 || matches!(e, Error::NonFinite { .. } | Error::CheckpointWrite { .. }) => {
                    tiles::finish(&mut out);
                    return Err(e.with_last_good(out));
                }
                Err(e) => return Err(e),
            };
            stop = r.stop;
            if matches!(stop, StopReason::Cancelled | StopReason::TimeLimit) {
                break;
            }
            let x = to_planar(&r.image);
            carried.finished(g, rect, opt, x.clone())?;
            if let Some(s) = &store {
                s.write(g, rect, &x)?;
            }
            carried.stored(g);
            tiles::blend_tile(&mut out, &ts.base, plan, i, &x);
            let p = rect.pixels() as f64;
            let l = r.losses;
            sum = Losses {
                content: sum.content + p * l.content,
                style: sum.style + p * l.style,
                tv: sum.tv + p * l.tv,
                temporal: sum.temporal + p * l.temporal,
            };
            pixels += p;
            observer.on_tile(g, count, false);
            if g + 1 == count && k + 1 == self.scales.len() {
                self.checkpoint_finished(&ts, r, carry, observer)?;
            }
        }
        // The next scale runs at another size: nothing here fits it.
        self.pool.clear();
        tiles::finish(&mut out);
        let p = pixels.max(1.0);
        let losses = Losses {
            content: sum.content / p,
            style: sum.style / p,
            tv: sum.tv / p,
            temporal: sum.temporal / p,
        };
        Ok(Stylized { image: out, losses, iterations: carry.done, stop })
    }
}

impl Plan<'_> {
    /// The checkpoint of a finished tiled last scale: every tile is stored beside it, so a run whose
    /// image could not be written is resumed into that image without optimising (or, with more
    /// iterations, nothing more: the tiles are done). `last`: the last tile's result.
    fn checkpoint_finished(
        &self,
        ts: &TiledScale,
        last: Stylized,
        carry: &Carry,
        observer: &mut dyn Observer,
    ) -> Result<()> {
        let (Some(path), Some(base)) = (&self.config.checkpoint, &ts.base_small) else { return Ok(()) };
        let count = ts.rounds * ts.plan.len();
        let x = to_planar(&last.image);
        let state = State {
            gpu: carry.gpu.clone(),
            fingerprint: carry.fingerprint,
            scale: ts.k,
            scale_done: ts.round_iterations(ts.rounds - 1),
            done: carry.done,
            width: last.image.width(),
            height: last.image.height(),
            opt: self.fresh_optimiser(&x),
            x,
            tile: Some(TileState { index: count, count, base: base.clone() }),
        };
        crate::checkpoint::write(path, &state)
            .map_err(|e| crate::checkpoint::unwritten(e, || last.image.clone()))?;
        observer.on_checkpoint(carry.done, path);
        Ok(())
    }
}

/// One tiled scale, ready to optimise any of its tiles (the in-process loop and tile jobs share it).
pub(super) struct TiledScale {
    /// The scale.
    pub(super) k: usize,
    pub(super) plan: TilePlan,
    /// The image the tiles start from, at the scale.
    pub(super) base: Rgb32FImage,
    /// The same before resizing, for checkpoints (`None` without checkpoints).
    base_small: Option<Arc<(u32, u32, Vec<f32>)>>,
    pub(super) inputs: super::inputs::ScaleInputs,
    /// The scale's style targets (the style images' Grams).
    pub(super) style: Vec<crate::loss::StyleTarget>,
    /// Iterations of each tile, all rounds together.
    pub(super) per_tile: usize,
    /// Rounds over the tiles (at least 1).
    pub(super) rounds: usize,
    /// Whether the tiles are coupled through the whole image's Grams (see `coupling`).
    pub(super) coupled: bool,
}

impl TiledScale {
    /// Iterations of each tile in round `round`: the tile's iterations spread over the rounds, the
    /// first rounds taking one more when they do not divide evenly.
    pub(super) fn round_iterations(&self, round: usize) -> usize {
        self.per_tile / self.rounds + usize::from(round < self.per_tile % self.rounds)
    }
}
