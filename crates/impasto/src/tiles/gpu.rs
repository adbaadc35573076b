//! What a scale or a tile must fit on a GPU: the adapter's limit on one tensor (a storage binding
//! holds one channel group, so at least one channel plane must fit in it), on one buffer (a
//! read-back), and the GPU memory budget ([`StyleConfig::max_gpu_memory`]) against the estimate of
//! the bytes the GPU holds while it optimises an image of a given size (`gpu_estimate.rs`), with
//! the Winograd scratch the objective takes under that budget. The tiler keeps every scale, tile
//! and style-target pass within them.

use super::gpu_estimate::{
    WINO_SCRATCH_BYTES, content_pass, estimate_gpu_peak, forward, gpu_weight_bytes, gram_floats,
    objective_bytes, peak_with, style_layers, winograd_scratch,
};
use super::memory::{fmt_bytes, wanted};
use crate::config::StyleConfig;
use crate::model::Vgg;

/// The limits of an opened GPU that decide how a run is tiled on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuLimits {
    /// The adapter's name, for messages.
    pub adapter: String,
    /// The largest tensor one storage binding holds, bytes.
    pub tensor: u64,
    /// The limit that sets `tensor`: `max_storage_buffer_binding_size` (or `max_buffer_size`).
    pub tensor_limit: &'static str,
    /// The largest buffer, bytes (bounds one read-back).
    pub buffer: u64,
    /// A discrete card's own memory, bytes, where its driver reports it (see
    /// [`GpuAdapter::device_memory`](crate::GpuAdapter::device_memory)): without
    /// [`StyleConfig::max_gpu_memory`], [`DEFAULT_GPU_MEMORY_SHARE`] of it is the budget. `None` for
    /// integrated and software adapters, which share the system's memory, and where unknown.
    pub memory: Option<u64>,
    /// What the card's driver says this process may use of that memory now, bytes (its Vulkan
    /// driver's `VK_EXT_memory_budget`, see [`GpuAdapter::memory_budget`](crate::GpuAdapter::memory_budget)):
    /// less than `memory` while other programs hold some of it. The default budget is a share of the
    /// smaller of the two. `None` where the driver does not say, and wherever `memory` is `None`.
    pub available: Option<u64>,
    /// What an allocation that ran out of memory during this run showed the device holds at most
    /// (see [`StyleConfig::max_gpu_memory`]): the run's budget from there on, where it is smaller.
    pub fitted: Option<u64>,
}

/// The share of the adapter's memory ([`GpuLimits::memory`]) a run takes by default, in percent:
/// room is left for the driver's own allocations, the allocator's rounding and whatever else
/// (a desktop, another program) uses the card.
pub const DEFAULT_GPU_MEMORY_SHARE: u64 = 80;

/// The GPU memory budget of a run: `config.max_gpu_memory`, else [`DEFAULT_GPU_MEMORY_SHARE`] of the
/// adapter's memory where known (of what its driver leaves this process, where that is less), or
/// [`GpuLimits::fitted`] where smaller, with how to name it in a message; `None`: no budget.
pub fn gpu_budget(config: &StyleConfig, limits: &GpuLimits) -> Option<(u64, String)> {
    let given = given_budget(config, limits);
    match limits.fitted {
        Some(f) if given.as_ref().is_none_or(|(b, _)| f < *b) => {
            Some((f, format!("what {} was found to hold when an allocation failed", limits.adapter)))
        }
        _ => given,
    }
}

/// [`gpu_budget`] before any allocation failed: the flag's, else the default.
fn given_budget(config: &StyleConfig, limits: &GpuLimits) -> Option<(u64, String)> {
    if let Some(b) = config.max_gpu_memory {
        return Some((b, "the GPU memory budget".into()));
    }
    let memory = limits.memory?;
    let (base, of) = match limits.available.filter(|&a| a < memory) {
        Some(available) => (
            available,
            format!(
                "the {} of {}'s {} its driver leaves this run",
                fmt_bytes(available),
                limits.adapter,
                fmt_bytes(memory)
            ),
        ),
        None => (memory, format!("{}'s {}", limits.adapter, fmt_bytes(memory))),
    };
    let budget = u128::from(base) * u128::from(DEFAULT_GPU_MEMORY_SHARE) / 100;
    Some((
        u64::try_from(budget).unwrap_or(u64::MAX),
        format!("the default GPU memory budget ({DEFAULT_GPU_MEMORY_SHARE} % of {of})"),
    ))
}

