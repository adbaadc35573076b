//! Style loss: Gram matrices `G = F·Fᵀ / (C·H·W)` compared by mean squared difference over the C² entries,
//! `L = mean((G - A)²)`, with gradient `dL/dF = (2/C²)·2·(G - A)·F / (C·H·W)` (G and A symmetric).

use impasto_kernels as k;

/// The normalised Gram matrix `F·Fᵀ / (C·N)` of a C×N feature map (N = H·W), C×C row-major.
pub fn gram_matrix(f: &[f32], c: usize, n: usize) -> Vec<f32> {
    let mut g = vec![0.0; c * c];
    k::gram(f, c, n, 1.0 / (c * n) as f32, &mut g);
    g
}

/// Returns `weight · mean((G(f) - target)²)` and adds its gradient with respect to `f` into `grad`.
pub(crate) fn style_loss(
    f: &[f32],
    c: usize,
    n: usize,
    target: &[f32],
    weight: f32,
    grad: &mut [f32],
) -> f64 {
    let g = gram_matrix(f, c, n);
    let cc = (c * c) as f64;
    let mut sum = 0.0f64;
    let mut dg = vec![0.0f32; c * c];
    let scale = 2.0 * weight / cc as f32;
    for ((d, &gv), &t) in dg.iter_mut().zip(&g).zip(target) {
        let diff = gv - t;
        sum += (diff as f64) * (diff as f64);
        *d = scale * diff;
    }
    k::gram_backward(f, c, n, &dg, 1.0 / (c * n) as f32, true, grad);
    weight as f64 * sum / cc
}
