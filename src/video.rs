//! `impasto video IN STYLE... -o OUT`: stylises every frame of a video (anything ffmpeg reads, or a
//! folder of frames) with the run flags of the main command, kept consistent from frame to frame as in
//! Ruder et al. (2016): each frame after the first starts from the previous stylised frame carried along
//! the optical flow (the content where that flow is unreliable) and is held to it by the temporal loss.
//! Finished frames are written one by one (to OUT if it is a folder, else to `OUT.frames/`, encoded to
//! H.264 with the input's audio at the end), so a stopped clip continues with `--resume`.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use impasto::image::Rgb32FImage;
use impasto::{
    AlphaPlane, ColorMode, Init, Losses, Observer, SaveOptions, StopReason, StyleConfig, Temporal, Vgg,
};
use impasto_video::{Earlier, FlowParams, FrameReader, frame_path};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::args::RunArgs;
use crate::progress::{Display, fmt_duration, fmt_loss, note};
use crate::run::Outcome;
use crate::settings::{self, Env, Settings};
use crate::weights::{Got, Located};
use crate::{inputs, interrupt};

mod input;

use input::Input;

/// The temporal weight when `--temporal-weight` is not given (measured: see the README's video section).
pub const DEFAULT_TEMPORAL_WEIGHT: f32 = 1.5e8;

/// The frames the temporal term looks back to when `--long-term` is not given (measured: see the
/// README's video section).
pub const DEFAULT_LONG_TERM: &str = "1";

/// The file in a frames folder that records the settings that made its frames.
const SETTINGS_FILE: &str = "impasto-video.txt";

pub const AFTER_HELP: &str = "\
Every frame is stylised with the run flags of `impasto` (size, weights, layers, colour options,
model); frames after the first start from the previous stylised frame carried along the optical
flow and are held to it where the flow is reliable (--temporal-weight), with --frame-iterations
iterations each (default: three quarters of the first's). Finished frames are kept (OUT itself
when it is a folder, else OUT's name with .frames): after Ctrl-C or a crash, the same command with
--resume continues the clip.

ffmpeg reads the input and writes .mp4 output; it is looked for on PATH unless --ffmpeg says where.

Examples:
  impasto video clip.mp4 starry_night.jpg --size 384 -o clip_starry.mp4
  impasto video clip.mp4 style.jpg --size 384 -o clip_starry.mp4 --resume
  impasto video frames/ style.jpg --fps 24 -o out_frames/";

/// Arguments of `impasto video`: the run's flags plus the video ones.
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub struct VideoArgs {
    /// The run flags (IN is the CONTENT, OUT the --output).
    #[command(flatten)]
    pub run: RunArgs,

    /// The ffmpeg program [default: ffmpeg on PATH]
    #[arg(long, value_name = "PATH", help_heading = "Video")]
    pub ffmpeg: Option<PathBuf>,

    /// Weight of the temporal loss (consistency with the previous stylised frame)
    #[arg(long, value_name = "W", default_value_t = DEFAULT_TEMPORAL_WEIGHT, help_heading = "Video")]
    pub temporal_weight: f32,

    /// Long-term consistency: the earlier frames the temporal term holds each frame to, as offsets
    /// (1 = the previous frame; e.g. 1,2,4), each on the pixels no nearer frame covers reliably
    #[arg(
        long,
        value_name = "OFFSETS",
        default_value = DEFAULT_LONG_TERM,
        value_parser = parse_long_term,
        help_heading = "Video"
    )]
    pub long_term: LongTerm,

    /// Iterations of each frame after the first [default: 3/4 of --iterations]
    #[arg(long, value_name = "N", help_heading = "Video")]
    pub frame_iterations: Option<usize>,

    /// Frame rate of the output when IN is a folder of frames
    #[arg(long, value_name = "FPS", help_heading = "Video")]
    pub fps: Option<String>,
}

/// The `--long-term` frame offsets, increasing from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongTerm(pub Vec<usize>);