/// How many times, at most, the objective's Winograd scratch is halved before a scale is tiled: to
/// an eighth. On VGG-16 at 1024 px the two buffers then take 64 MiB instead of 512, and a band's
/// batched product still has about 2,000 workgroups of 64×64 outputs (a few waves on a large GPU).
const SCRATCH_HALVINGS: u32 = 3;

/// The cap on each of the Winograd scratch buffers of the objective over a `width`×`height` image on
/// a GPU under `limits` and the run's GPU memory budget ([`gpu_budget`]): `None` (the default,
/// 256 MiB) where the estimate fits the budget with it, or where there is no budget or no Winograd
/// convolution; else the largest of a half, a quarter, an eighth of what the largest convolution's
/// scratch takes by default with which it fits, the eighth where none does (the scale is then tiled,
/// and each tile takes its own). More bands of tile rows give the same bits, so only memory and the
/// number of dispatches change; a scale that fits this way runs whole, not in tiles.
pub(crate) fn objective_scratch(
    net: &Vgg,
    config: &StyleConfig,
    width: u32,
    height: u32,
    limits: &GpuLimits,
) -> Option<u64> {
    let (budget, _) = gpu_budget(config, limits)?;
    let (last, _, _) = wanted(net, config)?;
    let cap = limits.tensor;
    let (h, w) = (height as usize, width as usize);
    let most = 4 * winograd_scratch(net, h, w, last, cap, WINO_SCRATCH_BYTES) as u64;
    let fits = |scratch: u64| peak_with(net, config, (width, height), cap, scratch) <= budget;
    if most == 0 || fits(WINO_SCRATCH_BYTES) {
        return None;
    }
    let halved = |k: u32| (most >> k) / 4 * 4;
    (1..=SCRATCH_HALVINGS).map(halved).find(|&s| fits(s)).or(Some(halved(SCRATCH_HALVINGS)))
}

/// Something that does not fit on the GPU: what needs how many bytes, and the limit it exceeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Misfit {
    pub(crate) what: String,
    /// `needed` is an estimate.
    pub(crate) about: bool,
    pub(crate) needed: u64,
    pub(crate) allowed: u64,
    /// The adapter's limit (with the adapter's name), or the budget flag.
    pub(crate) limit: String,
}

impl std::fmt::Display for Misfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let about = if self.about { "about " } else { "" };
        write!(
            f,
            "{} needs {about}{} but {} is {}",
            self.what,
            fmt_bytes(self.needed),
            self.limit,
            fmt_bytes(self.allowed)
        )
    }
}

/// One channel plane of a `width`×`height` `what` (a storage binding holds at least one) beyond the
/// adapter's tensor limit.
fn plane_misfit(width: u32, height: u32, limits: &GpuLimits, what: &str) -> Option<Misfit> {
    let plane = 4 * u64::from(width) * u64::from(height);
    tensor_misfit(plane, limits, || format!("one channel plane of a {width}x{height} {what}"))
}

/// A tensor of `bytes` (`what` it is) that one storage binding cannot hold.
fn tensor_misfit(bytes: u64, limits: &GpuLimits, what: impl FnOnce() -> String) -> Option<Misfit> {
    (bytes > limits.tensor).then(|| Misfit {
        what: what(),
        about: false,
        needed: bytes,
        allowed: limits.tensor,
        limit: format!("{}'s {}", limits.adapter, limits.tensor_limit),
    })
}

