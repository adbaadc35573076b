//! The style-transfer run: for each scale of the schedule, resize the inputs, compute content and style
//! targets, start from the previous scale's result (or the init) and optimise, reporting to an [`Observer`].
//! The plan (schedule, objective, start, resume) is here; one scale's optimisation loop is in `scale`.

mod coupling;
mod curvature;
mod inputs;
mod jobs;
mod refit;
mod scale;
mod start;
mod tiled;

use std::path::Path;
use std::time::Instant;

use image::Rgb32FImage;

use crate::checkpoint::{self, Fingerprint, OptState, State};
use crate::color::{ColorMode, luminance, match_colors, match_luminance, preserve_colors};
use crate::config::{Init, Optimizer, StyleConfig, lbfgs_history_for};
use crate::device::GpuContext;
use crate::error::{Error, Result};
use crate::loss::{TargetNet, Temporal};
use crate::model::{BufferPool, Vgg};
use crate::observer::{Losses, Observer, Scale, StopReason, Weights};
use crate::optim::{Adam, Ema, Lbfgs};
use crate::pixels::{fit_longest_side, resize, to_planar};
use crate::tiles;
pub use jobs::{JobProgress, TileJob, prepare_tiles, run_tiles, stitch_tiles};
use scale::{ScaleRun, Steerable};
use tiled::Carry;

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Stylized {
    /// The stylised image, RGB 0..1.
    pub image: Rgb32FImage,
    /// The losses of the returned image (exactly this image: it never leaves 0..1).
    pub losses: Losses,
    /// Iterations done, all scales together.
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
/// Images are RGB 0..1; the output's longest side is `config.size`. Large outputs are optimised
/// coarse-to-fine ([`StyleConfig::scales`]). Runs on `config.threads` threads (0 = one per core).
/// Deterministic: the same inputs, config and thread count give the same bits.
pub fn stylize(
    net: &Vgg,
    config: &StyleConfig,
    content: &Rgb32FImage,
    styles: &[Rgb32FImage],
    observer: &mut dyn Observer,
) -> Result<Stylized> {
    stylize_with(net, config, content, styles, None, observer)
}

/// [`stylize`] for one frame of a video: the objective also holds the result to `temporal` (the
/// previous stylised frame warped onto this one, where that warp is reliable). The temporal term
/// compares the optimised image, before the colour modes' post-processing (use [`ColorMode::Style`]
/// and recolour each frame afterwards to keep frames comparable).
pub fn stylize_frame(
    net: &Vgg,
    config: &StyleConfig,
    content: &Rgb32FImage,
    styles: &[Rgb32FImage],
    temporal: &Temporal,
    observer: &mut dyn Observer,
) -> Result<Stylized> {
    if !temporal.weight.is_finite() || temporal.weight < 0.0 {
        return Err(Error::Config {
            what: "temporal weight",
            reason: format!("{} (must be a finite number ≥ 0)", temporal.weight),
        });
    }
    stylize_with(net, config, content, styles, Some(temporal), observer)
}

fn stylize_with(
    net: &Vgg,
    config: &StyleConfig,
    content: &Rgb32FImage,
    styles: &[Rgb32FImage],
    temporal: Option<&Temporal>,
    observer: &mut dyn Observer,
) -> Result<Stylized> {
    with_run_inputs(config, content, styles, |config, content_in, styles_in| {
        let mut plan = Plan::new(net, config, content_in, styles_in)?;
        plan.temporal = temporal;
        let mut out = plan.run(content_in, styles_in, observer).map_err(|e| plan.explain(e))?;
        if matches!(config.color, ColorMode::PreserveContent | ColorMode::Luminance) {
            out.image = preserve_colors(&out.image, content);
        }
        Ok(out)
    })
}

/// Validates `config`, then runs `f` on the run's threads with the config and images the optimisation
/// sees under the colour options: the one way into a run for [`stylize`], [`stylize_frame`] and the
/// tile jobs.
fn with_run_inputs<T: Send>(
    config: &StyleConfig,
    content: &Rgb32FImage,
    styles: &[Rgb32FImage],
    f: impl FnOnce(&StyleConfig, &Rgb32FImage, &[Rgb32FImage]) -> Result<T> + Send,
) -> Result<T> {
    config.validate(styles.len())?;
    with_threads(config.threads, || {
        let (content_in, styles_in, config_in) = color_inputs(config, content, styles);
        f(config_in.as_ref().unwrap_or(config), &content_in, &styles_in)
    })
}

/// The images (and config, when the init image changes) the optimisation sees under the colour options.
fn color_inputs(
    config: &StyleConfig,
    content: &Rgb32FImage,
    styles: &[Rgb32FImage],
) -> (Rgb32FImage, Vec<Rgb32FImage>, Option<StyleConfig>) {
    if config.color == ColorMode::Luminance {
        let grey_styles = styles.iter().map(|s| match_luminance(s, content)).collect();
        let cfg = match &config.init {
            Init::Image(img) => Some(StyleConfig { init: Init::Image(luminance(img)), ..config.clone() }),
            _ => None,
        };
        return (luminance(content), grey_styles, cfg);
    }
    let styles = match config.color_match {
        Some(m) => styles.iter().map(|s| match_colors(s, content, m)).collect(),
        None => styles.to_vec(),
    };
    (content.clone(), styles, None)
}

/// The losses of an existing image (e.g. a saved result) under `config`'s objective at the image's own
/// size: the same numbers a run reports, so reported and saved results can be compared.
pub fn score(
    net: &Vgg,
    config: &StyleConfig,
    content: &Rgb32FImage,
    styles: &[Rgb32FImage],
    image: &Rgb32FImage,
) -> Result<Losses> {
    config.validate(styles.len())?;
    with_threads(config.threads, || {
        let plan = Plan::new(net, config, content, styles)?;
        let long = image.width().max(image.height());
        let objective = plan.objective(content, styles, long)?;
        let px = to_planar(&resize(image, objective.width as u32, objective.height as u32));
        Ok(objective.evaluate(&px).0)
    })
}

fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Config { what: "threads", reason: e.to_string() })?;
    pool.install(f)
}

