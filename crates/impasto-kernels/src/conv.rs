//! `Conv3x3`: 3×3, stride 1, zero-pad 1 convolution (forward and gradient to
//! the input) as tiled im2col + `sgemm` (or `sgemm` + col2im), or Winograd.
//!
//! The output pixels are cut into tiles whose column matrix fits in
//! [`COL_BUDGET_BYTES`]; tiles run in order, parallelism comes from the GEMM
//! and the im2col packing. Bias rides along as an extra GEMM row of ones, and
//! the ReLU is applied to each output tile while it is still in cache.

use std::fmt;
use std::sync::{Mutex, OnceLock};

use rayon::prelude::*;

use crate::im2col::{col_stride, pack_tile};
use crate::par::worth_parallel;
use crate::relu::relu_slice;
use crate::sgemm::{MatRef, auto_parallelism, gemm_strided, sgemm};
use crate::winograd::{WinoWeights, conv3x3_winograd};

/// Upper bound (bytes) for one tile's im2col buffer, whatever the image size
/// (exceeded only when even [`MIN_TILE_PIXELS`] pixels need more).
pub(crate) const COL_BUDGET_BYTES: usize = 4 << 20;

/// Smallest tile width (pixels) so that the GEMM `n` stays reasonable.
const MIN_TILE_PIXELS: usize = 64;

/// A 3×3 convolution, stride 1, zero padding 1, with bias, PyTorch `conv2d`
/// (cross-correlation) semantics on single CHW images:
/// `y[o,i,j] = b[o] + Σ_{c,ky,kx} w[o,c,ky,kx] · x[c, i+ky−1, j+kx−1]`.
///
/// Weights are rearranged once in [`Conv3x3::new`] for both the forward pass
/// and the gradient to the input.
///
/// The GEMM paths use one column buffer of at most about 4 MiB, whatever the
/// image size, kept between calls; the output pixels are processed tile by
/// tile, in order, with the GEMM (and the packing) running on the current
/// rayon pool. The gradient to an input with fewer channels than the output
/// (the first layer) multiplies first and adds the taps back (col2im), so its
/// buffer has `9·c_in` rows rather than `9·c_out`.
#[derive(Clone)]
pub struct Conv3x3 {
    c_in: usize,
    c_out: usize,
    /// Forward GEMM matrix, `c_out × (9·c_in + 1)` row-major: the OIHW weights
    /// of output channel `o` followed by `bias[o]`.
    fwd: Vec<f32>,
    /// Backward GEMM matrix, `c_in × 9·c_out` row-major:
    /// `w'[c, o, ky, kx] = w[o, c, 2 − ky, 2 − kx]` (no bias).
    bwd: Vec<f32>,
    /// Winograd F(4×4, 3×3) weights of the forward (`36 × c_out × c_in`), built on first use.
    wino_fwd: OnceLock<WinoWeights>,
    /// Winograd weights of the backward (`36 × c_in × c_out`), built on first use.
    wino_bwd: OnceLock<WinoWeights>,
}

/// How a [`Conv3x3`] computes a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvAlgo {
    /// Pick by shape: Winograd where it wins (enough channels and tiles), im2col otherwise.
    Auto,
    /// Tiled im2col + GEMM: exact to f32 GEMM rounding, best for few channels or tiny images.
    Im2col,
    /// Winograd F(4×4, 3×3): 4× fewer multiplies; relative error ~1e-6 of the output's scale.
    Winograd,
}

/// Smallest channel count (both sides) for which [`ConvAlgo::Auto`] picks Winograd.
const WINO_MIN_CHANNELS: usize = 16;
/// Smallest number of 4×4 tiles for which [`ConvAlgo::Auto`] picks Winograd.
const WINO_MIN_TILES: usize = 16;

/// Whether a `c_src → m` channel convolution on an `h × w` image takes the Winograd form where the
/// choice is automatic (here [`ConvAlgo::Auto`], on the GPU its default): enough channels on both
/// sides and enough 4×4 tiles for the transforms to pay, and for its rounding (about 1e-6 of the
/// output's scale) to stay clear of the deepest layers of small images.
pub fn winograd_applies(c_src: usize, m: usize, h: usize, w: usize) -> bool {
    let tiles = h.div_ceil(4) * w.div_ceil(4);
    c_src >= WINO_MIN_CHANNELS && m >= WINO_MIN_CHANNELS && tiles >= WINO_MIN_TILES
}

