//! Content loss: the mean squared difference of features, `L = mean((F - P)²)`, and its gradient `2(F - P)/N`.

/// Returns `weight · mean((f - target)²)` and adds its gradient with respect to `f` into `grad`.
pub(crate) fn content_loss(f: &[f32], target: &[f32], weight: f32, grad: &mut [f32]) -> f64 {
    debug_assert_eq!(f.len(), target.len());
    let n = f.len() as f64;
    let scale = 2.0 * weight / n as f32;
    let mut sum = 0.0f64;
    for ((g, &a), &p) in grad.iter_mut().zip(f).zip(target) {
        let d = a - p;
        sum += (d as f64) * (d as f64);
        *g += scale * d;
    }
    weight as f64 * sum / n
}
