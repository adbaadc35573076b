//! Gram matrix `scale · F·Fᵀ` of a `c × n` feature map and its backward pass.

use gemm::Parallelism;
use rayon::prelude::*;

use crate::sgemm::{MatRef, auto_parallelism, gemm_strided, sgemm};
use crate::simd::{self, in_level};

/// Column-chunk length of the split reduction used when `c` is small.
const GRAM_CHUNK: usize = 8192;

/// Largest `c` for which the reduction over `n` is split into chunks (above
/// it, the c×c output alone gives the GEMM enough parallelism).
const GRAM_SPLIT_MAX_C: usize = 128;

/// `g` (`c×c`) = `scale · F·Fᵀ`, `F` = `f` as a `c×n` row-major matrix
/// (for a CHW feature map, `n = h·w`). The result is exactly symmetric.
///
/// For small `c` the sum over `n` is split into fixed-size chunks summed in a
/// fixed order, so the result depends only on the shape (not on the pool).
///
/// # Panics
/// If `f.len() != c·n` or `g.len() != c·c`.
pub fn gram(f: &[f32], c: usize, n: usize, scale: f32, g: &mut [f32]) {
    assert_eq!(f.len(), c * n, "gram: f must have c*n = {c}*{n} floats");
    assert_eq!(g.len(), c * c, "gram: g must have c*c = {c}*{c} floats");
    if c == 0 {
        return;
    }
    let f_rows = |j0: usize| MatRef { data: &f[j0..], rs: n, cs: 1 };
    let f_t = |j0: usize| MatRef { data: &f[j0..], rs: 1, cs: n };
    let n_chunks = n.div_ceil(GRAM_CHUNK);
    if c <= GRAM_SPLIT_MAX_C && n_chunks >= 2 {
        let mut partial = vec![0.0f32; n_chunks * c * c];
        let cap = simd::cap();
        partial.par_chunks_exact_mut(c * c).enumerate().for_each(|(t, part)| {
            let j0 = t * GRAM_CHUNK;
            let len = GRAM_CHUNK.min(n - j0);
            let (a, b) = (f_rows(j0), f_t(j0));
            in_level(cap, || gemm_strided(c, c, len, 1.0, a, b, false, part, c, Parallelism::None));
        });
        let (first, rest) = partial.split_at(c * c);
        g.copy_from_slice(first);
        for part in rest.chunks_exact(c * c) {
            for (a, &b) in g.iter_mut().zip(part) {
                *a += b;
            }
        }
        for v in g.iter_mut() {
            *v *= scale;
        }
    } else {
        gemm_strided(c, c, n, scale, f_rows(0), f_t(0), false, g, c, auto_parallelism(c, c, n));
    }
    // Mirror the upper triangle so that g == gᵀ bit for bit.
    for i in 0..c {
        for j in 0..i {
            g[i * c + j] = g[j * c + i];
        }
    }
}

/// Backward of [`gram`]: `df` (`c×n`) (+)= `scale · (dG + dGᵀ)·F`, with `dg`
/// the `c×c` upstream gradient. If `accumulate`, adds into `df`, else
/// overwrites it.
///
/// # Panics
/// If `f.len() != c·n`, `dg.len() != c·c` or `df.len() != c·n`.
pub fn gram_backward(
    f: &[f32],
    c: usize,
    n: usize,
    dg: &[f32],
    scale: f32,
    accumulate: bool,
    df: &mut [f32],
) {
    assert_eq!(f.len(), c * n, "gram_backward: f must have c*n = {c}*{n} floats");
    assert_eq!(dg.len(), c * c, "gram_backward: dg must have c*c = {c}*{c} floats");
    assert_eq!(df.len(), c * n, "gram_backward: df must have c*n = {c}*{n} floats");
    let mut sym = vec![0.0f32; c * c];
    for i in 0..c {
        for j in 0..c {
            sym[i * c + j] = dg[i * c + j] + dg[j * c + i];
        }
    }
    sgemm(c, n, c, scale, &sym, c, f, n, accumulate, df, n);
}
