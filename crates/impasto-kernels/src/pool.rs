//! 2×2 stride-2 max, average and L2 (root mean square) pooling (no padding, floor) and their
//! backward passes.
//!
//! Output planes are `(h/2) × (w/2)`; an odd last row / column of the input is
//! dropped (PyTorch's default `floor` mode) and gets zero gradient. Inner
//! loops are branch-free (selects) so random data does not mispredict.

use rayon::prelude::*;

use crate::par::worth_parallel;

/// Run `f(plane_a, plane_b)` over matching planes of `a` (planes of `a_plane`)
/// and `b` (planes of `b_plane`), on the rayon pool when `work` is large.
fn per_channel<F>(a: &[f32], a_plane: usize, b: &mut [f32], b_plane: usize, work: usize, f: F)
where
    F: Fn(&[f32], &mut [f32]) + Sync,
{
    if a_plane == 0 || b_plane == 0 {
        return;
    }
    if worth_parallel(work) {
        a.par_chunks_exact(a_plane).zip(b.par_chunks_exact_mut(b_plane)).for_each(|(pa, pb)| f(pa, pb));
    } else {
        a.chunks_exact(a_plane).zip(b.chunks_exact_mut(b_plane)).for_each(|(pa, pb)| f(pa, pb));
    }
}

/// Max of a window `[a, b, c, d]` (row-major) and its index 0..4: the first
/// maximum under strict `>`, except that a NaN always takes over (PyTorch's
/// rule). Non-short-circuit `|` keeps it branch-free.
#[inline(always)]
fn max4(v: [f32; 4]) -> (f32, u8) {
    let (mut best, mut t) = (v[0], 0u8);
    for (idx, &x) in (1u8..).zip(&v[1..]) {
        let take = (x > best) | x.is_nan();
        best = if take { x } else { best };
        t = if take { idx } else { t };
    }
    (best, t)
}

/// One-hot mask (as all-ones / zero bit patterns) of the window element that
/// [`max4`] selects, computed without a sequential dependency so that it
/// vectorizes: the first element equal to the max, or, if any element is NaN,
/// the last NaN (which is where the sequential scan ends up).
#[inline(always)]
fn argmax4_mask(v: [f32; 4]) -> [u32; 4] {
    let [a, b, c, d] = v;
    let m = a.max(b).max(c.max(d));
    let ea = a == m;
    let eb = (b == m) & !ea;
    let ec = (c == m) & !(ea | eb);
    let ed = !(ea | eb | ec);
    let (na, nb, nc, nd) = (a.is_nan(), b.is_nan(), c.is_nan(), d.is_nan());
    let any = na | nb | nc | nd;
    let la = na & !(nb | nc | nd);
    let lb = nb & !(nc | nd);
    let lc = nc & !nd;
    let pick = |e: bool, l: bool| u32::from((any & l) | (!any & e)).wrapping_neg();
    [pick(ea, la), pick(eb, lb), pick(ec, lc), pick(ed, nd)]
}

/// Windows per block in [`max_backward_row_pair`].
const BLOCK: usize = 64;

/// Max-pool backward for one pair of input rows (`2·ow` wide): windows are
/// de-interleaved into fixed-size blocks so the mask computation vectorizes.
#[inline(always)]
fn max_backward_row_pair(r0: &[f32], r1: &[f32], g: &[f32], d0: &mut [f32], d1: &mut [f32]) {
    for (((r0, r1), g), (d0, d1)) in r0
        .chunks(2 * BLOCK)
        .zip(r1.chunks(2 * BLOCK))
        .zip(g.chunks(BLOCK))
        .zip(d0.chunks_mut(2 * BLOCK).zip(d1.chunks_mut(2 * BLOCK)))
    {
        let mut v = [[0.0f32; BLOCK]; 4];
        let mut gb = [0u32; BLOCK];
        for (t, ((a, b), &gv)) in r0.chunks_exact(2).zip(r1.chunks_exact(2)).zip(g).enumerate() {
            v[0][t] = a[0];
            v[1][t] = a[1];
            v[2][t] = b[0];
            v[3][t] = b[1];
            gb[t] = gv.to_bits();
        }
        let mut out = [[0u32; BLOCK]; 4];
        for t in 0..BLOCK {
            let mask = argmax4_mask([v[0][t], v[1][t], v[2][t], v[3][t]]);
            for q in 0..4 {
                out[q][t] = gb[t] & mask[q];
            }
        }
        for (t, (da, db)) in d0.chunks_exact_mut(2).zip(d1.chunks_exact_mut(2)).enumerate() {
            da[0] = f32::from_bits(out[0][t]);
            da[1] = f32::from_bits(out[1][t]);
            db[0] = f32::from_bits(out[2][t]);
            db[1] = f32::from_bits(out[3][t]);
        }
    }
}

