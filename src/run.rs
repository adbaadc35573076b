//! The style-transfer command: checks everything cheap first (settings, output folder, weights file),
//! then loads the images and the network, runs `impasto::stylize` and writes the result, also when the
//! run is interrupted or its loss becomes non-finite.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use impasto::{Init, StopReason, Stylized, Vgg};

use crate::args::RunArgs;
use crate::interrupt;
use crate::progress::{Display, Progress, fmt_loss, note};
use crate::settings::{self, Env, InitSource, Settings};

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
    let s = settings::resolve(args, env)?;
    impasto::check_writable(&s.output)?;
    let weights = s.weights.locate(s.config.model)?;
    let quiet = s.display == Display::Quiet;
    interrupt::install(s.display);

    let mut progress = Progress::new(s.display, s.save_every, &s.output, &interrupt::STOP_REQUESTED);
    let result = load_and_stylize(&s, &weights, &mut progress);
    progress.finish();
    let Some((result, seconds)) = result? else {
        if !quiet {
            note("interrupted before the first iteration: nothing written");
        }
        return Ok(Outcome::Interrupted);
    };

    let out = match result {
        Ok(out) => out,
        Err(e) => return Err(write_last_good(e, &s.output)),
    };
    impasto::save_image(&out.image, &s.output)?;
    if let Some(e) = progress.take_save_error() {
        return Err(anyhow!(
            "{e}; stopped at iteration {} and wrote the current image to {}",
            out.iterations,
            s.output.display()
        ));
    }
    if out.stop == StopReason::Cancelled {
        if !quiet {
            note(&format!(
                "interrupted: wrote current image to {} (iteration {})",
                s.output.display(),
                out.iterations
            ));
        }
        return Ok(Outcome::Interrupted);
    }
    if !quiet {
        note(&summary(&s, &out, seconds));
    }
    Ok(Outcome::Done)
}

/// Loads the inputs and runs the optimisation. `Ok(None)`: Ctrl-C came before the first iteration.
/// The inner result is the library's, kept apart so that a non-finite loss can still write an image.
fn load_and_stylize(
    s: &Settings,
    weights: &Path,
    progress: &mut Progress,
) -> Result<Option<(impasto::Result<Stylized>, f64)>> {
    progress.stage("loading images");
    let content = impasto::load_image(&s.content).context("content image")?;
    let styles =
        s.styles.iter().map(|p| impasto::load_image(p).context("style image")).collect::<Result<Vec<_>>>()?;
    let mut config = s.config.clone();
    if let InitSource::File(p) = &s.init {
        config.init = Init::Image(impasto::load_image(p).context("--init image")?);
    }
    progress.stage("loading weights");
    let net = Vgg::load(weights, config.model, config.pooling, s.preprocess, &s.deepest_layer)?;
    if interrupt::requested() {
        return Ok(None);
    }
    progress.stage("computing the content and style targets");
    let start = Instant::now();
    let result = impasto::stylize(&net, &config, &content, &styles, progress);
    Ok(Some((result, start.elapsed().as_secs_f64())))
}

/// On a non-finite loss, writes the last good image the error carries and says so in the message.
fn write_last_good(e: impasto::Error, output: &Path) -> anyhow::Error {
    let Some(img) = e.last_good_image() else { return e.into() };
    match impasto::save_image(img, output) {
        Ok(()) => anyhow!("{e}; wrote the last good image to {}", output.display()),
        Err(save) => anyhow!("{e}; could not write the last good image either: {save}"),
    }
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
        StopReason::TimeLimit => line.push_str("; stopped early: time limit"),
        StopReason::Finished | StopReason::Cancelled => {}
    }
    line
}