/// Why a `width`×`height` image (a whole scale or a tile) cannot be optimised on the GPU under
/// `limits` and the budget `config.max_gpu_memory`; `None` when it can.
pub(crate) fn objective_misfit(
    net: &Vgg,
    config: &StyleConfig,
    width: u32,
    height: u32,
    limits: &GpuLimits,
) -> Option<Misfit> {
    let on = |limit: &str| format!("{}'s {limit}", limits.adapter);
    if let Some(m) = plane_misfit(width, height, limits, "image") {
        return Some(m);
    }
    if let Some(m) = gram_misfit(net, config, limits) {
        return Some(m);
    }
    // (The read-back does not depend on the Winograd scratch.)
    let (_, readback) = objective_bytes(net, config, (width, height), limits.tensor, WINO_SCRATCH_BYTES);
    let (_, content) = content_pass(net, config, width, height, limits.tensor);
    let readback = 4 * readback.max(content) as u64;
    if readback > limits.buffer {
        return Some(Misfit {
            what: format!("the read-back of a {width}x{height} image's gradient or features"),
            about: false,
            needed: readback,
            allowed: limits.buffer,
            limit: on("max_buffer_size"),
        });
    }
    let peak = estimate_gpu_peak(net, config, width, height, limits);
    budget_misfit(config, limits, peak, || format!("optimising a {width}x{height} image on the GPU"))
}

/// The largest style Gram matrix, if it is larger than one binding.
fn gram_misfit(net: &Vgg, config: &StyleConfig, limits: &GpuLimits) -> Option<Misfit> {
    let (_, shape) = match wanted(net, config) {
        Some((last, wanted, _)) => forward(net, (32, 32), last, &wanted, limits.tensor, WINO_SCRATCH_BYTES),
        None => return None,
    };
    let c = style_layers(net, config).into_iter().map(|l| shape[l].0).max()?;
    tensor_misfit(4 * (c * c) as u64, limits, || format!("a {c}×{c} Gram matrix"))
}

fn budget_misfit(
    config: &StyleConfig,
    limits: &GpuLimits,
    peak: u64,
    what: impl FnOnce() -> String,
) -> Option<Misfit> {
    let (budget, limit) = gpu_budget(config, limits)?;
    (peak > budget).then(|| Misfit { what: what(), about: true, needed: peak, allowed: budget, limit })
}

/// Why the style-target pass over a `width`×`height` style image (or a crop of one, with its halo)
/// cannot run on the GPU: its forward pass, then each layer's Gram (of the whole, or of the crop's
/// interior) computed there, only the Grams read back.
fn style_pass_misfit(
    net: &Vgg,
    config: &StyleConfig,
    width: u32,
    height: u32,
    limits: &GpuLimits,
) -> Option<Misfit> {
    let style = style_layers(net, config);
    let &last = style.iter().max()?;
    if let Some(m) = plane_misfit(width, height, limits, "style image tile") {
        return Some(m);
    }
    let mut wanted = vec![false; last + 1];
    style.iter().for_each(|&l| wanted[l] = true);
    let size = (height as usize, width as usize);
    let (floats, shape) = forward(net, size, last, &wanted, limits.tensor, WINO_SCRATCH_BYTES);
    // Each Gram (of at most every position of the layer) with its slices, and its read-back.
    let grams: usize = style
        .iter()
        .map(|&l| gram_floats(shape[l].0, shape[l].1 * shape[l].2, limits.tensor) + shape[l].0.pow(2))
        .sum();
    let peak = gpu_weight_bytes(net, limits.tensor) + 4 * (floats + grams) as u64;
    budget_misfit(config, limits, peak, || {
        format!("computing the style targets of a {width}x{height} style image tile")
    })
}