/// 2×2 stride-2 L2 pooling of `x` (`c×h×w`) into `y` (`c×(h/2)×(w/2)`): the root mean square of each
/// window, `sqrt((a² + b² + c² + d²) / 4)`, so a window of equal values keeps its value, as with
/// average pooling.
///
/// # Panics
/// If a slice length differs from the stated size.
pub fn l2_pool2x2_forward(x: &[f32], c: usize, h: usize, w: usize, y: &mut [f32]) {
    forward_windows("l2_pool2x2_forward", x, c, h, w, y, |a, b| l2_window(a, b).sqrt());
}

/// The mean square of a window's two row halves, in the one order the GPU kernel uses too.
#[inline(always)]
fn l2_window(a: &[f32], b: &[f32]) -> f32 {
    ((a[0] * a[0] + a[1] * a[1]) + (b[0] * b[0] + b[1] * b[1])) * 0.25
}

/// Backward of [`l2_pool2x2_forward`], `x` its input: `dx` (`c×h×w`, overwritten) gets
/// `dy · x / (4·y)` on each window's four pixels (`y` the window's output), 0 where `y` is 0 (a
/// window of zeros, common after a ReLU) and on a dropped odd row / column.
///
/// # Panics
/// If a slice length differs from the stated size.
pub fn l2_pool2x2_backward(x: &[f32], c: usize, h: usize, w: usize, dy: &[f32], dx: &mut [f32]) {
    backward_row_pairs("l2_pool2x2_backward", x, c, (h, w), dy, dx, |r0, r1, g, d0, d1| {
        for ((((a, b), &g), da), db) in r0
            .chunks_exact(2)
            .zip(r1.chunks_exact(2))
            .zip(g)
            .zip(d0.chunks_exact_mut(2))
            .zip(d1.chunks_exact_mut(2))
        {
            let y = l2_window(a, b).sqrt();
            let k = if y > 0.0 { g * 0.25 / y } else { 0.0 };
            da[0] = a[0] * k;
            da[1] = a[1] * k;
            db[0] = b[0] * k;
            db[1] = b[1] * k;
        }
    });
}

/// `y` (`c×(h/2)×(w/2)`) = `window(top, bottom)` of each 2×2 window of `x` (`c×h×w`), given as its
/// two row halves: the one loop of every pooling forward, `name` naming it in a length panic.
#[inline(always)]
fn forward_windows(
    name: &str,
    x: &[f32],
    c: usize,
    h: usize,
    w: usize,
    y: &mut [f32],
    window: impl Fn(&[f32], &[f32]) -> f32 + Sync,
) {
    let (oh, ow) = (h / 2, w / 2);
    check(name, "x", x.len(), c * h * w);
    check(name, "y", y.len(), c * oh * ow);
    per_channel(x, h * w, y, oh * ow, x.len(), |xp, yp| {
        for (oi, yr) in yp.chunks_exact_mut(ow).enumerate() {
            let (r0, r1) = row_pair(xp, w, ow, oi);
            for ((y, a), b) in yr.iter_mut().zip(r0.chunks_exact(2)).zip(r1.chunks_exact(2)) {
                *y = window(a, b);
            }
        }
    });
}

/// Rows `2·oi` and `2·oi + 1` of a `w`-wide plane, cut to `2·ow` columns.
#[inline(always)]
fn row_pair(plane: &[f32], w: usize, ow: usize, oi: usize) -> (&[f32], &[f32]) {
    let r0 = &plane[2 * oi * w..];
    (&r0[..2 * ow], &r0[w..w + 2 * ow])
}

fn check(name: &str, what: &str, got: usize, want: usize) {
    assert_eq!(got, want, "{name}: {what} has {got} floats, expected {want}");
}

/// 2×2 stride-2 max pooling of `x` (`c×h×w`) into `y` (`c×(h/2)×(w/2)`).
/// A NaN in a window makes its output NaN.
///
/// # Panics
/// If a slice length differs from the stated size.
pub fn max_pool2x2_forward(x: &[f32], c: usize, h: usize, w: usize, y: &mut [f32]) {
    forward_windows("max_pool2x2_forward", x, c, h, w, y, |a, b| max4([a[0], a[1], b[0], b[1]]).0);
}

