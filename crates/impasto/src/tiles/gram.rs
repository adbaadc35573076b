//! Style targets of an image too large to hold its activations: the Gram matrices summed over
//! overlapping tiles, each run through the network with a halo of context around its interior and
//! contributing only its interior positions, so that every position of each layer is counted once
//! and (with a halo at least the deepest layer's receptive radius) has the whole image's features.

use image::Rgb32FImage;

use super::blend::crop_planar;
use super::plan::{Rect, TILE_ALIGN};
use crate::error::Result;
use crate::loss::{TargetNet, layer_mask, masked_gram_norm};
use crate::model::Vgg;

/// The halo around each interior tile of a tiled Gram, in pixels: the receptive radius of relu5_1
/// (66 px) rounded up to [`TILE_ALIGN`]. Measured on a 96 px image (see the tests): the tiled Grams
/// match the whole image's to 1e-5 relative from this halo on.
pub const GRAM_HALO: u32 = 80;

/// The normalised Gram matrices `F·Fᵀ/(C·N)` of `img` at `layers` (as `grams_at` computes them on the
/// whole image), computed on interior tiles of side `tile` (a multiple of [`TILE_ALIGN`]) with `halo`
/// pixels of context, on `net`'s device (on a GPU, each interior's Gram too: its cropped-Gram kernel,
/// only the Grams read back). An image that fits in one tile is computed whole.
pub(crate) fn tiled_grams(
    net: TargetNet<'_>,
    img: &Rgb32FImage,
    layers: &[usize],
    tile: u32,
    halo: u32,
) -> Result<Vec<Vec<f32>>> {
    let (w, h) = img.dimensions();
    let tile = (tile / TILE_ALIGN * TILE_ALIGN).max(TILE_ALIGN);
    if w <= tile && h <= tile {
        let px = crate::pixels::to_planar(img);
        return net.grams_at(&px, h as usize, w as usize, layers);
    }
    Ok(region_grams(net, img, layers, None, tile, halo)?.into_iter().flatten().collect())
}

/// The masked Gram matrices `G = (F∘m)(F∘m)ᵀ / (C·Σm)` of `img` (the style terms' rule, see
/// `loss::style`) for each region mask in `masks` (planes of `img`'s pixels, each averaged onto a
/// layer's grid as the objective's masks are) and layer in `layers`, region-major (term
/// `r·layers.len() + l`), computed as [`tiled_grams`] computes unmasked ones: interior tiles of side
/// `tile` with `halo` pixels of context, each interior's `(F∘m)(F∘m)ᵀ` summed, divided by the whole
/// image's `C·Σm`. `None` for a region empty at a layer (its term is zero). Without `masks`, one
/// region: the unmasked Grams. A `tile` no smaller than the image is one pass over the whole.
pub(crate) fn region_grams(
    net: TargetNet<'_>,
    img: &Rgb32FImage,
    layers: &[usize],
    masks: Option<&[Vec<f32>]>,
    tile: u32,
    halo: u32,
) -> Result<Vec<Option<Vec<f32>>>> {
    let sums = region_sums(net, img, layers, masks, tile, halo, false)?;
    Ok(sums
        .terms
        .into_iter()
        .enumerate()
        .map(|(k, t)| {
            let norm = match &sums.masks {
                None => Some(t.channels as f64 * sums.positions[k % layers.len()]),
                Some(ms) => masked_gram_norm(t.channels, &ms[k]),
            };
            norm.map(|norm| t.gram.into_iter().map(|v| (v / norm) as f32).collect())
        })
        .collect())
}

/// A region's statistics at a layer as the Wasserstein style loss has them (`loss::wasserstein`):
/// the second moment `S = (F∘m)(F∘m)ᵀ/Σm²` (C×C) and the channels' means `μ = Σ F·m²/Σm²`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RegionMoments {
    pub(crate) second: Vec<f32>,
    pub(crate) mean: Vec<f64>,
}

/// [`region_grams`]' companion for the Wasserstein style loss: each region's [`RegionMoments`] at
/// each layer (region-major), summed over interior tiles as the Grams are, divided by the whole
/// image's `Σm²` (`H·W` without masks). `None` for a region empty at a layer (`Σm²` at most 1e-6, as
/// the loss has it).
pub(crate) fn region_moments(
    net: TargetNet<'_>,
    img: &Rgb32FImage,
    layers: &[usize],
    masks: Option<&[Vec<f32>]>,
    tile: u32,
    halo: u32,
) -> Result<Vec<Option<RegionMoments>>> {
    let sums = region_sums(net, img, layers, masks, tile, halo, true)?;
    Ok(sums
        .terms
        .into_iter()
        .enumerate()
        .map(|(k, t)| {
            let total = match &sums.masks {
                None => sums.positions[k % layers.len()],
                Some(ms) => ms[k].iter().map(|&v| f64::from(v) * f64::from(v)).sum(),
            };
            (total > 1e-6 && !t.gram.is_empty()).then(|| RegionMoments {
                second: t.gram.iter().map(|v| (v / total) as f32).collect(),
                mean: t.sums.iter().map(|v| v / total).collect(),
            })
        })
        .collect())
}

/// One term's sums over the interiors: `(F∘m)(F∘m)ᵀ` and (when asked) `Σ F·m²`.
struct TermSums {
    gram: Vec<f64>,
    sums: Vec<f64>,
    channels: usize,
}

/// What [`region_sums`] gives: each term's sums, each region's mask on each layer's whole grid
/// (region-major; `None` without masks), and each layer's positions.
struct RegionSums {
    terms: Vec<TermSums>,
    masks: Option<Vec<Vec<f32>>>,
    positions: Vec<f64>,
}

