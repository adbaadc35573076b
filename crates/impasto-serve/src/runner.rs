//! One run, on its own thread: calls [`impasto::stylize`] with an observer that publishes each
//! iteration (losses, scale, ETA), keeps a throttled PNG preview, pauses, cancels and passes the page's
//! new weights to the library; then keeps the final image and frees the run slot.

use std::ops::ControlFlow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use impasto::image::{ImageEncoder, Rgb32FImage, codecs::png::PngEncoder};
use impasto::{Observer, RunInfo, Step, StopReason, Weights};

use crate::PREVIEW_INTERVAL;
use crate::jobs::{App, Job, JobState, ScaleInfo, Started, StepInfo};

/// Runs `job` to its end and hands its slot back to `app`.
pub(crate) fn run(app: &Arc<App>, job: &Arc<Job>) {
    if let Some(inputs) = job.take_inputs() {
        let outcome = catch_unwind(AssertUnwindSafe(|| stylize(app, job, inputs)));
        if outcome.is_err() {
            job.set_state(JobState::Failed, Some("internal error: the run panicked".into()), None);
        }
    }
    app.finished();
}

fn stylize(app: &App, job: &Job, inputs: crate::jobs::Inputs) {
    let mut config = impasto::StyleConfig { threads: app.threads, device: app.device, ..inputs.config };
    // A network cut short (the built-in compact VGG-16 stops at relu4_2) runs the default style
    // layers it has.
    config.style_layers.retain(|l| app.net.layer_index(l).is_ok());
    let size = impasto::fit_longest_side(inputs.content.width(), inputs.content.height(), config.size);
    let mut observer = Watcher::new(job);
    let result = impasto::stylize(&app.net, &config, &inputs.content, &inputs.styles, &mut observer);
    match result {
        Ok(mut out) => {
            // A run stopped at a coarse scale is kept at the size asked for, as the CLI writes it.
            if out.image.dimensions() != size {
                out.image = impasto::resize(&out.image, size.0, size.1);
            }
            match encode_png(&out.image) {
                Ok(png) => job.set_result(png),
                Err(e) => return job.set_state(JobState::Failed, Some(e), None),
            }
            let (state, note) = match out.stop {
                StopReason::Finished => (JobState::Finished, None),
                StopReason::Converged => {
                    (JobState::Finished, Some(format!("converged after {} iterations", out.iterations)))
                }
                StopReason::Cancelled | StopReason::TimeLimit => {
                    (JobState::Cancelled, Some(format!("stopped after {} iterations", out.iterations)))
                }
            };
            job.set_state(state, None, note);
        }
        Err(e) => {
            if let Some(png) = e.last_good_image().and_then(|img| encode_png(img).ok()) {
                job.set_result(png);
            }
            job.set_state(JobState::Failed, Some(e.to_string()), None);
        }
    }
}

/// An 8-bit RGB PNG of `img` (fast compression: previews are made while the run waits).
pub(crate) fn encode_png(img: &Rgb32FImage) -> Result<Bytes, String> {
    let rgb = impasto::image::DynamicImage::ImageRgb32F(img.clone()).into_rgb8();
    let mut out = Vec::new();
    PngEncoder::new_with_quality(
        &mut out,
        impasto::image::codecs::png::CompressionType::Fast,
        impasto::image::codecs::png::FilterType::Adaptive,
    )
    .write_image(rgb.as_raw(), rgb.width(), rgb.height(), impasto::image::ExtendedColorType::Rgb8)
    .map_err(|e| format!("cannot encode the image as PNG: {e}"))?;
    Ok(Bytes::from(out))
}

/// The observer of one job.
struct Watcher<'j> {
    job: &'j Job,
    /// When the optimisation started (after the first targets were computed).
    start: Option<Instant>,
    /// Time spent paused.
    paused: Duration,
    info: Option<RunInfo>,
    eta: Eta,
    last_preview: Option<(Instant, usize)>,
    iteration: usize,
}

