//! The AVX-512F GEMM micro-kernel (single-threaded `sgemm`) against the naive GEMM on odd sizes,
//! strides, alpha and accumulate, edge panels in M, N and K, and proptest shapes. The same checks
//! run at every SIMD level the CPU supports, so the `gemm` crate path below AVX-512 runs too.

use impasto_kernels::{SimdLevel, naive, sgemm, supported_simd_levels, with_simd_level};
use proptest::prelude::*;

use crate::common::{Rng, assert_close, pool};

/// One single-threaded sgemm at every SIMD level against the naive twin; also checks that C's
/// padding columns are untouched and that a rerun is bitwise identical.
fn check(m: usize, n: usize, k: usize, pads: (usize, usize, usize), alpha: f32, accumulate: bool, seed: u64) {
    let mut rng = Rng::new(seed);
    let (lda, ldb, ldc) = (k + pads.0, n + pads.1, n + pads.2);
    let a = rng.vec(m * lda);
    let b = rng.vec(k * ldb);
    let c0 = rng.vec(m * ldc);
    let mut want = c0.clone();
    naive::sgemm(m, n, k, alpha, &a, lda, &b, ldb, accumulate, &mut want, ldc);
    for level in supported_simd_levels() {
        let run = || {
            let mut got = c0.clone();
            pool(1).install(|| {
                with_simd_level(level, || sgemm(m, n, k, alpha, &a, lda, &b, ldb, accumulate, &mut got, ldc))
            });
            got
        };
        let got = run();
        let ctx = format!("{level:?} m={m} n={n} k={k} pads={pads:?} alpha={alpha} acc={accumulate}");
        // Relative to max|C|; the error grows like sqrt(k)·eps.
        assert_close(&got, &want, 2e-6 * (k as f32).sqrt().max(1.0), &ctx);
        for i in 0..m {
            for j in n..ldc {
                assert_eq!(
                    got[i * ldc + j].to_bits(),
                    c0[i * ldc + j].to_bits(),
                    "{ctx}: C padding ({i}, {j})"
                );
            }
        }
        let again = run();
        assert!(got.iter().zip(&again).all(|(x, y)| x.to_bits() == y.to_bits()), "{ctx}: not deterministic");
    }
}

const ODD: [usize; 9] = [1, 3, 5, 14, 17, 31, 33, 63, 65];

#[test]
fn odd_sizes_match_naive() {
    let mut seed = 100;
    for &m in &ODD {
        for &n in &ODD {
            for &k in &[1, 5, 17, 65] {
                seed += 1;
                let pads = ((seed % 3) as usize, (seed % 5) as usize, (seed % 2) as usize);
                check(m, n, k, pads, if seed % 2 == 0 { 1.0 } else { -0.75 }, seed % 3 == 0, seed);
            }
        }
    }
}

#[test]
fn depth_blocks_and_column_blocks_match_naive() {
    // k above one depth block (640) splits into equal blocks; n above one column block.
    check(29, 129, 1031, (1, 2, 3), 1.0, false, 1);
    check(15, 2100, 300, (0, 0, 0), 0.5, true, 2);
    check(129, 257, 513, (3, 0, 1), 1.0, true, 3);
    check(64, 640, 64, (0, 0, 0), 1.0, false, 4);
    // m above one row block (560 rows).
    check(601, 40, 70, (1, 1, 1), 1.0, true, 5);
}

#[test]
fn overwrite_ignores_nan_in_c() {
    let (m, n, k) = (17, 33, 9);
    let mut rng = Rng::new(5);
    let a = rng.vec(m * k);
    let b = rng.vec(k * n);
    let mut c = vec![f32::NAN; m * n];
    pool(1).install(|| sgemm(m, n, k, 1.0, &a, k, &b, n, false, &mut c, n));
    assert!(c.iter().all(|v| v.is_finite()));
}

#[test]
fn exact_on_small_integers() {
    // Products and sums of small integers are exact in f32 whatever the order.
    let (m, n, k) = (19, 37, 23);
    let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
    let b: Vec<f32> = (0..k * n).map(|i| ((i * 3) % 7) as f32 - 3.0).collect();
    let mut got = vec![0.0; m * n];
    let mut want = vec![0.0; m * n];
    pool(1).install(|| sgemm(m, n, k, 2.0, &a, k, &b, n, false, &mut got, n));
    naive::sgemm(m, n, k, 2.0, &a, k, &b, n, false, &mut want, n);
    assert_eq!(got, want);
}

/// Multi-threaded sgemm (column stripes when n ≥ m, row stripes otherwise) against the naive
/// GEMM at every level; on the micro-kernel path the result is bitwise the same for every thread
/// count.
#[test]
fn striped_parallel_matches_naive_and_one_thread() {
    for &(m, n, k, acc) in &[
        (3usize, 4099usize, 576usize, false),
        (64, 1000, 28, true),
        (300, 65, 129, false),
        (129, 257, 513, true),
    ] {
        let mut rng = Rng::new((m * n + k) as u64);
        let (lda, ldb, ldc) = (k + 1, n + 3, n + 2);
        let a = rng.vec(m * lda);
        let b = rng.vec(k * ldb);
        let c0 = rng.vec(m * ldc);
        let mut want = c0.clone();
        naive::sgemm(m, n, k, 0.5, &a, lda, &b, ldb, acc, &mut want, ldc);
        let ctx = format!("m={m} n={n} k={k}");
        for level in supported_simd_levels() {
            let run = |threads: usize| {
                let mut got = c0.clone();
                pool(threads).install(|| {
                    with_simd_level(level, || sgemm(m, n, k, 0.5, &a, lda, &b, ldb, acc, &mut got, ldc))
                });
                got
            };
            let one = run(1);
            assert_close(&one, &want, 2e-6 * (k as f32).sqrt(), &ctx);
            for threads in [2, 3] {
                let got = run(threads);
                assert_close(&got, &want, 2e-6 * (k as f32).sqrt(), &ctx);
                for i in 0..m {
                    for j in n..ldc {
                        assert_eq!(got[i * ldc + j].to_bits(), c0[i * ldc + j].to_bits(), "{ctx}: C padding");
                    }
                }
                if level == SimdLevel::Avx512 {
                    let same = got.iter().zip(&one).all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(same, "{ctx}: {threads} threads differ from 1 thread");
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_shapes_match_naive(
        m in 1usize..80,
        n in 1usize..90,
        k in 1usize..140,
        pads in (0usize..4, 0usize..4, 0usize..4),
        alpha in prop_oneof![Just(1.0f32), -2.0f32..2.0],
        accumulate: bool,
        seed: u64,
    ) {
        check(m, n, k, pads, alpha, accumulate, seed);
    }
}