/// The algorithm `Auto` resolves to for `c_src → m` channels on an `h × w` image.
fn resolve(algo: ConvAlgo, c_src: usize, m: usize, h: usize, w: usize) -> ConvAlgo {
    match algo {
        ConvAlgo::Auto if winograd_applies(c_src, m, h, w) => ConvAlgo::Winograd,
        ConvAlgo::Auto => ConvAlgo::Im2col,
        a => a,
    }
}

impl fmt::Debug for Conv3x3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conv3x3")
            .field("c_in", &self.c_in)
            .field("c_out", &self.c_out)
            .finish_non_exhaustive()
    }
}

impl Conv3x3 {
    /// Build from OIHW `weight` (`c_out·c_in·9` floats) and `bias` (`c_out`).
    ///
    /// # Panics
    /// If `weight` or `bias` has the wrong length.
    pub fn new(c_in: usize, c_out: usize, weight: Vec<f32>, bias: Vec<f32>) -> Self {
        let k = 9 * c_in;
        assert_eq!(
            weight.len(),
            c_out * k,
            "Conv3x3::new: weight must have c_out*c_in*9 = {}*{}*9 floats",
            c_out,
            c_in
        );
        assert_eq!(bias.len(), c_out, "Conv3x3::new: bias must have c_out = {c_out} floats");
        let mut fwd = Vec::with_capacity(c_out * (k + 1));
        for (o, &b_o) in bias.iter().enumerate() {
            fwd.extend_from_slice(&weight[o * k..(o + 1) * k]);
            fwd.push(b_o);
        }
        let mut bwd = vec![0.0; c_in * 9 * c_out];
        for o in 0..c_out {
            for c in 0..c_in {
                for tap in 0..9 {
                    bwd[(c * c_out + o) * 9 + (8 - tap)] = weight[(o * c_in + c) * 9 + tap];
                }
            }
        }
        Self { c_in, c_out, fwd, bwd, wino_fwd: OnceLock::new(), wino_bwd: OnceLock::new() }
    }

    /// Number of input channels.
    pub fn c_in(&self) -> usize {
        self.c_in
    }

    /// Number of output channels.
    pub fn c_out(&self) -> usize {
        self.c_out
    }

    /// The OIHW weights (`c_out·c_in·9`) and the biases (`c_out`) it was built from (for uploading
    /// the network to another device).
    pub fn weights(&self) -> (Vec<f32>, Vec<f32>) {
        let k = 9 * self.c_in;
        let mut w = Vec::with_capacity(self.c_out * k);
        let mut b = Vec::with_capacity(self.c_out);
        for row in self.fwd.chunks_exact(k + 1) {
            w.extend_from_slice(&row[..k]);
            b.push(row[k]);
        }
        (w, b)
    }

    /// `y` (`c_out·h·w`, overwritten) = conv(`x`) + bias, then `max(·, 0)` if
    /// `relu`. `x` is `c_in·h·w`.
    ///
    /// # Panics
    /// If a slice length differs from the stated size.
    pub fn forward(&self, x: &[f32], h: usize, w: usize, relu: bool, y: &mut [f32]) {
        self.forward_with(ConvAlgo::Auto, x, h, w, relu, y);
    }

    /// [`Conv3x3::forward`] with an explicit algorithm.
    ///
    /// # Panics
    /// If a slice length differs from the stated size.
    pub fn forward_with(&self, algo: ConvAlgo, x: &[f32], h: usize, w: usize, relu: bool, y: &mut [f32]) {
        let hw = h * w;
        assert_eq!(x.len(), self.c_in * hw, "Conv3x3::forward: x must be c_in*h*w");
        assert_eq!(y.len(), self.c_out * hw, "Conv3x3::forward: y must be c_out*h*w");
        match resolve(algo, self.c_in, self.c_out, h, w) {
            ConvAlgo::Winograd => {
                let u = self
                    .wino_fwd
                    .get_or_init(|| WinoWeights::new(&self.fwd, 9 * self.c_in + 1, self.c_out, self.c_in));
                let bias = (0..self.c_out)
                    .map(|o| self.fwd[o * (9 * self.c_in + 1) + 9 * self.c_in])
                    .collect::<Vec<_>>();
                conv3x3_winograd(u, self.c_out, self.c_in, Some(&bias), x, h, w, relu, y);
            }
            _ => conv3x3_tiled(&self.fwd, self.c_out, self.c_in, true, x, h, w, relu, y),
        }
    }

