//! Tiles coupled through the whole image's style. On their own, tiles each match the style's Gram
//! matrices, which is not the same as the whole image matching them: the whole image's optimum puts
//! more of some style features in one region and less in another. So a tiled scale runs in rounds,
//! and in each round every tile is held to its own Grams at the round's start plus the whole image's
//! shortfall, `G_tile(start) + (A − G_whole(start))`: at the start the tile's style gradient is the
//! whole image's (a Jacobi step on the whole-image objective), and the tiles together move the whole
//! image's Grams towards the style's. With content or style masks each style term is a region's
//! masked Gram, `(F∘m)(F∘m)ᵀ/(C·Σm)`, and so is each side of the shift: the whole image's per region
//! (tiled with the halo, over the whole image's `Σm`) and the tile's own over its part of the region.
//! A region empty in the whole image has no shift; a tile in which it is empty keeps the style's
//! target (its term is zero there anyway).
//!
//! The Wasserstein style loss is not a distance between second moments, so its targets cannot be
//! shifted by a difference (moved statistics can leave the covariances, and its square roots fail).
//! Each tile instead compares its statistics with the style moved by the whole image's optimal
//! transport map `T` at the round's start (to the style's Gaussian): `N(μ_s + T(μ_t − μ_w), T Σ_t T)`,
//! whose best map from the tile's own Gaussian is `T` again, so the same Jacobi step: at the start
//! each tile's style gradient per position is the whole image's. A round's shift then holds the whole
//! image's statistics, each term's second moment (C×C) then means (C), the region's
//! (`(F∘m)(F∘m)ᵀ/Σm²`, `Σ F·m²/Σm²`) with masks.

use image::Rgb32FImage;

use super::Plan;
use super::inputs::ScaleInputs;
use super::tiled::TiledScale;
use crate::config::StyleLoss;
use crate::error::Result;
use crate::loss::{StyleTarget, WholeMap};
use crate::pixels::to_image;
use crate::tiles::{self, GRAM_HALO, Rect};

