//! The peak memory of optimising one image (or tile) of a given size, from the network's activation
//! sizes, the optimiser's history and the image-sized buffers: what decides whether a scale runs
//! whole or in tiles under [`StyleConfig::max_memory`].

use crate::config::{Optimizer, StyleConfig, lbfgs_history_for};
use crate::model::Vgg;

/// Memory a run takes besides what grows with the image: the program, the network's weights in
/// their packed forms, the thread pool, allocator slack. Measured with `/usr/bin/time -v` on a
/// 32 px VGG-16 run (see BENCHMARKS.md).
pub const BASELINE_BYTES: u64 = 160 << 20;

/// The layers an objective evaluates: (deepest layer, which layers are wanted).
pub(super) fn wanted(net: &Vgg, config: &StyleConfig) -> Option<(usize, Vec<bool>, Vec<usize>)> {
    let content: Vec<usize> = config.content_layers.iter().filter_map(|n| net.layer_index(n).ok()).collect();
    let style: Vec<usize> = if config.style_weight > 0.0 {
        config.style_layers.iter().filter_map(|n| net.layer_index(n).ok()).collect()
    } else {
        Vec::new()
    };
    let last = content.iter().chain(&style).copied().max()?;
    let mut w = vec![false; last + 1];
    for &l in content.iter().chain(&style) {
        w[l] = true;
    }
    Some((last, w, content))
}

/// Bytes one objective evaluation of a `width`×`height` image holds at its peak, with its targets:
/// kept activations, two scratch buffers of the largest layer, the content targets, the gradient.
fn evaluation_bytes(net: &Vgg, config: &StyleConfig, width: u32, height: u32) -> u64 {
    let (h, w) = (height as usize, width as usize);
    let px = 3 * h * w * 4;
    let Some((last, wanted, content)) = wanted(net, config) else { return 2 * px as u64 };
    let (kept, largest) = net.forward_bytes(h, w, last, &wanted);
    let targets: usize = content
        .iter()
        .map(|&l| {
            let p = net.pools_before(l + 1);
            let c = net.layers()[..=l]
                .iter()
                .rev()
                .find_map(|x| match x.kind {
                    crate::LayerKind::Conv { c_out, .. } => Some(c_out),
                    _ => None,
                })
                .unwrap_or(3);
            4 * c * (h >> p) * (w >> p)
        })
        .sum();
    let masks = config.style_masks.as_ref().map_or(0, |m| m.len() + 1) * h * w * 4 * 2;
    // The gradient, the content image's pixels in the objective, and the loss gradients' copies.
    (kept + 2 * 4 * largest + targets + masks + 2 * px) as u64
}

/// Bytes of the optimiser's state for an image of `values` floats.
fn optimiser_bytes(config: &StyleConfig, values: usize) -> u64 {
    let v = 4 * values as u64;
    match config.optimizer {
        // The pairs, and x, g, the direction, the trial point and its gradient, s, y.
        Optimizer::Lbfgs { history } => 2 * lbfgs_history_for(history, values) as u64 * v + 7 * v,
        // Moments, the average, the previous image, the gradient.
        Optimizer::Adam { .. } => 5 * v,
    }
}

/// The peak memory (bytes) of optimising a `width`×`height` image (a whole scale, or one tile) under
/// `config` on the CPU: [`BASELINE_BYTES`], one evaluation, the optimiser's state, and the image
/// buffers of the scale (its content and initial image). Style targets computed at this size are
/// counted as the forward pass they take, which ends before the optimisation starts.
pub fn estimate_peak(net: &Vgg, config: &StyleConfig, width: u32, height: u32) -> u64 {
    let values = 3 * width as usize * height as usize;
    let images = 4 * 4 * values as u64;
    BASELINE_BYTES + evaluation_bytes(net, config, width, height) + optimiser_bytes(config, values) + images
}

/// The peak memory (bytes) of a tiled scale of `width`×`height` in tiles of side `tile` (at most
/// `tile + 15` pixels): the whole-image buffers a tiled scale keeps (the upscaled previous scale, the
/// blended output, the content at the scale, masks) and one tile's optimisation.
pub fn estimate_tiled_peak(net: &Vgg, config: &StyleConfig, width: u32, height: u32, tile: u32) -> u64 {
    let side = |s: u32| s.min(tile + super::TILE_ALIGN - 1);
    let whole = 3 * 4 * 3 * u64::from(width) * u64::from(height);
    let masks = (config.mask.is_some() as u64 + config.style_masks.as_ref().map_or(0, |m| m.len()) as u64)
        * 4
        * u64::from(width)
        * u64::from(height);
    whole + masks + estimate_peak(net, config, side(width), side(height))
}

/// `2.5 GiB`, `300 MiB`: a byte count for messages.
pub fn fmt_bytes(b: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    let v = b as f64;
    if v >= GIB {
        format!("{:.1} GiB", v / GIB)
    } else if v >= MIB {
        format!("{:.0} MiB", v / MIB)
    } else {
        format!("{:.1} KiB", v / 1024.0)
    }
}
