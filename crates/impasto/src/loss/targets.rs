//! Where a run computes its targets (the content features and the style Grams): on the run's GPU when
//! it has one (the forward pass and the Gram kernel there), else on the CPU engine. The CPU path is
//! `outputs_at` and `grams_at` of the parent module, unchanged.

use image::Rgb32FImage;

use super::{grams_at, outputs_at, with_outputs};
use crate::device::{Device, GpuContext, GpuFaults};
use crate::error::{Error, Result};
use crate::model::{BufferPool, Vgg};

/// A (cropped) Gram matrix with, where asked for, its channels' sums.
type GramAndSums = (Vec<f32>, Option<Vec<f32>>);

/// A layer output: the values and (channels, height, width).
type LayerOutput = (Vec<f32>, (usize, usize, usize));

/// The network that computes targets: `net` itself, or its copy on `gpu`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TargetNet<'a> {
    pub(crate) net: &'a Vgg,
    /// Read only when the `gpu` feature is on (without it there is never a context).
    #[cfg_attr(not(feature = "gpu"), allow(dead_code))]
    pub(crate) gpu: Option<&'a GpuContext>,
    /// Where the CPU passes take their buffers from and leave them (`None`: a pool of their own,
    /// dropped after the pass).
    pub(crate) pool: Option<&'a BufferPool>,
}

