//! ReLU forward (in place) and backward (masking the incoming gradient).

use rayon::prelude::*;

use crate::par::worth_parallel;

/// Chunk length for the parallel elementwise passes.
const CHUNK: usize = 1 << 14;

/// `x = max(x, 0)` elementwise. NaN stays NaN (it is not silently zeroed).
pub fn relu_inplace(x: &mut [f32]) {
    if worth_parallel(x.len()) {
        x.par_chunks_mut(CHUNK).for_each(relu_slice);
    } else {
        relu_slice(x);
    }
}

/// `dy[i] = if act[i] > 0 { dy[i] } else { 0 }`, where `act` is the ReLU
/// output (derivative taken as 0 at 0).
///
/// # Panics
/// If `dy` and `act` differ in length.
pub fn relu_backward_inplace(dy: &mut [f32], act: &[f32]) {
    assert_eq!(dy.len(), act.len(), "relu_backward_inplace: dy and act lengths differ");
    if worth_parallel(dy.len()) {
        dy.par_chunks_mut(CHUNK).zip(act.par_chunks(CHUNK)).for_each(|(d, a)| relu_backward_slice(d, a));
    } else {
        relu_backward_slice(dy, act);
    }
}

/// Serial ReLU over one slice (also the conv's fused epilogue).
#[inline]
pub(crate) fn relu_slice(x: &mut [f32]) {
    for v in x {
        // `<` keeps NaN (and -0.0) as is; the unconditional store (a select,
        // not a branch) lets this vectorize.
        *v = if *v < 0.0 { 0.0 } else { *v };
    }
}

#[inline]
fn relu_backward_slice(dy: &mut [f32], act: &[f32]) {
    for (d, &a) in dy.iter_mut().zip(act) {
        *d = if a > 0.0 { *d } else { 0.0 };
    }
}
