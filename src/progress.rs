//! What the user sees while a run goes: the `impasto::Observer` that draws an indicatif bar on a terminal or
//! logs plain lines otherwise, writes the `--save-every` snapshots, logs the checkpoints the library
//! writes and turns a Ctrl-C into a stop request.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use impasto::{Eta, Losses, Observer, Replan, RunInfo, SaveOptions, Step};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// Nothing but errors (`--quiet`).
    Quiet,
    /// One log line every `every` iterations (0 = none), for logs and pipes.
    Plain {
        /// The iteration interval.
        every: usize,
    },
    /// An indicatif progress bar (stderr is a terminal).
    Bar,
}

/// Writes one line to stderr, ignoring a closed stderr (there is nowhere left to report that).
pub fn note(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// `1.234e4`: the loss format of every line and the summary.
pub fn fmt_loss(v: f64) -> String {
    format!("{v:.3e}")
}

/// The three weighted loss terms and their total, two spaces apart.
fn fmt_losses(l: &Losses) -> String {
    format!(
        "content {}  style {}  tv {}  total {}",
        fmt_loss(l.content),
        fmt_loss(l.style),
        fmt_loss(l.tv),
        fmt_loss(l.total())
    )
}

/// The bar's form, total first so that a narrow terminal cuts the least useful part.
fn bar_losses(l: &Losses) -> String {
    format!(
        "loss {} = content {} + style {} + tv {}",
        fmt_loss(l.total()),
        fmt_loss(l.content),
        fmt_loss(l.style),
        fmt_loss(l.tv)
    )
}

/// `42s`, `5m02s`, `1h05m`.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64().round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `out.png` → `out_0100.png`: the `--save-every` file of an iteration, zero-padded to at least four
/// digits and to the width of the planned iteration count, so the files sort by name.
pub fn numbered_path(output: &Path, iteration: usize, iterations: usize) -> PathBuf {
    let width = iterations.to_string().len().max(4);
    let stem = output.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match output.extension() {
        Some(ext) => format!("{stem}_{iteration:0width$}.{}", ext.to_string_lossy()),
        None => format!("{stem}_{iteration:0width$}"),
    };
    output.with_file_name(name)
}

/// A bar style from a template (indicatif's default style if the template were ever invalid).
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// The observer of a CLI run.
#[derive(Debug)]
pub struct Progress {
    display: Display,
    bar: Option<ProgressBar>,
    save_every: usize,
    output: PathBuf,
    /// How the `--save-every` snapshots are written (the final image's options).
    save: SaveOptions,
    stop_requested: &'static AtomicBool,
    save_error: Option<impasto::Error>,
    /// The newest checkpoint the run wrote, and the iterations it holds.
    checkpoint: Option<(usize, PathBuf)>,
    /// The time-left estimate (the library's rule, which the web UI shows too), from the run's start.
    eta: Option<Eta>,
    /// Whether a finished run writes its checkpoint (not when the caller removes it once the image
    /// is written: a batch job's).
    checkpoint_at_end: bool,
}

impl Progress {
    /// A new observer. `stop_requested` is polled after every iteration (the Ctrl-C flag).
    pub fn new(
        display: Display,
        save_every: usize,
        output: &Path,
        stop_requested: &'static AtomicBool,
    ) -> Progress {
        let bar = (display == Display::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(style("{spinner} {msg}"));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            display,
            bar,
            save_every,
            output: output.to_path_buf(),
            save: SaveOptions::default(),
            stop_requested,
            save_error: None,
            checkpoint: None,
            eta: None,
            checkpoint_at_end: true,
        }
    }

    /// A finished run writes no checkpoint (only one stopped early does): for a caller that removes
    /// the checkpoint once the image is written.
    pub fn without_final_checkpoint(mut self) -> Progress {
        self.checkpoint_at_end = false;
        self
    }

    /// Shows what is being prepared ("loading weights", ...) before the first iteration (bar only).
    pub fn stage(&self, what: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(what.to_string());
        }
    }

    /// Sets how the `--save-every` snapshots are written (alpha and metadata are known once the inputs
    /// and the network are loaded).
    pub fn set_save_options(&mut self, save: SaveOptions) {
        self.save = save;
    }

    /// A line of its own: above the bar, or on stderr; nothing when quiet.
    fn line(&self, text: &str) {
        match (&self.bar, self.display) {
            (_, Display::Quiet) => {}
            (Some(bar), _) => bar.println(text),
            (None, _) => note(text),
        }
    }

    /// Removes the bar, so that the summary or an error is the last thing on the terminal.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// The error of a failed `--save-every` write, which stopped the run.
    pub fn take_save_error(&mut self) -> Option<impasto::Error> {
        self.save_error.take()
    }

    /// The newest checkpoint the run wrote: the iterations it holds and its file.
    pub fn last_checkpoint(&self) -> Option<(usize, &Path)> {
        self.checkpoint.as_ref().map(|(i, p)| (*i, p.as_path()))
    }

    fn log_step(&self, step: &Step<'_>, eta: &str) {
        let Display::Plain { every } = self.display else { return };
        if every == 0 || (!step.iteration.is_multiple_of(every) && step.iteration != step.iterations) {
            return;
        }
        let per_it = step.elapsed.as_secs_f64() / step.iteration.max(1) as f64;
        let width = step.iterations.to_string().len();
        let rate = if per_it < 1.0 { format!("{per_it:.2} s/it") } else { format!("{per_it:.1} s/it") };
        note(&format!(
            "iter {:>width$}/{}  {}{}  {rate}  eta {eta}",
            step.iteration,
            step.iterations,
            scale_tag(step),
            fmt_losses(&step.losses),
        ));
    }
}

