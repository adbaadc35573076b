//! The optimisers' vector arithmetic over the flat pixel buffer: dot products and `y += a·x` split
//! into fixed chunks run in parallel, with sums added in a fixed order, so the result does not
//! depend on the thread count.
//!
//! An L-BFGS step reads every correction pair twice (four passes over 100 image-sized vectors at
//! 512 px, about 1.3 GB); a serial f64 sum runs at one add per add-latency and took 0.25 s of a
//! 1.5 s iteration there (`impasto bench --layers`).

use rayon::prelude::*;

/// Values per chunk: the unit of parallel work and of the summation order (128 KiB of f32).
pub(super) const CHUNK: usize = 1 << 15;
/// Independent accumulators within a chunk (breaks the add-latency chain; vectorises).
const LANES: usize = 8;

/// `Σ a·b` accumulated in f64, the same bits for any thread count.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "dot of vectors of different lengths");
    let partial: Vec<f64> =
        a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)).map(|(a, b)| dot_chunk(a, b)).collect();
    partial.iter().sum()
}

/// One chunk's share of [`dot`]: eight f64 lanes, then their sum and the tail's.
pub(super) fn dot_chunk(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let (a8, b8) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f64 = a8.remainder().iter().zip(b8.remainder()).map(|(&x, &y)| x as f64 * y as f64).sum();
    for (x, y) in a8.zip(b8) {
        for l in 0..LANES {
            acc[l] += x[l] as f64 * y[l] as f64;
        }
    }
    acc.iter().sum::<f64>() + tail
}

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

    fn naive_dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    #[test]
    fn dot_matches_the_serial_sum_on_odd_lengths() {
        for n in [0, 1, 3, 7, 8, 9, 63, 65, CHUNK - 1, CHUNK, CHUNK + 5, 3 * CHUNK + 17] {
            let (a, b) = (values(n, 1), values(n, 2));
            let (fast, naive) = (dot(&a, &b), naive_dot(&a, &b));
            assert!(
                (fast - naive).abs() <= 1e-12 * (1.0 + naive.abs()) * n.max(1) as f64,
                "n {n}: {fast} vs {naive}"
            );
        }
    }

    #[test]
    fn dot_gives_the_same_bits_on_one_thread_and_on_four() {
        let (a, b) = (values(5 * CHUNK + 3, 3), values(5 * CHUNK + 3, 4));
        let on = |t| rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap().install(|| dot(&a, &b));
        assert_eq!(on(1).to_bits(), on(4).to_bits());
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