/// The tile side in which a `width`×`height` style image's Grams are computed on the GPU (see
/// [`tiled_grams`](super::tiled_grams)): `requested` when its tiles (with their `halo`) fit, else the
/// largest multiple of 16 px below it whose tiles do; `None` (the whole image in one pass) when no
/// tile was requested and the whole image fits. The misfit of the smallest tile when none fits.
pub(crate) fn gram_tile(
    net: &Vgg,
    config: &StyleConfig,
    (width, height): (u32, u32),
    requested: Option<u32>,
    halo: u32,
    limits: &GpuLimits,
) -> Result<Option<u32>, Misfit> {
    let align = super::TILE_ALIGN;
    let halo = halo.div_ceil(align) * align;
    let misfit = |t: u32| {
        if width <= t && height <= t {
            style_pass_misfit(net, config, width, height, limits)
        } else {
            let (cw, ch) = ((t + 2 * halo).min(width), (t + 2 * halo).min(height));
            style_pass_misfit(net, config, cw, ch, limits)
        }
    };
    if requested.is_none() && style_pass_misfit(net, config, width, height, limits).is_none() {
        return Ok(None);
    }
    let start = (requested.unwrap_or(width.max(height)) / align * align).max(align);
    let mut t = start;
    loop {
        match misfit(t) {
            None => return Ok(Some(t)),
            Some(m) if t <= align => return Err(m),
            Some(_) => t -= align,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Arch, LayerKind, Pooling, Preprocess};

    /// VGG-16 with zero weights: the estimates read only its shapes.
    fn vgg16() -> Vgg {
        let weights = Arch::Vgg16
            .layers()
            .iter()
            .filter_map(|l| match l.kind {
                LayerKind::Conv { c_in, c_out, .. } => Some((vec![0.0; 9 * c_in * c_out], vec![0.0; c_out])),
                _ => None,
            })
            .collect();
        Vgg::from_tensors(Arch::Vgg16, Pooling::Max, Preprocess::Torch, weights).unwrap()
    }

    /// VGG-16 at 1024 px under budgets from what the default Winograd scratch (2 × 256 MiB) needs
    /// down to what an eighth of it needs: the scratch halves as far as it must, and the scale fits
    /// whole until even the eighth does not.
    #[test]
    #[allow(clippy::print_stderr)] // the estimates, shown with --nocapture
    fn the_winograd_scratch_halves_until_the_scale_fits_its_budget() {
        let net = vgg16();
        let limits = GpuLimits {
            adapter: "a card".into(),
            tensor: 2 << 30,
            tensor_limit: "max_storage_buffer_binding_size",
            buffer: 4 << 30,
            memory: None,
            available: None,
            fitted: None,
        };
        let side = 1024;
        let peak =
            |scratch: u64| peak_with(&net, &StyleConfig::default(), (side, side), limits.tensor, scratch);
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        // The largest band's two buffers: 113 rows of 256 tiles (conv1_2), 254 MiB each.
        let most = 4 * winograd_scratch(&net, 1024, 1024, 29, limits.tensor, WINO_SCRATCH_BYTES) as u64;
        assert_eq!(most, 113 * 36 * 64 * 256 * 4);
        let (default, eighth) = (peak(WINO_SCRATCH_BYTES), peak(most / 8));
        eprintln!(
            "VGG-16 at {side} px: about {:.0} MiB with the default scratch, {:.0} with half, {:.0} with an eighth",
            mib(default),
            mib(peak(most / 2)),
            mib(eighth)
        );
        // An eighth: 14 rows a band; the more bands' kernel parameters take a few KiB of that back.
        let saved = 2 * (113 - 14) * 36 * 64 * 256 * 4;
        assert!(default - eighth <= saved && default - eighth > saved - (64 << 10), "{default} vs {eighth}");
        let at = |budget: Option<u64>| {
            let config = StyleConfig { max_gpu_memory: budget, ..StyleConfig::default() };
            let scratch = objective_scratch(&net, &config, side, side, &limits);
            let fits = objective_misfit(&net, &config, side, side, &limits).is_none();
            (scratch, fits)
        };
        assert_eq!(at(None), (None, true), "no budget: the default");
        assert_eq!(at(Some(default)), (None, true));
        assert_eq!(at(Some(default - 1)), (Some(most / 2), true));
        assert_eq!(at(Some(peak(most / 4))), (Some(most / 4), true));
        assert_eq!(at(Some(eighth)), (Some(most / 8), true));
        assert_eq!(at(Some(eighth - 1)), (Some(most / 8), false), "tiled");
        let config = StyleConfig { max_gpu_memory: Some(eighth), ..StyleConfig::default() };
        assert_eq!(estimate_gpu_peak(&net, &config, side, side, &limits), eighth);
        // A 4 GiB card's default budget (80 %, 3277 MiB): whole, with half the scratch.
        let card = GpuLimits { memory: Some(4 << 30), ..limits.clone() };
        let config = StyleConfig::default();
        assert!(default > gpu_budget(&config, &card).unwrap().0);
        assert_eq!(objective_scratch(&net, &config, side, side, &card), Some(most / 2));
        assert_eq!(objective_misfit(&net, &config, side, side, &card), None);
    }
}
