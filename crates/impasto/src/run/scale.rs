//! One scale's optimisation: the loop of optimiser steps, with progress reports and the stop rules,
//! checkpoints, steering of the loss weights, and Adam's averaged finish.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

use crate::checkpoint::{self, OptState, State};
use crate::config::StyleConfig;
use crate::error::{Error, Result};
use crate::loss::Objective;
use crate::observer::{Losses, Observer, RunInfo, Scale, Step, StopReason, Weights};
use crate::optim::{LbfgsStep, all_finite};
use crate::pixels::to_image;

use super::Stylized;

/// An objective whose content, style and TV weights can be changed during a run: it remembers the
/// style targets' weights as built from the config (each is the config's style weight times a layer
/// and region factor), so that any new style weight, 0 included, can be applied and undone exactly.
pub(super) struct Steerable<'a> {
    pub(super) objective: Objective<'a>,
    /// The style targets' weights as built, under the config's style weight.
    built_style: Vec<f32>,
    /// The config's style weight.
    config_style: f32,
    /// The weights in force.
    pub(super) weights: Weights,
}

impl<'a> Steerable<'a> {
    pub(super) fn new(objective: Objective<'a>, config: &StyleConfig) -> Steerable<'a> {
        let built_style = objective.style.iter().map(|t| t.weight).collect();
        Steerable { objective, built_style, config_style: config.style_weight, weights: Weights::of(config) }
    }

    /// Applies `w`. The objective is left untouched when `w` is what is in force already, so a run that
    /// is never steered evaluates exactly the objective it built.
    pub(super) fn set(&mut self, w: Weights) {
        if w == self.weights {
            return;
        }
        self.weights = w;
        for t in &mut self.objective.content {
            t.weight = w.content;
        }
        // A config style weight of 0 built no style targets, so there is nothing to divide by zero.
        for (t, &built) in self.objective.style.iter_mut().zip(&self.built_style) {
            t.weight = built / self.config_style * w.style;
        }
        self.objective.tv_weight = w.tv;
    }
}

/// Checks weights given by [`Observer::steer`].
fn check_steered(w: Weights) -> Result<()> {
    for (what, v) in [("content", w.content), ("style", w.style), ("TV", w.tv)] {
        if !v.is_finite() || v < 0.0 {
            return Err(Error::Config {
                what: "steered weights",
                reason: format!("{what} weight {v} (must be a finite number ≥ 0)"),
            });
        }
    }
    Ok(())
}

/// The error of a non-finite loss or gradient, carrying the last good image.
fn non_finite(iteration: usize, what: &'static str, good: &[f32], state: &State) -> Error {
    Error::NonFinite { iteration, what, last_good: Box::new(to_image(good, state.width, state.height)) }
}

/// The loss, its total and its gradient at the current image.
struct Point {
    losses: Losses,
    /// The total loss, as L-BFGS tracks it.
    f: f64,
    g: Vec<f32>,
}

impl Point {
    /// Evaluates `x`; a non-finite loss or gradient is an error at iteration `state.done`.
    fn at(steerable: &Steerable<'_>, state: &State) -> Result<Point> {
        let (losses, g) = steerable.objective.evaluate(&state.x);
        if !losses.total().is_finite() {
            return Err(non_finite(state.done, "loss", &state.x, state));
        }
        if !all_finite(&g) {
            return Err(non_finite(state.done, "gradient", &state.x, state));
        }
        Ok(Point { losses, f: losses.total(), g })
    }
}

/// One scale's optimisation.
pub(super) struct ScaleRun<'o> {
    pub(super) config: &'o StyleConfig,
    pub(super) scales: &'o [Scale],
    /// Iterations planned, all scales together.
    pub(super) total: usize,
    /// When the optimisation started (for the time limit and the reports).
    pub(super) start: Instant,
    /// Whether this is the last scale (whose end is checkpointed, so that a finished run can be
    /// resumed for more iterations).
    pub(super) last: bool,
    /// The tiles of each scale (`None`: whole).
    pub(super) tiles: &'o [Option<crate::tiles::TilePlan>],
    /// On a tiled scale: (0-based tile, tiles) of the tile being optimised.
    pub(super) tile: Option<(usize, usize)>,
    /// Where the optimisation state is written (when it stops early, every `checkpoint_every`
    /// iterations and, on the last scale, at its end): the run's checkpoint, or a tile job's partial
    /// tile (`TileStore::partial`).
    pub(super) checkpoint: Option<&'o Path>,
}

