//! `impasto video IN STYLE... -o OUT`: stylises every frame of a video (anything ffmpeg reads, or a
//! folder of frames) with the run flags of the main command, kept consistent from frame to frame as in
//! Ruder et al. (2016): each frame after the first starts from the previous stylised frame carried along
//! the optical flow (the content where that flow is unreliable) and is held to it by the temporal loss;
//! later passes (`--passes`, [`passes`]) go back over the clip in alternating directions.
//! Finished frames are written one by one (to OUT if it is a folder, else to `OUT.frames/`, encoded to
//! H.264 with the input's audio at the end), and a stopped frame's checkpoint beside them
//! ([`partial`]), so a stopped clip continues with `--resume` where it stopped.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use impasto::image::Rgb32FImage;
use impasto::{AlphaPlane, ColorMode, Init, SaveOptions, StopReason, StyleConfig, Temporal, Vgg};
use impasto_video::{Earlier, FlowParams, FrameReader, frame_path};

use crate::args::RunArgs;
use crate::progress::{Display, note};
use crate::run::Outcome;
use crate::settings::{self, Env, Settings};
use crate::weights::{Got, Located};
use crate::{inputs, interrupt};

mod input;
mod partial;
mod passes;
mod progress;

use input::Input;
use passes::{PassState, PassStore};
use progress::ClipProgress;

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
iterations each (default: three quarters of the first's). A second pass (--passes, default 2)
goes back over the clip from its end, each frame held to the one after it, with --pass-iterations
each (default: a third of --frame-iterations), so the style does not drift along the clip.
Finished frames are kept (OUT itself when it is a folder, else OUT's name with .frames), and a
stopped frame's checkpoint beside them: after Ctrl-C, SIGTERM or a crash, the same command with
--resume continues the clip where it stopped.

ffmpeg reads the input and writes .mp4 output; it is looked for on PATH unless --ffmpeg says where.

Examples:
  impasto video clip.mp4 starry_night.jpg --size 384 -o clip_starry.mp4
  impasto video clip.mp4 style.jpg --size 384 -o clip_starry.mp4 --resume
  impasto video frames/ style.jpg --fps 24 -o out_frames/
  impasto video clip.mp4 style.jpg --passes 1 -o quick.mp4     # a single pass, a quarter faster";

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

    /// Passes over the clip: each after the first goes over it again in the other direction, every
    /// frame starting from its last result blended with the neighbour just redone and held to it
    /// (Ruder et al.'s multi-pass: the style does not drift along the clip); 1 = a single pass
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_PASSES,
        value_parser = parse_passes,
        help_heading = "Video"
    )]
    pub passes: usize,

    /// Iterations of each frame in each pass after the first [default: 1/3 of --frame-iterations]
    #[arg(long, value_name = "N", help_heading = "Video")]
    pub pass_iterations: Option<usize>,

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

/// The passes over a clip when `--passes` is not given (measured: see the README's video section).
pub const DEFAULT_PASSES: usize = 2;

/// The most `--passes` a clip may have.
const MAX_PASSES: usize = 100;

fn parse_passes(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_PASSES).contains(&n) => Ok(n),
        _ => Err(format!("must be a whole number from 1 to {MAX_PASSES}")),
    }
}

