//! The resolved run configuration ([`StyleConfig`]) with its defaults and validation.

use crate::color::{ColorMatch, ColorMode};
use crate::error::{Error, Result};
use crate::model::{Arch, Pooling};

/// The largest output side accepted (pixels). Larger requests are refused as absurd.
pub const MAX_SIZE: u32 = 16_384;

/// The most worker threads accepted. More threads than cores only slow a run down (512 threads make
/// a 64 px run about 13 times slower than one per core), and tens of thousands take longer to start
/// than any run takes, so larger counts are refused as absurd.
pub const MAX_THREADS: usize = 1024;

/// Memory the L-BFGS correction pairs may take (bytes). Each pair holds two f32 copies of the image
/// (24 MiB at 1024²), so the default history of 100 is kept up to about 650 px and shortened above
/// (32 pairs at 1024², 8 at 2048²), the way the high-resolution recipes lower
/// `-lbfgs_num_correction`; it never goes below 5.
pub const LBFGS_MEMORY: usize = 768 << 20;

/// The L-BFGS history actually used for an image of `values` floats: `history` capped by [`LBFGS_MEMORY`].
pub fn lbfgs_history_for(history: usize, values: usize) -> usize {
    let pair = 2 * 4 * values.max(1);
    history.min((LBFGS_MEMORY / pair).max(5))
}

/// Which optimiser changes the pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optimizer {
    /// Limited-memory BFGS with up to `history` correction pairs (fewer on large images, so that
    /// the pairs fit in [`LBFGS_MEMORY`]).
    Lbfgs {
        /// Number of (s, y) pairs kept (jcjohnson's `-lbfgs_num_correction`).
        history: usize,
    },
    /// Adam with the given learning rate (in units of the 0..1 pixel scale).
    Adam {
        /// Step size.
        learning_rate: f32,
    },
}

/// How the style terms compare the output's features with the style's at each style layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StyleLoss {
    /// Gram matrices compared entry by entry (Gatys et al.; jcjohnson/neural-style).
    #[default]
    Gram,
    /// The squared 2-Wasserstein distance between Gaussians fitted to the features (their means
    /// and covariances), as crowsonkb/style-transfer-pytorch does. On a GPU the statistics are taken
    /// on the device and the eigendecompositions run on the host. On tiled scales each tile is held
    /// to the style's Gaussian moved by the whole image's transport map at the round's start (see
    /// [`StyleConfig::tile_rounds`]).
    Wasserstein,
}

impl StyleLoss {
    /// The word the CLI and the web API use: `gram` or `w2`.
    pub fn name(self) -> &'static str {
        match self {
            StyleLoss::Gram => "gram",
            StyleLoss::Wasserstein => "w2",
        }
    }
}

/// Where the optimisation starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Init {
    /// The (resized) content image. Best quality, the default.
    Content,
    /// Uniform noise around mid-grey (0.375..0.625), from [`StyleConfig::seed`].
    Noise,
    /// Mid-grey with faint noise (0.5 + up to 1/255), from [`StyleConfig::seed`]: the style is
    /// painted from nothing (crowsonkb/style-transfer-pytorch's `gray`).
    Gray,
    /// Normal noise with each colour channel's mean and standard deviation in the style images
    /// (blended by [`StyleConfig::style_blend`]), clipped to 0..1, from [`StyleConfig::seed`]
    /// (crowsonkb/style-transfer-pytorch's `style_stats`).
    StyleStats,
    /// The first style image, scaled to cover the output and cropped to its centre
    /// (neural-style-tf's `style`).
    Style,
    /// A given image (resized to the output size), RGB 0..1.
    Image(image::Rgb32FImage),
}

