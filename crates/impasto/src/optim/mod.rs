//! Gradient-based optimisers over the flat pixel buffer: L-BFGS and Adam.

mod adam;
mod ema;
mod lbfgs;
mod vector;

pub(crate) use adam::Adam;
pub(crate) use ema::Ema;
pub(crate) use lbfgs::{Lbfgs, LbfgsStep};

pub(crate) use vector::dot;

/// True if every value is finite.
pub(crate) fn all_finite(v: &[f32]) -> bool {
    v.iter().all(|x| x.is_finite())
}