/// Backward of [`max_pool2x2_forward`]: `dx` (`c×h×w`) is overwritten with
/// zeros except at each window's argmax, which receives the window's `dy`.
/// The argmax is recomputed from `x`; ties go to the first maximum in
/// row-major window order (strict `>`, like PyTorch).
///
/// # Panics
/// If a slice length differs from the stated size.
pub fn max_pool2x2_backward(x: &[f32], c: usize, h: usize, w: usize, dy: &[f32], dx: &mut [f32]) {
    backward_row_pairs("max_pool2x2_backward", x, c, (h, w), dy, dx, max_backward_row_pair);
}

/// The one loop of the pooling backward passes that read the pooling's input: `pair(r0, r1, g, d0,
/// d1)` writes the gradient of each pair of input rows `r0`, `r1` (cut to `2·ow` columns) with
/// their windows' output gradients `g` into `d0`, `d1`; a dropped odd row or column gets 0. `name`
/// names the kernel in a length panic.
fn backward_row_pairs(
    name: &str,
    x: &[f32],
    c: usize,
    (h, w): (usize, usize),
    dy: &[f32],
    dx: &mut [f32],
    pair: impl Fn(&[f32], &[f32], &[f32], &mut [f32], &mut [f32]) + Sync,
) {
    let (oh, ow) = (h / 2, w / 2);
    check(name, "x", x.len(), c * h * w);
    check(name, "dy", dy.len(), c * oh * ow);
    check(name, "dx", dx.len(), c * h * w);
    if oh * ow == 0 {
        dx.fill(0.0);
        return;
    }
    let hw = h * w;
    let run = |((xp, dyp), dxp): ((&[f32], &[f32]), &mut [f32])| {
        let (pairs, tail) = dxp.split_at_mut(2 * oh * w);
        tail.fill(0.0);
        for (oi, (dpair, gr)) in pairs.chunks_exact_mut(2 * w).zip(dyp.chunks_exact(ow)).enumerate() {
            let (r0, r1) = row_pair(xp, w, ow, oi);
            let (d0, d1) = dpair.split_at_mut(w);
            d0[2 * ow..].fill(0.0);
            d1[2 * ow..].fill(0.0);
            pair(r0, r1, gr, &mut d0[..2 * ow], &mut d1[..2 * ow]);
        }
    };
    if worth_parallel(dx.len()) {
        x.par_chunks_exact(hw)
            .zip(dy.par_chunks_exact(oh * ow))
            .zip(dx.par_chunks_exact_mut(hw))
            .for_each(run);
    } else {
        x.chunks_exact(hw).zip(dy.chunks_exact(oh * ow)).zip(dx.chunks_exact_mut(hw)).for_each(run);
    }
}

/// 2×2 stride-2 average pooling of `x` (`c×h×w`) into `y` (`c×(h/2)×(w/2)`).
///
/// # Panics
/// If a slice length differs from the stated size.
pub fn avg_pool2x2_forward(x: &[f32], c: usize, h: usize, w: usize, y: &mut [f32]) {
    forward_windows("avg_pool2x2_forward", x, c, h, w, y, |a, b| (a[0] + a[1] + b[0] + b[1]) * 0.25);
}

/// Backward of [`avg_pool2x2_forward`]: `dx` (`c×h×w`, overwritten) gets
/// `dy / 4` on each window's four pixels, 0 on a dropped odd row / column.
///
/// # Panics
/// If a slice length differs from the stated size.
pub fn avg_pool2x2_backward(c: usize, h: usize, w: usize, dy: &[f32], dx: &mut [f32]) {
    let (oh, ow) = (h / 2, w / 2);
    check("avg_pool2x2_backward", "dy", dy.len(), c * oh * ow);
    check("avg_pool2x2_backward", "dx", dx.len(), c * h * w);
    if oh * ow == 0 {
        dx.fill(0.0);
        return;
    }
    per_channel(dy, oh * ow, dx, h * w, dx.len(), |dyp, dxp| {
        let (pairs, tail) = dxp.split_at_mut(2 * oh * w);
        tail.fill(0.0);
        for (row, gr) in pairs.chunks_exact_mut(w).zip(dyp.chunks_exact(ow).flat_map(|r| [r, r])) {
            for (pair, &g) in row.chunks_exact_mut(2).zip(gr) {
                let v = g * 0.25;
                pair[0] = v;
                pair[1] = v;
            }
            row[2 * ow..].fill(0.0);
        }
    });
}