impl ScaleRun<'_> {
    /// Optimises until the scale's `iterations` are done (counting those of a resumed `state`), the
    /// optimiser converges, the observer cancels or the time limit is reached. `announce`: call
    /// [`Observer::on_start`] at the first evaluation, and clear it then (a scale that fails before
    /// and starts again in tiles announces the new plan). Returns the result and the optimiser's
    /// final state.
    pub(super) fn optimise(
        &self,
        steerable: &mut Steerable<'_>,
        mut state: State,
        iterations: usize,
        observer: &mut dyn Observer,
        announce: &mut bool,
    ) -> Result<(Stylized, OptState)> {
        // On a GPU, L-BFGS keeps its pairs there and runs the two-loop recursion there: only the
        // gradient goes up and the direction comes back (a failure to allocate the ring stops the
        // run as one building the objective does).
        #[cfg(feature = "gpu")]
        if let (OptState::Lbfgs(opt), Some(ctx)) = (&mut state.opt, steerable.objective.gpu_context()) {
            opt.move_to_gpu(ctx.net.gpu().clone(), ctx.error.clone(), state.x.len())?;
        }
        let mut point = Point::at(steerable, &state)?;
        if std::mem::take(announce) {
            // The whole image of the scale it starts at, also where that scale is tiled (`state` then
            // holds a tile).
            let (width, height) =
                self.scales.get(state.scale).map_or((state.width, state.height), |s| (s.width, s.height));
            let info = RunInfo {
                width,
                height,
                iterations: self.total,
                scales: self.scales.to_vec(),
                tiles: self.tiles.to_vec(),
                initial: point.losses,
            };
            observer.on_start(&info);
        }
        let mut stop = StopReason::Finished;
        let mut saved_at = None;
        while state.scale_done < iterations {
            if !self.step(steerable, &mut state, &mut point, observer)? {
                stop = StopReason::Converged;
                break;
            }
            state.done += 1;
            state.scale_done += 1;
            stop = self.report(&state, point.losses, observer);
            let every = self.config.checkpoint_every;
            if stop != StopReason::Finished || (every > 0 && state.done.is_multiple_of(every)) {
                self.save_checkpoint(&state, observer)?;
                saved_at = Some(state.done);
            }
            if stop != StopReason::Finished {
                break;
            }
            self.steer(steerable, &mut state, &mut point, observer)?;
        }
        if self.last
            && matches!(stop, StopReason::Finished | StopReason::Converged)
            && saved_at != Some(state.done)
            && observer.checkpoint_at_end()
        {
            self.save_checkpoint(&state, observer)?;
        }
        Ok(finish(steerable, state, point.losses, stop))
    }

    /// One optimiser iteration: updates the image and `point`. `Ok(false)`: L-BFGS has converged and
    /// nothing changed.
    fn step(
        &self,
        steerable: &Steerable<'_>,
        state: &mut State,
        point: &mut Point,
        observer: &mut dyn Observer,
    ) -> Result<bool> {
        let objective = &steerable.objective;
        match &mut state.opt {
            OptState::Lbfgs(opt) => {
                let mut last = point.losses;
                let outcome = opt.step(&mut state.x, &mut point.f, &mut point.g, |p| {
                    let (l, grad) = objective.evaluate(p);
                    last = l;
                    (l.total(), grad)
                });
                match outcome {
                    LbfgsStep::Moved => point.losses = last,
                    LbfgsStep::Converged => return Ok(false),
                    LbfgsStep::NonFinite => {
                        self.save_checkpoint(state, observer)?;
                        return Err(non_finite(state.done + 1, "loss or gradient", &state.x, state));
                    }
                }
            }
            OptState::Adam(opt, ema) => {
                let previous = state.x.clone();
                opt.step(&mut state.x, &point.g);
                let (l, grad) = objective.evaluate(&state.x);
                if !l.total().is_finite() || !all_finite(&grad) {
                    return Err(non_finite(state.done + 1, "loss or gradient", &previous, state));
                }
                ema.update(&state.x, l.total());
                point.losses = l;
                point.f = l.total();
                point.g = grad;
            }
        }
        Ok(true)
    }

    /// Reports the iteration just done and applies the stop rules: the observer's cancel, then the
    /// time limit.
    fn report(&self, state: &State, losses: Losses, observer: &mut dyn Observer) -> StopReason {
        let step = Step {
            iteration: state.done,
            iterations: self.total,
            scale: state.scale,
            scales: self.scales.len(),
            losses,
            elapsed: self.start.elapsed(),
            pixels: &state.x,
            width: state.width,
            height: state.height,
            tile: self.tile,
        };
        if let ControlFlow::Break(()) = observer.on_step(&step) {
            StopReason::Cancelled
        } else if self.config.time_limit.is_some_and(|t| self.start.elapsed() >= t) {
            StopReason::TimeLimit
        } else {
            StopReason::Finished
        }
    }

    /// Applies weights the observer steers to: the same image under the new objective. The old
    /// curvature pairs no longer hold, so L-BFGS starts afresh; Adam's best-iterate keeper starts over.
    fn steer(
        &self,
        steerable: &mut Steerable<'_>,
        state: &mut State,
        point: &mut Point,
        observer: &mut dyn Observer,
    ) -> Result<()> {
        let Some(w) = observer.steer() else { return Ok(()) };
        check_steered(w)?;
        if w == steerable.weights {
            return Ok(());
        }
        steerable.set(w);
        let (losses, g) = steerable.objective.evaluate(&state.x);
        if !losses.total().is_finite() || !all_finite(&g) {
            return Err(non_finite(state.done, "loss or gradient", &state.x, state));
        }
        *point = Point { losses, f: losses.total(), g };
        match &mut state.opt {
            OptState::Lbfgs(opt) => opt.restart(),
            OptState::Adam(_, ema) => ema.restart_best(),
        }
        Ok(())
    }

    /// Writes the checkpoint, if the run has one; one that cannot be written stops the run with the
    /// image it has ([`Error::CheckpointWrite`]).
    fn save_checkpoint(&self, state: &State, observer: &mut dyn Observer) -> Result<()> {
        if let Some(path) = self.checkpoint {
            checkpoint::write(path, state)
                .map_err(|e| checkpoint::unwritten(e, || to_image(&state.x, state.width, state.height)))?;
            observer.on_checkpoint(state.done, path);
        }
        Ok(())
    }
}

/// The scale's result. Adam returns the iterate average (smoother than any single iterate, though its
/// loss is usually a little higher), or with decay 0 the best iterate seen; L-BFGS its last iterate.
fn finish(
    steerable: &Steerable<'_>,
    state: State,
    mut losses: Losses,
    stop: StopReason,
) -> (Stylized, OptState) {
    let mut x = state.x;
    if let OptState::Adam(_, ema) = &state.opt
        && let Some(avg) = ema.value()
    {
        let (l, _) = steerable.objective.evaluate(&avg);
        if l.total().is_finite() {
            x = avg;
            losses = l;
        }
    }
    let image = to_image(&x, state.width, state.height);
    (Stylized { image, losses, iterations: state.done, stop }, state.opt)
}
