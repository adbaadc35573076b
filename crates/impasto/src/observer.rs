//! Progress reporting and cancellation: the [`Observer`] trait every client (CLI, tests, web UI) implements.

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
}

impl Losses {
    /// The total loss that is minimised.
    pub fn total(&self) -> f64 {
        self.content + self.style + self.tv
    }
}

/// Facts about a run, given once before the first iteration.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Output width in pixels.
    pub width: u32,
    /// Output height in pixels.
    pub height: u32,
    /// Iterations planned, all scales together.
    pub iterations: usize,
    /// The multi-scale schedule: (width, height, iterations) of each scale, smallest first.
    pub scales: Vec<(u32, u32, usize)>,
    /// The losses of the initial image at the first scale.
    pub initial: Losses,
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
    /// Width of the current scale's image.
    pub width: u32,
    /// Height of the current scale's image.
    pub height: u32,
}

impl Step<'_> {
    /// The current image (RGB, values clamped to 0..1). Costs a copy: call it only when saving.
    pub fn image(&self) -> image::Rgb32FImage {
        crate::pixels::to_image(self.pixels, self.width, self.height)
    }
}

/// Receives progress and may stop the run. All methods have defaults that do nothing.
pub trait Observer: Send {
    /// Called once before the first iteration.
    fn on_start(&mut self, _info: &RunInfo) {}
    /// Called after every iteration. Return `ControlFlow::Break(())` to stop early;
    /// the run then returns the current image as a normal result with [`StopReason::Cancelled`].
    fn on_step(&mut self, _step: &Step<'_>) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
    /// Called after a checkpoint was written (after `iteration` iterations).
    fn on_checkpoint(&mut self, _iteration: usize, _path: &std::path::Path) {}
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
