//! The style-transfer command: checks everything cheap first (settings, output file and its options,
//! weights file), then loads the images and the network, runs `impasto::stylize` and writes the result
//! (with the content's alpha and the run's parameters), also when the run is interrupted, reaches its
//! time limit or its loss becomes non-finite. Weights found nowhere are downloaded once the images
//! have been read, so a mistyped file name never costs a download.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, anyhow};
use impasto::image::Rgb32FImage;
use impasto::{OutputReservation, SaveOptions, Saved, StopReason, Stylized, Vgg};

use crate::args::RunArgs;
use crate::inputs::Inputs;
use crate::progress::{Display, Progress, fmt_loss, note};
use crate::settings::{self, Env, Settings};
use crate::weights::{Got, Located, Source};
use crate::{inputs, interrupt, params};

/// How a run ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The image was written.
    Done,
    /// Ctrl-C: the current image was written (or none, if the run had not started).
    Interrupted,
}

/// Runs the command line `args` in environment `env`.
pub fn run(args: RunArgs, env: &Env) -> Result<Outcome> {
    settings::check_flags_apply(&args)?;
    run_settings(settings::resolve(args, env)?).map(|ran| ran.outcome)
}

/// How a run ended, and the result's iterations, losses and seconds when an image was written.
#[derive(Debug)]
pub struct Ran {
    /// How it ended.
    pub outcome: Outcome,
    /// (iterations, losses, seconds of optimisation) of the written image.
    pub result: Option<(usize, impasto::Losses, f64)>,
}

/// Runs resolved settings (`impasto batch` runs each job this way; `save.metadata` entries of the
/// settings are written after the parameters).
pub fn run_settings(mut s: Settings) -> Result<Ran> {
    s.settle_device()?;
    impasto::check_writable(&s.output)?;
    s.save.check(&s.output)?;
    // Downloading comes before the Ctrl-C handler: a Ctrl-C then ends it at once, and the partial
    // download is resumed by the next run.
    let (weights, inputs) = match s.weights.locate(s.config.model)? {
        Located::File(p) => (Source::File(p), None),
        Located::Builtin => (Source::Builtin, None),
        Located::Missing(missing) => {
            let mut inputs = inputs::load(&s)?;
            match missing.get(s.display)? {
                Got::File(p) => (Source::File(p), Some(inputs)),
                Got::Builtin(why) => {
                    s.use_builtin()?;
                    inputs.config.style_layers = s.config.style_layers.clone();
                    if s.display != Display::Quiet {
                        note(&builtin_notice(&why, &s));
                    }
                    (Source::Builtin, Some(inputs))
                }
            }
        }
    };
    let quiet = s.display == Display::Quiet;
    if !quiet && let Some(line) = threads_notice(s.config.threads, cores()) {
        note(&line);
    }
    interrupt::install(s.display);

    let mut progress = Progress::new(s.display, s.save_every, &s.output, &interrupt::STOP_REQUESTED);
    if s.own_checkpoint {
        progress = progress.without_final_checkpoint();
    }
    let result = load_and_stylize(&s, &weights, inputs, &mut progress);
    progress.finish();
    let Some(Finished { result, save, seconds, size, mut reserved }) = result? else {
        if !quiet {
            note("interrupted before the first iteration: nothing written");
        }
        return Ok(Ran { outcome: Outcome::Interrupted, result: None });
    };

    let mut out = match result {
        Ok(out) => out,
        Err(e) => {
            // A GPU failure leaves a run that can go on from its checkpoint, on the CPU too.
            let resume = progress.last_checkpoint().filter(|_| matches!(e, impasto::Error::Gpu { .. })).map(
                |(i, p)| {
                    let p = p.display();
                    format!(" and checkpoint {p} (iteration {i}; continue with --resume {p}, on the CPU with --device cpu)")
                },
            );
            return Err(write_last_good(e, &mut reserved, &save, resume.as_deref().unwrap_or_default()));
        }
    };
    // A run stopped early at a coarse scale is written at the size asked for.
    out.image = impasto::at_output_size(out.image, size);
    save_result(&mut reserved, &out.image, &save)?;
    if let Some(e) = progress.take_save_error() {
        return Err(anyhow!(
            "{e}; stopped at iteration {} and wrote the current image to {}",
            out.iterations,
            s.output.display()
        ));
    }
    let result = Some((out.iterations, out.losses, seconds));
    if out.stop == StopReason::Cancelled {
        if !quiet {
            let checkpoint = match &s.config.checkpoint {
                Some(p) => format!(" and checkpoint {} (continue with --resume {0})", p.display()),
                None => String::new(),
            };
            note(&format!(
                "interrupted: wrote current image to {} (iteration {}){checkpoint}",
                s.output.display(),
                out.iterations
            ));
        }
        return Ok(Ran { outcome: Outcome::Interrupted, result });
    }
    if !quiet {
        note(&summary(&s, &out, seconds));
    }
    Ok(Ran { outcome: Outcome::Done, result })
}