/// Iterations of each frame in a pass after the first when `--pass-iterations` is not given: a third
/// of `--frame-iterations` (at least 1), so that a frame after the first gets as many iterations in
/// all as the first. Measured on the README's 10-frame clips: a second pass of 25 iterations after 75
/// takes the pan + zoom clip's style loss from +14.7 % to −2.2 % of independent runs, with the
/// warping error 3.75× lower instead of 3.52×.
fn default_pass_iterations(frame_iterations: usize) -> usize {
    (frame_iterations / 3).max(1)
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
    let passes = args.passes;
    let pass_iterations = match args.pass_iterations {
        Some(_) if passes == 1 => bail!("--pass-iterations needs --passes 2 or more"),
        Some(0) => bail!("invalid --pass-iterations 0: a pass needs at least 1 iteration a frame"),
        Some(n) => n,
        None => default_pass_iterations(frame_iterations),
    };
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
    let mut key = format!(
        "{}\niterations {first_iterations}\ninput {}\nstyles {:?}\ntemporal weight {}\nframe iterations {frame_iterations}\nlong term {}\n",
        s.config.result_key(),
        s.content.display(),
        s.styles,
        args.temporal_weight,
        args.long_term
    );
    if passes > 1 {
        key.push_str(&format!("passes {passes}\npass iterations {pass_iterations}\n"));
    }
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
        passes,
        pass_iterations,
        frames_dir: &output.frames,
        save: if output.mp4.is_some() { SaveOptions::default() } else { s.save.clone() },
        store: (passes > 1).then(|| PassStore::new(&output.frames)),
    };
    let share = pass_iterations as f64 / frame_iterations as f64;
    let mut progress = ClipProgress::new(s.display, total, passes, share);
    let later = match &job.store {
        Some(store) => store.state()?,
        None => None,
    };
    let (written, interrupted) = match later {
        Some(state) => {
            let found = impasto_video::finished_frames(&output.frames);
            if found < state.frames {
                bail!(
                    "cannot --resume: {} holds {found} of the clip's {} frames; delete the folder to start again",
                    output.frames.display(),
                    state.frames
                );
            }
            (state.frames, false)
        }
        None => job.run(&mut reader, done, &mut progress)?,
    };
    drop(reader);
    let quiet = s.display == Display::Quiet;
    let stopped = |what: String, progress: &ClipProgress| {
        progress.finish();
        if !quiet {
            note(&format!(
                "interrupted: {what} kept in {} (continue with the same command and --resume)",
                output.frames.display()
            ));
        }
        Ok(Outcome::Interrupted)
    };
    if interrupted {
        return stopped(
            match passes {
                1 => format!("{written} finished frames"),
                _ => format!("{written} frames of pass 1"),
            },
            &progress,
        );
    }
    if written == 0 {
        bail!("{}: no frames to stylise", s.content.display());
    }
    if let Some(store) = &job.store {
        let from = later.unwrap_or(PassState { pass: 2, done: 0, frames: written });
        if let Some(at) = job.later_passes(store, from, &mut progress)? {
            return stopped(
                format!(
                    "the clip's {written} frames, {} of them from pass {} and the rest from pass {},",
                    at.done,
                    at.pass,
                    at.pass - 1
                ),
                &progress,
            );
        }
    }
    progress.finish();
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
    /// `--passes` and `--pass-iterations`.
    passes: usize,
    pass_iterations: usize,
    frames_dir: &'a Path,
    save: SaveOptions,
    /// What later passes read (only with `--passes` above 1).
    store: Option<PassStore>,
}

/// An earlier frame: its content and its optimised (pre-colour) result, at the output size.
struct Previous {
    content: Rgb32FImage,
    result: Rgb32FImage,
}

/// Where a frame after the clip's first starts, and what the temporal term holds it to (none for the
/// first frame of a later pass).
struct Start {
    init: Rgb32FImage,
    temporal: Option<(Rgb32FImage, impasto_video::Plane)>,
}

