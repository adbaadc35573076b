//! The objective's GPU backend: the same terms uploaded to a [`GpuObjective`]; every evaluation sends
//! the pixels and the weights in force, and takes back the three losses and the gradient. A GPU error
//! is kept in the run's [`GpuContext`] and reported as non-finite losses, so the run loop stops as it
//! does on a NaN and the run reports the GPU's reason with the last good image. Wasserstein style
//! terms become host terms: the GPU takes their statistics, `wasserstein::w2_of_moments` the rest.

use std::sync::{Arc, Mutex};

use impasto_gpu::{GpuObjective, MomentGradient, Moments, StyleTarget, StyleTerm};

use super::Objective;
use crate::device::GpuContext;
use crate::error::{Error, GpuFailure, GpuFault, Result};
use crate::observer::Losses;

/// A [`GpuObjective`] mirroring an [`Objective`]'s terms.
#[derive(Debug)]
pub(crate) struct Backend {
    objective: Mutex<GpuObjective>,
    ctx: GpuContext,
}

impl Backend {
    /// `scratch`: the most bytes each Winograd scratch buffer takes (`None`: impasto-gpu's default).
    pub(crate) fn new(ctx: &GpuContext, o: &Objective<'_>, scratch: Option<u64>) -> Result<Backend> {
        let content = o.content.iter().map(|t| (t.layer, t.features.clone(), t.weight)).collect();
        let style = o
            .style
            .iter()
            .map(|t| StyleTerm {
                layer: t.layer,
                target: match &t.w2 {
                    None => StyleTarget::Gram(t.gram.clone()),
                    Some(w2) => {
                        let w2 = w2.clone();
                        StyleTarget::Moments(Arc::new(move |m: Moments<'_>, weight: f32| {
                            super::wasserstein::w2_of_moments(&w2, weight, m.second, m.mean)
                                .map(|(loss, d_second, d_mean)| MomentGradient { loss, d_second, d_mean })
                        }))
                    }
                },
                weight: t.weight,
                mask: t.mask.clone(),
            })
            .collect();
        let objective = GpuObjective::with_winograd_scratch(
            ctx.net.clone(),
            o.width,
            o.height,
            content,
            style,
            o.tv_weight,
            o.pixel_mask.clone(),
            scratch,
        )?;
        Ok(Backend { objective: Mutex::new(objective), ctx: ctx.clone() })
    }

    /// The run's GPU (shared with L-BFGS's history) and its error slot.
    pub(crate) fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// The first evaluation error, if any.
    pub(crate) fn error(&self) -> Option<GpuFault> {
        self.ctx.error.lock().ok().and_then(|e| e.clone())
    }

    pub(crate) fn evaluate(&self, o: &Objective<'_>, pixels: &[f32]) -> (Losses, Vec<f32>) {
        let content: Vec<f32> = o.content.iter().map(|t| t.weight).collect();
        let style: Vec<f32> = o.style.iter().map(|t| t.weight).collect();
        let result = match self.objective.lock() {
            Ok(mut g) => g.set_weights(&content, &style, o.tv_weight).and_then(|()| g.evaluate(pixels)),
            Err(_) => return failed(pixels.len()),
        };
        match result {
            Ok((l, grad)) => (Losses { content: l.content, style: l.style, tv: l.tv, temporal: 0.0 }, grad),
            Err(e) => {
                if let Ok(mut slot) = self.ctx.error.lock()
                    && slot.is_none()
                {
                    *slot = Some(e.into());
                }
                failed(pixels.len())
            }
        }
    }
}

impl Backend {
    /// One evaluation with every GPU step timed on its own (see [`GpuObjective::profile`]).
    pub(crate) fn profile(&self, o: &Objective<'_>, pixels: &[f32]) -> crate::Result<super::GpuProfile> {
        let content: Vec<f32> = o.content.iter().map(|t| t.weight).collect();
        let style: Vec<f32> = o.style.iter().map(|t| t.weight).collect();
        let mut g = self.objective.lock().map_err(|_| poisoned())?;
        let steps = g.set_weights(&content, &style, o.tv_weight).and_then(|()| g.profile(pixels))?;
        Ok(super::GpuProfile { steps, gpu_clock: g.kernel_clock() == impasto_gpu::KernelClock::Device })
    }
}

impl Backend {
    /// Evaluates until every product's kernel form is chosen (see [`GpuObjective::tune`]).
    pub(crate) fn tune(&self, pixels: &[f32]) -> crate::Result<(usize, Vec<super::GpuTuned>)> {
        let mut g = self.objective.lock().map_err(|_| poisoned())?;
        let rounds = g.tune(pixels)?;
        let tuned = g
            .tuned()
            .into_iter()
            .map(|t| super::GpuTuned {
                label: t.label,
                m: t.m,
                k: t.k,
                n: t.n,
                forms: t.forms,
                chosen: t.chosen,
                remembered: t.remembered,
            })
            .collect();
        Ok((rounds, tuned))
    }
}

/// The result of a failed evaluation: NaN, which stops the run loop.
fn failed(n: usize) -> (Losses, Vec<f32>) {
    (Losses { content: f64::NAN, style: f64::NAN, tv: f64::NAN, temporal: f64::NAN }, vec![f32::NAN; n])
}

/// The error of a call on an objective whose lock an earlier panic poisoned.
fn poisoned() -> Error {
    GpuFault::new(GpuFailure::Other, "the GPU objective's lock is poisoned").into()
}
