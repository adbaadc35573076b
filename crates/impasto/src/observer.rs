//! Progress reporting, cancellation and steering: the [`Observer`] trait every client (CLI, tests, web UI)
//! implements.

use std::ops::ControlFlow;
use std::time::Duration;

/// The loss terms at one evaluation, already multiplied by their weights.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Losses {
    /// alpha · content loss.
    pub content: f64,
    /// beta · style loss.
    pub style: f64,
    /// TV weight · total variation.
    pub tv: f64,
    /// Video only: the temporal weight · the temporal loss (0 for a single image).
    pub temporal: f64,
}

impl Losses {
    /// The total loss that is minimised.
    pub fn total(&self) -> f64 {
        self.content + self.style + self.tv + self.temporal
    }
}

/// The three loss weights, as given to [`Observer::steer`] to change them during a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    /// Weight of the content loss (alpha, [`StyleConfig::content_weight`](crate::StyleConfig::content_weight)).
    pub content: f32,
    /// Weight of the style loss (beta, [`StyleConfig::style_weight`](crate::StyleConfig::style_weight)).
    pub style: f32,
    /// Weight of the total-variation loss ([`StyleConfig::tv_weight`](crate::StyleConfig::tv_weight)).
    pub tv: f32,
}

impl Weights {
    /// The weights a config starts with.
    pub fn of(config: &crate::StyleConfig) -> Weights {
        Weights { content: config.content_weight, style: config.style_weight, tv: config.tv_weight }
    }
}

/// Facts about a run, given once before the first iteration.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Width in pixels of the image the run starts with: the first scale's (a resumed run's, the
    /// scale it goes on from), the whole image even where that scale is optimised in tiles.
    pub width: u32,
    /// Height in pixels of that image.
    pub height: u32,
    /// Iterations planned, all scales together.
    pub iterations: usize,
    /// The multi-scale schedule, smallest scale first (one entry for a single-scale run).
    pub scales: Vec<Scale>,
    /// The tiles of each scale, in the order of `scales`: `None` where the scale is optimised whole,
    /// else the plan of the tiles it is optimised in, one after the other (see
    /// [`StyleConfig::tile`](crate::StyleConfig::tile)). Empty means all whole.
    pub tiles: Vec<Option<crate::tiles::TilePlan>>,
    /// The losses of the initial image at the first scale.
    pub initial: Losses,
}

/// One scale of a run's schedule: the image size it is optimised at and its iterations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    /// Image width at this scale.
    pub width: u32,
    /// Image height at this scale.
    pub height: u32,
    /// Iterations planned at this scale: on a tiled scale, those of all its tiles together (each tile
    /// gets the same share).
    pub iterations: usize,
}

impl Scale {
    /// The longest side of the image at this scale.
    pub fn long_side(&self) -> u32 {
        self.width.max(self.height)
    }

    /// Pixels at this scale.
    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }
}

/// One finished optimiser iteration.
#[derive(Debug)]
pub struct Step<'a> {
    /// 1-based iteration number, counted across all scales.
    pub iteration: usize,
    /// Iterations planned, all scales together.
    pub iterations: usize,
    /// 0-based index of the current scale.
    pub scale: usize,
    /// Number of scales.
    pub scales: usize,
    /// The losses at the current image.
    pub losses: Losses,
    /// Time since the optimisation started.
    pub elapsed: Duration,
    pub(crate) pixels: &'a [f32],
    /// Width of the current scale's image (of the tile, on a tiled scale).
    pub width: u32,
    /// Height of the current scale's image.
    pub height: u32,
    /// On a tiled scale, (0-based tile, tiles): the image is that tile's (`width`×`height` are the
    /// tile's size). Tiles count on over the scale's rounds (see
    /// [`StyleConfig::tile_rounds`](crate::StyleConfig::tile_rounds)): tile `i` of a plan of `n` in
    /// round `r` is `r·n + i` of `rounds·n`.
    pub tile: Option<(usize, usize)>,
}

impl Step<'_> {
    /// The current image (RGB, values clamped to 0..1). Costs a copy: call it only when saving.
    pub fn image(&self) -> image::Rgb32FImage {
        crate::pixels::to_image(self.pixels, self.width, self.height)
    }
}

