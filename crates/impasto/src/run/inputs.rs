//! A scale's inputs and objective: the content, masks and style targets resized to one scale, and
//! the objective on a rectangle of it (the whole image, or a tile).

use std::sync::Arc;

use image::Rgb32FImage;

use super::{Plan, check_min_side};
use crate::config::StyleLoss;
use crate::error::Result;
use crate::loss::{ContentTarget, Objective, StyleTarget, TemporalTarget, W2Target, layer_mask};
use crate::pixels::{fit_longest_side, resize, to_planar};
use crate::tiles::{self, GRAM_HALO, Rect};

impl<'a> Plan<'a> {
    /// The objective at the scale whose longest side is `long`, on the whole image.
    pub(super) fn objective(
        &self,
        content: &Rgb32FImage,
        styles: &[Rgb32FImage],
        long: u32,
    ) -> Result<Objective<'a>> {
        let inputs = self.inputs_at(content, long);
        let style = self.style_targets(styles, long, None)?;
        self.objective_on(&inputs, Rect::whole(inputs.width, inputs.height), &style)
    }

    /// The inputs resized to the scale whose longest side is `long`.
    pub(super) fn inputs_at(&self, content: &Rgb32FImage, long: u32) -> ScaleInputs {
        let (width, height) = fit_longest_side(content.width(), content.height(), long);
        ScaleInputs {
            width,
            height,
            content: resize(content, width, height),
            mask: self.config.mask.as_ref().map(|m| mask_at(m, width, height)),
            style_masks: self
                .config
                .style_masks
                .as_ref()
                .map(|ms| ms.iter().map(|m| mask_at(m, width, height)).collect()),
            temporal: self
                .temporal
                .map(|t| (resize(&t.target, width, height), mask_at(&t.reliability, width, height))),
        }
    }

    /// The style targets at the scale whose longest side is `long` (the blended Grams of the style
    /// images, weighted, without masks): one per style layer, or with style masks one per style and
    /// layer. `tile`: compute each style image's Grams in tiles of this side (it may be too large for
    /// one pass).
    pub(super) fn style_targets(
        &self,
        styles: &[Rgb32FImage],
        long: u32,
        tile: Option<u32>,
    ) -> Result<Vec<StyleTarget>> {
        let config = self.config;
        let regions = config.style_masks.as_ref().map_or(1, Vec::len);
        let layer_w =
            config.style_layer_weights.clone().unwrap_or_else(|| vec![1.0; config.style_layers.len()]);
        let blend = config.normalised_blend(styles.len());
        let mut style_targets: Vec<StyleTarget> = Vec::new();
        let region_weights: Vec<f32> = match &config.style_masks {
            Some(_) => blend.iter().map(|b| b * styles.len() as f32).collect(),
            None => vec![1.0],
        };
        for &region_w in region_weights.iter().take(regions) {
            for (&layer, &lw) in self.style_layers.iter().zip(&layer_w) {
                let weight = config.style_weight * lw * region_w;
                style_targets.push(StyleTarget { layer, gram: Vec::new(), weight, mask: None, w2: None });
            }
        }
        let mut style_means: Vec<Vec<f32>> = vec![Vec::new(); style_targets.len()];
        let style_long = self.style_long(long);
        let nl = self.style_layers.len();
        for (k, (img, b)) in styles.iter().zip(&blend).enumerate() {
            if nl == 0 {
                break;
            }
            let (sw, sh) = fit_longest_side(img.width(), img.height(), style_long);
            check_min_side("style image size (after --style-scale or --style-size)", sw, sh, self.pools)?;
            let tile = self.gram_tile((sw, sh), tile)?;
            let wasserstein = config.style_loss == StyleLoss::Wasserstein;
            let (grams, means) = if wasserstein {
                // The second moments F·Fᵀ/N as Grams F·Fᵀ/(C·N), and the means: summed where the
                // features are made (on a GPU, only C×C + C values a layer come back), in tiles
                // where the style image is large.
                let img = resize(img, sw, sh);
                let tile = tile.unwrap_or(u32::MAX);
                let moments =
                    tiles::region_moments(self.targets(), &img, &self.style_layers, None, tile, GRAM_HALO)?;
                moments
                    .into_iter()
                    .flatten()
                    .map(|m| {
                        let c = m.mean.len() as f32;
                        let gram = m.second.iter().map(|v| v / c).collect();
                        (gram, m.mean.iter().map(|&v| v as f32).collect())
                    })
                    .unzip()
            } else {
                (self.style_grams(img, (sw, sh), tile)?, Vec::<Vec<f32>>::new())
            };
            // Style k feeds region k when masked, else the blend of the single region.
            let (range, factor) = match &config.style_masks {
                Some(_) => (k * nl..(k + 1) * nl, 1.0),
                None => (0..nl, *b),
            };
            for (i, g) in range.clone().zip(grams) {
                let t = &mut style_targets[i];
                if t.gram.is_empty() {
                    t.gram = vec![0.0; g.len()];
                }
                for (a, v) in t.gram.iter_mut().zip(&g) {
                    *a += factor * v;
                }
            }
            for (i, m) in range.zip(means) {
                let sum = &mut style_means[i];
                if sum.is_empty() {
                    *sum = vec![0.0; m.len()];
                }
                sum.iter_mut().zip(&m).for_each(|(a, v)| *a += factor * v);
            }
        }
        if config.style_loss == StyleLoss::Wasserstein {
            for (t, mean) in style_targets.iter_mut().zip(&style_means) {
                if !mean.is_empty() {
                    t.w2 = Some(Arc::new(W2Target::new(&t.gram, mean)?));
                }
            }
        }
        Ok(style_targets)
    }

    /// The Gram matrices of style image `img` resized to `(sw, sh)`, in tiles of side `tile` if
    /// given.
    fn style_grams(
        &self,
        img: &Rgb32FImage,
        (sw, sh): (u32, u32),
        tile: Option<u32>,
    ) -> Result<Vec<Vec<f32>>> {
        Ok(match tile {
            Some(t) => {
                tiles::tiled_grams(self.targets(), &resize(img, sw, sh), &self.style_layers, t, GRAM_HALO)?
            }
            None => {
                let px = to_planar(&resize(img, sw, sh));
                self.targets().grams_at(&px, sh as usize, sw as usize, &self.style_layers)?
            }
        })
    }

    /// On a GPU, that every scale's style targets fit it (see [`Plan::gram_tile`]): checked before the
    /// run starts, so that a later scale does not stop it there.
    pub(super) fn check_style_targets(&self, styles: &[Rgb32FImage]) -> Result<()> {
        if self.gpu.is_none() || self.style_layers.is_empty() {
            return Ok(());
        }
        for (s, t) in self.scales.iter().zip(&self.tiles) {
            for img in styles {
                let size = fit_longest_side(img.width(), img.height(), self.style_long(s.long_side()));
                self.gram_tile(size, t.as_ref().map(|p| p.tile))?;
            }
        }
        Ok(())
    }

    /// The tile side in which a `width`×`height` style image's Grams are computed: `requested` (a
    /// tiled scale's tile side) on the CPU; on a GPU, the largest that fits its limits (see
    /// [`tiles::gram_tile`]), the whole image when it fits and no tile was requested.
    fn gram_tile(&self, size: (u32, u32), requested: Option<u32>) -> Result<Option<u32>> {
        let Some(limits) = self.gpu_limits() else { return Ok(requested) };
        tiles::gram_tile(self.net, self.config, size, requested, GRAM_HALO, &limits).map_err(|m| {
            let reason = format!("the style targets do not fit the GPU even in the smallest tiles: {m}");
            crate::error::GpuFault::new(crate::GpuFailure::Limit, reason).into()
        })
    }

    /// The objective on the rectangle `rect` of a scale (the whole image, or a tile): content targets
    /// from the content's crop, masks cropped, the given (global) style targets.
    pub(super) fn objective_on(
        &self,
        inputs: &ScaleInputs,
        rect: Rect,
        style: &[StyleTarget],
    ) -> Result<Objective<'a>> {
        let (net, config) = (self.net, self.config);
        let (w, h) = (rect.width as usize, rect.height as usize);
        let content_px = tiles::crop_planar(&inputs.content, rect);
        let content_targets = self
            .targets()
            .features_at(&content_px, h, w, &self.content_layers)?
            .into_iter()
            .zip(&self.content_layers)
            .map(|(features, &layer)| ContentTarget { layer, features, weight: config.content_weight })
            .collect();

        let pixel_mask = inputs.mask.as_ref().map(|m| tiles::crop_plane(m, inputs.width, rect));
        let regions = inputs.regions(rect);
        let nl = self.style_layers.len();
        let style_targets = style
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let pools = net.pools_before(t.layer + 1);
                let mask = regions[i / nl.max(1)].as_ref().map(|m| layer_mask(m, h, w, pools));
                StyleTarget { mask, ..t.clone() }
            })
            .collect();
        let mut objective = Objective {
            net,
            height: h,
            width: w,
            content: content_targets,
            style: style_targets,
            tv_weight: config.tv_weight,
            pixel_mask,
            temporal: match (self.temporal, &inputs.temporal) {
                (Some(t), Some((target, mask))) => Some(TemporalTarget {
                    target: tiles::crop_planar(target, rect),
                    mask: tiles::crop_plane(mask, inputs.width, rect),
                    weight: t.weight,
                }),
                _ => None,
            },
            // What the content pass just left, the first evaluation's buffers.
            buffers: self.pool.take(),
            gpu: None,
        };
        // On a GPU under a memory budget, the Winograd scratch the planner counted on.
        let scratch = self
            .gpu_limits()
            .and_then(|limits| tiles::objective_scratch(net, config, rect.width, rect.height, &limits));
        objective.attach(self.gpu.as_ref(), scratch)?;
        Ok(objective)
    }
}

