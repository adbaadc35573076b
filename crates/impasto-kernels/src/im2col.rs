//! im2col packing for 3×3 / stride 1 / pad 1 convolution, one pixel tile at a time.
//!
//! A tile is a range `p0..p1` of output pixels in row-major order (it may start
//! and end mid-row). Its column matrix has `9·c` rows, row `ci·9 + ky·3 + kx`
//! holding `x[ci, i + ky − 1, j + kx − 1]` (0 outside the image) for every
//! pixel (i, j) of the tile, which matches the OIHW weight flattening.

use rayon::prelude::*;

use crate::par::worth_parallel;

/// Row stride for an im2col tile of `p` pixels: `p` rounded up to 16 floats
/// (64 bytes), nudged off multiples of 256 floats so that consecutive rows do
/// not all map to the same cache sets (power-of-two tiles are common).
pub(crate) fn col_stride(p: usize) -> usize {
    let ld = p.next_multiple_of(16);
    if ld.is_multiple_of(256) { ld + 16 } else { ld }
}

/// Fill `col` (`9·c` rows of stride `ld`, row-major; only the first
/// `p1 − p0` entries of each row are written) with the im2col rows of pixels
/// `p0..p1` of the CHW image `x` (`c × h × w`).
pub(crate) fn pack_tile(
    x: &[f32],
    c: usize,
    h: usize,
    w: usize,
    p0: usize,
    p1: usize,
    col: &mut [f32],
    ld: usize,
) {
    let hw = h * w;
    let p = p1 - p0;
    debug_assert!(p0 <= p1 && p1 <= hw);
    debug_assert_eq!(x.len(), c * hw);
    debug_assert!(ld >= p);
    debug_assert_eq!(col.len(), 9 * c * ld);
    if p == 0 || c == 0 {
        return;
    }
    let per_channel = |(ci, rows): (usize, &mut [f32])| {
        let plane = &x[ci * hw..(ci + 1) * hw];
        for (tap, row) in rows.chunks_exact_mut(ld).enumerate() {
            fill_tap_row(plane, h, w, tap / 3, tap % 3, p0, p1, &mut row[..p]);
        }
    };
    if worth_parallel(col.len()) {
        col.par_chunks_exact_mut(9 * ld).enumerate().for_each(per_channel);
    } else {
        col.chunks_exact_mut(9 * ld).enumerate().for_each(per_channel);
    }
}

/// One im2col row: `row[t] = plane[i + ky − 1, j + kx − 1]` (or 0) for the
/// t-th pixel (i, j) of `p0..p1`.
#[inline]
fn fill_tap_row(
    plane: &[f32],
    h: usize,
    w: usize,
    ky: usize,
    kx: usize,
    p0: usize,
    p1: usize,
    row: &mut [f32],
) {
    let mut p = p0;
    let mut out = 0;
    while p < p1 {
        let i = p / w;
        let j0 = p % w;
        let j1 = w.min(j0 + (p1 - p));
        let seg = &mut row[out..out + (j1 - j0)];
        // Source row in padded coordinates: i + ky, real row i + ky - 1.
        let si = i + ky;
        if si == 0 || si > h {
            seg.fill(0.0);
        } else {
            let src = &plane[(si - 1) * w..si * w];
            // Valid output columns j satisfy 0 <= j + kx - 1 < w.
            let lo = (1 - kx.min(1)).clamp(j0, j1);
            let hi = (w + 1 - kx).clamp(lo, j1);
            seg[..lo - j0].fill(0.0);
            seg[hi - j0..].fill(0.0);
            seg[lo - j0..hi - j0].copy_from_slice(&src[lo + kx - 1..hi + kx - 1]);
        }
        out += j1 - j0;
        p += j1 - j0;
    }
}