impl<'a> TargetNet<'a> {
    /// `net` on the CPU, or its copy on `gpu`, each pass with a pool of its own.
    pub(crate) fn new(net: &'a Vgg, gpu: Option<&'a GpuContext>) -> TargetNet<'a> {
        TargetNet { net, gpu, pool: None }
    }

    /// Runs `f` with the pool of the CPU passes.
    fn pooled<R>(&self, f: impl FnOnce(&BufferPool) -> R) -> R {
        match self.pool {
            Some(p) => f(p),
            None => f(&BufferPool::default()),
        }
    }

    /// Outputs of `pixels` (planar RGB 0..1, `h`×`w`) at the given layer indices with their
    /// (channels, height, width), in order.
    pub(crate) fn outputs_at(
        &self,
        pixels: &[f32],
        h: usize,
        w: usize,
        layers: &[usize],
    ) -> Result<Vec<LayerOutput>> {
        #[cfg(feature = "gpu")]
        if let Some(g) = self.gpu {
            return Ok(g.net.outputs_at(pixels, h, w, layers)?);
        }
        Ok(self.pooled(|pool| outputs_at(self.net, pixels, h, w, layers, pool)))
    }

    /// Features of `pixels` at the given layers (content targets), in order.
    pub(crate) fn features_at(
        &self,
        pixels: &[f32],
        h: usize,
        w: usize,
        layers: &[usize],
    ) -> Result<Vec<Vec<f32>>> {
        Ok(self.outputs_at(pixels, h, w, layers)?.into_iter().map(|(f, _)| f).collect())
    }

    /// Gram matrices `F_r·F_rᵀ` (not normalised) of `pixels` at the given layers, `F_r` each layer's
    /// features inside its rectangle `crops[i]` = (x, y, width, height) on that layer's grid, with a
    /// `masks[i]` (one value per position of the layer's whole grid) each feature multiplied by its
    /// position's value first: `(F∘m)_r·(F∘m)_rᵀ`. On the GPU with its cropped-Gram kernel (only the
    /// Grams come back), on the CPU from the layer outputs.
    pub(crate) fn cropped_grams_at(
        &self,
        pixels: &[f32],
        h: usize,
        w: usize,
        layers: &[usize],
        crops: &[(usize, usize, usize, usize)],
        masks: &[Option<&[f32]>],
    ) -> Result<Vec<Vec<f32>>> {
        #[cfg(feature = "gpu")]
        if let Some(g) = self.gpu {
            return Ok(g.net.cropped_grams_at(pixels, h, w, layers, crops, masks)?);
        }
        Ok(self.cropped(pixels, (h, w), layers, crops, masks, false)?.into_iter().map(|(g, _)| g).collect())
    }

    /// As [`cropped_grams_at`](Self::cropped_grams_at), each Gram with its channels' sums over the
    /// rectangle, `Σ_r F·m²` with a mask (`Σ_r F` without): a region's mean and second moment (the
    /// Wasserstein style loss's statistics) summed over a tile's interior.
    pub(crate) fn cropped_moments_at(
        &self,
        pixels: &[f32],
        h: usize,
        w: usize,
        layers: &[usize],
        crops: &[(usize, usize, usize, usize)],
        masks: &[Option<&[f32]>],
    ) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        #[cfg(feature = "gpu")]
        if let Some(g) = self.gpu {
            return Ok(g.net.cropped_moments_at(pixels, h, w, layers, crops, masks)?);
        }
        let out = self.cropped(pixels, (h, w), layers, crops, masks, true)?;
        Ok(out.into_iter().map(|(g, s)| (g, s.unwrap_or_default())).collect())
    }

    /// The cropped Grams on the CPU, from the layer outputs, with the channels' sums where `sums`.
    fn cropped(
        &self,
        pixels: &[f32],
        (h, w): (usize, usize),
        layers: &[usize],
        crops: &[(usize, usize, usize, usize)],
        masks: &[Option<&[f32]>],
        sums: bool,
    ) -> Result<Vec<GramAndSums>> {
        let mut unique = layers.to_vec();
        unique.sort_unstable();
        unique.dedup();
        self.pooled(|pool| {
            with_outputs(self.net, pixels, (h, w), &unique, pool, |outs| {
                let at = |l: &usize| outs[unique.binary_search(l).unwrap_or_default()];
                let fits =
                    |(l, m): (&usize, &Option<&[f32]>)| m.is_none_or(|m| m.len() == at(l).1.1 * at(l).1.2);
                if crops.len() != layers.len() || masks.len() != layers.len() || !layers.iter().zip(masks).all(fits)
                {
                    return Err(Error::Config {
                        what: "cropped Grams",
                        reason: format!(
                            "{} rectangles and masks of {:?} values for the layers {layers:?} of a {w}x{h} image",
                            crops.len(),
                            masks.iter().map(|m| m.map(<[f32]>::len)).collect::<Vec<_>>(),
                        ),
                    });
                }
                Ok(layers
                    .iter()
                    .zip(crops)
                    .zip(masks)
                    .map(|((l, &(x, y, cw, ch)), mask)| {
                        let (f, (c, lh, lw)) = at(l);
                        let mut inner = pool.scratch(c * cw * ch);
                        let mut rows = inner.chunks_exact_mut(cw.max(1));
                        // Each channel's Σ F·m² (or Σ F) over the rectangle, in f64.
                        let mut sum = vec![0.0f64; if sums { c } else { 0 }];
                        for (k, plane) in f.chunks_exact(lh * lw).enumerate() {
                            for (row, out) in (y..y + ch).zip(&mut rows) {
                                let span = row * lw + x..row * lw + x + cw;
                                match mask {
                                    None => out.copy_from_slice(&plane[span.clone()]),
                                    Some(m) => out
                                        .iter_mut()
                                        .zip(plane[span.clone()].iter().zip(&m[span.clone()]))
                                        .for_each(|(o, (a, b))| *o = a * b),
                                }
                                if sums {
                                    sum[k] += match mask {
                                        None => out.iter().map(|&v| f64::from(v)).sum::<f64>(),
                                        Some(m) => {
                                            out.iter().zip(&m[span]).map(|(&v, &b)| f64::from(v) * f64::from(b)).sum()
                                        }
                                    };
                                }
                            }
                        }
                        let mut g = vec![0.0f32; c * c];
                        impasto_kernels::gram(&inner, c, cw * ch, 1.0, &mut g);
                        pool.give_scratch(inner);
                        (g, sums.then(|| sum.into_iter().map(|v| v as f32).collect()))
                    })
                    .collect())
            })
        })
    }

    /// Normalised Gram matrices `F·Fᵀ/(C·H·W)` of `pixels` at the given layers (style targets), in order.
    pub(crate) fn grams_at(
        &self,
        pixels: &[f32],
        h: usize,
        w: usize,
        layers: &[usize],
    ) -> Result<Vec<Vec<f32>>> {
        #[cfg(feature = "gpu")]
        if let Some(g) = self.gpu {
            return Ok(g.net.grams_at(pixels, h, w, layers)?);
        }
        Ok(self.pooled(|pool| grams_at(self.net, pixels, h, w, layers, pool)))
    }
}