impl<'j> Watcher<'j> {
    fn new(job: &'j Job) -> Watcher<'j> {
        Watcher {
            job,
            start: None,
            paused: Duration::ZERO,
            info: None,
            eta: Eta::default(),
            last_preview: None,
            iteration: 0,
        }
    }

    /// Seconds of optimisation so far, pauses excluded.
    fn active(&self) -> f64 {
        self.start.map_or(0.0, |s| s.elapsed().saturating_sub(self.paused).as_secs_f64())
    }

    fn preview(&mut self, step: &Step<'_>) {
        let image = Arc::new(step.image());
        if let Ok(png) = encode_png(&image) {
            self.job.preview(png, image, step.iteration);
        }
        self.last_preview = Some((Instant::now(), step.iteration));
    }
}

impl Observer for Watcher<'_> {
    fn on_start(&mut self, info: &RunInfo) {
        self.start = Some(Instant::now());
        let scales = info
            .scales
            .iter()
            .map(|&(width, height, iterations)| ScaleInfo { width, height, iterations })
            .collect();
        self.job.started(Started {
            width: info.width,
            height: info.height,
            iterations: info.iterations,
            scales,
        });
        self.info = Some(info.clone());
    }

    fn on_step(&mut self, step: &Step<'_>) -> ControlFlow<()> {
        self.iteration = step.iteration;
        let elapsed = self.active();
        let eta = self.info.as_ref().and_then(|info| self.eta.update(info, step, elapsed));
        self.job.step(StepInfo {
            iteration: step.iteration,
            iterations: step.iterations,
            scale: step.scale,
            scales: step.scales,
            width: step.width,
            height: step.height,
            content: step.losses.content,
            style: step.losses.style,
            tv: step.losses.tv,
            total: step.losses.total(),
            elapsed_s: elapsed,
            eta_s: eta,
        });
        let last = step.iteration == step.iterations;
        let due = self.last_preview.is_none_or(|(t, _)| t.elapsed() >= PREVIEW_INTERVAL);
        // A paused or stopping run shows (and downloads) exactly the image it stopped at.
        let stopping = self.job.is_paused() || self.job.is_cancelled();
        if last || due || stopping {
            self.preview(step);
        }
        if self.job.is_paused() {
            let since = Instant::now();
            let cancelled = self.job.wait_while_paused();
            self.paused += since.elapsed();
            if cancelled {
                return ControlFlow::Break(());
            }
        }
        if self.job.is_cancelled() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    }

    fn steer(&mut self) -> Option<Weights> {
        let w = self.job.take_steer()?;
        self.job.weights_applied(w, self.iteration);
        Some(w)
    }
}

/// The time left, from the rate of the current scale and the cost of each later scale in proportion
/// to its pixels.
#[derive(Debug, Default)]
struct Eta {
    /// (scale, active seconds and iteration when that scale began).
    scale_start: Option<(usize, f64, usize)>,
}

impl Eta {
    fn update(&mut self, info: &RunInfo, step: &Step<'_>, elapsed: f64) -> Option<f64> {
        let (scale, t0, i0) = match self.scale_start {
            Some(s) if s.0 == step.scale => s,
            _ => {
                // The first iteration of a scale also pays for its targets: measure from its end.
                self.scale_start = Some((step.scale, elapsed, step.iteration));
                return None;
            }
        };
        let done = step.iteration - i0;
        if done == 0 {
            return None;
        }
        let per_iteration = (elapsed - t0) / done as f64;
        let pixels = |k: usize| info.scales.get(k).map_or(1.0, |&(w, h, _)| w as f64 * h as f64);
        let scale_end: usize = info.scales.iter().take(scale + 1).map(|s| s.2).sum();
        let mut left = per_iteration * scale_end.saturating_sub(step.iteration) as f64;
        for k in scale + 1..info.scales.len() {
            left += per_iteration * pixels(k) / pixels(scale) * info.scales[k].2 as f64;
        }
        Some(left)
    }
}
