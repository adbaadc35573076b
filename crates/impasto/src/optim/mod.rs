//! Gradient-based optimisers over the flat pixel buffer: L-BFGS and Adam.

mod adam;
mod ema;
mod lbfgs;

pub(crate) use adam::Adam;
pub(crate) use ema::Ema;
pub(crate) use lbfgs::{Lbfgs, LbfgsStep};

/// `Σ a·b` accumulated in f64 (deterministic order).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// True if every value is finite.
pub(crate) fn all_finite(v: &[f32]) -> bool {
    v.iter().all(|x| x.is_finite())
}