/// Receives progress, may stop the run and may change its loss weights. All methods have defaults that
/// do nothing.
///
/// An observer may also block inside [`on_step`](Observer::on_step) to pause the run (the web UI does):
/// nothing happens until it returns. A [`StyleConfig::time_limit`](crate::StyleConfig::time_limit)
/// counts wall-clock time, pauses included, and so does [`Step::elapsed`].
pub trait Observer: Send {
    /// Called once before the first iteration.
    fn on_start(&mut self, _info: &RunInfo) {}
    /// Called after every iteration. Return `ControlFlow::Break(())` to stop early;
    /// the run then returns the current image as a normal result with [`StopReason::Cancelled`].
    fn on_step(&mut self, _step: &Step<'_>) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
    /// Polled after every iteration whose `on_step` continued. Returning new weights changes the
    /// objective from the next iteration on: the run keeps its current image, re-evaluates it under the
    /// new weights, starts the L-BFGS history afresh (its curvature pairs belong to the old objective;
    /// Adam keeps its moments, and a best-iterate keeper starts over), and later scales of a
    /// multi-scale run use the new weights too. The reported losses are weighted by the new weights.
    ///
    /// The weights must be finite and ≥ 0 (else the run ends with [`Error::Config`](crate::Error::Config)).
    /// A run whose config has a style weight of 0 has no style terms at all, so steering its style
    /// weight changes nothing. Steered weights are not recorded in checkpoints: a resumed run starts
    /// again from its config's weights.
    fn steer(&mut self) -> Option<Weights> {
        None
    }
    /// Called after a checkpoint was written (after `iteration` iterations).
    fn on_checkpoint(&mut self, _iteration: usize, _path: &std::path::Path) {}
    /// Whether a run with a [`StyleConfig::checkpoint`](crate::StyleConfig::checkpoint) writes it
    /// when it finishes, so that the finished run can be resumed for more iterations (the default).
    /// A caller that removes the checkpoint once the image is written (`impasto batch` does)
    /// answers no, and the checkpoint is then written only every `checkpoint_every` iterations and
    /// when the run stops early: a finished 512² L-BFGS run does not write its 630 MB of pairs for
    /// nothing.
    fn checkpoint_at_end(&self) -> bool {
        true
    }
    /// Called when tile `index` (0-based) of `count` of a tiled scale is finished and blended into the
    /// image (`skipped`: it was finished by an earlier run and read back); counted over the rounds,
    /// as [`Step::tile`].
    fn on_tile(&mut self, _index: usize, _count: usize, _skipped: bool) {}
    /// Called when the run changes its plan on the way: scale `replan.scale` ran out of GPU memory
    /// and starts again in smaller tiles (the schedule's iterations change with its tiles).
    fn on_replan(&mut self, _replan: &Replan) {}
}

/// A run's new plan after a scale ran out of GPU memory: from that scale on, every scale keeps
/// within the budget the failed allocation showed, in tiles where it must (see
/// [`StyleConfig::max_gpu_memory`](crate::StyleConfig::max_gpu_memory)). The scale starts again
/// from the image it had (the last good one, when its first attempt made progress).
#[derive(Debug, Clone)]
pub struct Replan {
    /// The scale that starts again (0-based).
    pub scale: usize,
    /// The failure, one line.
    pub reason: String,
    /// The GPU memory budget from now on, bytes.
    pub budget: u64,
    /// Iterations planned from now on, all scales together (those done before this scale
    /// included), as [`RunInfo::iterations`].
    pub iterations: usize,
    /// The schedule, as [`RunInfo::scales`].
    pub scales: Vec<Scale>,
    /// The tiles of each scale, as [`RunInfo::tiles`].
    pub tiles: Vec<Option<crate::tiles::TilePlan>>,
}

/// The one line every front end shows: `out of GPU memory on … (…); scale 2 (1024x768) starts
/// again in 6 tiles of 512 px under a GPU memory budget of 3.1 GiB (--max-gpu-memory 3174M plans
/// so from the start)`.
impl std::fmt::Display for Replan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let size =
            self.scales.get(self.scale).map_or_else(String::new, |s| format!(" ({}x{})", s.width, s.height));
        let tiles = match self.tiles.get(self.scale) {
            Some(Some(t)) => format!("in {} tiles of {} px", t.len(), t.tile),
            _ => "whole".to_owned(),
        };
        write!(
            f,
            "{}; scale {}{size} starts again {tiles} under a GPU memory budget of {} (--max-gpu-memory {}M \
             plans so from the start)",
            self.reason,
            self.scale + 1,
            crate::tiles::fmt_bytes(self.budget),
            self.budget >> 20
        )
    }
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl Observer for NoObserver {}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// All planned iterations were done.
    Finished,
    /// The optimiser converged (the loss or the step became too small to change the image).
    Converged,
    /// The observer asked to stop.
    Cancelled,
    /// The time limit was reached.
    TimeLimit,
}
