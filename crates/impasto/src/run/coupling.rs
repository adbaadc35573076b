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

use image::Rgb32FImage;

use super::Plan;
use super::inputs::ScaleInputs;
use super::tiled::TiledScale;
use crate::error::Result;
use crate::loss::StyleTarget;
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
    pub(super) fn style_shift(&self, ts: &TiledScale, start: &Rgb32FImage) -> Result<Vec<Vec<f32>>> {
        // Passes no larger than the tiles (interior and halo), so that they fit where the tiles do.
        let side = ts.plan.rects().map(|r| r.width.max(r.height)).max().unwrap_or(0);
        let interior = side.saturating_sub(2 * GRAM_HALO).max(side / 2);
        let whole = match region_masks(&ts.inputs, Rect::whole(ts.inputs.width, ts.inputs.height)) {
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
    /// tile's part of a region is empty).
    pub(super) fn tile_targets(
        &self,
        ts: &TiledScale,
        i: usize,
        shift: Option<&[Vec<f32>]>,
    ) -> Result<Vec<StyleTarget>> {
        let Some(shift) = shift else { return Ok(ts.style.clone()) };
        let rect = ts.plan.rect(i);
        let x = tiles::crop_planar(&ts.base, rect);
        let (h, w) = (rect.height as usize, rect.width as usize);
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

/// The style regions' pixel masks on `rect` (see `ScaleInputs::regions`), `None` without masks.
fn region_masks(inputs: &ScaleInputs, rect: Rect) -> Option<Vec<Vec<f32>>> {
    inputs.regions(rect).into_iter().collect()
}