/// `scale 2/3 512x384  ` during a multi-scale run, else nothing; `tile 4/9 512x512  ` on a tiled scale.
fn scale_tag(step: &Step<'_>) -> String {
    let tile = match step.tile {
        Some((i, n)) => format!("tile {}/{n} {}x{}  ", i + 1, step.width, step.height),
        None => String::new(),
    };
    if step.scales > 1 {
        let size =
            if step.tile.is_some() { String::new() } else { format!(" {}x{}", step.width, step.height) };
        format!("scale {}/{}{size}  {tile}", step.scale + 1, step.scales)
    } else {
        tile
    }
}

/// ` in 3 scales (256x192 ×500, 512x384 ×250, 1024x768 ×125)` for a multi-scale run, else nothing.
fn schedule_text(info: &RunInfo) -> String {
    let tiles = |k: usize| match info.tiles.get(k) {
        Some(Some(t)) => format!(" in {} tiles of {} px", t.len(), t.tile),
        _ => String::new(),
    };
    if info.scales.len() <= 1 {
        return tiles(0);
    }
    let parts: Vec<String> = info
        .scales
        .iter()
        .enumerate()
        .map(|(k, s)| format!("{}x{} ×{}{}", s.width, s.height, s.iterations, tiles(k)))
        .collect();
    format!(" in {} scales ({})", info.scales.len(), parts.join(", "))
}

impl Observer for Progress {
    fn checkpoint_at_end(&self) -> bool {
        self.checkpoint_at_end
    }

    fn on_start(&mut self, info: &RunInfo) {
        self.eta = Some(Eta::new(info));
        match self.display {
            Display::Quiet => {}
            Display::Plain { every } => {
                if every > 0 {
                    note(&format!(
                        "start {}x{}, {} iterations{}  {}",
                        info.width,
                        info.height,
                        info.iterations,
                        schedule_text(info),
                        fmt_losses(&info.initial)
                    ));
                }
            }
            Display::Bar => {
                if let Some(bar) = &self.bar {
                    bar.set_length(info.iterations as u64);
                    bar.set_position(0);
                    bar.set_style(
                        style("{spinner} {pos:>4}/{len} [{bar:20}] {elapsed} {wide_msg}")
                            .progress_chars("=> "),
                    );
                    bar.set_message(format!("eta ?  {}", bar_losses(&info.initial)));
                }
            }
        }
    }

