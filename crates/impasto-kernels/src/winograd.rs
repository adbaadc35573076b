//! Winograd F(4×4, 3×3) convolution (Lavin & Gray 2016): 3×3, stride 1, pad 1, on CHW images.
//!
//! `Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A` per 4×4 output tile, with `d` the 6×6 input patch. The
//! element-wise products over channels become 36 independent GEMMs
//! `M[ξ] (m × tiles) = U[ξ] (m × c) · V[ξ] (c × tiles)`, i.e. 36/16 = 2.25 multiplies per output
//! pixel and channel pair instead of 9 (a 4× cut of the GEMM work).
//!
//! The tiles are processed in blocks of whole tile rows. Per block: (1) input transform, parallel
//! over input channels; (2) the 36 GEMMs, parallel over ξ, each single-threaded; (3) output
//! transform with bias and ReLU, parallel over output channels. The transforms are separable and
//! written over contiguous rows so that they vectorise; every reduction order is fixed, so results
//! do not depend on the thread count at all.

use std::sync::Mutex;

use rayon::prelude::*;

use crate::microkernel::{self, PackedA, gemm_packed};
use crate::sgemm::{MatRef, gemm_strided};
use crate::simd::{self, in_level, multiversion};

/// Output tile side.
const M_TILE: usize = 4;
/// Input patch side (`M_TILE + 2`).
const A: usize = 6;
/// Points per tile (`A²`), the number of GEMMs.
const NXI: usize = A * A;
/// Scratch budget (bytes) for one block's transformed input and GEMM output.
const BLOCK_BUDGET_BYTES: usize = 12 << 20;

/// The transformed-input and GEMM-output buffers, kept between calls (at most
/// [`BLOCK_BUDGET_BYTES`] plus one tile row) so that each call does not fault in fresh pages; a call
/// that finds it busy (concurrent convolutions) allocates its own.
static SCRATCH: Mutex<Vec<f32>> = Mutex::new(Vec::new());

/// `G` of F(4, 3), 6×3.
const G: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// Transformed weights `U[ξ] = (G g Gᵀ)[ξ]` as 36 row-major `m × c` matrices, from OIHW weights
/// `w` (row `o` of `9·c` floats starts at `o·ld`). Computed in f64. The GPU backend's Winograd
/// convolution takes the same matrices (its transforms of the input and output mirror `bt`/`at`).
pub fn transform_weights(w: &[f32], ld: usize, m: usize, c: usize) -> Vec<f32> {
    let mut u = vec![0.0f32; NXI * m * c];
    if m * c == 0 {
        return u;
    }
    // One task per point ξ = (i, j): t = row i of G g (3 values), then u = t · row j of G; each
    // sum in the same order whatever the split, so the same values on any thread count.
    u.par_chunks_exact_mut(m * c).enumerate().for_each(|(xi, ux)| {
        let (i, j) = (xi / A, xi % A);
        for o in 0..m {
            for ci in 0..c {
                let g = &w[o * ld + ci * 9..o * ld + ci * 9 + 9];
                let t: [f64; 3] =
                    std::array::from_fn(|kx| (0..3).map(|ky| G[i][ky] * f64::from(g[ky * 3 + kx])).sum());
                let v: f64 = (0..3).map(|kx| t[kx] * G[j][kx]).sum();
                ux[o * c + ci] = v as f32;
            }
        }
    });
    u
}

/// The transformed weights of one convolution direction, laid out for the GEMM path chosen when
/// they were built.
#[derive(Clone, Debug)]
pub(crate) enum WinoWeights {
    /// 36 row-major `m × c` matrices, for the portable GEMM.
    Plain(Vec<f32>),
    /// The same 36 matrices packed for the AVX-512F micro-kernel.
    Packed(Vec<PackedA>),
}

impl WinoWeights {
    /// [`transform_weights`], packed when the AVX-512F GEMM is available.
    pub(crate) fn new(w: &[f32], ld: usize, m: usize, c: usize) -> Self {
        let u = transform_weights(w, ld, m, c);
        if microkernel::available() {
            let pack = |xi: usize| {
                PackedA::new(m, c, MatRef { data: &u[xi * m * c..(xi + 1) * m * c], rs: c, cs: 1 })
            };
            Self::Packed((0..NXI).map(pack).collect())
        } else {
            Self::Plain(u)
        }
    }
}

/// Number of tiles along a side of `n` pixels.
fn tiles(n: usize) -> usize {
    n.div_ceil(M_TILE)
}

/// Tile rows per block for `c` input and `m` output channels and `tw` tiles per row.
fn block_rows(c: usize, m: usize, tw: usize, th: usize) -> usize {
    let per_row = NXI * (c + m) * tw * 4;
    (BLOCK_BUDGET_BYTES / per_row.max(1)).clamp(1, th)
}