/// The inputs of one scale, resized to it once (a tiled scale crops every tile's from them).
pub(super) struct ScaleInputs {
    pub(super) width: u32,
    pub(super) height: u32,
    /// The content image.
    pub(super) content: Rgb32FImage,
    /// The content mask, one plane.
    pub(super) mask: Option<Vec<f32>>,
    /// The style masks, one plane each.
    pub(super) style_masks: Option<Vec<Vec<f32>>>,
    /// Video: the temporal target and its reliability (one plane).
    pub(super) temporal: Option<(Rgb32FImage, Vec<f32>)>,
}

impl ScaleInputs {
    /// The style regions on the rectangle `rect` (pixel masks, one plane each): without style masks
    /// one, the content mask (`None`: everywhere); with them one per style, its mask times the
    /// content mask. The style terms are region-major: term `r·layers + l` is region `r`'s at layer `l`.
    pub(super) fn regions(&self, rect: Rect) -> Vec<Option<Vec<f32>>> {
        let pixel_mask = self.mask.as_ref().map(|m| tiles::crop_plane(m, self.width, rect));
        match &self.style_masks {
            None => vec![pixel_mask],
            Some(ms) => ms
                .iter()
                .map(|m| {
                    let mut v = tiles::crop_plane(m, self.width, rect);
                    if let Some(cm) = &pixel_mask {
                        v.iter_mut().zip(cm).for_each(|(a, b)| *a *= b);
                    }
                    Some(v)
                })
                .collect(),
        }
    }
}

/// A mask resized to `width`×`height`, values clamped to 0..1, as one plane.
fn mask_at(mask: &crate::AlphaPlane, width: u32, height: u32) -> Vec<f32> {
    let m = if (mask.width(), mask.height()) == (width, height) {
        mask.clone()
    } else {
        image::imageops::resize(mask, width, height, image::imageops::FilterType::Triangle)
    };
    m.into_raw().into_iter().map(|v| v.clamp(0.0, 1.0)).collect()
}