/// The cores this process may use (1 when unknown).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The line that says `--threads` asks for more threads than there are cores, which only slows a run.
fn threads_notice(threads: usize, cores: usize) -> Option<String> {
    (threads > cores).then(|| {
        format!(
            "note: --threads {threads} is more than the {cores} cores here: the extra threads slow the run \
             down (--threads 0 uses one per core)"
        )
    })
}

/// The one line that says a run falls back to the built-in model, why, and how to get the full one.
fn builtin_notice(why: &str, s: &Settings) -> String {
    let layers = if s.style_layers_given {
        String::new()
    } else {
        format!("; style layers {}", s.config.style_layers.join(","))
    };
    format!(
        "{why}: using {} (8-bit, layers up to {}{layers}); for the full model run \
         `impasto models download vgg16` or pass --weights FILE",
        impasto::EMBEDDED_LABEL,
        impasto::COMPACT_LAST_LAYER
    )
}

/// What [`load_and_stylize`] gives.
struct Finished {
    /// The library's result, kept apart so that a non-finite loss can still write an image.
    result: impasto::Result<Stylized>,
    /// How to write images.
    save: SaveOptions,
    /// Seconds of optimisation.
    seconds: f64,
    /// The output size asked for.
    size: (u32, u32),
    /// The disk space set aside for the output before the run.
    reserved: OutputReservation,
}

/// Loads the inputs (unless they were loaded already) and runs the optimisation. `Ok(None)`: Ctrl-C
/// came before the first iteration.
fn load_and_stylize(
    s: &Settings,
    weights: &Source,
    inputs: Option<Inputs>,
    progress: &mut Progress,
) -> Result<Option<Finished>> {
    let mut inputs = match inputs {
        Some(inputs) => inputs,
        None => {
            progress.stage("loading images");
            inputs::load(s)?
        }
    };
    let scratch = Scratch::beside(&s.output);
    inputs.config.scratch = Some(scratch.0.clone());
    let config = &inputs.config;
    progress.stage("loading weights");
    let net = match weights {
        Source::File(p) => Vgg::load(p, config.model, config.pooling, s.preprocess, &s.deepest_layer)?,
        Source::Builtin => Vgg::embedded(config.pooling, &s.deepest_layer)?,
    };
    let save = SaveOptions {
        alpha: inputs.alpha.clone(),
        metadata: [
            vec![(params::KEY.into(), params::text(s, weights, net.preprocess()))],
            s.save.metadata.clone(),
        ]
        .concat(),
        ..s.save.clone()
    };
    progress.set_save_options(save.clone());
    // Before the long work: a disk without room for the result is one clear error now, and one that
    // fills up during the run cannot lose the result at the end.
    let size = impasto::output_size(inputs.content.dimensions(), config);
    let reserved = impasto::reserve_output(&s.output, size.0, size.1, &save)?;
    if interrupt::requested() {
        return Ok(None);
    }
    progress.stage("computing the content and style targets");
    let start = Instant::now();
    let result = impasto::stylize(&net, config, &inputs.content, &inputs.styles, progress);
    let seconds = start.elapsed().as_secs_f64();
    Ok(Some(Finished { result, save, seconds, size, reserved }))
}

