//! The progress of `impasto video`: a bar (or log lines) with the pass, the frame, its iteration, and
//! the ETA of the frame and of the whole clip; Ctrl-C stops the current frame.

use std::time::{Duration, Instant};

use impasto::{Losses, Observer};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::interrupt;
use crate::progress::{Display, fmt_duration, fmt_loss, note};

/// The observer of a clip.
pub(super) struct ClipProgress {
    display: Display,
    bar: Option<ProgressBar>,
    /// The clip's frames, when known (a stream may not say).
    total: Option<usize>,
    start: Instant,
    frame: usize,
    frame_start: Instant,
    /// Seconds of the first pass's frames after the first, done in this run.
    later: Vec<f64>,
    first_seconds: Option<f64>,
    /// The pass under way (1 = the first) and how many the clip has.
    pass: usize,
    passes: usize,
    /// Frames of the current later pass finished before the current one.
    position: usize,
    /// Seconds of the frames of later passes, done in this run.
    revisits: Vec<f64>,
    /// A later pass's iterations per frame over a first-pass frame's: guesses a later pass's frame
    /// time before one is timed.
    pass_share: f64,
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

impl ClipProgress {
    pub(super) fn new(
        display: Display,
        total: Option<usize>,
        passes: usize,
        pass_share: f64,
    ) -> ClipProgress {
        let bar = (display == Display::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let now = Instant::now();
        ClipProgress {
            display,
            bar,
            total,
            start: now,
            frame: 0,
            frame_start: now,
            later: Vec::new(),
            first_seconds: None,
            pass: 1,
            passes,
            position: 0,
            revisits: Vec::new(),
            pass_share,
        }
    }

    /// A later pass begins over the clip's `frames` frames.
    pub(super) fn start_pass(&mut self, pass: usize, frames: usize) {
        self.pass = pass;
        self.total = Some(frames);
    }

    /// Frame `index` begins, the `position`-th of its pass.
    pub(super) fn start_frame(&mut self, index: usize, position: usize) {
        self.frame = index;
        self.position = position;
        self.frame_start = Instant::now();
    }

    /// Prints `line` above the bar (or as a log line), unless quiet.
    pub(super) fn say(&self, line: &str) {
        let line = format!("impasto: {line}");
        match (&self.bar, self.display) {
            (_, Display::Quiet) => {}
            (Some(bar), _) => bar.println(line),
            (None, _) => note(&line),
        }
    }

    /// The frame under way, as the bar names it: `frame 3/8`, or `pass 2/3 · frame 3/8`.
    pub(super) fn frame_label(&self) -> String {
        let frame = match self.total {
            Some(t) => format!("frame {}/{}", self.frame + 1, t.max(self.frame + 1)),
            None => format!("frame {}", self.frame + 1),
        };
        match self.passes {
            1 => frame,
            n => format!("pass {}/{n} · {frame}", self.pass),
        }
    }

    /// Seconds the clip needs after the current frame.
    fn clip_left(&self) -> Option<f64> {
        let total = self.total? as f64;
        let first_pass = match self.later.len() {
            0 => self.first_seconds,
            _ => mean(&self.later),
        };
        let revisit = mean(&self.revisits).or_else(|| first_pass.map(|s| s * self.pass_share));
        let this_pass = match self.pass {
            1 => (total - self.frame as f64 - 1.0).max(0.0) * first_pass?,
            _ => (total - self.position as f64 - 1.0).max(0.0) * revisit?,
        };
        let later_passes = self.passes.saturating_sub(self.pass) as f64 * total;
        Some(this_pass + if later_passes > 0.0 { later_passes * revisit? } else { 0.0 })
    }

    pub(super) fn end_frame(&mut self, losses: &Losses) {
        let secs = self.frame_start.elapsed().as_secs_f64();
        match (self.pass, self.frame) {
            (1, 0) => self.first_seconds = Some(secs),
            (1, _) => self.later.push(secs),
            _ => self.revisits.push(secs),
        }
        if let Display::Plain { .. } = self.display {
            note(&format!(
                "{}: {secs:.1} s, content {}, style {}, temporal {}",
                self.frame_label(),
                fmt_loss(losses.content),
                fmt_loss(losses.style),
                fmt_loss(losses.temporal)
            ));
        }
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Observer for ClipProgress {
    fn on_replan(&mut self, replan: &impasto::Replan) {
        self.say(&format!("{}: {replan}", self.frame_label()));
    }

    /// A finished frame writes no checkpoint: the clip would only remove it (a stopped one does).
    fn checkpoint_at_end(&self) -> bool {
        false
    }

    fn on_checkpoint(&mut self, iteration: usize, path: &std::path::Path) {
        if interrupt::requested() {
            let frame = self.frame_label();
            self.say(&format!(
                "{frame}: stopped at iteration {iteration}; its progress is kept in {}",
                path.display()
            ));
        }
    }

    fn on_step(&mut self, step: &impasto::Step<'_>) -> std::ops::ControlFlow<()> {
        if let Some(bar) = &self.bar {
            let done = step.iteration as f64;
            let elapsed = self.frame_start.elapsed().as_secs_f64();
            let frame_left = elapsed / done * (step.iterations as f64 - done);
            let clip = match self.clip_left() {
                Some(left) => {
                    let left = Duration::from_secs_f64((left + frame_left).max(0.0));
                    format!(", clip ETA {}", fmt_duration(left))
                }
                None => String::new(),
            };
            bar.set_message(format!(
                "{} · iteration {}/{} · frame ETA {}{clip} · loss {} · {} elapsed",
                self.frame_label(),
                step.iteration,
                step.iterations,
                fmt_duration(Duration::from_secs_f64(frame_left.max(0.0))),
                fmt_loss(step.losses.total()),
                fmt_duration(self.start.elapsed())
            ));
        }
        if interrupt::requested() {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clip_eta_counts_the_passes_still_to_come() {
        let mut p = ClipProgress::new(Display::Quiet, Some(4), 3, 0.5);
        p.first_seconds = Some(8.0);
        p.later = vec![4.0];
        p.start_frame(1, 1);
        // Pass 1: frames 3 and 4 at 4 s, then two passes of 4 frames at 2 s (half the iterations).
        assert_eq!(p.clip_left(), Some(2.0 * 4.0 + 2.0 * 4.0 * 2.0));
        p.start_pass(2, 4);
        p.start_frame(3, 0);
        p.revisits = vec![3.0];
        // Pass 2: three frames left at the timed 3 s, then pass 3's four.
        assert_eq!(p.clip_left(), Some(3.0 * 3.0 + 4.0 * 3.0));
        let single = ClipProgress::new(Display::Quiet, None, 1, 1.0);
        assert_eq!(single.clip_left(), None, "a stream of unknown length has no clip ETA");
    }
}
