//! `sgemm` against the naive GEMM at every SIMD level: shapes, strides, alpha, accumulate, edge
//! cases.

use impasto_kernels::{naive, sgemm};

use crate::common::{Rng, SIZES, assert_close, each_level, pool};

fn check(m: usize, n: usize, k: usize, pad: usize, alpha: f32, accumulate: bool, seed: u64) {
    let mut rng = Rng::new(seed);
    let (lda, ldb, ldc) = (k + pad, n + 2 * pad, n + pad);
    let a = rng.vec(m * lda);
    let b = rng.vec(k * ldb);
    let c0 = rng.vec(m * ldc);
    let mut want = c0.clone();
    naive::sgemm(m, n, k, alpha, &a, lda, &b, ldb, accumulate, &mut want, ldc);
    each_level(|level| {
        let mut got = c0.clone();
        sgemm(m, n, k, alpha, &a, lda, &b, ldb, accumulate, &mut got, ldc);
        let ctx = format!("sgemm {level:?} m={m} n={n} k={k} pad={pad} alpha={alpha} acc={accumulate}");
        assert_close(&got, &want, 1e-5, &ctx);
        // Padding columns of C are untouched.
        for i in 0..m {
            for j in n..ldc {
                assert_eq!(got[i * ldc + j].to_bits(), c0[i * ldc + j].to_bits(), "{ctx}");
            }
        }
    });
}

#[test]
fn matches_naive_on_spread_of_shapes() {
    let mut seed = 1;
    for &m in &SIZES {
        for &n in &SIZES {
            for &k in &[1, 5, 65] {
                seed += 1;
                check(m, n, k, (seed % 3) as usize, 0.75, seed % 2 == 0, seed);
            }
        }
    }
}

#[test]
fn large_shapes_on_two_threads() {
    pool(2).install(|| {
        check(64, 1000, 577, 0, 1.0, false, 7);
        check(65, 333, 130, 3, -0.5, true, 8);
        check(3, 4096, 576, 0, 1.0, false, 9);
    });
}

#[test]
fn overwrite_ignores_nan_in_c() {
    let (m, n, k) = (33, 47, 20);
    let mut rng = Rng::new(3);
    let a = rng.vec(m * k);
    let b = rng.vec(k * n);
    let mut c = vec![f32::NAN; m * n];
    sgemm(m, n, k, 1.0, &a, k, &b, n, false, &mut c, n);
    assert!(c.iter().all(|v| v.is_finite()));
}

#[test]
fn k_zero_overwrites_with_zero_or_keeps() {
    let mut c = vec![3.0f32; 6];
    sgemm(2, 3, 0, 1.0, &[], 0, &[], 3, true, &mut c, 3);
    assert_eq!(c, vec![3.0; 6]);
    sgemm(2, 3, 0, 1.0, &[], 0, &[], 3, false, &mut c, 3);
    assert_eq!(c, vec![0.0; 6]);
    // m = 0 / n = 0: nothing to do, empty slices accepted.
    sgemm(0, 3, 2, 1.0, &[], 2, &[0.0; 6], 3, false, &mut [], 3);
    sgemm(3, 0, 2, 1.0, &[0.0; 6], 2, &[], 0, false, &mut [], 0);
}

#[test]
#[should_panic(expected = "sgemm: B")]
fn short_b_panics() {
    let mut c = vec![0.0; 4];
    sgemm(2, 2, 2, 1.0, &[0.0; 4], 2, &[0.0; 3], 2, false, &mut c, 2);
}

#[test]
#[should_panic(expected = "lda")]
fn small_lda_panics() {
    let mut c = vec![0.0; 4];
    sgemm(2, 2, 3, 1.0, &[0.0; 6], 2, &[0.0; 6], 2, false, &mut c, 2);
}