/// The run's scratch folder beside its output (`.out.png.impasto-scratch`: the L-BFGS pairs a tiled
/// run without a checkpoint carries between rounds where memory has no room), emptied of any earlier
/// run's files first and removed with everything in it when the run is over, however it ends.
struct Scratch(PathBuf);

impl Scratch {
    fn beside(output: &Path) -> Scratch {
        let name = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let dir = output.with_file_name(format!(".{name}.impasto-scratch"));
        let _ = std::fs::remove_dir_all(&dir);
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// On a non-finite loss or a GPU failure, writes the last good image the error carries and says so
/// in the message, followed by `and` (what else the run left, such as its checkpoint).
fn write_last_good(
    e: impasto::Error,
    output: &mut OutputReservation,
    save: &SaveOptions,
    and: &str,
) -> anyhow::Error {
    let Some(img) = e.last_good_image() else { return e.into() };
    match output.save_or_rescue(img, save, &rescue_folders()) {
        Ok(Saved::Output) => anyhow!("{e}; wrote the last good image to {}{and}", output.path().display()),
        Ok(Saved::Rescued { path, error }) => {
            anyhow!("{e}; {error}; wrote the last good image to {} instead{and}", path.display())
        }
        Err(save) => anyhow!("{e}; could not write the last good image either: {save}"),
    }
}

/// Writes the run's image to its output or, where the output cannot take it (its folder was removed
/// or made read-only during the run), into [`rescue_folders`]: then an error that says where.
fn save_result(output: &mut OutputReservation, img: &Rgb32FImage, save: &SaveOptions) -> Result<()> {
    match output.save_or_rescue(img, save, &rescue_folders())? {
        Saved::Output => Ok(()),
        Saved::Rescued { path, error } => {
            Err(anyhow!("{error}; wrote the image to {} instead", path.display()))
        }
    }
}

/// Where an image goes that its output cannot take: the current folder, else the temporary folder.
fn rescue_folders() -> Vec<PathBuf> {
    std::env::current_dir().ok().into_iter().chain([std::env::temp_dir()]).collect()
}

/// `wrote out.png (512x384, 500 iterations, content 1.234e4, style 5.678e3, tv 1.200e1, 12.3 s)`.
fn summary(s: &Settings, out: &Stylized, seconds: f64) -> String {
    let mut line = format!(
        "wrote {} ({}x{}, {} iterations, content {}, style {}, tv {}, {seconds:.1} s)",
        s.output.display(),
        out.image.width(),
        out.image.height(),
        out.iterations,
        fmt_loss(out.losses.content),
        fmt_loss(out.losses.style),
        fmt_loss(out.losses.tv),
    );
    match out.stop {
        StopReason::Converged => line.push_str("; stopped early: converged"),
        StopReason::TimeLimit => {
            line.push_str("; stopped early: time limit");
            if let Some(p) = &s.config.checkpoint {
                line.push_str(&format!(" (continue with --resume {})", p.display()));
            }
        }
        StopReason::Finished | StopReason::Cancelled => {}
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scratch_folder_starts_empty_and_is_gone_after_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.png");
        let folder = dir.path().join(".out.png.impasto-scratch");
        // An earlier run's files (killed before it could remove them) are not read as this run's.
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("tile-00000.pairs.safetensors"), b"old").unwrap();
        let scratch = Scratch::beside(&out);
        assert_eq!(scratch.0, folder);
        assert!(!folder.exists());
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("tile-00001.pairs.safetensors"), b"new").unwrap();
        drop(scratch);
        assert!(!folder.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
