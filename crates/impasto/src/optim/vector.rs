//! The optimisers' vector arithmetic over the flat pixel buffer: dot products (`impasto_kernels::dot`,
//! which a GPU history's host side uses too) and `y += a·x` split into fixed chunks run in parallel,
//! with sums added in a fixed order, so the result does not depend on the thread count.
//!
//! An L-BFGS step reads every correction pair twice (four passes over 100 image-sized vectors at
//! 512 px, about 1.3 GB); a serial f64 sum runs at one add per add-latency and took 0.25 s of a
//! 1.5 s iteration there (`impasto bench --layers`).

use rayon::prelude::*;

pub(crate) use impasto_kernels::dot::dot;
pub(super) use impasto_kernels::dot::{DOT_CHUNK as CHUNK, dot_chunk};

/// `y += a·x`, elementwise.
pub(crate) fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "axpy of vectors of different lengths");
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| {
        for (yi, &xi) in y.iter_mut().zip(x) {
            *yi += a * xi;
        }
    });
}

/// `y *= a`, elementwise.
pub(crate) fn scale(a: f32, y: &mut [f32]) {
    y.par_chunks_mut(CHUNK).for_each(|y| y.iter_mut().for_each(|v| *v *= a));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    #[test]
    fn axpy_and_scale_match_the_elementwise_loop() {
        for n in [0, 1, 5, CHUNK + 1, 2 * CHUNK + 9] {
            let (x, y0) = (values(n, 5), values(n, 6));
            let mut y = y0.clone();
            axpy(-0.75, &x, &mut y);
            scale(1.5, &mut y);
            let want: Vec<f32> = y0.iter().zip(&x).map(|(&yi, &xi)| (yi + -0.75 * xi) * 1.5).collect();
            assert_eq!(y, want, "n {n}");
        }
    }
}