impl Plan<'_> {
    /// Whether a tiled scale's tiles are coupled: `tile_rounds` above 0 and style terms.
    pub(super) fn coupled(&self) -> bool {
        self.config.tile_rounds > 0 && !self.style_layers.is_empty()
    }

    /// The rounds over the tiles of `plan` at scale `k`: `tile_rounds` when they are coupled, but
    /// no more than each tile's iterations (a round without any would only cost the whole image's
    /// Grams and an evaluation per tile); else 1 (one tile is the whole image: nothing to couple).
    pub(super) fn rounds(&self, k: usize, plan: &crate::tiles::TilePlan) -> usize {
        let per_tile = self.scales[k].iterations / plan.len();
        if self.coupled() && plan.len() > 1 { self.config.tile_rounds.min(per_tile).max(1) } else { 1 }
    }

    /// A coupled round's shift of every style target: `A − G_whole(start)`, the style's Grams less
    /// the whole image's at the round's start (computed in tiles with a halo, as exact as in one pass;
    /// with masks, each region's masked Grams, and no shift where the region is empty).
    /// With the Wasserstein style loss, the whole image's statistics instead (see the module).
    pub(super) fn style_shift(&self, ts: &TiledScale, start: &Rgb32FImage) -> Result<Vec<Vec<f32>>> {
        // Passes no larger than the tiles (interior and halo), so that they fit where the tiles do.
        let side = ts.plan.rects().map(|r| r.width.max(r.height)).max().unwrap_or(0);
        let interior = side.saturating_sub(2 * GRAM_HALO).max(side / 2);
        let masks = region_masks(&ts.inputs, Rect::whole(ts.inputs.width, ts.inputs.height));
        if self.config.style_loss == StyleLoss::Wasserstein {
            let whole = tiles::region_moments(
                self.targets(),
                start,
                &self.style_layers,
                masks.as_deref(),
                interior,
                GRAM_HALO,
            )?;
            return Ok(ts
                .style
                .iter()
                .zip(whole)
                .map(|(t, m)| match m {
                    Some(m) => m.second.iter().copied().chain(m.mean.iter().map(|&v| v as f32)).collect(),
                    None => vec![0.0; shift_len(t)],
                })
                .collect());
        }
        let whole = match masks {
            None => {
                let layers: Vec<usize> = ts.style.iter().map(|t| t.layer).collect();
                tiles::tiled_grams(self.targets(), start, &layers, interior, GRAM_HALO)?
                    .into_iter()
                    .map(Some)
                    .collect()
            }
            Some(masks) => tiles::region_grams(
                self.targets(),
                start,
                &self.style_layers,
                Some(&masks),
                interior,
                GRAM_HALO,
            )?,
        };
        Ok(ts
            .style
            .iter()
            .zip(whole)
            .map(|(t, g)| match g {
                Some(g) => t.gram.iter().zip(&g).map(|(a, b)| a - b).collect(),
                None => vec![0.0; t.gram.len()],
            })
            .collect())
    }

    /// The style targets of tile `i` in a round that starts from `ts.base`: the scale's, or with a
    /// `shift` (coupled) the tile's own Grams at the start plus the shift (the scale's where the
    /// tile's part of a region is empty), or with the Wasserstein style loss the style moved by the
    /// round's transport maps.
    pub(super) fn tile_targets(
        &self,
        ts: &TiledScale,
        i: usize,
        shift: Option<&RoundShift>,
    ) -> Result<Vec<StyleTarget>> {
        let Some(RoundShift { values: shift, maps }) = shift else { return Ok(ts.style.clone()) };
        let rect = ts.plan.rect(i);
        let x = tiles::crop_planar(&ts.base, rect);
        let (h, w) = (rect.height as usize, rect.width as usize);
        if self.config.style_loss == StyleLoss::Wasserstein {
            let img = to_image(&x, rect.width, rect.height);
            let masks = region_masks(&ts.inputs, rect);
            let own = tiles::region_moments(
                self.targets(),
                &img,
                &self.style_layers,
                masks.as_deref(),
                u32::MAX,
                0,
            )?;
            let mut out = Vec::with_capacity(ts.style.len());
            for ((t, own), map) in ts.style.iter().zip(own).zip(maps) {
                out.push(match (own, &t.w2, map) {
                    // The style moved by the whole image's transport map (an empty region has none).
                    (Some(o), Some(w2), Some(map)) => {
                        let moved = w2.transported(map, (&o.second, &o.mean))?;
                        StyleTarget { w2: Some(std::sync::Arc::new(moved)), ..t.clone() }
                    }
                    _ => t.clone(),
                });
            }
            return Ok(out);
        }
        let own: Vec<Option<Vec<f32>>> = match region_masks(&ts.inputs, rect) {
            None => {
                let layers: Vec<usize> = ts.style.iter().map(|t| t.layer).collect();
                self.targets().grams_at(&x, h, w, &layers)?.into_iter().map(Some).collect()
            }
            Some(masks) => {
                let img = to_image(&x, rect.width, rect.height);
                tiles::region_grams(self.targets(), &img, &self.style_layers, Some(&masks), u32::MAX, 0)?
            }
        };
        Ok(ts
            .style
            .iter()
            .zip(own)
            .zip(shift)
            .map(|((t, g), s)| match g {
                Some(g) => StyleTarget { gram: g.iter().zip(s).map(|(a, b)| a + b).collect(), ..t.clone() },
                None => t.clone(),
            })
            .collect())
    }
}

/// A coupled round's shift ([`Plan::style_shift`]'s values) and, with the Wasserstein style loss,
/// each term's transport map from the whole image at the round's start, computed once a round rather
/// than once a tile (`None` for a Gram term and for a region empty in the whole image).
pub(super) struct RoundShift {
    values: Vec<Vec<f32>>,
    maps: Vec<Option<WholeMap>>,
}

impl RoundShift {
    /// The round with `values` (as [`Plan::style_shift`] gives them) for the style terms `style`.
    pub(super) fn new(style: &[StyleTarget], values: Vec<Vec<f32>>) -> Result<RoundShift> {
        let maps = style
            .iter()
            .zip(&values)
            .map(|(t, whole)| {
                let c = (t.gram.len() as f64).sqrt().round() as usize;
                match &t.w2 {
                    Some(w2) if whole.len() == c * c + c && whole.iter().any(|&v| v != 0.0) => {
                        let (second, mean) = whole.split_at(c * c);
                        let mean: Vec<f64> = mean.iter().map(|&v| f64::from(v)).collect();
                        w2.whole_map((second, &mean)).map(Some)
                    }
                    _ => Ok(None),
                }
            })
            .collect::<Result<_>>()?;
        Ok(RoundShift { values, maps })
    }
}

/// The values of a round's shift for style term `t`: its Gram's, and with the Wasserstein style
/// loss its means' too (see the module).
pub(super) fn shift_len(t: &StyleTarget) -> usize {
    match t.w2 {
        Some(_) => t.gram.len() + (t.gram.len() as f64).sqrt().round() as usize,
        None => t.gram.len(),
    }
}

/// The style regions' pixel masks on `rect` (see `ScaleInputs::regions`), `None` without masks.
fn region_masks(inputs: &ScaleInputs, rect: Rect) -> Option<Vec<Vec<f32>>> {
    inputs.regions(rect).into_iter().collect()
}