/// `dst` (`m·h·w`, overwritten) = conv(`src`) (+ `bias`, then ReLU if `relu`) with transformed
/// weights `u` from [`WinoWeights::new`]; `src` is `c·h·w`.
pub(crate) fn conv3x3_winograd(
    u: &WinoWeights,
    m: usize,
    c: usize,
    bias: Option<&[f32]>,
    src: &[f32],
    h: usize,
    w: usize,
    relu: bool,
    dst: &mut [f32],
) {
    if let WinoWeights::Plain(u) = u {
        debug_assert_eq!(u.len(), NXI * m * c);
    }
    debug_assert_eq!(src.len(), c * h * w);
    debug_assert_eq!(dst.len(), m * h * w);
    if h == 0 || w == 0 || m == 0 {
        return;
    }
    if c == 0 {
        for (o, plane) in dst.chunks_exact_mut(h * w).enumerate() {
            let b = bias.map_or(0.0, |b| b[o]);
            plane.fill(if relu { b.max(0.0) } else { b });
        }
        return;
    }
    let (th, tw) = (tiles(h), tiles(w));
    let rows = block_rows(c, m, tw, th);
    let tb_max = rows * tw;
    let mut guard = SCRATCH.try_lock().ok();
    let mut own = Vec::new();
    let buf: &mut Vec<f32> = guard.as_deref_mut().unwrap_or(&mut own);
    let need = (c + m) * NXI * tb_max;
    if buf.len() < need {
        buf.resize(need, 0.0);
    }
    // Both halves are fully overwritten for every block before being read.
    let (v, mm) = buf[..need].split_at_mut(c * NXI * tb_max);
    let hw = h * w;
    // The caller's SIMD level, for the parallel tasks.
    let cap = simd::cap();
    let mut ty0 = 0;
    while ty0 < th {
        let ty1 = (ty0 + rows).min(th);
        let tb = (ty1 - ty0) * tw;
        let v = &mut v[..c * NXI * tb];
        let mm = &mut mm[..NXI * m * tb];
        v.par_chunks_exact_mut(NXI * tb).enumerate().for_each_init(
            || vec![0.0f32; 6 * 4 * (tw + 1) + 4 * (tw + 1) + w],
            |scratch, (ci, vc)| {
                let plane = &src[ci * hw..(ci + 1) * hw];
                in_level(cap, || input_transform(plane, h, w, tw, ty0, ty1, vc, scratch));
            },
        );
        let vv: &[f32] = v;
        mm.par_chunks_exact_mut(m * tb).enumerate().for_each(|(xi, mc)| {
            let b = MatRef { data: &vv[xi * tb..], rs: NXI * tb, cs: 1 };
            in_level(cap, || match u {
                WinoWeights::Plain(u) => {
                    let a = MatRef { data: &u[xi * m * c..(xi + 1) * m * c], rs: c, cs: 1 };
                    gemm_strided(m, tb, c, 1.0, a, b, false, mc, tb, gemm::Parallelism::None);
                }
                WinoWeights::Packed(p) => gemm_packed(&p[xi], tb, 1.0, b, false, mc, tb),
            });
        });
        let mr: &[f32] = mm;
        dst.par_chunks_exact_mut(hw).enumerate().for_each_init(
            || vec![0.0f32; 6 * 4 * tw + 16 * tw],
            |scratch, (o, plane)| {
                let b = bias.map_or(0.0, |b| b[o]);
                in_level(cap, || output_transform(mr, m, o, tb, h, w, tw, ty0, ty1, b, relu, plane, scratch));
            },
        );
        ty0 = ty1;
    }
}

/// `Bᵀ d` for one column of six values (also used row-wise: `d B` is the same formula).
#[inline(always)]
fn bt(d: [f32; 6]) -> [f32; 6] {
    let [d0, d1, d2, d3, d4, d5] = d;
    [
        4.0 * d0 - 5.0 * d2 + d4,
        -4.0 * d1 - 4.0 * d2 + d3 + d4,
        4.0 * d1 - 4.0 * d2 - d3 + d4,
        -2.0 * d1 - d2 + 2.0 * d3 + d4,
        2.0 * d1 - d2 - 2.0 * d3 + d4,
        4.0 * d1 - 5.0 * d3 + d5,
    ]
}

/// `Aᵀ v` for one column of six values.
#[inline(always)]
fn at(v: [f32; 6]) -> [f32; 4] {
    let [v0, v1, v2, v3, v4, v5] = v;
    let (s12, d12, s34, d34) = (v1 + v2, v1 - v2, v3 + v4, v3 - v4);
    [v0 + s12 + s34, d12 + 2.0 * d34, s12 + 4.0 * s34, d12 + 8.0 * d34 + v5]
}