/// The sums behind [`region_grams`] and [`region_moments`], over interior tiles with a halo.
fn region_sums(
    net: TargetNet<'_>,
    img: &Rgb32FImage,
    layers: &[usize],
    masks: Option<&[Vec<f32>]>,
    tile: u32,
    halo: u32,
    with_sums: bool,
) -> Result<RegionSums> {
    let (w, h) = img.dimensions();
    let tile = (tile.min(w.max(h).next_multiple_of(TILE_ALIGN)) / TILE_ALIGN * TILE_ALIGN).max(TILE_ALIGN);
    let halo = halo.div_ceil(TILE_ALIGN) * TILE_ALIGN;
    let pools: Vec<u32> = layers.iter().map(|&l| net.net.pools_before(l + 1)).collect();
    let grid = |v: u32, p: u32| (v >> p) as usize;
    // Each region's mask on each layer's grid (region-major), over the whole image.
    let layer_masks: Option<Vec<Vec<f32>>> = masks.map(|ms| {
        ms.iter().flat_map(|m| pools.iter().map(|&p| layer_mask(m, h as usize, w as usize, p))).collect()
    });
    let regions = masks.map_or(1, <[_]>::len);
    let terms = regions * layers.len();
    let mut out: Vec<TermSums> =
        (0..terms).map(|_| TermSums { gram: Vec::new(), sums: Vec::new(), channels: 0 }).collect();
    for y0 in (0..h).step_by(tile as usize) {
        for x0 in (0..w).step_by(tile as usize) {
            let (x1, y1) = ((x0 + tile).min(w), (y0 + tile).min(h));
            let (cx0, cy0) = (x0.saturating_sub(halo), y0.saturating_sub(halo));
            let (cx1, cy1) = ((x1 + halo).min(w), (y1 + halo).min(h));
            let crop = Rect { x: cx0, y: cy0, width: cx1 - cx0, height: cy1 - cy0 };
            // Each layer's interior on its grid; a tile at the image's end takes the rest of the grid.
            // With masks, each region's mask on the crop's grid of each layer.
            let (mut wanted, mut rects, mut crop_masks, mut slots) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for r in 0..regions {
                for (k, (&l, &p)) in layers.iter().zip(&pools).enumerate() {
                    let s = 1u32 << p;
                    let (lw, lh) = (grid(crop.width, p), grid(crop.height, p));
                    let ix0 = ((x0 - cx0) / s) as usize;
                    let iy0 = ((y0 - cy0) / s) as usize;
                    let ix1 = if x1 == w { lw } else { ((x1 - cx0) / s) as usize };
                    let iy1 = if y1 == h { lh } else { ((y1 - cy0) / s) as usize };
                    if ix1 <= ix0 || iy1 <= iy0 {
                        continue;
                    }
                    let slot = r * layers.len() + k;
                    wanted.push(l);
                    rects.push((ix0, iy0, ix1 - ix0, iy1 - iy0));
                    crop_masks.push(layer_masks.as_ref().map(|ms| {
                        let (mx, my, mw) = (grid(cx0, p), grid(cy0, p), grid(w, p));
                        (my..my + lh)
                            .flat_map(|row| &ms[slot][row * mw + mx..row * mw + mx + lw])
                            .copied()
                            .collect::<Vec<f32>>()
                    }));
                    slots.push(slot);
                }
            }
            if wanted.is_empty() {
                continue;
            }
            let px = crop_planar(img, crop);
            let masks: Vec<Option<&[f32]>> = crop_masks.iter().map(Option::as_deref).collect();
            let (ch, cw) = (crop.height as usize, crop.width as usize);
            let parts: Vec<(Vec<f32>, Vec<f32>)> = if with_sums {
                net.cropped_moments_at(&px, ch, cw, &wanted, &rects, &masks)?
            } else {
                let grams = net.cropped_grams_at(&px, ch, cw, &wanted, &rects, &masks)?;
                grams.into_iter().map(|g| (g, Vec::new())).collect()
            };
            for (k, (g, s)) in slots.into_iter().zip(parts) {
                let t = &mut out[k];
                if t.gram.is_empty() {
                    t.gram = vec![0.0; g.len()];
                    t.sums = vec![0.0; s.len()];
                    t.channels = (g.len() as f64).sqrt().round() as usize;
                }
                t.gram.iter_mut().zip(&g).for_each(|(a, &b)| *a += f64::from(b));
                t.sums.iter_mut().zip(&s).for_each(|(a, &b)| *a += f64::from(b));
            }
        }
    }
    let positions = pools.iter().map(|&p| grid(w, p) as f64 * grid(h, p) as f64).collect();
    Ok(RegionSums { terms: out, masks: layer_masks, positions })
}

/// The normalised Gram matrices of `img` (RGB 0..1) at the named layers, computed in interior tiles
/// of side `tile` with `halo` pixels of context (see [`GRAM_HALO`]): the style targets a tiled scale
/// uses, computed without holding the whole image's activations.
pub fn style_grams(
    net: &Vgg,
    img: &Rgb32FImage,
    layers: &[&str],
    tile: u32,
    halo: u32,
) -> crate::Result<Vec<Vec<f32>>> {
    let idx: Vec<usize> = layers.iter().map(|n| net.layer_index(n)).collect::<crate::Result<_>>()?;
    tiled_grams(TargetNet::new(net, None), img, &idx, tile, halo)
}
