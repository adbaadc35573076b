//! Gram matrix and its backward against the naive twins at every SIMD level, symmetry, finite
//! differences and proptest shapes.

use impasto_kernels::{gram, gram_backward, naive};
use proptest::prelude::*;

use crate::common::{Rng, SIZES, assert_close, assert_close_f64, dot_f64, each_level, fd_grad, pool, to_f64};

fn check_gram(c: usize, n: usize, scale: f32, seed: u64) {
    let f = Rng::new(seed).vec(c * n);
    let mut want = vec![0.0; c * c];
    naive::gram(&f, c, n, scale, &mut want);
    each_level(|level| {
        let mut g = vec![f32::NAN; c * c];
        gram(&f, c, n, scale, &mut g);
        assert_close(&g, &want, 1e-5, &format!("gram {level:?} c={c} n={n}"));
        for i in 0..c {
            for j in 0..c {
                assert_eq!(g[i * c + j].to_bits(), g[j * c + i].to_bits(), "symmetry");
            }
        }
    });
}

fn check_backward(c: usize, n: usize, scale: f32, accumulate: bool, seed: u64) {
    let mut rng = Rng::new(seed);
    let f = rng.vec(c * n);
    let dg = rng.vec(c * c);
    let df0 = rng.vec(c * n);
    let mut want = df0.clone();
    naive::gram_backward(&f, c, n, &dg, scale, accumulate, &mut want);
    each_level(|level| {
        let mut got = df0.clone();
        gram_backward(&f, c, n, &dg, scale, accumulate, &mut got);
        assert_close(&got, &want, 1e-5, &format!("gram backward {level:?} c={c} n={n} acc={accumulate}"));
    });
}

#[test]
fn matches_naive_on_spread() {
    let mut seed = 0;
    for &c in &SIZES {
        for &n in &[1usize, 3, 5, 63, 65, 63 * 65] {
            seed += 1;
            check_gram(c, n, 0.5, seed);
            check_backward(c, n, 0.25, seed % 2 == 0, seed);
        }
    }
}

#[test]
fn chunked_reduction_matches_naive() {
    // c <= 128 and n spanning several 8192-column chunks (with a ragged tail).
    pool(2).install(|| {
        check_gram(5, 20_001, 1.0 / 20_001.0, 1);
        check_gram(64, 3 * 8192 + 17, 1e-3, 2);
        check_gram(130, 17_000, 1e-3, 3);
        check_backward(64, 3 * 8192 + 17, 1e-3, true, 4);
    });
}

#[test]
fn chunked_reduction_independent_of_thread_count() {
    let (c, n) = (32, 5 * 8192 + 3);
    let f = Rng::new(5).vec(c * n);
    let run = |threads| {
        pool(threads).install(|| {
            let mut g = vec![0.0; c * c];
            gram(&f, c, n, 1.0, &mut g);
            g
        })
    };
    let (a, b) = (run(1), run(2));
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
}

#[test]
fn empty_inputs() {
    let mut g = vec![f32::NAN; 9];
    gram(&[], 3, 0, 1.0, &mut g);
    assert_eq!(g, vec![0.0; 9]);
    gram(&[], 0, 10, 1.0, &mut []);
}

#[test]
fn backward_matches_finite_differences() {
    // L(F) = <R, scale·F·Fᵀ> in f64 via the naive twin; dL/dF = gram_backward(R).
    let (c, n, scale) = (4, 7, 0.3f32);
    let mut rng = Rng::new(21);
    let f = rng.vec_f64(c * n);
    let r = rng.vec(c * c);
    let r64 = to_f64(&r);
    let fd = fd_grad(&f, 1e-3, |fp| {
        let mut g = vec![0.0f64; c * c];
        naive::gram(fp, c, n, f64::from(scale), &mut g);
        dot_f64(&r64, &g)
    });
    let f32v: Vec<f32> = f.iter().map(|&v| v as f32).collect();
    let mut df = vec![0.0f32; c * n];
    gram_backward(&f32v, c, n, &r, scale, false, &mut df);
    assert_close_f64(&to_f64(&df), &fd, 1e-5, "gram backward vs FD");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prop_gram_matches_naive(c in 1usize..9, n in 1usize..40, acc: bool, seed: u64) {
        check_gram(c, n, 0.7, seed);
        check_backward(c, n, 0.7, acc, seed);
    }
}
