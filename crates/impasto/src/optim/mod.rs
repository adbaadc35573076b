//! Gradient-based optimisers over the flat pixel buffer: L-BFGS and Adam.

mod adam;
mod ema;
mod lbfgs;
mod projected;
mod vector;

pub(crate) use adam::Adam;
pub(crate) use ema::Ema;
pub(crate) use lbfgs::{Lbfgs, LbfgsStep};

pub(crate) use vector::dot;

/// True if every value is finite (in parallel chunks, each without an early exit so that it
/// vectorises: a gradient is nearly always all finite).
pub(crate) fn all_finite(v: &[f32]) -> bool {
    use rayon::prelude::*;
    v.par_chunks(1 << 15).all(|c| c.iter().fold(true, |all, x| all & x.is_finite()))
}