multiversion! {
/// Input transform of one channel plane for tile rows `ty0..ty1`: writes `vc[ξ·tb + t]`
/// (`tb = (ty1 − ty0)·tw`). `scratch` holds 6 padded rows and 4 de-interleaved phases.
fn input_transform(
    plane: &[f32],
    h: usize,
    w: usize,
    tw: usize,
    ty0: usize,
    ty1: usize,
    vc: &mut [f32],
    scratch: &mut [f32],
) {
    let tb = (ty1 - ty0) * tw;
    // Padded row length: pixel col j sits at q[j + 1]; 4·(tw + 1) covers every patch.
    let ql = 4 * (tw + 1);
    let (q, rest) = scratch.split_at_mut(6 * ql);
    let pl = tw + 1;
    let (phases, zeros) = rest.split_at_mut(4 * pl);
    for ty in ty0..ty1 {
        let r = ty - ty0;
        // Vertical pass: q[ξy][1 + j] = Σ_i Bᵀ[ξy][i] · x[4ty − 1 + i][j], one pass over six rows.
        let rws: [&[f32]; 6] = std::array::from_fn(|i| match (4 * ty + i).checked_sub(1) {
            Some(y) if y < h => &plane[y * w..(y + 1) * w],
            _ => &zeros[..w],
        });
        {
            let [q0, q1, q2, q3, q4, q5] = split_rows::<6>(q, ql);
            for r in [&mut *q0, &mut *q1, &mut *q2, &mut *q3, &mut *q4, &mut *q5] {
                r[0] = 0.0;
                r[w + 1..].fill(0.0);
            }
            let outs = (&mut q0[1..=w], &mut q1[1..=w], &mut q2[1..=w], &mut q3[1..=w], &mut q4[1..=w]);
            let q5 = &mut q5[1..=w];
            for j in 0..w {
                let o = bt([rws[0][j], rws[1][j], rws[2][j], rws[3][j], rws[4][j], rws[5][j]]);
                (outs.0[j], outs.1[j], outs.2[j], outs.3[j], outs.4[j], q5[j]) = (o[0], o[1], o[2], o[3], o[4], o[5]);
            }
        }
        // Horizontal pass per ξy: de-interleave the padded row into 4 phases, then
        // V[ξy·6 + ξx][t] = Σ_j B[j][ξx] · q[4t + j] with q[4t + j] = phase[j % 4][t + j / 4].
        for (xi_y, qr) in q.chunks_exact(ql).enumerate() {
            {
                let [f0, f1, f2, f3] = split_rows::<4>(phases, pl);
                for (quad, (a, (b, (c, d)))) in
                    qr.chunks_exact(4).zip(f0.iter_mut().zip(f1.iter_mut().zip(f2.iter_mut().zip(f3.iter_mut()))))
                {
                    (*a, *b, *c, *d) = (quad[0], quad[1], quad[2], quad[3]);
                }
            }
            let ph = |j: usize| &phases[(j % 4) * pl + j / 4..(j % 4) * pl + j / 4 + tw];
            let (p0, p1, p2, p3, p4, p5) = (ph(0), ph(1), ph(2), ph(3), ph(4), ph(5));
            let base = r * tw;
            let outs: [&mut [f32]; 6] = split6(vc, xi_y * 6, tb, base, tw);
            for t in 0..tw {
                let o = bt([p0[t], p1[t], p2[t], p3[t], p4[t], p5[t]]);
                for k in 0..6 {
                    outs[k][t] = o[k];
                }
            }
        }
    }
}
}

/// The first `N` rows (of length `len`) of `v`, as disjoint slices.
#[inline(always)]
fn split_rows<const N: usize>(v: &mut [f32], len: usize) -> [&mut [f32]; N] {
    let mut rest = v;
    std::array::from_fn(|_| {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
        rest = tail;
        head
    })
}

/// Six disjoint `len`-long windows `v[(first + k)·stride + base ..]`, k = 0..6.
#[inline(always)]
fn split6(v: &mut [f32], first: usize, stride: usize, base: usize, len: usize) -> [&mut [f32]; 6] {
    let (_, rest) = v.split_at_mut(first * stride);
    let mut rest = rest;
    std::array::from_fn(|_| {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(stride);
        rest = tail;
        &mut head[base..base + len]
    })
}