/// Everything that decides a run, resolved and validated. `Default` gives the tuned defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct StyleConfig {
    /// Longest side of the output in pixels; the content image is resized to it.
    pub size: u32,
    /// Optimiser iterations (L-BFGS iterations, not function evaluations).
    pub iterations: usize,
    /// Weight of the content loss (alpha).
    pub content_weight: f32,
    /// Weight of the style loss (beta).
    pub style_weight: f32,
    /// Weight of the total-variation loss.
    pub tv_weight: f32,
    /// Layers whose features make the content loss.
    pub content_layers: Vec<String>,
    /// Layers whose Gram matrices make the style loss.
    pub style_layers: Vec<String>,
    /// How each style layer's features are compared with the style's.
    pub style_loss: StyleLoss,
    /// One weight per style layer; `None` means all 1.
    pub style_layer_weights: Option<Vec<f32>>,
    /// One blend weight per style image (normalised to sum 1); `None` means equal.
    pub style_blend: Option<Vec<f32>>,
    /// Style image size relative to the output size (1.0 = same longest side).
    pub style_scale: f32,
    /// The style images' longest side at every scale, in pixels, in place of `style_scale`
    /// (crowsonkb/style-transfer-pytorch's `--style-size`): the style's brush strokes keep one size
    /// in pixels while the output grows. `None`: `style_scale` times each scale's size.
    pub style_size: Option<u32>,
    /// The optimiser.
    pub optimizer: Optimizer,
    /// The starting image.
    pub init: Init,
    /// Seed for the noise init (and anything else random).
    pub seed: u64,
    /// The network.
    pub model: Arch,
    /// Max or average pooling.
    pub pooling: Pooling,
    /// Worker threads; 0 means one per core.
    pub threads: usize,
    /// Multi-scale: the smallest scale's longest side. Outputs at least `scale_ratio` times larger are
    /// optimised coarse-to-fine, starting here; set it to `size` or more to optimise at one scale.
    pub min_size: u32,
    /// Multi-scale: the size ratio between successive scales (> 1).
    pub scale_ratio: f32,
    /// Multi-scale: iterations at each scale after the first; `None` halves them at each scale
    /// (at least 50), as the classic high-resolution recipes do.
    pub scale_iterations: Option<usize>,
    /// Adam only: decay of the exponential moving average of the image that is returned (0 = off).
    pub ema_decay: f32,
    /// Stop and return the current image after this much optimisation time.
    pub time_limit: Option<std::time::Duration>,
    /// Where the output's colours come from.
    pub color: ColorMode,
    /// Recolour the style images to the content's colour statistics before the run.
    pub color_match: Option<ColorMatch>,
    /// Write the optimisation state here every `checkpoint_every` iterations, at the end of the run,
    /// and when the run stops early (cancelled, time limit, non-finite loss).
    pub checkpoint: Option<std::path::PathBuf>,
    /// Iterations between checkpoints (0 = only when the run stops early).
    pub checkpoint_every: usize,
    /// Continue from this checkpoint, written by a run with the same settings and images; only
    /// `iterations`, `scale_iterations`, `time_limit`, `threads` and the checkpoint settings may differ.
    /// The scale the checkpoint is in goes on to its count under this config, so more iterations
    /// continue a stopped or finished run for longer.
    pub resume: Option<std::path::PathBuf>,
    /// A folder for files that only speed this run up and that no checkpoint keeps: the L-BFGS pairs
    /// a tiled scale's tiles carry from one coupled round into the next, where `max_memory` leaves
    /// no room for them in memory and there is no checkpoint folder. Created when needed; the caller
    /// removes it after the run. `None`: such pairs are dropped (the rounds restart L-BFGS).
    pub scratch: Option<std::path::PathBuf>,
    /// Where the content gets stylised (white = fully, black = kept as the content; any size, it is
    /// resized to the output at every scale).
    pub mask: Option<crate::AlphaPlane>,
    /// One mask per style image: where on the output each style applies (resized like `mask`).
    pub style_masks: Option<Vec<crate::AlphaPlane>>,
    /// Where the network and the losses run (the optimiser stays on the CPU).
    pub device: crate::Device,
    /// Failures to inject on the GPU (tests of the error paths; none by default).
    pub gpu_faults: crate::GpuFaults,
    /// Memory the run may take (bytes): a scale whose whole-image optimisation would take more (see
    /// [`estimate_peak`](crate::tiles::estimate_peak)) is optimised in tiles small enough to fit.
    /// `None`: no limit.
    pub max_memory: Option<u64>,
    /// GPU memory the run may take (bytes), on a GPU: a scale whose whole-image optimisation would hold
    /// more there (see [`estimate_gpu_peak`](crate::tiles::estimate_gpu_peak)) first takes smaller
    /// Winograd scratch buffers (halved up to three times: more bands of tile rows, the same bits),
    /// and is optimised in tiles small enough to fit where that is not enough. `None`: [`DEFAULT_GPU_MEMORY_SHARE`](crate::tiles::DEFAULT_GPU_MEMORY_SHARE)
    /// percent of a discrete card's memory where its driver reports it (Vulkan), else no budget (the
    /// adapter's limits on one tensor and one buffer are kept to either way). Ignored on the CPU.
    pub max_gpu_memory: Option<u64>,
    /// Optimise every scale larger than this (pixels, longest side) in overlapping tiles of this side,
    /// one after the other. `None`: only where `max_memory` needs it.
    pub tile: Option<u32>,
    /// The least overlap between neighbouring tiles (pixels). Tiles must be at least
    /// `2·tile_overlap + 32` pixels.
    pub tile_overlap: u32,
    /// Rounds over the tiles of a tiled scale, coupled through the whole image's style: each tile's
    /// iterations are spread over the rounds (no more rounds than a tile has iterations), and in each
    /// round the tiles are held to the style together (see the `coupling` module). 0: each tile is
    /// held to the style's Grams on its own, in one round. With masks, each region's masked Grams
    /// are coupled the same way; with [`StyleLoss::Wasserstein`], each region's means and second
    /// moments. Tile jobs take the same rounds, one after the other.
    pub tile_rounds: usize,
}