/// What a run needs besides the images: the network, the config and the resolved layer indices.
struct Plan<'a> {
    net: &'a Vgg,
    config: &'a StyleConfig,
    content_layers: Vec<usize>,
    style_layers: Vec<usize>,
    pools: u32,
    /// The schedule, smallest scale first.
    scales: Vec<Scale>,
    /// Video: the temporal term of [`stylize_frame`].
    temporal: Option<&'a Temporal>,
    /// The network on the GPU, when the run uses one.
    gpu: Option<GpuContext>,
    /// The tile plan of each scale (`None`: optimised whole).
    tiles: Vec<Option<tiles::TilePlan>>,
    /// Buffers of the CPU passes, shared by the target passes and the objectives (see
    /// [`BufferPool`]): a tiled scale's tiles, their targets and the next tile's all run at one size.
    pool: BufferPool,
    /// The limits of the run's GPU as its plan follows them (see `refit`): read once when it opens,
    /// with the budget learned from an allocation that failed.
    limits: Option<tiles::GpuLimits>,
    /// The budgets learned from allocations that failed, from which scale on (`refit`).
    refits: Vec<(usize, u64)>,
}

impl<'a> Plan<'a> {
    fn new(
        net: &'a Vgg,
        config: &'a StyleConfig,
        content: &Rgb32FImage,
        styles: &[Rgb32FImage],
    ) -> Result<Plan<'a>> {
        let content_layers: Vec<usize> =
            config.content_layers.iter().map(|n| net.layer_index(n)).collect::<Result<_>>()?;
        let style_layers: Vec<usize> = if config.style_weight > 0.0 {
            config.style_layers.iter().map(|n| net.layer_index(n)).collect::<Result<_>>()?
        } else {
            Vec::new()
        };
        let deepest = content_layers.iter().chain(&style_layers).copied().max().unwrap_or(0);
        let pools = net.pools_before(deepest + 1);
        let mut plan = Plan {
            net,
            config,
            content_layers,
            style_layers,
            pools,
            scales: Vec::new(),
            temporal: None,
            gpu: None,
            tiles: Vec::new(),
            pool: BufferPool::default(),
            limits: None,
            refits: Vec::new(),
        };
        let (out_w, out_h) = fit_longest_side(content.width(), content.height(), config.size);
        check_min_side("output size", out_w, out_h, pools)?;
        // Coarse scales at which the content or a style image would be too small for the deepest
        // layer are left out (a very wide image, say); the schedule starts at the smallest one left.
        // The output size is always kept: a style image too small there is an error of `objective`.
        let sizes: Vec<u32> = config
            .scale_sizes()
            .into_iter()
            .filter(|&long| long == config.size || plan.fits(content, styles, long))
            .collect();
        let iterations = config.scale_iteration_counts(sizes.len());
        plan.scales = sizes
            .into_iter()
            .zip(iterations)
            .map(|(long, iterations)| {
                let (width, height) = fit_longest_side(content.width(), content.height(), long);
                Scale { width, height, iterations }
            })
            .collect();
        // The GPU first: its limits decide the tiles as the memory budget does.
        plan.gpu = GpuContext::open(config.device, &config.gpu_faults, net)?;
        plan.limits = plan.gpu.as_ref().map(GpuContext::limits);
        plan.tiles = plan.scales.iter().map(|s| plan.tiling(s)).collect::<Result<_>>()?;
        // A tiled scale's iterations are those of each tile, all tiles together.
        for (s, t) in plan.scales.iter_mut().zip(&plan.tiles) {
            s.iterations *= t.as_ref().map_or(1, tiles::TilePlan::len);
        }
        plan.check_style_targets(styles)?;
        Ok(plan)
    }

    /// A GPU evaluation error that stopped the run, in place of the non-finite loss it caused.
    fn explain(&self, e: Error) -> Error {
        match &self.gpu {
            Some(g) => g.explain(e),
            None => e,
        }
    }

    /// The network that computes the targets: the run's GPU when it has one, else the CPU.
    fn targets(&self) -> TargetNet<'_> {
        TargetNet { net: self.net, gpu: self.gpu.as_ref(), pool: Some(&self.pool) }
    }

    /// The smallest side the deepest layer used needs.
    fn min_side(&self) -> u32 {
        1 << self.pools
    }

    /// The longest side of the style images at the scale whose longest side is `long`.
    fn style_long(&self, long: u32) -> u32 {
        match self.config.style_size {
            Some(px) => px,
            None => ((long as f32 * self.config.style_scale).round() as u32).max(1),
        }
    }

    /// Whether the content and every style image are large enough for the network at scale `long`.
    fn fits(&self, content: &Rgb32FImage, styles: &[Rgb32FImage], long: u32) -> bool {
        let big_enough = |img: &Rgb32FImage, long| {
            let (w, h) = fit_longest_side(img.width(), img.height(), long);
            w.min(h) >= self.min_side()
        };
        big_enough(content, long)
            && (self.style_layers.is_empty() || styles.iter().all(|s| big_enough(s, self.style_long(long))))
    }

    /// The pixels scale `k` starts from when it continues no earlier scale.
    fn initial_pixels(&self, k: usize, content: &Rgb32FImage, styles: &[Rgb32FImage]) -> Vec<f32> {
        let Scale { width, height, .. } = self.scales[k];
        let blend = self.config.normalised_blend(styles.len());
        start::initial_pixels(&self.config.init, self.config.seed, content, styles, &blend, width, height)
    }

    fn fingerprint(&self, content: &Rgb32FImage, styles: &[Rgb32FImage]) -> u64 {
        let mut fp = Fingerprint::new();
        fp.add(self.config.result_key().as_bytes());
        fp.add(self.net.arch().name().as_bytes());
        for img in std::iter::once(content).chain(styles) {
            fp.add(&img.width().to_le_bytes());
            fp.add(&img.height().to_le_bytes());
            fp.add_f32s(img.as_raw());
        }
        if let Init::Image(img) = &self.config.init {
            fp.add_f32s(img.as_raw());
        }
        for (k, t) in self.tiles.iter().enumerate() {
            if let Some(t) = t {
                fp.add(
                    format!(" tiles {k} {} {} rounds {}", t.tile, t.overlap, self.config.tile_rounds)
                        .as_bytes(),
                );
            }
        }
        if let Some(t) = self.temporal {
            fp.add(&t.weight.to_le_bytes());
            fp.add_f32s(t.target.as_raw());
            fp.add_f32s(t.reliability.as_raw());
        }
        fp.0
    }

    fn fresh_optimiser(&self, x: &[f32]) -> OptState {
        match self.config.optimizer {
            Optimizer::Lbfgs { history } => OptState::Lbfgs(Lbfgs::new(lbfgs_history_for(history, x.len()))),
            Optimizer::Adam { learning_rate } => {
                OptState::Adam(Adam::new(x.len(), learning_rate), Ema::new(x, self.config.ema_decay))
            }
        }
    }

    /// Reads the optimisation state at `path` (a checkpoint, or a tile job's partial tile) for this
    /// run's optimiser, its L-BFGS history capped as a fresh one's would be. What it belongs to is
    /// for the caller to check.
    pub(super) fn read_state(&self, path: &Path) -> Result<State> {
        let (history, lr) = match self.config.optimizer {
            Optimizer::Lbfgs { history } => (history, 0.0),
            Optimizer::Adam { learning_rate } => (1, learning_rate),
        };
        let mut state = checkpoint::read(path, history, lr, self.config.ema_decay)?;
        if let OptState::Lbfgs(l) = &mut state.opt {
            l.set_history(lbfgs_history_for(history, state.x.len()));
        }
        Ok(state)
    }

    /// Reads the checkpoint at `path` and checks that it belongs to this run: its plan is re-made as
    /// the run that wrote it re-made it after running out of GPU memory, before the fingerprints
    /// (settings, images, tiles) are compared.
    fn read_resume(&mut self, path: &Path, content: &Rgb32FImage, styles: &[Rgb32FImage]) -> Result<State> {
        let state = self.read_state(path)?;
        let err = |reason: &str| Error::Checkpoint { path: path.to_path_buf(), reason: reason.into() };
        if !state.gpu.refits.is_empty() && self.gpu.is_none() {
            return Err(err(
                "its run re-planned its tiles on a GPU that ran out of memory; resume it on a GPU (--device)",
            ));
        }
        if self.follow(&state.gpu).is_err() {
            return Err(err("its tiles, planned for the GPU memory its run had, do not fit this GPU"));
        }
        if state.fingerprint != self.fingerprint(content, styles) {
            return Err(err(
                "it was made with other settings or images (the same images, model and flags are needed; \
                 --iterations, --time-limit, --threads, --device, the checkpoint and output flags may \
                 change)",
            ));
        }
        let tiled = self.tiles.get(state.scale).and_then(Option::as_ref);
        match (self.scales.get(state.scale), tiled, &state.tile) {
            (Some(s), None, None) if (s.width, s.height) == (state.width, state.height) => {}
            // A tile index of the tile count: every tile is finished (the state holds the last one).
            // Tile indices count on over the rounds: tile i of round r is r·n + i.
            (Some(_), Some(plan), Some(t))
                if t.count % plan.len() == 0
                    && t.count > 0
                    && t.index <= t.count
                    && plan.rect(t.index.min(t.count - 1) % plan.len()).width == state.width
                    && plan.rect(t.index.min(t.count - 1) % plan.len()).height == state.height => {}
            _ => return Err(err("its scale (or its tiles) does not match this run's schedule")),
        }
        match (&state.opt, self.config.optimizer) {
            (OptState::Lbfgs(_), Optimizer::Lbfgs { .. }) | (OptState::Adam(..), Optimizer::Adam { .. }) => {
                Ok(state)
            }
            _ => Err(err("it was made with the other optimizer")),
        }
    }

    /// Optimises scale `k` on the whole image, starting from `prev` (the previous scale's result;
    /// `None`: the initial image), or continuing `resumed`.
    #[allow(clippy::too_many_arguments)]
    fn whole_scale(
        &self,
        k: usize,
        content: &Rgb32FImage,
        styles: &[Rgb32FImage],
        prev: Option<&Stylized>,
        resumed: Option<State>,
        carry: &mut Carry,
        observer: &mut dyn Observer,
    ) -> Result<Stylized> {
        let Scale { width, height, iterations } = self.scales[k];
        let long = self.scales[k].long_side();
        let mut objective = Steerable::new(self.objective(content, styles, long)?, self.config);
        objective.set(carry.weights);
        let state = match resumed {
            Some(state) => state,
            None => {
                let mut x = match prev {
                    None => self.initial_pixels(k, content, styles),
                    Some(p) => to_planar(&resize(&p.image, width, height)),
                };
                let content_px = to_planar(&resize(content, width, height));
                keep_unmasked(&mut x, &content_px, objective.objective.pixel_mask.as_deref());
                let opt = self.fresh_optimiser(&x);
                let (fingerprint, done, gpu) = (carry.fingerprint, carry.done, carry.gpu.clone());
                State { fingerprint, gpu, scale: k, scale_done: 0, done, width, height, x, opt, tile: None }
            }
        };
        let last = k + 1 == self.scales.len();
        let scale = ScaleRun {
            config: self.config,
            scales: &self.scales,
            total: carry.total,
            start: carry.start,
            last,
            tiles: &self.tiles,
            tile: None,
            checkpoint: self.config.checkpoint.as_deref(),
        };
        let (out, _) = scale.optimise(&mut objective, state, iterations, observer, &mut carry.announce)?;
        carry.weights = objective.weights;
        carry.done = out.iterations;
        Ok(out)
    }

    fn run(
        &mut self,
        content: &Rgb32FImage,
        styles: &[Rgb32FImage],
        observer: &mut dyn Observer,
    ) -> Result<Stylized> {
        self.run_scales(content, styles, self.scales.len(), observer)?
            .ok_or_else(|| Error::Config { what: "output size", reason: "no scale to optimise".into() })
    }

    /// Optimises the scales before `end` (all of them: `self.scales.len()`), or until a stop; the last
    /// result (`None` when no scale ran).
    fn run_scales(
        &mut self,
        content: &Rgb32FImage,
        styles: &[Rgb32FImage],
        end: usize,
        observer: &mut dyn Observer,
    ) -> Result<Option<Stylized>> {
        let start = Instant::now();
        let mut resume = match &self.config.resume {
            Some(p) => Some(self.read_resume(p, content, styles)?),
            None => None,
        };
        let total: usize = self.scales.iter().map(|s| s.iterations).sum();
        let fingerprint = self.fingerprint(content, styles);
        let first = resume.as_ref().map_or(0, |r| r.scale);
        let mut carry = Carry {
            fingerprint,
            gpu: self.gpu_plan(),
            total,
            start,
            done: resume.as_ref().map_or(0, |r| r.done),
            // The weights in force: the config's until an observer steers them, then kept across scales.
            weights: Weights::of(self.config),
            announce: true,
        };
        let mut prev: Option<Stylized> = None;
        for k in first..end {
            // A scale that runs out of GPU memory starts again in smaller tiles (`refit`), from the
            // image it had: `again` (its last good image, or the checkpoint's), else `prev`.
            let mut again: Option<Stylized> = None;
            // Iterations done before the scale (a resumed one's own left out).
            let done = carry.done - resume.as_ref().map_or(0, |r| r.scale_done.min(carry.done));
            let out = loop {
                let (from, resumed) = (again.as_ref().or(prev.as_ref()), resume.take());
                let checkpointed = resumed.as_ref().filter(|_| self.gpu.is_some()).map(State::start_image);
                let tried = match self.tiles[k].clone() {
                    Some(plan) => {
                        self.tiled_scale(k, &plan, content, styles, from, resumed, &mut carry, observer)
                    }
                    None => self.whole_scale(k, content, styles, from, resumed, &mut carry, observer),
                };
                match tried {
                    // `explain`: a failed GPU evaluation shows as a non-finite loss until then.
                    Err(e) => match self.replan(k, self.explain(e), observer) {
                        Ok(image) => {
                            let image = image.or(checkpointed);
                            again = image.map(|image| Stylized::start(image, done)).or(again);
                            carry.done = done;
                            carry.total = self.scales.iter().map(|s| s.iterations).sum();
                            carry.fingerprint = self.fingerprint(content, styles);
                            carry.gpu = self.gpu_plan();
                        }
                        Err(e) => break Err(e),
                    },
                    Ok(out) => break Ok(out),
                }
            }
            .map_err(|e| e.or_last_good(|| again.as_ref().or(prev.as_ref()).map(|p| p.image.clone())))?;
            let stop = out.stop;
            prev = Some(out);
            if matches!(stop, StopReason::Cancelled | StopReason::TimeLimit) {
                break;
            }
        }
        Ok(prev)
    }
}

/// Keeps the content where the mask is 0: `x = m·x + (1 − m)·content`.
fn keep_unmasked(x: &mut [f32], content_px: &[f32], mask: Option<&[f32]>) {
    let Some(m) = mask else { return };
    let n = m.len();
    for (i, (xv, &cv)) in x.iter_mut().zip(content_px).enumerate() {
        let mv = m[i % n];
        *xv = mv * *xv + (1.0 - mv) * cv;
    }
}
