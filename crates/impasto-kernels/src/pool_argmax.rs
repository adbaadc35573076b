//! Max pooling that records its argmax (one byte per output), so that the backward needs neither
//! the pooled input nor a separate ReLU pass: for a pool after a ReLU the recorded "winner" is
//! dropped when the window's maximum is not positive, folding the ReLU's mask into the index.
//!
//! Storing one byte per output instead of the f32 input cuts that activation's memory 16-fold.

use rayon::prelude::*;

use crate::par::worth_parallel;

/// Index value meaning "this window passes no gradient" (its maximum is ≤ 0 or NaN).
pub const NO_GRADIENT: u8 = 4;

/// Winner of a window `[a, b, c, d]` (row-major): the first maximum under strict `>` (a NaN takes
/// over, as in [`crate::max_pool2x2_forward`]), and its index, or [`NO_GRADIENT`] if not `> 0`.
#[inline(always)]
fn pick(v: [f32; 4]) -> (f32, u8) {
    let (mut best, mut t) = (v[0], 0u8);
    for (idx, &x) in (1u8..).zip(&v[1..]) {
        let take = (x > best) | x.is_nan();
        best = if take { x } else { best };
        t = if take { idx } else { t };
    }
    (best, if best > 0.0 { t } else { NO_GRADIENT })
}

/// 2×2 stride-2 max pooling of the ReLU output `x` (`c×h×w`) into `y` (`c×(h/2)×(w/2)`), exactly as
/// [`crate::max_pool2x2_forward`], also writing `idx` (one byte per output): the window position
/// 0..4 of the first maximum, or [`NO_GRADIENT`] where that maximum is not positive.
///
/// # Panics
/// If a slice length differs from the stated size.
pub fn max_pool2x2_forward_argmax(x: &[f32], c: usize, h: usize, w: usize, y: &mut [f32], idx: &mut [u8]) {
    let (oh, ow) = (h / 2, w / 2);
    assert_eq!(x.len(), c * h * w, "max_pool2x2_forward_argmax: x must be c*h*w");
    assert_eq!(y.len(), c * oh * ow, "max_pool2x2_forward_argmax: y must be c*(h/2)*(w/2)");
    assert_eq!(idx.len(), c * oh * ow, "max_pool2x2_forward_argmax: idx must be c*(h/2)*(w/2)");
    if oh * ow == 0 {
        return;
    }
    let run = |((xp, yp), ip): ((&[f32], &mut [f32]), &mut [u8])| {
        for (oi, (yr, ir)) in yp.chunks_exact_mut(ow).zip(ip.chunks_exact_mut(ow)).enumerate() {
            let r0 = &xp[2 * oi * w..2 * oi * w + 2 * ow];
            let r1 = &xp[(2 * oi + 1) * w..(2 * oi + 1) * w + 2 * ow];
            for (((y, i), a), b) in yr.iter_mut().zip(ir).zip(r0.chunks_exact(2)).zip(r1.chunks_exact(2)) {
                (*y, *i) = pick([a[0], a[1], b[0], b[1]]);
            }
        }
    };
    let (hw, o) = (h * w, oh * ow);
    if worth_parallel(x.len()) {
        x.par_chunks_exact(hw).zip(y.par_chunks_exact_mut(o)).zip(idx.par_chunks_exact_mut(o)).for_each(run);
    } else {
        x.chunks_exact(hw).zip(y.chunks_exact_mut(o)).zip(idx.chunks_exact_mut(o)).for_each(run);
    }
}

/// Backward of ReLU followed by [`max_pool2x2_forward_argmax`]: `dx` (`c×h×w`) is overwritten with
/// zeros except at each window's recorded winner, which receives the window's `dy`.
///
/// # Panics
/// If a slice length differs from the stated size.
pub fn max_pool2x2_backward_argmax(idx: &[u8], c: usize, h: usize, w: usize, dy: &[f32], dx: &mut [f32]) {
    let (oh, ow) = (h / 2, w / 2);
    assert_eq!(idx.len(), c * oh * ow, "max_pool2x2_backward_argmax: idx must be c*(h/2)*(w/2)");
    assert_eq!(dy.len(), c * oh * ow, "max_pool2x2_backward_argmax: dy must be c*(h/2)*(w/2)");
    assert_eq!(dx.len(), c * h * w, "max_pool2x2_backward_argmax: dx must be c*h*w");
    if oh * ow == 0 {
        dx.fill(0.0);
        return;
    }
    let run = |((ip, gp), dp): ((&[u8], &[f32]), &mut [f32])| {
        let (pairs, tail) = dp.split_at_mut(2 * oh * w);
        tail.fill(0.0);
        for ((dpair, ir), gr) in
            pairs.chunks_exact_mut(2 * w).zip(ip.chunks_exact(ow)).zip(gp.chunks_exact(ow))
        {
            let (d0, d1) = dpair.split_at_mut(w);
            d0[2 * ow..].fill(0.0);
            d1[2 * ow..].fill(0.0);
            for (((a, b), &i), &g) in d0.chunks_exact_mut(2).zip(d1.chunks_exact_mut(2)).zip(ir).zip(gr) {
                let sel = |k: u8| if i == k { g } else { 0.0 };
                (a[0], a[1], b[0], b[1]) = (sel(0), sel(1), sel(2), sel(3));
            }
        }
    };
    let (hw, o) = (h * w, oh * ow);
    if worth_parallel(dx.len()) {
        idx.par_chunks_exact(o).zip(dy.par_chunks_exact(o)).zip(dx.par_chunks_exact_mut(hw)).for_each(run);
    } else {
        idx.chunks_exact(o).zip(dy.chunks_exact(o)).zip(dx.chunks_exact_mut(hw)).for_each(run);
    }
}