impl Default for StyleConfig {
    fn default() -> Self {
        StyleConfig {
            size: 512,
            iterations: 500,
            content_weight: 5.0,
            style_weight: 100.0,
            tv_weight: 1e6,
            content_layers: vec!["relu4_2".into()],
            style_layers: ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"].map(String::from).to_vec(),
            style_loss: StyleLoss::Gram,
            style_layer_weights: None,
            style_blend: None,
            style_scale: 1.0,
            style_size: None,
            optimizer: Optimizer::Lbfgs { history: 100 },
            init: Init::Content,
            seed: 0,
            model: Arch::Vgg16,
            pooling: Pooling::Max,
            threads: 0,
            min_size: 512,
            scale_ratio: 2.0,
            scale_iterations: None,
            ema_decay: 0.99,
            time_limit: None,
            color: ColorMode::Style,
            color_match: None,
            checkpoint: None,
            checkpoint_every: 0,
            resume: None,
            scratch: None,
            mask: None,
            style_masks: None,
            device: crate::Device::Cpu,
            gpu_faults: crate::GpuFaults::default(),
            max_memory: None,
            max_gpu_memory: None,
            tile: None,
            tile_overlap: crate::tiles::TILE_OVERLAP,
            tile_rounds: crate::tiles::TILE_ROUNDS,
        }
    }
}

/// The most rounds over a scale's tiles (each recomputes the whole image's Grams).
const MAX_TILE_ROUNDS: usize = 100;

fn bad(what: &'static str, reason: impl Into<String>) -> Error {
    Error::Config { what, reason: reason.into() }
}

fn check_weight(what: &'static str, v: f32) -> Result<()> {
    if !v.is_finite() || v < 0.0 {
        return Err(bad(what, format!("{v} (must be a finite number ≥ 0)")));
    }
    Ok(())
}