impl std::fmt::Display for LongTerm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(usize::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

fn parse_long_term(text: &str) -> Result<LongTerm, String> {
    impasto_video::parse_offsets(text).map(LongTerm).map_err(|e| e.to_string())
}

/// Iterations of each frame after the first when `--frame-iterations` is not given: three quarters of
/// the first frame's (at least 1). Measured on the README's clips (5 frames, 100 iterations first):
/// ¾ keeps both ≥ 3.7× steadier than independent runs with the style loss within 6.3 %; ½ took the
/// pan + zoom clip's style to +10.7 %, a fifth to +13–25 %.
fn default_frame_iterations(first: usize) -> usize {
    (first * 3 / 4).max(1)
}

/// Runs `impasto video`.
pub fn run(mut args: VideoArgs, env: &Env) -> Result<Outcome> {
    let resume = args.run.resume.take().is_some();
    const RESUME: &str = "frames start from the previous frame; use --resume";
    let defaults = StyleConfig::default();
    for (given, flag, why) in [
        (args.run.checkpoint.is_some(), "--checkpoint", RESUME),
        (args.run.save_every > 0, "--save-every", RESUME),
        (args.run.time_limit.is_some(), "--time-limit", RESUME),
        (args.run.init != "content", "--init", RESUME),
        (args.run.seed != defaults.seed, "--seed", "it seeds --init noise"),
        (args.run.quality != SaveOptions::default().quality, "--quality", "frames are PNG, an .mp4 is H.264"),
    ] {
        if given {
            bail!("{flag} does not apply to `impasto video` ({why})");
        }
    }
    settings::check_flags_apply(&args.run)?;
    if !args.temporal_weight.is_finite() || args.temporal_weight < 0.0 {
        bail!("invalid --temporal-weight {}: it must be a finite number ≥ 0", args.temporal_weight);
    }
    let first_iterations = args.run.iterations;
    let frame_iterations =
        args.frame_iterations.unwrap_or_else(|| default_frame_iterations(first_iterations));
    input::refuse_input_as_output(args.run.content.as_deref(), args.run.output.as_deref())?;
    let mut s = settings::resolve(args.run, env)?;
    s.settle_device()?;
    let input = input::open_input(&s.content, args.ffmpeg.as_deref(), args.fps.as_deref())?;
    let output = input::plan_output(&s.output, &input, args.ffmpeg.as_deref())?;
    if output.mp4.is_some() && s.save.depth != 8 {
        bail!("--depth {} needs a folder of frames as the output (an .mp4 is 8-bit H.264)", s.save.depth);
    }
    let frame_rate = input.frame_rate(args.fps.as_deref());
    let total = match &input {
        Input::Video { info, .. } => info.frames,
        Input::Folder { frames, .. } => Some(*frames),
    };
    let styles =
        s.styles.iter().map(|p| impasto::load_image(p).context("style image")).collect::<Result<Vec<_>>>()?;
    let net = load_network(&mut s)?;
    (s.config.mask, s.config.style_masks) = inputs::load_masks(&s, input.frame_size())?;
    // What decides the frames (not the device, the threads or the budgets: a clip stopped on one
    // machine continues on another).
    let key = format!(
        "{}\niterations {first_iterations}\ninput {}\nstyles {:?}\ntemporal weight {}\nframe iterations {frame_iterations}\nlong term {}\n",
        s.config.result_key(),
        s.content.display(),
        s.styles,
        args.temporal_weight,
        args.long_term
    );
    let done = prepare_frames_folder(&output.frames, &key, resume)?;
    interrupt::install(s.display);
    let mut reader = match &input {
        Input::Video { ffmpeg, info } => FrameReader::video(ffmpeg, &s.content, info)?,
        Input::Folder { .. } => FrameReader::folder(&s.content)?,
    };
    let job = Job {
        s: &s,
        net: &net,
        styles: &styles,
        temporal_weight: args.temporal_weight,
        offsets: &args.long_term.0,
        first_iterations,
        frame_iterations,
        total,
        frames_dir: &output.frames,
        save: if output.mp4.is_some() { SaveOptions::default() } else { s.save.clone() },
    };
    let (written, interrupted) = job.run(&mut reader, done)?;
    drop(reader);
    let quiet = s.display == Display::Quiet;
    if interrupted {
        if !quiet {
            note(&format!(
                "interrupted: {written} finished frames kept in {} (continue with the same command and --resume)",
                output.frames.display()
            ));
        }
        return Ok(Outcome::Interrupted);
    }
    if written == 0 {
        bail!("{}: no frames to stylise", s.content.display());
    }
    if let Some((mp4, ffmpeg)) = &output.mp4 {
        let audio = match &input {
            Input::Video { info, .. } => info.has_audio.then_some(s.content.as_path()),
            Input::Folder { .. } => None,
        };
        impasto_video::encode(ffmpeg, &output.frames, &frame_rate, audio, mp4)?;
        std::fs::remove_dir_all(&output.frames)
            .with_context(|| format!("removing the finished frames in {}", output.frames.display()))?;
    }
    if !quiet {
        let target = output.mp4.as_ref().map_or(&output.frames, |(mp4, _)| mp4);
        note(&format!("wrote {} ({written} frames at {frame_rate} fps)", target.display()));
    }
    Ok(Outcome::Done)
}

/// `--ffmpeg`, else `ffmpeg` on PATH, checked by running `ffmpeg -version`.
/// Creates the frames folder, or checks it for `--resume`; returns the frames already finished.
fn prepare_frames_folder(dir: &Path, key: &str, resume: bool) -> Result<usize> {
    let settings_file = dir.join(SETTINGS_FILE);
    let finished = impasto_video::finished_frames(dir);
    if resume {
        match std::fs::read_to_string(&settings_file) {
            Ok(k) if k == key => return Ok(finished),
            Ok(_) => bail!(
                "cannot --resume: the frames in {} were made with other settings or input",
                dir.display()
            ),
            Err(_) => bail!("cannot --resume: {} holds no frames of an earlier run", dir.display()),
        }
    }
    if finished > 0 || settings_file.exists() {
        bail!(
            "{} already holds frames of an earlier run: continue it with --resume, or delete the folder",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(&settings_file, key).with_context(|| format!("writing {}", settings_file.display()))?;
    Ok(0)
}

fn load_network(s: &mut Settings) -> Result<Vgg> {
    let builtin = match s.weights.locate(s.config.model)? {
        Located::File(p) => {
            return Ok(Vgg::load(&p, s.config.model, s.config.pooling, s.preprocess, &s.deepest_layer)?);
        }
        Located::Builtin => true,
        Located::Missing(missing) => match missing.get(s.display)? {
            Got::File(p) => {
                return Ok(Vgg::load(&p, s.config.model, s.config.pooling, s.preprocess, &s.deepest_layer)?);
            }
            Got::Builtin(why) => {
                s.use_builtin()?;
                if s.display != Display::Quiet {
                    note(&format!("{why}: using {}", impasto::EMBEDDED_LABEL));
                }
                false
            }
        },
    };
    let _ = builtin;
    Ok(Vgg::embedded(s.config.pooling, &s.deepest_layer)?)
}

/// One clip's stylisation.
struct Job<'a> {
    s: &'a Settings,
    net: &'a Vgg,
    styles: &'a [Rgb32FImage],
    temporal_weight: f32,
    /// The `--long-term` offsets, increasing from 1.
    offsets: &'a [usize],
    first_iterations: usize,
    frame_iterations: usize,
    total: Option<usize>,
    frames_dir: &'a Path,
    save: SaveOptions,
}

/// An earlier frame: its content and its optimised (pre-colour) result, at the output size.
struct Previous {
    content: Rgb32FImage,
    result: Rgb32FImage,
}

impl Job<'_> {
    /// Stylises the frames after the `done` finished ones; returns (frames finished, interrupted).
    fn run(&self, reader: &mut FrameReader, done: usize) -> Result<(usize, bool)> {
        let config = &self.s.config;
        let mut progress = ClipProgress::new(self.s.display, self.total, done);
        // The frames the offsets reach back to, newest first: memory does not grow with the clip.
        let keep = self.offsets.last().copied().unwrap_or(1);
        let mut earlier: VecDeque<Previous> = VecDeque::with_capacity(keep + 1);
        let mut styles_opt: Option<Vec<Rgb32FImage>> = None;
        let mut index = 0;
        while let Some(frame) = reader.next_frame()? {
            let (w, h) = impasto::fit_longest_side(frame.width(), frame.height(), config.size);
            let content = impasto::resize(&frame, w, h);
            if index < done {
                if index + keep >= done {
                    let path = frame_path(self.frames_dir, index);
                    let result = impasto::load_image(&path).context("finished frame")?;
                    earlier.push_front(Previous { result: impasto::resize(&result, w, h), content });
                    earlier.truncate(keep);
                }
                index += 1;
                continue;
            }
            if interrupt::requested() {
                return Ok((index, true));
            }
            // The optimisation runs without the colour post-processing, so that consecutive results
            // are comparable; the colours are put back on each written frame.
            let luminance = config.color == ColorMode::Luminance;
            let styles = styles_opt.get_or_insert_with(|| match luminance {
                true => self.styles.iter().map(|s| impasto::match_luminance(s, &content)).collect(),
                false => self.styles.to_vec(),
            });
            let content_opt = if luminance { impasto::luminance(&content) } else { content.clone() };
            let mut cfg = StyleConfig { color: ColorMode::Style, ..config.clone() };
            if luminance {
                cfg.color_match = None;
            }
            progress.start_frame(index);
            let out = match earlier.is_empty() {
                true => {
                    cfg.iterations = self.first_iterations;
                    impasto::stylize(self.net, &cfg, &content_opt, styles, &mut progress)?
                }
                false => {
                    let (target, mask) = self.carry_over(&earlier, &content);
                    let init = impasto_video::blend(&target, &content_opt, &mask);
                    cfg.iterations = self.frame_iterations;
                    cfg.min_size = cfg.size;
                    cfg.init = Init::Image(init);
                    let reliability = AlphaPlane::from_raw(w, h, mask.data).context("mask size")?;
                    let temporal = Temporal { target, reliability, weight: self.temporal_weight };
                    impasto::stylize_frame(self.net, &cfg, &content_opt, styles, &temporal, &mut progress)?
                }
            };
            if out.stop == StopReason::Cancelled {
                progress.finish();
                return Ok((index, true));
            }
            let result = out.image;
            let written = match config.color {
                ColorMode::Style => result.clone(),
                _ => impasto::preserve_colors(&result, &content),
            };
            let path = frame_path(self.frames_dir, index);
            let tmp = path.with_file_name(format!("tmp_{}", index + 1));
            let tmp = tmp.with_extension("png");
            impasto::save_image_with(&written, &tmp, &self.save)?;
            std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
            progress.end_frame(index, &out.losses);
            earlier.push_front(Previous { content, result });
            earlier.truncate(keep);
            index += 1;
        }
        progress.finish();
        Ok((index, false))
    }
}

impl Job<'_> {
    /// The earlier results the offsets reach (newest first in `earlier`) carried onto `content`, as one
    /// temporal target and its mask.
    fn carry_over(
        &self,
        earlier: &VecDeque<Previous>,
        content: &Rgb32FImage,
    ) -> (Rgb32FImage, impasto_video::Plane) {
        let frames: Vec<Earlier<'_>> = self
            .offsets
            .iter()
            .filter_map(|&j| earlier.get(j - 1))
            .map(|p| Earlier { content: &p.content, result: &p.result })
            .collect();
        impasto_video::carry_over(&frames, content, &FlowParams::default())
    }
}