impl Job<'_> {
    /// The first pass: stylises the frames after the `done` finished ones; returns (frames
    /// finished, interrupted).
    fn run(
        &self,
        reader: &mut FrameReader,
        done: usize,
        progress: &mut ClipProgress,
    ) -> Result<(usize, bool)> {
        let config = &self.s.config;
        // The frames the offsets reach back to, newest first: memory does not grow with the clip.
        let keep = self.offsets.last().copied().unwrap_or(1);
        let mut earlier: VecDeque<Previous> = VecDeque::with_capacity(keep + 1);
        let mut styles: Option<Vec<Rgb32FImage>> = None;
        let mut index = 0;
        while let Some(frame) = reader.next_frame()? {
            let (w, h) = impasto::fit_longest_side(frame.width(), frame.height(), config.size);
            let content = impasto::resize(&frame, w, h);
            let styles = styles.get_or_insert_with(|| self.optimised_styles(&content));
            if index < done {
                if index + keep >= done {
                    let result = match &self.store {
                        Some(store) => store.load(passes::RESULT, index)?,
                        None => impasto::load_image(&frame_path(self.frames_dir, index))
                            .context("finished frame")?,
                    };
                    earlier.push_front(Previous { result: impasto::resize(&result, w, h), content });
                    earlier.truncate(keep);
                }
                index += 1;
                continue;
            }
            if interrupt::requested() {
                return Ok((index, true));
            }
            progress.start_frame(index, index);
            let at = (1, index);
            let out = match earlier.is_empty() {
                true => self.optimise(at, &content, styles, self.first_iterations, None, progress)?,
                false => {
                    let (target, mask) = self.carry_over(&earlier, &content);
                    let init = impasto_video::blend(&target, &self.optimised_content(&content), &mask);
                    let start = Start { init, temporal: Some((target, mask)) };
                    self.optimise(at, &content, styles, self.frame_iterations, Some(start), progress)?
                }
            };
            if out.stop == StopReason::Cancelled {
                return Ok((index, true));
            }
            // The result as a `--resume` reads it back, so that the next frame starts the same way
            // (and its checkpoint fits) whether or not the clip was stopped in between.
            let result = match &self.store {
                Some(store) => {
                    store.save(passes::CONTENT, index, &content)?;
                    store.save(passes::RESULT, index, &out.image)?
                }
                None => impasto::as_saved(&out.image, self.save.depth),
            };
            self.write_frame(index, &out.image, &content)?;
            self.drop_partial(at)?;
            progress.end_frame(&out.losses);
            earlier.push_front(Previous { content, result });
            earlier.truncate(keep);
            index += 1;
        }
        Ok((index, false))
    }

    /// The styles the frames are optimised towards: with `--color luminance`, matched to the
    /// luminance of the clip's first frame.
    fn optimised_styles(&self, first: &Rgb32FImage) -> Vec<Rgb32FImage> {
        match self.s.config.color {
            ColorMode::Luminance => self.styles.iter().map(|s| impasto::match_luminance(s, first)).collect(),
            _ => self.styles.to_vec(),
        }
    }

    /// What a frame's optimisation sees of its content: its luminance with `--color luminance`.
    fn optimised_content(&self, content: &Rgb32FImage) -> Rgb32FImage {
        match self.s.config.color {
            ColorMode::Luminance => impasto::luminance(content),
            _ => content.clone(),
        }
    }

    /// Optimises one frame: the clip's first from the run's own start and schedule (`start` None),
    /// any other at the output size from `start`. The optimisation runs without the colour
    /// post-processing, so that neighbouring results are comparable; [`Job::write_frame`] puts the
    /// colours back.
    ///
    /// The frame (`at`) continues its checkpoint when a stopped run left one
    /// ([`Job::with_partial`]).
    #[allow(clippy::too_many_arguments)]
    fn optimise(
        &self,
        at: partial::At,
        content: &Rgb32FImage,
        styles: &[Rgb32FImage],
        iterations: usize,
        start: Option<Start>,
        progress: &mut ClipProgress,
    ) -> Result<impasto::Stylized> {
        let config = &self.s.config;
        let content_opt = self.optimised_content(content);
        let mut cfg = StyleConfig { color: ColorMode::Style, iterations, ..config.clone() };
        if config.color == ColorMode::Luminance {
            cfg.color_match = None;
        }
        let Some(start) = start else {
            return self.with_partial(cfg, at, progress, |cfg, progress| {
                impasto::stylize(self.net, cfg, &content_opt, styles, progress)
            });
        };
        cfg.min_size = cfg.size;
        cfg.init = Init::Image(start.init);
        let temporal = match start.temporal {
            None => None,
            Some((target, mask)) => {
                let (w, h) = (content.width(), content.height());
                let reliability = AlphaPlane::from_raw(w, h, mask.data).context("mask size")?;
                Some(Temporal { target, reliability, weight: self.temporal_weight })
            }
        };
        self.with_partial(cfg, at, progress, |cfg, progress| match &temporal {
            None => impasto::stylize(self.net, cfg, &content_opt, styles, progress),
            Some(t) => impasto::stylize_frame(self.net, cfg, &content_opt, styles, t, progress),
        })
    }

    /// Writes frame `index` (its colours put back), replacing the file at once (`save_image_with`
    /// writes a temporary file and renames it).
    fn write_frame(&self, index: usize, result: &Rgb32FImage, content: &Rgb32FImage) -> Result<()> {
        let written = match self.s.config.color {
            ColorMode::Style => result.clone(),
            _ => impasto::preserve_colors(result, content),
        };
        Ok(impasto::save_image_with(&written, &frame_path(self.frames_dir, index), &self.save)?)
    }

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