impl StyleConfig {
    /// Checks every value that does not need the images or the network: sizes, weights, counts, layer names.
    /// `n_styles` is the number of style images the run will get.
    pub fn validate(&self, n_styles: usize) -> Result<()> {
        if self.size == 0 || self.size > MAX_SIZE {
            return Err(bad("size", format!("{} (must be between 1 and {MAX_SIZE} pixels)", self.size)));
        }
        if self.size < 16 {
            return Err(bad(
                "size",
                format!("{} (VGG needs at least 16 pixels on the longest side)", self.size),
            ));
        }
        if self.threads > MAX_THREADS {
            return Err(bad(
                "threads",
                format!("{} (must be at most {MAX_THREADS}; 0 = one per core)", self.threads),
            ));
        }
        check_weight("content weight", self.content_weight)?;
        check_weight("style weight", self.style_weight)?;
        check_weight("TV weight", self.tv_weight)?;
        if self.content_layers.is_empty() && self.style_layers.is_empty() {
            return Err(bad("layers", "no content and no style layers: nothing to optimise"));
        }
        for name in self.content_layers.iter().chain(&self.style_layers) {
            self.model.layer_index(name)?;
        }
        for (what, layers) in [("content layers", &self.content_layers), ("style layers", &self.style_layers)]
        {
            if let Some((_, name)) = layers.iter().enumerate().find(|&(i, n)| layers[..i].contains(n)) {
                return Err(bad(what, format!("{name} is given twice (give a layer once, with a weight)")));
            }
        }
        if let Some(w) = &self.style_layer_weights {
            if w.len() != self.style_layers.len() {
                return Err(bad(
                    "style layer weights",
                    format!("{} weights for {} style layers", w.len(), self.style_layers.len()),
                ));
            }
            for &v in w {
                check_weight("style layer weight", v)?;
            }
        }
        if n_styles == 0 && self.style_weight > 0.0 && !self.style_layers.is_empty() {
            return Err(bad("style images", "at least one style image is needed"));
        }
        if n_styles == 0 && matches!(self.init, Init::StyleStats | Init::Style) {
            return Err(bad("init", "it starts from the style images, and there are none"));
        }
        if let Some(b) = &self.style_blend {
            if b.len() != n_styles {
                return Err(bad(
                    "style blend weights",
                    format!("{} weights for {} style images", b.len(), n_styles),
                ));
            }
            for &v in b {
                check_weight("style blend weight", v)?;
            }
            if b.iter().sum::<f32>() <= 0.0 {
                return Err(bad("style blend weights", "they sum to 0"));
            }
        }
        if let Some(m) = &self.style_masks
            && m.len() != n_styles
        {
            return Err(bad("style masks", format!("{} masks for {} style images", m.len(), n_styles)));
        }
        if !self.style_scale.is_finite() || self.style_scale <= 0.0 || self.style_scale > 8.0 {
            return Err(bad("style scale", format!("{} (must be in (0, 8])", self.style_scale)));
        }
        if let Some(px) = self.style_size
            && !(16..=MAX_SIZE).contains(&px)
        {
            return Err(bad("style size", format!("{px} (must be between 16 and {MAX_SIZE} pixels)")));
        }
        if self.min_size == 0 {
            return Err(bad("min size", "0 (must be ≥ 1)"));
        }
        if self.scale_iterations == Some(0) {
            return Err(bad("scale iterations", "0 (must be ≥ 1; the first scale has --iterations)"));
        }
        if !self.scale_ratio.is_finite() || self.scale_ratio <= 1.0 || self.scale_ratio > 16.0 {
            return Err(bad("scale ratio", format!("{} (must be in (1, 16])", self.scale_ratio)));
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return Err(bad("EMA decay", format!("{} (must be in [0, 1))", self.ema_decay)));
        }
        if let Some(t) = self.tile {
            let least = crate::tiles::min_tile(self.tile_overlap);
            if t < least {
                return Err(bad(
                    "tile size",
                    format!(
                        "{t} px is too small: tiles overlapping by {} px must be at least {least} px",
                        self.tile_overlap
                    ),
                ));
            }
        }
        if self.tile_overlap > MAX_SIZE {
            return Err(bad(
                "tile overlap",
                format!("{} px (must be at most {MAX_SIZE})", self.tile_overlap),
            ));
        }
        if self.tile_rounds > MAX_TILE_ROUNDS {
            return Err(bad(
                "tile rounds",
                format!("{} (must be at most {MAX_TILE_ROUNDS})", self.tile_rounds),
            ));
        }
        match self.optimizer {
            Optimizer::Lbfgs { history } if history == 0 || history > 10_000 => {
                return Err(bad("L-BFGS history", format!("{history} (must be 1..=10000)")));
            }
            Optimizer::Adam { learning_rate } if !learning_rate.is_finite() || learning_rate <= 0.0 => {
                return Err(bad("learning rate", format!("{learning_rate} (must be > 0)")));
            }
            _ => {}
        }
        Ok(())
    }

    /// The multi-scale schedule: (longest side, iterations) for each scale, smallest first. One entry
    /// when `size` is less than `scale_ratio · min_size`. A run drops the coarse scales at which the
    /// content (or a style image) would be too small for the network, and then starts with the
    /// smallest scale left, which gets `iterations` (see [`RunInfo::scales`](crate::RunInfo::scales)).
    pub fn scales(&self) -> Vec<(u32, usize)> {
        let sizes = self.scale_sizes();
        let iters = self.scale_iteration_counts(sizes.len());
        sizes.into_iter().zip(iters).collect()
    }

