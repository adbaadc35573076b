//! Style loss: Gram matrices `G = F·Fᵀ / (C·H·W)` compared by mean squared difference over the C² entries,
//! `L = mean((G - A)²)`, with gradient `dL/dF = (2/C²)·2·(G - A)·F / (C·H·W)` (G and A symmetric).

use impasto_kernels as k;

/// The normalised Gram matrix `F·Fᵀ / (C·N)` of a C×N feature map (N = H·W), C×C row-major.
pub fn gram_matrix(f: &[f32], c: usize, n: usize) -> Vec<f32> {
    let mut g = vec![0.0; c * c];
    k::gram(f, c, n, 1.0 / (c * n) as f32, &mut g);
    g
}

/// The normaliser `C·Σm` of the masked Gram `G = (F∘m)(F∘m)ᵀ / (C·Σm)` of `c` channels under the
/// region mask `m` (one value per position of the layer); `None` for an empty region (`Σm` at most
/// 1e-6), whose term is zero.
pub(crate) fn masked_gram_norm(c: usize, m: &[f32]) -> Option<f64> {
    let area: f64 = m.iter().map(|&v| f64::from(v)).sum();
    (area > 1e-6).then_some(c as f64 * area)
}

/// A region mask of `h`×`w` pixels (one plane) on the grid of a layer after `pools` 2×2 poolings:
/// averaged over each pooling window, as the features are pooled.
pub(crate) fn layer_mask(m: &[f32], h: usize, w: usize, pools: u32) -> Vec<f32> {
    let (mut mh, mut mw, mut v) = (h, w, m.to_vec());
    for _ in 0..pools {
        let mut out = vec![0.0; (mh / 2) * (mw / 2)];
        k::avg_pool2x2_forward(&v, 1, mh, mw, &mut out);
        (mh, mw, v) = (mh / 2, mw / 2, out);
    }
    v
}

/// Returns `weight · mean((G(f) - target)²)` and adds its gradient with respect to `f` into `grad`.
///
/// With a `mask` (one value per pixel, at this layer's resolution) the Gram matrix is that of the
/// masked features, normalised by the mask's area: `G = (F∘m)(F∘m)ᵀ / (C·Σm)`, so a region is compared
/// with the style as if it were a whole image.
pub(crate) fn style_loss(
    f: &[f32],
    c: usize,
    n: usize,
    target: &[f32],
    weight: f32,
    mask: Option<&[f32]>,
    grad: &mut [f32],
) -> f64 {
    if let Some(m) = mask {
        let Some(norm) = masked_gram_norm(c, m) else { return 0.0 };
        let fm: Vec<f32> = f.chunks_exact(n).flat_map(|row| row.iter().zip(m).map(|(a, b)| a * b)).collect();
        let mut gm = vec![0.0f32; f.len()];
        let loss = style_loss_scaled(&fm, c, n, norm as f32, target, weight, &mut gm);
        for (row_g, row_gm) in grad.chunks_exact_mut(n).zip(gm.chunks_exact(n)) {
            for ((gv, &d), &mv) in row_g.iter_mut().zip(row_gm).zip(m) {
                *gv += d * mv;
            }
        }
        return loss;
    }
    style_loss_scaled(f, c, n, (c * n) as f32, target, weight, grad)
}

/// The style loss with `G = F·Fᵀ / norm`.
fn style_loss_scaled(
    f: &[f32],
    c: usize,
    n: usize,
    norm: f32,
    target: &[f32],
    weight: f32,
    grad: &mut [f32],
) -> f64 {
    let mut g = vec![0.0; c * c];
    k::gram(f, c, n, 1.0 / norm, &mut g);
    let cc = (c * c) as f64;
    let mut sum = 0.0f64;
    let mut dg = vec![0.0f32; c * c];
    let scale = 2.0 * weight / cc as f32;
    for ((d, &gv), &t) in dg.iter_mut().zip(&g).zip(target) {
        let diff = gv - t;
        sum += (diff as f64) * (diff as f64);
        *d = scale * diff;
    }
    k::gram_backward(f, c, n, &dg, 1.0 / norm, true, grad);
    weight as f64 * sum / cc
}
