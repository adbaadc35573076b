//! Total-variation loss on the planar RGB 0..1 image: the mean over all 3·H·W values of the squared
//! differences to the right and lower neighbours, `L = Σ (x[y,x+1]-x[y,x])² + (x[y+1,x]-x[y,x])² / (3·H·W)`.

/// Returns `weight · L` and adds its gradient into `grad`.
pub(crate) fn tv_loss(x: &[f32], h: usize, w: usize, weight: f32, grad: &mut [f32]) -> f64 {
    if weight == 0.0 {
        return 0.0;
    }
    let n = x.len() as f64;
    let scale = 2.0 * weight / n as f32;
    let mut sum = 0.0f64;
    for c in 0..x.len() / (h * w) {
        let base = c * h * w;
        for y in 0..h {
            for xx in 0..w {
                let i = base + y * w + xx;
                if xx + 1 < w {
                    let d = x[i + 1] - x[i];
                    sum += (d * d) as f64;
                    grad[i + 1] += scale * d;
                    grad[i] -= scale * d;
                }
                if y + 1 < h {
                    let d = x[i + w] - x[i];
                    sum += (d * d) as f64;
                    grad[i + w] += scale * d;
                    grad[i] -= scale * d;
                }
            }
        }
    }
    weight as f64 * sum / n
}