    /// The longest side of each scale, smallest first, ending with `size`.
    pub(crate) fn scale_sizes(&self) -> Vec<u32> {
        let mut sizes = vec![self.size];
        loop {
            let next = (*sizes.last().unwrap_or(&self.size) as f32 / self.scale_ratio).round() as u32;
            if next < self.min_size || next < 16 || sizes.len() >= 16 {
                break;
            }
            sizes.push(next);
        }
        sizes.reverse();
        sizes
    }

    /// The iterations of each of `n` scales: `iterations` at the first, then `scale_iterations`, or
    /// half the previous scale's (at least 50, at most the previous).
    pub(crate) fn scale_iteration_counts(&self, n: usize) -> Vec<usize> {
        let mut iters = self.iterations;
        (0..n)
            .map(|i| {
                if i > 0 {
                    iters = self.scale_iterations.unwrap_or((iters / 2).max(50).min(iters));
                }
                iters
            })
            .collect()
    }

    /// A stable text of the settings that decide the objective and the images of each scale, used to
    /// check that a checkpoint belongs to this run. Not in it: how long the run goes on (iterations,
    /// per-scale iterations, time limit), threads and the checkpoint paths, so that a stopped run can
    /// be resumed for longer, nor the device (a run stopped on one resumes on another).
    pub fn result_key(&self) -> String {
        let mut c = self.clone();
        c.iterations = 0;
        c.scale_iterations = None;
        c.threads = 0;
        c.time_limit = None;
        c.checkpoint = None;
        c.checkpoint_every = 0;
        c.resume = None;
        c.scratch = None;
        c.device = crate::Device::Cpu;
        c.gpu_faults = crate::GpuFaults::default();
        // Whether and how a scale is tiled is decided per scale, and the run adds that to its
        // fingerprint: a budget that leads to the same tiles does not change the result.
        c.max_memory = None;
        c.max_gpu_memory = None;
        c.tile = None;
        c.tile_rounds = 0;
        let mut key = String::new();
        for m in c.mask.iter().chain(c.style_masks.iter().flatten()) {
            key.push_str(&format!(" mask {}x{} {:08x}", m.width(), m.height(), {
                let mut fp = crate::checkpoint::Fingerprint::new();
                fp.add_f32s(m.as_raw());
                fp.0
            }));
        }
        c.mask = None;
        c.style_masks = None;
        if let Init::Image(img) = &c.init {
            key.push_str(&format!(" init image {}x{}", img.width(), img.height()));
            c.init = Init::Content;
        }
        format!("{c:?}{key}")
    }

    /// The blend weights normalised to sum 1 (equal weights when none were given).
    pub fn normalised_blend(&self, n_styles: usize) -> Vec<f32> {
        match &self.style_blend {
            Some(b) => {
                let s: f32 = b.iter().sum();
                b.iter().map(|v| v / s).collect()
            }
            None => vec![1.0 / n_styles.max(1) as f32; n_styles],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_key_keeps_the_masks_beside_an_init_image() {
        let grey = |v| image::Rgb32FImage::from_pixel(4, 4, image::Rgb([v; 3]));
        let mask = |v| image::ImageBuffer::from_pixel(4, 4, image::Luma([v]));
        let with = |m: f32, init: f32| StyleConfig {
            mask: Some(mask(m)),
            init: Init::Image(grey(init)),
            ..StyleConfig::default()
        };
        assert_ne!(with(1.0, 0.5).result_key(), with(0.0, 0.5).result_key(), "the mask is lost");
        assert!(with(1.0, 0.5).result_key().ends_with(" init image 4x4"));
        assert_eq!(
            with(1.0, 0.5).result_key(),
            with(1.0, 0.25).result_key(),
            "the init's pixels are hashed apart"
        );
    }

    #[test]
    fn the_style_loss_is_part_of_the_result_key() {
        let gram = StyleConfig::default();
        let w2 = StyleConfig { style_loss: StyleLoss::Wasserstein, ..gram.clone() };
        assert_ne!(gram.result_key(), w2.result_key(), "a checkpoint would resume under the other loss");
    }
}