    fn on_step(&mut self, step: &Step<'_>) -> ControlFlow<()> {
        let eta = self.eta.as_mut().and_then(|e| e.update(step.scale, step.iteration, step.elapsed));
        let eta = eta.map_or_else(|| "?".to_owned(), fmt_duration);
        if let Some(bar) = &self.bar {
            bar.set_position(step.iteration as u64);
            bar.set_message(format!("eta {eta}  {}{}", scale_tag(step), bar_losses(&step.losses)));
        }
        self.log_step(step, &eta);
        if self.save_every > 0 && step.iteration.is_multiple_of(self.save_every) {
            let path = numbered_path(&self.output, step.iteration, step.iterations);
            if let Err(e) = impasto::save_image_with(&step.image(), &path, &self.save) {
                self.save_error = Some(e);
                return ControlFlow::Break(());
            }
        }
        if self.stop_requested.load(Ordering::SeqCst) {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn on_checkpoint(&mut self, iteration: usize, path: &Path) {
        self.checkpoint = Some((iteration, path.to_path_buf()));
        self.line(&format!("wrote checkpoint {} (iteration {iteration})", path.display()));
    }

    fn on_replan(&mut self, replan: &Replan) {
        self.line(&format!("impasto: {replan}"));
        self.eta = self.eta.as_ref().map(|e| e.replanned(replan));
        if let Some(bar) = &self.bar {
            bar.set_length(replan.iterations as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_paths_sort_by_name() {
        let p = |it, n| numbered_path(Path::new("dir/out.png"), it, n);
        assert_eq!(p(100, 500), Path::new("dir/out_0100.png"));
        assert_eq!(p(7, 500), Path::new("dir/out_0007.png"));
        assert_eq!(p(500, 20000), Path::new("dir/out_00500.png"));
        assert_eq!(numbered_path(Path::new("x.tar.tif"), 3, 10), Path::new("x.tar_0003.tif"));
        assert_eq!(numbered_path(Path::new("noext"), 3, 10), Path::new("noext_0003"));
    }

    #[test]
    fn durations() {
        assert_eq!(fmt_duration(Duration::from_millis(400)), "0s");
        assert_eq!(fmt_duration(Duration::from_secs(42)), "42s");
        assert_eq!(fmt_duration(Duration::from_secs(302)), "5m02s");
        assert_eq!(fmt_duration(Duration::from_secs(3600 + 5 * 60 + 30)), "1h05m");
    }

    #[test]
    fn multi_scale_schedule_is_listed() {
        let info = |scales: Vec<(u32, u32, usize)>| RunInfo {
            width: 1024,
            height: 768,
            iterations: scales.iter().map(|s| s.2).sum(),
            scales: scales
                .into_iter()
                .map(|(width, height, iterations)| impasto::Scale { width, height, iterations })
                .collect(),
            tiles: Vec::new(),
            initial: Losses::default(),
        };
        assert_eq!(schedule_text(&info(vec![(1024, 768, 500)])), "");
        assert_eq!(
            schedule_text(&info(vec![(512, 384, 500), (1024, 768, 250)])),
            " in 2 scales (512x384 ×500, 1024x768 ×250)"
        );
    }

    #[test]
    fn losses_are_short() {
        assert_eq!(fmt_loss(12344.0), "1.234e4");
        assert_eq!(fmt_loss(0.0), "0.000e0");
        let l = Losses { content: 12.0, style: 3.0, tv: 0.5, temporal: 0.0 };
        assert_eq!(fmt_losses(&l), "content 1.200e1  style 3.000e0  tv 5.000e-1  total 1.550e1");
    }
}
