//! The style-transfer run: resize inputs, compute content and style targets, initialise the image and
//! optimise it, reporting to an [`Observer`].

use std::ops::ControlFlow;
use std::time::Instant;

use image::Rgb32FImage;
use rand::{RngExt, SeedableRng};

use crate::config::{Init, Optimizer, StyleConfig};
use crate::error::{Error, Result};
use crate::loss::{ContentTarget, Objective, StyleTarget, features_at, grams_at};
use crate::model::Vgg;
use crate::observer::{Losses, Observer, RunInfo, Step, StopReason};
use crate::optim::{Adam, Lbfgs, LbfgsStep, all_finite};
use crate::pixels::{fit_longest_side, resize, to_image, to_planar};

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Stylized {
    /// The stylised image, RGB 0..1.
    pub image: Rgb32FImage,
    /// The losses of the returned image.
    pub losses: Losses,
    /// Iterations done.
    pub iterations: usize,
    /// Why the run ended.
    pub stop: StopReason,
}

fn check_min_side(what: &'static str, w: u32, h: u32, pools: u32) -> Result<()> {
    let need = 1u32 << pools;
    if w.min(h) < need {
        return Err(Error::Config {
            what,
            reason: format!(
                "{w}×{h} is too small: the deepest layer used needs at least {need} pixels on each side"
            ),
        });
    }
    Ok(())
}

/// Runs Gatys et al. style transfer: returns `content` repainted in the style of `styles`.
///
/// Images are RGB 0..1; the output's longest side is `config.size`. Runs on `config.threads` threads
/// (0 = one per core). Deterministic: the same inputs, config and thread count give the same bits.
pub fn stylize(
    net: &Vgg,
    config: &StyleConfig,
    content: &Rgb32FImage,
    styles: &[Rgb32FImage],
    observer: &mut dyn Observer,
) -> Result<Stylized> {
    config.validate(styles.len())?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads)
        .build()
        .map_err(|e| Error::Config { what: "threads", reason: e.to_string() })?;
    pool.install(|| stylize_inner(net, config, content, styles, observer))
}

fn stylize_inner(
    net: &Vgg,
    config: &StyleConfig,
    content: &Rgb32FImage,
    styles: &[Rgb32FImage],
    observer: &mut dyn Observer,
) -> Result<Stylized> {
    let content_layers: Vec<usize> =
        config.content_layers.iter().map(|n| net.layer_index(n)).collect::<Result<_>>()?;
    let style_layers: Vec<usize> = if config.style_weight > 0.0 {
        config.style_layers.iter().map(|n| net.layer_index(n)).collect::<Result<_>>()?
    } else {
        Vec::new()
    };
    let deepest = content_layers.iter().chain(&style_layers).copied().max().unwrap_or(0);
    let pools = net.pools_before(deepest + 1);

    let (width, height) = fit_longest_side(content.width(), content.height(), config.size);
    check_min_side("output size", width, height, pools)?;
    let (w, h) = (width as usize, height as usize);
    let content_px = to_planar(&resize(content, width, height));

    let content_targets = features_at(net, &content_px, h, w, &content_layers)
        .into_iter()
        .zip(&content_layers)
        .map(|(features, &layer)| ContentTarget { layer, features, weight: config.content_weight })
        .collect();

    let layer_w = config.style_layer_weights.clone().unwrap_or_else(|| vec![1.0; config.style_layers.len()]);
    let mut style_targets: Vec<StyleTarget> = style_layers
        .iter()
        .zip(&layer_w)
        .map(|(&layer, &lw)| StyleTarget { layer, gram: Vec::new(), weight: config.style_weight * lw })
        .collect();
    let style_long = ((config.size as f32 * config.style_scale).round() as u32).max(1);
    for (img, blend) in styles.iter().zip(config.normalised_blend(styles.len())) {
        if style_targets.is_empty() {
            break;
        }
        let (sw, sh) = fit_longest_side(img.width(), img.height(), style_long);
        check_min_side("style image size (after --style-scale)", sw, sh, pools)?;
        let px = to_planar(&resize(img, sw, sh));
        let grams = grams_at(net, &px, sh as usize, sw as usize, &style_layers);
        for (t, g) in style_targets.iter_mut().zip(grams) {
            if t.gram.is_empty() {
                t.gram = vec![0.0; g.len()];
            }
            for (a, b) in t.gram.iter_mut().zip(&g) {
                *a += blend * b;
            }
        }
    }

    let objective = Objective {
        net,
        height: h,
        width: w,
        content: content_targets,
        style: style_targets,
        tv_weight: config.tv_weight,
    };

    let mut x = initial_pixels(config, &content_px, width, height);
    optimise(&objective, config, &mut x, width, height, observer)
}

fn initial_pixels(config: &StyleConfig, content_px: &[f32], width: u32, height: u32) -> Vec<f32> {
    match &config.init {
        Init::Content => content_px.to_vec(),
        Init::Noise => {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(config.seed);
            (0..content_px.len()).map(|_| 0.5 + 0.25 * (rng.random::<f32>() - 0.5)).collect()
        }
        Init::Image(img) => to_planar(&resize(img, width, height)),
    }
}

fn optimise(
    objective: &Objective<'_>,
    config: &StyleConfig,
    x: &mut Vec<f32>,
    width: u32,
    height: u32,
    observer: &mut dyn Observer,
) -> Result<Stylized> {
    let start = Instant::now();
    let non_finite = |iteration, what, good: &[f32]| Error::NonFinite {
        iteration,
        what,
        last_good: Box::new(to_image(good, width, height)),
    };
    let (mut losses, mut g) = objective.evaluate(x);
    if !losses.total().is_finite() {
        return Err(non_finite(0, "loss", x));
    }
    if !all_finite(&g) {
        return Err(non_finite(0, "gradient", x));
    }
    observer.on_start(&RunInfo { width, height, iterations: config.iterations, initial: losses });
    let mut f = losses.total();
    let mut stop = StopReason::Finished;
    let mut done = 0;
    let mut lbfgs = match config.optimizer {
        Optimizer::Lbfgs { history } => Some(Lbfgs::new(history)),
        Optimizer::Adam { .. } => None,
    };
    let mut adam = match config.optimizer {
        Optimizer::Adam { learning_rate } => Some(Adam::new(x.len(), learning_rate)),
        Optimizer::Lbfgs { .. } => None,
    };
    for it in 1..=config.iterations {
        if let Some(opt) = lbfgs.as_mut() {
            let mut last = losses;
            let outcome = opt.step(x, &mut f, &mut g, |p| {
                let (l, grad) = objective.evaluate(p);
                last = l;
                (l.total(), grad)
            });
            match outcome {
                LbfgsStep::Moved => losses = last,
                LbfgsStep::Converged => {
                    stop = StopReason::Converged;
                    break;
                }
                LbfgsStep::NonFinite => return Err(non_finite(it, "loss or gradient", x)),
            }
        } else if let Some(opt) = adam.as_mut() {
            let previous = x.clone();
            opt.step(x, &g);
            let (l, grad) = objective.evaluate(x);
            if !l.total().is_finite() || !all_finite(&grad) {
                return Err(non_finite(it, "loss or gradient", &previous));
            }
            losses = l;
            g = grad;
        }
        done = it;
        let step = Step {
            iteration: it,
            iterations: config.iterations,
            losses,
            elapsed: start.elapsed(),
            pixels: x,
            width,
            height,
        };
        if let ControlFlow::Break(()) = observer.on_step(&step) {
            stop = StopReason::Cancelled;
            break;
        }
    }
    Ok(Stylized { image: to_image(x, width, height), losses, iterations: done, stop })
}
