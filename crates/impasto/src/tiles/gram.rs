//! Style targets of an image too large to hold its activations: the Gram matrices summed over
//! overlapping tiles, each run through the network with a halo of context around its interior and
//! contributing only its interior positions, so that every position of each layer is counted once
//! and (with a halo at least the deepest layer's receptive radius) has the whole image's features.

use image::Rgb32FImage;

use super::blend::crop_planar;
use super::plan::{Rect, TILE_ALIGN};
use crate::error::Result;
use crate::loss::TargetNet;
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
    let halo = halo.div_ceil(TILE_ALIGN) * TILE_ALIGN;
    if w <= tile && h <= tile {
        let px = crate::pixels::to_planar(img);
        return net.grams_at(&px, h as usize, w as usize, layers);
    }
    let pools: Vec<u32> = layers.iter().map(|&l| net.net.pools_before(l + 1)).collect();
    let mut sums: Vec<Vec<f64>> = Vec::new();
    let mut channels = vec![0usize; layers.len()];
    for y0 in (0..h).step_by(tile as usize) {
        for x0 in (0..w).step_by(tile as usize) {
            let (x1, y1) = ((x0 + tile).min(w), (y0 + tile).min(h));
            let (cx0, cy0) = (x0.saturating_sub(halo), y0.saturating_sub(halo));
            let (cx1, cy1) = ((x1 + halo).min(w), (y1 + halo).min(h));
            let crop = Rect { x: cx0, y: cy0, width: cx1 - cx0, height: cy1 - cy0 };
            let px = crop_planar(img, crop);
            // Each layer's interior on its grid; a tile at the image's end takes the rest of the grid.
            let (mut wanted, mut rects, mut slots) = (Vec::new(), Vec::new(), Vec::new());
            for (k, (&l, &p)) in layers.iter().zip(&pools).enumerate() {
                let s = 1u32 << p;
                let (lw, lh) = ((crop.width >> p) as usize, (crop.height >> p) as usize);
                let ix0 = ((x0 - cx0) / s) as usize;
                let iy0 = ((y0 - cy0) / s) as usize;
                let ix1 = if x1 == w { lw } else { ((x1 - cx0) / s) as usize };
                let iy1 = if y1 == h { lh } else { ((y1 - cy0) / s) as usize };
                if ix1 > ix0 && iy1 > iy0 {
                    wanted.push(l);
                    rects.push((ix0, iy0, ix1 - ix0, iy1 - iy0));
                    slots.push(k);
                }
            }
            if wanted.is_empty() {
                continue;
            }
            let grams =
                net.cropped_grams_at(&px, crop.height as usize, crop.width as usize, &wanted, &rects)?;
            for (k, g) in slots.into_iter().zip(grams) {
                if sums.len() <= k {
                    sums.resize(layers.len(), Vec::new());
                }
                if sums[k].is_empty() {
                    sums[k] = vec![0.0; g.len()];
                    channels[k] = (g.len() as f64).sqrt().round() as usize;
                }
                sums[k].iter_mut().zip(&g).for_each(|(a, &b)| *a += f64::from(b));
            }
        }
    }
    Ok(sums
        .into_iter()
        .zip(&pools)
        .zip(channels)
        .map(|((s, &p), c)| {
            let s_px = 1u32 << p;
            let positions = f64::from(w / s_px) * f64::from(h / s_px);
            let norm = c as f64 * positions;
            s.into_iter().map(|v| (v / norm) as f32).collect()
        })
        .collect())
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
    tiled_grams(TargetNet { net, gpu: None }, img, &idx, tile, halo)
}