    /// Gradient to the input only: `dx` (`c_in·h·w`, overwritten) =
    /// conv_transpose(`dy`), `dy` is `c_out·h·w`. Computed as a 3×3 convolution
    /// of `dy` with the flipped, transposed weights.
    ///
    /// # Panics
    /// If a slice length differs from the stated size.
    pub fn backward_input(&self, dy: &[f32], h: usize, w: usize, dx: &mut [f32]) {
        self.backward_input_with(ConvAlgo::Auto, dy, h, w, dx);
    }

    /// [`Conv3x3::backward_input`] with an explicit algorithm.
    ///
    /// # Panics
    /// If a slice length differs from the stated size.
    pub fn backward_input_with(&self, algo: ConvAlgo, dy: &[f32], h: usize, w: usize, dx: &mut [f32]) {
        let hw = h * w;
        assert_eq!(dy.len(), self.c_out * hw, "Conv3x3::backward_input: dy must be c_out*h*w");
        assert_eq!(dx.len(), self.c_in * hw, "Conv3x3::backward_input: dx must be c_in*h*w");
        match resolve(algo, self.c_out, self.c_in, h, w) {
            ConvAlgo::Winograd => {
                let u = self
                    .wino_bwd
                    .get_or_init(|| WinoWeights::new(&self.bwd, 9 * self.c_out, self.c_in, self.c_out));
                conv3x3_winograd(u, self.c_in, self.c_out, None, dy, h, w, false, dx);
            }
            _ if self.c_in < self.c_out => {
                let wt = MatRef { data: &self.fwd, rs: 1, cs: 9 * self.c_in + 1 };
                backward_col2im(wt, self.c_in, self.c_out, dy, h, w, dx);
            }
            _ => conv3x3_tiled(&self.bwd, self.c_in, self.c_out, false, dy, h, w, false, dx),
        }
    }
}

/// Gradient to the input when it has fewer channels than the output (the first layer: 64 → 3):
/// `Z = Wᵀ·dy` (`9·c_in × pixels`, a row per input channel and tap) over tiles of whole rows,
/// then each tap's row of `Z` is added to `dx` shifted by the tap (col2im). The buffer is
/// `9·c_in` rows instead of im2col's `9·c_out`, and `dy` is read once.
///
/// `wt` is `Wᵀ`: element (`ci·9 + tap`, `o`) is `w[o, ci, tap]`.
fn backward_col2im(
    wt: MatRef<'_>,
    c_in: usize,
    c_out: usize,
    dy: &[f32],
    h: usize,
    w: usize,
    dx: &mut [f32],
) {
    let hw = h * w;
    dx.fill(0.0);
    if hw == 0 || c_in == 0 {
        return;
    }
    let kz = 9 * c_in;
    let rows = (COL_BUDGET_BYTES / 4 / (kz * w).max(1)).clamp(1, h);
    let mut guard = COL_SCRATCH.try_lock().ok();
    let mut own = Vec::new();
    let z: &mut Vec<f32> = guard.as_deref_mut().unwrap_or(&mut own);
    if z.len() < kz * rows * w {
        z.resize(kz * rows * w, 0.0);
    }
    let mut y0 = 0;
    while y0 < h {
        let y1 = (y0 + rows).min(h);
        let n = (y1 - y0) * w;
        let z = &mut z[..kz * n];
        let b = MatRef { data: &dy[y0 * w..], rs: hw, cs: 1 };
        gemm_strided(kz, n, c_out, 1.0, wt, b, false, z, n, auto_parallelism(kz, n, c_out));
        // dx[ci][y + ky − 1][x + kx − 1] += Z[ci·9 + ky·3 + kx][y][x], in a fixed order.
        let zr: &[f32] = z;
        let scatter = |(ci, plane): (usize, &mut [f32])| {
            for ky in 0..3 {
                for kx in 0..3 {
                    let zrow = &zr[(ci * 9 + ky * 3 + kx) * n..][..n];
                    for y in y0..y1 {
                        let Some(ty) = (y + ky).checked_sub(1).filter(|&t| t < h) else { continue };
                        let src = &zrow[(y - y0) * w..(y - y0 + 1) * w];
                        let dst = &mut plane[ty * w..(ty + 1) * w];
                        // Target column x + kx − 1 for source column x.
                        let (s, d) = match kx {
                            0 => (&src[1..], &mut dst[..w - 1]),
                            1 => (src, &mut dst[..]),
                            _ => (&src[..w - 1], &mut dst[1..]),
                        };
                        d.iter_mut().zip(s).for_each(|(d, s)| *d += s);
                    }
                }
            }
        };
        if worth_parallel(kz * n) {
            dx.par_chunks_exact_mut(hw).enumerate().for_each(scatter);
        } else {
            dx.chunks_exact_mut(hw).enumerate().for_each(scatter);
        }
        y0 = y1;
    }
}