multiversion! {
/// Output transform of output channel `o` for tile rows `ty0..ty1`: reads `mm[(ξ·m + o)·tb + t]`,
/// writes rows `4·ty0 ..` of `plane` (+ `bias`, ReLU if `relu`).
fn output_transform(
    mm: &[f32],
    m: usize,
    o: usize,
    tb: usize,
    h: usize,
    w: usize,
    tw: usize,
    ty0: usize,
    ty1: usize,
    bias: f32,
    relu: bool,
    plane: &mut [f32],
    scratch: &mut [f32],
) {
    // s[ξy][b][t] (6·4 rows of tw), then out[a][b][t] (16 rows of tw).
    let (s, out) = scratch.split_at_mut(24 * tw);
    for ty in ty0..ty1 {
        let base = (ty - ty0) * tw;
        let mrow = |xi: usize| &mm[(xi * m + o) * tb + base..(xi * m + o) * tb + base + tw];
        for xi_y in 0..6 {
            let r: [&[f32]; 6] = std::array::from_fn(|xx| mrow(xi_y * 6 + xx));
            let (s0, rest) = s[xi_y * 4 * tw..(xi_y + 1) * 4 * tw].split_at_mut(tw);
            let (s1, rest) = rest.split_at_mut(tw);
            let (s2, s3) = rest.split_at_mut(tw);
            for t in 0..tw {
                let v = at([r[0][t], r[1][t], r[2][t], r[3][t], r[4][t], r[5][t]]);
                (s0[t], s1[t], s2[t], s3[t]) = (v[0], v[1], v[2], v[3]);
            }
        }
        for b in 0..4 {
            let sr = |xi_y: usize| &s[(xi_y * 4 + b) * tw..(xi_y * 4 + b + 1) * tw];
            let r: [&[f32]; 6] = std::array::from_fn(sr);
            let (o0, rest) = out[b * 4 * tw..(b + 1) * 4 * tw].split_at_mut(tw);
            let (o1, rest) = rest.split_at_mut(tw);
            let (o2, o3) = rest.split_at_mut(tw);
            for t in 0..tw {
                let v = at([r[0][t], r[1][t], r[2][t], r[3][t], r[4][t], r[5][t]]);
                let f = |x: f32| {
                    let y = x + bias;
                    if relu && y < 0.0 { 0.0 } else { y }
                };
                (o0[t], o1[t], o2[t], o3[t]) = (f(v[0]), f(v[1]), f(v[2]), f(v[3]));
            }
        }
        // Interleave: pixel (4ty + a, 4t + b) = out[b][a][t].
        for a in 0..4 {
            let y = 4 * ty + a;
            if y >= h {
                break;
            }
            let dst = &mut plane[y * w..(y + 1) * w];
            let col = |b: usize| &out[(b * 4 + a) * tw..(b * 4 + a + 1) * tw];
            let (c0, c1, c2, c3) = (col(0), col(1), col(2), col(3));
            let full = w / 4;
            for (t, px) in dst.chunks_exact_mut(4).enumerate() {
                px.copy_from_slice(&[c0[t], c1[t], c2[t], c3[t]]);
            }
            for (b, p) in dst[4 * full..].iter_mut().enumerate() {
                *p = out[(b * 4 + a) * tw + full];
            }
        }
    }
}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::{supported_simd_levels, with_simd_level};

    /// Values in [-1, 1) with every mantissa bit in play (xorshift).
    fn data(n: usize, mut s: u32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// The claim of `simd.rs`: the `multiversion!` transforms give the same bits at every level
    /// the CPU supports (no FMA contraction), on partial tiles and more than one tile row.
    #[test]
    fn transforms_give_the_same_bits_at_every_level() {
        for &(h, w) in &[(1, 1), (5, 7), (13, 37), (16, 64)] {
            let (th, tw) = (tiles(h), tiles(w));
            let plane = data(h * w, 7 + h as u32);
            let m = 3;
            let mm = data(NXI * m * th * tw, 11 + w as u32);
            let run = |level| {
                with_simd_level(level, || {
                    let mut vc = vec![f32::NAN; NXI * th * tw];
                    let mut scratch = vec![f32::NAN; 6 * 4 * (tw + 1) + 4 * (tw + 1) + w];
                    input_transform(&plane, h, w, tw, 0, th, &mut vc, &mut scratch);
                    let mut out = vec![f32::NAN; h * w];
                    let mut scratch = vec![f32::NAN; 6 * 4 * tw + 16 * tw];
                    output_transform(
                        &mm,
                        m,
                        1,
                        th * tw,
                        h,
                        w,
                        tw,
                        0,
                        th,
                        0.25,
                        false,
                        &mut out,
                        &mut scratch,
                    );
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    (bits(&vc), bits(&out))
                })
            };
            let levels = supported_simd_levels();
            let first = run(levels[0]);
            for &level in &levels[1..] {
                assert!(run(level) == first, "{h}x{w}: {level:?} differs from {:?}", levels[0]);
            }
        }
    }
}
