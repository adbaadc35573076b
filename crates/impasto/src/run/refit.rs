//! A scale that runs out of GPU memory starts again in smaller tiles: the budget the failed
//! allocation teaches (the network's weights and half of the rest of what was tried, else what the
//! smallest tiles hold), the plan re-made under it from that scale on, and the same plan re-made on
//! `--resume` from what a checkpoint records (those budgets, and the memory the driver left the run
//! when it was planned, which other programs change). The estimate of what a size holds on the GPU (`tiles::estimate_gpu_peak`)
//! is the driver's figure to within its own padding; where the driver reports no memory (Metal,
//! DirectX 12, integrated adapters) or other programs hold some, the first allocation that fails
//! is how a run learns what it has.

use image::Rgb32FImage;

use super::{Plan, Stylized};
use crate::checkpoint::GpuPlan;
use crate::error::{Error, Result};
use crate::observer::{Losses, Observer, Replan, StopReason};
use crate::tiles::{self, GpuLimits, TilePlan};

impl Plan<'_> {
    /// The limits of the run's GPU as its plan follows them; `None` on the CPU.
    pub(super) fn gpu_limits(&self) -> Option<GpuLimits> {
        self.limits.clone()
    }

    /// The budgets to start scale `k` again under after `e` stopped it, the first that gives a plan
    /// first: where `e` is a GPU allocation that did not fit, the network's weights and half of the
    /// rest of what scale `k` (whole, or one of its tiles) was estimated to hold, then what its
    /// smallest tiles hold, where that is less than what was tried. None for any other error, or
    /// with `--tile` (the user's tile size stands).
    fn refit_budgets(&self, k: usize, e: &Error) -> Vec<u64> {
        let retiles = self.config.tile.is_none();
        let Some(limits) = self.gpu_limits().filter(|_| e.is_gpu_out_of_memory() && retiles) else {
            return Vec::new();
        };
        let s = self.scales[k];
        let holds = |tile: Option<u32>| {
            let side = |v: u32| tile.map_or(v, |t| v.min(t + tiles::TILE_ALIGN - 1));
            tiles::estimate_gpu_peak(self.net, self.config, side(s.width), side(s.height), &limits)
        };
        let tried = holds(self.tiles[k].as_ref().map(|t| t.tile));
        let weights = tiles::gpu_weight_bytes(self.net, limits.tensor);
        let least = tiles::min_tile(self.config.tile_overlap).div_ceil(tiles::TILE_ALIGN) * tiles::TILE_ALIGN;
        let halved = (tried > weights).then(|| weights + (tried - weights) / 2);
        let smallest = Some(holds(Some(least))).filter(|&b| b < tried);
        halved.into_iter().chain(smallest).collect()
    }

    /// What the plan follows on the GPU besides the settings, for checkpoints.
    pub(super) fn gpu_plan(&self) -> GpuPlan {
        GpuPlan { available: self.limits.as_ref().and_then(|l| l.available), refits: self.refits.clone() }
    }

    /// Re-makes the plan of scales `k..` under `budget` ([`GpuLimits::fitted`]).
    pub(super) fn refit(&mut self, k: usize, budget: u64) -> Result<()> {
        self.replan_under(k, |l| l.fitted = Some(l.fitted.map_or(budget, |f| f.min(budget))))?;
        self.refits.push((k, budget));
        Ok(())
    }

    /// Makes the plan the one `gpu` (a checkpoint's) followed: the memory its driver left the run,
    /// then each budget learned, from its scale on.
    pub(super) fn follow(&mut self, gpu: &GpuPlan) -> Result<()> {
        if self.limits.as_ref().is_some_and(|l| l.available != gpu.available) {
            self.replan_under(0, |l| l.available = gpu.available)?;
        }
        for &(k, budget) in &gpu.refits {
            if k >= self.scales.len() {
                return Err(Error::Config { what: "checkpoint", reason: format!("no scale {k}") });
            }
            self.refit(k, budget)?;
        }
        Ok(())
    }

    /// Re-makes the tiles of scales `k..` under the GPU limits as `change` leaves them, and so their
    /// iterations (a tiled scale's are its tiles' together). An error (even the smallest tiles do
    /// not fit) changes nothing.
    fn replan_under(&mut self, k: usize, change: impl FnOnce(&mut GpuLimits)) -> Result<()> {
        let Some(before) = self.limits.clone() else { return Ok(()) };
        let mut limits = before.clone();
        change(&mut limits);
        self.limits = Some(limits);
        let planned: Result<Vec<Option<TilePlan>>> =
            self.scales[k..].iter().map(|s| self.tiling(s)).collect();
        let planned = planned.inspect_err(|_| self.limits = Some(before))?;
        for (j, tiles) in (k..).zip(planned) {
            let per = self.scales[j].iterations / self.tiles[j].as_ref().map_or(1, TilePlan::len);
            self.scales[j].iterations = per * tiles.as_ref().map_or(1, TilePlan::len);
            self.tiles[j] = tiles;
        }
        Ok(())
    }

    /// After `e` stopped scale `k`, re-plans the run under the budget `e` teaches and tells
    /// `observer`; `e`'s last good image (at the scale), to start the scale from again, if it has
    /// one. `Err(e)` when `e` is no allocation that smaller tiles could avoid, or when even the
    /// smallest tiles would not fit.
    pub(super) fn replan(
        &mut self,
        k: usize,
        e: Error,
        observer: &mut dyn Observer,
    ) -> std::result::Result<Option<Rgb32FImage>, Error> {
        let Some(budget) = self.refit_budgets(k, &e).into_iter().find(|&b| self.refit(k, b).is_ok()) else {
            return Err(e);
        };
        observer.on_replan(&Replan {
            scale: k,
            reason: e.to_string(),
            budget,
            iterations: self.scales.iter().map(|s| s.iterations).sum(),
            scales: self.scales.clone(),
            tiles: self.tiles.clone(),
        });
        Ok(e.last_good_image().cloned())
    }
}

impl Stylized {
    /// `image` as the start of a scale that starts again after `done` iterations.
    pub(super) fn start(image: Rgb32FImage, done: usize) -> Stylized {
        Stylized { image, losses: Losses::default(), iterations: done, stop: StopReason::Finished }
    }
}