/// The column buffer of [`conv3x3_tiled`], at most [`COL_BUDGET_BYTES`] plus stride padding.
static COL_SCRATCH: Mutex<Vec<f32>> = Mutex::new(Vec::new());

/// Pixels per tile for a column matrix with `k` rows over `hw` pixels:
/// tiles as equal as possible, each within the byte budget.
pub(crate) fn tile_pixels(k: usize, hw: usize) -> usize {
    let max_p = (COL_BUDGET_BYTES / 4 / k.max(1)).max(MIN_TILE_PIXELS);
    let n_tiles = hw.div_ceil(max_p).max(1);
    hw.div_ceil(n_tiles)
}

/// `dst` (`m × h·w`) = `wmat` (`m × k`) · im2col(`src`) (+ relu), where
/// `k = 9·c_src (+ 1 if ones_row)`; the extra ones row carries the bias.
fn conv3x3_tiled(
    wmat: &[f32],
    m: usize,
    c_src: usize,
    ones_row: bool,
    src: &[f32],
    h: usize,
    w: usize,
    relu: bool,
    dst: &mut [f32],
) {
    let hw = h * w;
    if hw == 0 || m == 0 {
        return;
    }
    let k_taps = 9 * c_src;
    let k = k_taps + usize::from(ones_row);
    let tile = tile_pixels(k, hw);
    let ld = col_stride(tile);
    // Kept between calls so that each call does not fault in fresh pages; a call that finds it busy
    // (concurrent convolutions) allocates its own. Stale contents are never read: every tile packs
    // the columns the GEMM reads.
    let mut guard = COL_SCRATCH.try_lock().ok();
    let mut own = Vec::new();
    let col: &mut Vec<f32> = guard.as_deref_mut().unwrap_or(&mut own);
    if col.len() < k * ld {
        col.resize(k * ld, 0.0);
    }
    let col = &mut col[..k * ld];
    // The ones row (bias) is the same for every tile.
    col[k_taps * ld..].fill(1.0);
    let mut p0 = 0;
    while p0 < hw {
        let p1 = (p0 + tile).min(hw);
        let p = p1 - p0;
        pack_tile(src, c_src, h, w, p0, p1, &mut col[..k_taps * ld], ld);
        sgemm(m, p, k, 1.0, wmat, k, col, ld, false, &mut dst[p0..], hw);
        if relu {
            relu_tile(dst, hw, p0, p1);
        }
        p0 = p1;
    }
}

/// ReLU over pixels `p0..p1` of every channel plane of `dst` (planes of `hw`).
fn relu_tile(dst: &mut [f32], hw: usize, p0: usize, p1: usize) {
    if worth_parallel(dst.len() / hw * (p1 - p0)) {
        dst.par_chunks_exact_mut(hw).for_each(|plane| relu_slice(&mut plane[p0..p1]));
    } else {
        for plane in dst.chunks_exact_mut(hw) {
            relu_slice(&mut plane[p0..p1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_stay_within_budget_for_huge_images() {
        for c_src in [1, 3, 64, 128, 256, 512] {
            let k = 9 * c_src + 1;
            for (h, w) in [(2048, 2048), (1, 1 << 20), (4096, 3), (7, 5)] {
                let hw = h * w;
                let tile = tile_pixels(k, hw);
                assert!(tile >= 1 && tile <= hw);
                let bytes = k * col_stride(tile) * 4;
                // Budget, plus the stride padding (< 32 floats a row).
                assert!(bytes <= COL_BUDGET_BYTES + k * 32 * 4, "k={k} {h}x{w}: {bytes} bytes");
            }
        }
    }

    #[test]
    fn col_stride_avoids_multiples_of_256() {
        for p in 1..5000 {
            let ld = col_stride(p);
            assert!(ld >= p && ld.is_multiple_of(16) && !ld.is_multiple_of(256));
        }
    }
}