/// The observer of a clip: a bar (or log lines) with the frame, its iteration, and the ETA of the
/// frame and of the whole clip; Ctrl-C stops the current frame.
struct ClipProgress {
    display: Display,
    bar: Option<ProgressBar>,
    total: Option<usize>,
    start: Instant,
    frame: usize,
    frame_start: Instant,
    /// Seconds of the frames after the first, done in this run.
    later: Vec<f64>,
    first_seconds: Option<f64>,
    done_before: usize,
}

impl ClipProgress {
    fn new(display: Display, total: Option<usize>, done_before: usize) -> ClipProgress {
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
            done_before,
        }
    }

    fn start_frame(&mut self, index: usize) {
        self.frame = index;
        self.frame_start = Instant::now();
    }

    fn frame_label(&self) -> String {
        match self.total {
            Some(t) => format!("frame {}/{}", self.frame + 1, t.max(self.frame + 1)),
            None => format!("frame {}", self.frame + 1),
        }
    }

    /// Seconds a frame after the first is expected to take.
    fn per_frame(&self) -> Option<f64> {
        match self.later.len() {
            0 => self.first_seconds,
            n => Some(self.later.iter().sum::<f64>() / n as f64),
        }
    }

    fn end_frame(&mut self, index: usize, losses: &Losses) {
        let secs = self.frame_start.elapsed().as_secs_f64();
        if index == 0 {
            self.first_seconds = Some(secs);
        } else {
            self.later.push(secs);
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
        let _ = self.done_before;
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Observer for ClipProgress {
    fn on_replan(&mut self, replan: &impasto::Replan) {
        let line = format!("impasto: {}: {replan}", self.frame_label());
        match (&self.bar, self.display) {
            (_, Display::Quiet) => {}
            (Some(bar), _) => bar.println(line),
            (None, _) => crate::progress::note(&line),
        }
    }

    fn on_step(&mut self, step: &impasto::Step<'_>) -> std::ops::ControlFlow<()> {
        if let Some(bar) = &self.bar {
            let done = step.iteration as f64;
            let elapsed = self.frame_start.elapsed().as_secs_f64();
            let frame_left = elapsed / done * (step.iterations as f64 - done);
            let clip = match (self.total, self.per_frame()) {
                (Some(t), Some(per)) => {
                    let left = t.saturating_sub(self.frame + 1) as f64 * per + frame_left;
                    format!(", clip ETA {}", fmt_duration(Duration::from_secs_f64(left.max(0.0))))
                }
                _ => String::new(),
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
