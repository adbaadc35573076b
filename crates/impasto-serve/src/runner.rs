//! One run, on its own thread: calls [`impasto::stylize`] with an observer that publishes each
//! iteration (losses, scale, ETA), keeps a throttled PNG preview, pauses, cancels and passes the page's
//! new weights to the library; then keeps the final image (and writes it into the output folder, if
//! there is one) and frees the run slot. [`launcher`] is how the queue starts runs.

use std::ops::ControlFlow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use impasto::image::{ImageEncoder, Rgb32FImage, codecs::png::PngEncoder};
use impasto::{Eta, Observer, Replan, RunInfo, Step, StopReason, Vgg, Weights};

use crate::PREVIEW_INTERVAL;
use crate::job::{Inputs, Job, JobState, ScaleInfo, Started, StepInfo};
use crate::queue::Launch;

/// The queue's launch function: each job runs on a thread of its own with `net` and `threads` worker
/// threads, writes its image into `output` (if given) and frees its slot when it ends (also after a
/// panic).
pub(crate) fn launcher(
    net: Arc<Vgg>,
    threads: usize,
    device: impasto::Device,
    output: Option<PathBuf>,
) -> Launch {
    let output = output.map(Arc::<Path>::from);
    Box::new(move |job, slot| {
        let net = Arc::clone(&net);
        let output = output.clone();
        let name = format!("impasto-run-{}", &job.id[..8.min(job.id.len())]);
        std::thread::Builder::new().name(name).spawn(move || {
            run(&net, threads, device, &job, output.as_deref());
            drop(slot);
        })?;
        Ok(())
    })
}

/// Runs `job` to its end.
fn run(net: &Vgg, threads: usize, device: impasto::Device, job: &Job, output: Option<&Path>) {
    if let Some(inputs) = job.take_inputs() {
        let outcome = catch_unwind(AssertUnwindSafe(|| stylize(net, threads, device, job, inputs, output)));
        if outcome.is_err() {
            job.set_state(JobState::Failed, Some("internal error: the run panicked".into()), None);
        }
    }
}

/// Keeps the run's image `png` in the job and, with an output folder, writes it there under the job's
/// file name, `NAME-ID.png` (a temporary file, then a rename); returns what to tell the page: where it
/// was written, or why it could not be.
fn keep(job: &Job, png: Bytes, output: Option<&Path>) -> Option<String> {
    let written = output.map(|folder| {
        let path = folder.join(&job.file_name);
        let tmp = folder.join(format!(".{}.png.tmp", job.id));
        match std::fs::write(&tmp, &png).and_then(|()| std::fs::rename(&tmp, &path)) {
            Ok(()) => format!("written to {}", path.display()),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                format!("could not write {}: {e}", path.display())
            }
        }
    });
    job.set_result(png);
    written
}

/// `a` and `b` joined by `; ` where both are there.
fn and(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (a, b) => a.or(b),
    }
}

fn stylize(
    net: &Vgg,
    threads: usize,
    device: impasto::Device,
    job: &Job,
    inputs: Inputs,
    output: Option<&Path>,
) {
    let mut config = impasto::StyleConfig { threads, device, ..inputs.config };
    // The page never chooses style layers: a run takes the default ones the network has (relu1_1 …
    // relu4_1 on the built-in compact VGG-16, which stops at relu4_2), by the CLI's rule.
    let last = net.layers().last().map_or("", |l| l.name.as_str());
    match impasto::default_style_layers(net.arch(), last) {
        Ok(layers) => config.style_layers = layers,
        Err(e) => return job.set_state(JobState::Failed, Some(e.to_string()), None),
    }
    let size = impasto::output_size(inputs.content.dimensions(), &config);
    let mut observer = Watcher::new(job);
    let result = impasto::stylize(net, &config, &inputs.content, &inputs.styles, &mut observer);
    match result {
        Ok(mut out) => {
            // A run stopped at a coarse scale is kept at the size asked for, as the CLI writes it.
            out.image = impasto::at_output_size(out.image, size);
            let written = match encode_png(&out.image) {
                Ok(png) => keep(job, png, output),
                Err(e) => return job.set_state(JobState::Failed, Some(e), None),
            };
            let (state, note) = match out.stop {
                StopReason::Finished => (JobState::Finished, None),
                StopReason::Converged => {
                    (JobState::Finished, Some(format!("converged after {} iterations", out.iterations)))
                }
                StopReason::Cancelled | StopReason::TimeLimit => {
                    (JobState::Cancelled, Some(format!("stopped after {} iterations", out.iterations)))
                }
            };
            job.set_state(state, None, and(note, written));
        }
        Err(e) => {
            let png = e.last_good_image().and_then(|img| encode_png(img).ok());
            let written = png.and_then(|png| keep(job, png, output));
            job.set_state(JobState::Failed, Some(e.to_string()), written);
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
    eta: Option<Eta>,
    last_preview: Option<(Instant, usize)>,
    iteration: usize,
}

impl<'j> Watcher<'j> {
    fn new(job: &'j Job) -> Watcher<'j> {
        Watcher { job, start: None, paused: Duration::ZERO, eta: None, last_preview: None, iteration: 0 }
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
            .map(|s| ScaleInfo { width: s.width, height: s.height, iterations: s.iterations })
            .collect();
        self.job.started(Started {
            width: info.width,
            height: info.height,
            iterations: info.iterations,
            scales,
        });
        self.eta = Some(Eta::new(info));
    }

    fn on_step(&mut self, step: &Step<'_>) -> ControlFlow<()> {
        self.iteration = step.iteration;
        let elapsed = self.active();
        let eta = self
            .eta
            .as_mut()
            .and_then(|e| e.update(step.scale, step.iteration, Duration::from_secs_f64(elapsed)));
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
            eta_s: eta.map(|d| d.as_secs_f64()),
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

    fn on_replan(&mut self, replan: &Replan) {
        self.eta = self.eta.as_ref().map(|e| e.replanned(replan));
        self.job.note(replan.to_string());
    }

    fn steer(&mut self) -> Option<Weights> {
        let w = self.job.take_steer()?;
        self.job.weights_applied(w, self.iteration);
        Some(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run that changes its plan (out of GPU memory: a scale starts again in tiles) says so in the
    /// page's note, the line the CLI prints.
    #[test]
    fn a_replan_is_the_page_s_note() {
        let job = crate::job::tests::job("a");
        let scales = vec![impasto::Scale { width: 160, height: 160, iterations: 40 }];
        let tiles = vec![impasto::tiles::TilePlan::new(160, 160, 80, 0).ok()];
        let replan = Replan {
            scale: 0,
            reason: "out of GPU memory on a card allocating a buffer (4096 bytes)".into(),
            budget: 3 << 30,
            iterations: 40,
            scales,
            tiles,
        };
        Watcher::new(&job).on_replan(&replan);
        let note = job.snapshot().state.note.unwrap_or_default();
        assert_eq!(
            note,
            "out of GPU memory on a card allocating a buffer (4096 bytes); scale 1 (160x160) starts again in \
             4 tiles of 80 px under a GPU memory budget of 3.0 GiB (--max-gpu-memory 3072M plans so from the start)"
        );
    }
}
