//! Where a run computes its targets (the content features and the style Grams): on the run's GPU when
//! it has one (the forward pass and the Gram kernel there), else on the CPU engine. The CPU path is
//! `outputs_at` and `grams_at` of the parent module, unchanged.

use image::Rgb32FImage;

use super::{grams_at, outputs_at};
use crate::device::{Device, GpuContext, GpuFaults};
use crate::error::{Error, Result};
use crate::model::Vgg;

/// A layer output: the values and (channels, height, width).
type LayerOutput = (Vec<f32>, (usize, usize, usize));

/// The network that computes targets: `net` itself, or its copy on `gpu`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TargetNet<'a> {
    pub(crate) net: &'a Vgg,
    /// Read only when the `gpu` feature is on (without it there is never a context).
    #[cfg_attr(not(feature = "gpu"), allow(dead_code))]
    pub(crate) gpu: Option<&'a GpuContext>,
}

impl TargetNet<'_> {
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
            return g.net.outputs_at(pixels, h, w, layers).map_err(gpu_error);
        }
        Ok(outputs_at(self.net, pixels, h, w, layers))
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
    /// features inside its rectangle `crops[i]` = (x, y, width, height) on that layer's grid: on the
    /// GPU with its cropped-Gram kernel (only the Grams come back), on the CPU from the layer outputs.
    pub(crate) fn cropped_grams_at(
        &self,
        pixels: &[f32],
        h: usize,
        w: usize,
        layers: &[usize],
        crops: &[(usize, usize, usize, usize)],
    ) -> Result<Vec<Vec<f32>>> {
        #[cfg(feature = "gpu")]
        if let Some(g) = self.gpu {
            return g.net.cropped_grams_at(pixels, h, w, layers, crops).map_err(gpu_error);
        }
        let outs = outputs_at(self.net, pixels, h, w, layers);
        Ok(outs
            .into_iter()
            .zip(crops)
            .map(|((f, (c, lh, lw)), &(x, y, cw, ch))| {
                let mut inner = Vec::with_capacity(c * cw * ch);
                for plane in f.chunks_exact(lh * lw) {
                    for row in y..y + ch {
                        inner.extend_from_slice(&plane[row * lw + x..row * lw + x + cw]);
                    }
                }
                let mut g = vec![0.0f32; c * c];
                impasto_kernels::gram(&inner, c, cw * ch, 1.0, &mut g);
                g
            })
            .collect())
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
            return g.net.grams_at(pixels, h, w, layers).map_err(gpu_error);
        }
        Ok(grams_at(self.net, pixels, h, w, layers))
    }
}

#[cfg(feature = "gpu")]
fn gpu_error(e: impasto_gpu::GpuError) -> Error {
    Error::Gpu { reason: e.to_string(), last_good: None }
}

/// Opens `device` for `net` and runs `f` with the network that computes targets there.
fn on_device<T>(net: &Vgg, device: Device, f: impl FnOnce(TargetNet<'_>) -> Result<T>) -> Result<T> {
    let ctx = GpuContext::open(device, &GpuFaults::default(), net)?;
    f(TargetNet { net, gpu: ctx.as_ref() })
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

fn check_len(rgb: &[f32], width: usize, height: usize) -> Result<()> {
    if rgb.len() != 3 * width * height {
        return Err(Error::Config {
            what: "features",
            reason: format!("{} values for a 3×{height}×{width} image", rgb.len()),
        });
    }
    Ok(())
}
