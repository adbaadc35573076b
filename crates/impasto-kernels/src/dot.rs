//! The f64 dot product of two f32 vectors that L-BFGS uses on the host and on a GPU's host side:
//! fixed chunks in parallel, eight f64 lanes within a chunk, the chunks' sums added in order, so
//! the result has the same bits whatever the thread count and whichever crate asks.
//!
//! A serial f64 sum runs at one add per add-latency: at 512 px (786,432 values) about 0.8 ms on
//! one core of the project's 2-vCPU machine, where eight lanes took about 0.14 ms on that core
//! (before the chunks run in parallel).

use rayon::prelude::*;

/// Values per chunk: the unit of parallel work and of the summation order (128 KiB of f32).
pub const DOT_CHUNK: usize = 1 << 15;
/// Independent accumulators within a chunk (breaks the add-latency chain; vectorises).
const LANES: usize = 8;

/// `Σ a·b` accumulated in f64, the same bits for any thread count.
pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "dot of vectors of different lengths");
    let partial: Vec<f64> =
        a.par_chunks(DOT_CHUNK).zip(b.par_chunks(DOT_CHUNK)).map(|(a, b)| dot_chunk(a, b)).collect();
    partial.iter().sum()
}

/// One chunk's share of [`dot`]: eight f64 lanes, then their sum and the tail's. Passes that make
/// other values chunk by chunk ([`DOT_CHUNK`]) call it to give [`dot`]'s bits.
pub fn dot_chunk(a: &[f32], b: &[f32]) -> f64 {
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
        for n in [0, 1, 3, 7, 8, 9, 63, 65, DOT_CHUNK - 1, DOT_CHUNK, DOT_CHUNK + 5, 3 * DOT_CHUNK + 17] {
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
        let (a, b) = (values(5 * DOT_CHUNK + 3, 3), values(5 * DOT_CHUNK + 3, 4));
        let on = |t| rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap().install(|| dot(&a, &b));
        assert_eq!(on(1).to_bits(), on(4).to_bits());
    }
}
