//! The network's style statistics on the device: the Gram matrices of a whole image, or of
//! rectangles of its layers (each with a region mask, and the channels' sums where asked for), from
//! one forward pass in one submission, only those read back.

use super::{Forward, GpuNet};
use crate::blocks::{Blocks, gram_slices, record_crop_gram, record_each, record_gram};
use crate::error::{GpuError, Result};
use crate::program::{OpParams, Program};

/// A (cropped) Gram matrix with, where asked for, its channels' sums.
type GramAndSums = (Vec<f32>, Option<Vec<f32>>);

impl GpuNet {
    /// Gram matrices `F_r·F_rᵀ` (not normalised) of `rgb` at `layers`, `F_r` each layer's features
    /// inside its rectangle `crops[i]` = (x, y, width, height) on that layer's grid: the interior Grams
    /// of a style image computed in tiles with a halo, on the device (only the Grams are read back).
    /// With a `masks[i]` (one value per position of the layer's grid) each feature is multiplied by
    /// its position's value first, `(F∘m)_r·(F∘m)_rᵀ`: a region's masked Gram (a layer may then come
    /// more than once, one rectangle and mask per region).
    pub fn cropped_grams_at(
        &self,
        rgb: &[f32],
        h: usize,
        w: usize,
        layers: &[usize],
        crops: &[(usize, usize, usize, usize)],
        masks: &[Option<&[f32]>],
    ) -> Result<Vec<Vec<f32>>> {
        let out = self.cropped(rgb, h, w, layers, crops, masks, false)?;
        Ok(out.into_iter().map(|(g, _)| g).collect())
    }