/// Opens `device` for `net` and runs `f` with the network that computes targets there.
fn on_device<T>(net: &Vgg, device: Device, f: impl FnOnce(TargetNet<'_>) -> Result<T>) -> Result<T> {
    let ctx = GpuContext::open(device, &GpuFaults::default(), net)?;
    f(TargetNet::new(net, ctx.as_ref()))
}

/// Features of `rgb` (planar RGB 0..1, `width`×`height`) at the named layers, computed on `device` as
/// a run there computes its content targets.
pub fn features_on(
    net: &Vgg,
    device: Device,
    rgb: &[f32],
    width: usize,
    height: usize,
    layers: &[&str],
) -> Result<Vec<Vec<f32>>> {
    check_len(rgb, width, height)?;
    let idx: Vec<usize> = layers.iter().map(|n| net.layer_index(n)).collect::<Result<_>>()?;
    on_device(net, device, |t| t.features_at(rgb, height, width, &idx))
}

/// Normalised Gram matrices of `img` (RGB 0..1) at the named layers, computed on `device` as a run there
/// computes its style targets: on the whole image, or with `tile` in interior tiles of that side with
/// [`GRAM_HALO`](crate::tiles::GRAM_HALO) pixels of context, as a tiled scale does.
pub fn grams_on(
    net: &Vgg,
    device: Device,
    img: &Rgb32FImage,
    layers: &[&str],
    tile: Option<u32>,
) -> Result<Vec<Vec<f32>>> {
    let idx: Vec<usize> = layers.iter().map(|n| net.layer_index(n)).collect::<Result<_>>()?;
    on_device(net, device, |t| match tile {
        Some(tile) => crate::tiles::tiled_grams(t, img, &idx, tile, crate::tiles::GRAM_HALO),
        None => {
            let px = crate::pixels::to_planar(img);
            t.grams_at(&px, img.height() as usize, img.width() as usize, &idx)
        }
    })
}

/// Masked Gram matrices `(F∘m)(F∘m)ᵀ/(C·Σm)` of `img` (RGB 0..1), as a masked style term has them,
/// for each region mask in `masks` (one value per pixel of `img`, averaged onto each layer's grid)
/// and named layer, region-major (`r·layers.len() + l`), computed on `device` as a coupled tiled
/// run computes the whole image's: in one pass, or with `tile` in interior tiles of that side with
/// [`GRAM_HALO`](crate::tiles::GRAM_HALO) pixels of context. `None` for a region empty at a layer.
pub fn masked_grams_on(
    net: &Vgg,
    device: Device,
    img: &Rgb32FImage,
    layers: &[&str],
    masks: &[crate::AlphaPlane],
    tile: Option<u32>,
) -> Result<Vec<Option<Vec<f32>>>> {
    if let Some(m) = masks.iter().find(|m| m.dimensions() != img.dimensions()) {
        return Err(mask_size(m, img));
    }
    let idx: Vec<usize> = layers.iter().map(|n| net.layer_index(n)).collect::<Result<_>>()?;
    let planes: Vec<Vec<f32>> = masks.iter().map(|m| m.as_raw().clone()).collect();
    let tile = tile.unwrap_or(u32::MAX);
    on_device(net, device, |t| {
        crate::tiles::region_grams(t, img, &idx, Some(&planes), tile, crate::tiles::GRAM_HALO)
    })
}

/// Each region's statistics as the Wasserstein style loss has them at each named layer
/// (region-major, as [`masked_grams_on`]): the second moment `(F∘m)(F∘m)ᵀ/Σm²` (C×C) and the
/// channels' means `Σ F·m²/Σm²`, with `masks` (one value per pixel of `img`), else of the whole
/// image (`F·Fᵀ/N`, `Σ F/N`), computed on `device` as a coupled tiled run computes the whole
/// image's: in one pass, or with `tile` in interior tiles of that side with
/// [`GRAM_HALO`](crate::tiles::GRAM_HALO) pixels of context. `None` for a region empty at a layer.
#[allow(clippy::type_complexity)]
pub fn moments_on(
    net: &Vgg,
    device: Device,
    img: &Rgb32FImage,
    layers: &[&str],
    masks: Option<&[crate::AlphaPlane]>,
    tile: Option<u32>,
) -> Result<Vec<Option<(Vec<f32>, Vec<f64>)>>> {
    if let Some(m) = masks.into_iter().flatten().find(|m| m.dimensions() != img.dimensions()) {
        return Err(mask_size(m, img));
    }
    let idx: Vec<usize> = layers.iter().map(|n| net.layer_index(n)).collect::<Result<_>>()?;
    let planes: Option<Vec<Vec<f32>>> = masks.map(|ms| ms.iter().map(|m| m.as_raw().clone()).collect());
    let tile = tile.unwrap_or(u32::MAX);
    on_device(net, device, |t| {
        let moments =
            crate::tiles::region_moments(t, img, &idx, planes.as_deref(), tile, crate::tiles::GRAM_HALO)?;
        Ok(moments.into_iter().map(|m| m.map(|m| (m.second, m.mean))).collect())
    })
}

/// A region mask whose size is not its image's.
fn mask_size(m: &crate::AlphaPlane, img: &Rgb32FImage) -> Error {
    Error::Config {
        what: "region mask",
        reason: format!("a {}x{} mask for a {}x{} image", m.width(), m.height(), img.width(), img.height()),
    }
}

fn check_len(rgb: &[f32], width: usize, height: usize) -> Result<()> {
    if rgb.len() != 3 * width * height {
        return Err(Error::Config {
            what: "features",
            reason: format!("{} values for a 3×{height}×{width} image", rgb.len()),
        });
    }
    Ok(())
}