    /// As [`cropped_grams_at`](Self::cropped_grams_at), each Gram with its channels' sums over the
    /// rectangle, `Σ_r F·m²` with a mask (`Σ_r F` without): the statistics of a region's mean and
    /// second moment (the Wasserstein style loss's) summed over a tile's interior.
    pub fn cropped_moments_at(
        &self,
        rgb: &[f32],
        h: usize,
        w: usize,
        layers: &[usize],
        crops: &[(usize, usize, usize, usize)],
        masks: &[Option<&[f32]>],
    ) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        let out = self.cropped(rgb, h, w, layers, crops, masks, true)?;
        Ok(out.into_iter().map(|(g, s)| (g, s.unwrap_or_default())).collect())
    }

    /// The cropped Grams, with the channels' sums where `sums`.
    #[allow(clippy::too_many_arguments)]
    fn cropped(
        &self,
        rgb: &[f32],
        h: usize,
        w: usize,
        layers: &[usize],
        crops: &[(usize, usize, usize, usize)],
        masks: &[Option<&[f32]>],
        sums: bool,
    ) -> Result<Vec<GramAndSums>> {
        let Some(&last) = layers.iter().max() else { return Ok(Vec::new()) };
        self.check_layer(last)?;
        if rgb.len() != 3 * h * w || crops.len() != layers.len() || masks.len() != layers.len() {
            return Err(GpuError::Shape {
                op: "cropped_grams_at",
                reason: format!(
                    "{} values for 3×{h}×{w}, {} rectangles and {} masks for {} layers",
                    rgb.len(),
                    crops.len(),
                    masks.len(),
                    layers.len()
                ),
            });
        }
        // One buffer of masked features per layer, reused by its regions (they run in order).
        let mut masked: Vec<(usize, Blocks)> = Vec::new();
        self.grams_with(rgb, h, w, layers, |prog, fwd, i, l, g| {
            let ((c, lh, lw), (x, y, cw, ch)) = (fwd.shape[l], crops[i]);
            let n = lh * lw;
            let f = fwd.out(l);
            let source = match masks[i] {
                None => f,
                Some(m) => {
                    if m.len() != n {
                        return Err(GpuError::Shape {
                            op: "cropped_grams_at",
                            reason: format!("layer {l}: a mask of {} values, expected {lh}×{lw}", m.len()),
                        });
                    }
                    if !masked.iter().any(|(k, _)| *k == l) {
                        masked.push((l, self.gpu.blocks("masked features", c, n)?));
                    }
                    let fm = &masked.iter().find(|(k, _)| *k == l).expect("pushed above").1;
                    let mb = self.gpu.upload("region mask", m)?;
                    let p = OpParams { w: n, ..Default::default() };
                    record_each(&self.gpu, prog, "mul_planes", f, p, |b| {
                        vec![(1, &f.bufs[b]), (2, &fm.bufs[b]), (3, &mb)]
                    })?;
                    fm
                }
            };
            record_crop_gram(&self.gpu, prog, source, (lw, x, y, cw, ch), 1.0, gram_slices(c, cw * ch), g)?;
            if !sums {
                return Ok(None);
            }
            // Σ over the rectangle of (F∘m)·m (or F): row sums weighted by the mask inside it, 0 outside.
            let weights: Vec<f32> = (0..n)
                .map(|p| {
                    let (py, px) = (p / lw, p % lw);
                    let inside = (y..y + ch).contains(&py) && (x..x + cw).contains(&px);
                    if inside { masks[i].map_or(1.0, |m| m[p]) } else { 0.0 }
                })
                .collect();
            let wb = self.gpu.upload("crop weights", &weights)?;
            let s = self.gpu.storage("channel sums", c)?;
            for (r0, rows, buf) in source.iter() {
                let p = OpParams { c: rows, w: n, u: [r0 as u32, 1, 0, 0], ..Default::default() };
                prog.op(&self.gpu, "row_sums", p, &[(1, buf), (2, &s), (3, &wb)], [rows as u32, 1, 1])?;
            }
            Ok(Some((s, c)))
        })
    }

    /// Normalised Gram matrices `F·Fᵀ/(C·H·W)` of `rgb` at `layers`, computed on the device.
    pub fn grams_at(&self, rgb: &[f32], h: usize, w: usize, layers: &[usize]) -> Result<Vec<Vec<f32>>> {
        let Some(&last) = layers.iter().max() else { return Ok(Vec::new()) };
        self.check_layer(last)?;
        if rgb.len() != 3 * h * w {
            return Err(GpuError::Shape {
                op: "grams_at",
                reason: format!("{} values for 3×{h}×{w}", rgb.len()),
            });
        }
        self.grams_with(rgb, h, w, layers, |prog, fwd, _, l, g| {
            let (c, lh, lw) = fwd.shape[l];
            let n = lh * lw;
            record_gram(&self.gpu, prog, fwd.out(l), 1.0 / (c * n) as f32, gram_slices(c, n), g).map(|_| None)
        })
        .map(|out| out.into_iter().map(|(g, _)| g).collect())
    }

    /// One forward pass of `rgb` to the deepest of `layers`, then a C×C Gram per layer recorded by
    /// `gram(program, forward, i, layers[i], output)`, all in one submission; only the Grams are read,
    /// and each buffer `gram` returns with its length (the channels' sums).
    fn grams_with(
        &self,
        rgb: &[f32],
        h: usize,
        w: usize,
        layers: &[usize],
        mut gram: impl FnMut(
            &mut Program,
            &Forward,
            usize,
            usize,
            &wgpu::Buffer,
        ) -> Result<Option<(wgpu::Buffer, usize)>>,
    ) -> Result<Vec<GramAndSums>> {
        let Some(&last) = layers.iter().max() else { return Ok(Vec::new()) };
        let mut wanted = vec![false; last + 1];
        layers.iter().for_each(|&l| wanted[l] = true);
        let mut prog = Program::default();
        let fwd = self.record_forward(&mut prog, h, w, last, &wanted)?;
        let (mut grams, mut extra) = (Vec::new(), Vec::new());
        for (i, &l) in layers.iter().enumerate() {
            let c = fwd.shape[l].0;
            let g = self.gpu.storage(&format!("Gram matrix ({c}×{c})"), c * c)?;
            extra.push(gram(&mut prog, &fwd, i, l, &g)?);
            grams.push((g, c * c));
        }
        fwd.rgb.write(&self.gpu, rgb);
        let mut enc = self.gpu.encoder();
        prog.record(&mut enc);
        let reads: Vec<(&wgpu::Buffer, usize)> =
            grams.iter().chain(extra.iter().flatten()).map(|(b, n)| (b, *n)).collect();
        let mut data = self.gpu.finish_and_read(enc, &reads)?.into_iter();
        let grams: Vec<Vec<f32>> = data.by_ref().take(grams.len()).collect();
        Ok(grams.into_iter().zip(extra).map(|(g, e)| (g, e.and_then(|_| data.next()))).collect())
    }
}
