//! SIMD levels: `with_simd_level` caps the level on its thread and restores it, the cap reaches the
//! parallel tasks a kernel spawns, and which results are bitwise the same across levels (the
//! Winograd transforms, `winograd.rs`'s unit test; everything below AVX-512) and which are only
//! close (the GEMM: the AVX-512F micro-kernel against the `gemm` crate).

use impasto_kernels::{
    Conv3x3, ConvAlgo, SimdLevel, gram, sgemm, simd_level, supported_simd_levels, with_simd_level,
};

use crate::common::{Rng, assert_close, pool};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn a_cap_applies_to_its_thread_until_it_returns() {
    let levels = supported_simd_levels();
    let best = levels[0];
    assert_eq!(levels.last(), Some(&SimdLevel::Portable));
    assert_eq!(simd_level(), best);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
    {
        assert_eq!(levels, SimdLevel::ALL);
    }
    for level in SimdLevel::ALL {
        assert_eq!(SimdLevel::from_name(level.name()), Some(level));
        // Never above what the CPU supports.
        assert_eq!(with_simd_level(level, simd_level), level.max(best));
    }
    with_simd_level(SimdLevel::Portable, || {
        assert_eq!(with_simd_level(SimdLevel::Avx2Fma, simd_level), SimdLevel::Avx2Fma.max(best));
        assert_eq!(simd_level(), SimdLevel::Portable);
        // Another thread keeps the CPU's best.
        assert_eq!(std::thread::spawn(simd_level).join().unwrap(), best);
    });
    let unwound = std::panic::catch_unwind(|| with_simd_level(SimdLevel::Portable, || panic!("inside")));
    assert!(unwound.is_err());
    assert_eq!(simd_level(), best, "the cap outlived a panic");
}

/// Winograd convolution (forward and backward) and a chunked Gram matrix at `level` on `threads`.
/// 700 input channels make the Winograd GEMMs deeper than one micro-kernel depth block (640), and
/// the Gram chunks are 8192 deep, so the AVX-512F micro-kernel and the `gemm` crate round them
/// differently.
fn parallel_kernels(level: SimdLevel, threads: usize) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let (ci, co, h, w) = (700, 16, 13, 11);
    let mut rng = Rng::new(9);
    let (weight, bias) = (rng.vec(co * ci * 9), rng.vec(co));
    let x = rng.vec(ci * h * w);
    let (c, n) = (32, 5 * 8192 + 3);
    let f = rng.vec(c * n);
    pool(threads).install(|| {
        with_simd_level(level, || {
            let conv = Conv3x3::new(ci, co, weight, bias);
            let mut y = vec![0.0; co * h * w];
            conv.forward_with(ConvAlgo::Winograd, &x, h, w, true, &mut y);
            let mut dx = vec![0.0; ci * h * w];
            conv.backward_input_with(ConvAlgo::Winograd, &y, h, w, &mut dx);
            let mut g = vec![0.0; c * c];
            gram(&f, c, n, 1.0, &mut g);
            (bits(&y), bits(&dx), bits(&g))
        })
    })
}

/// These kernels' results do not depend on the thread count at a fixed level. If a capped level
/// did not reach the pool's other threads, their share would run at the CPU's best level and, on
/// an AVX-512 CPU, round differently (checked below), so the results would differ.
///
/// Across levels: the Winograd transforms give the same bits at every level, and below AVX-512 the
/// GEMM is the `gemm` crate's whatever the level, so AVX2+FMA and portable agree bit for bit; the
/// AVX-512 level agrees with them to f32 rounding only.
#[test]
fn a_capped_level_reaches_the_parallel_tasks_and_levels_agree() {
    let mut runs = Vec::new();
    for level in supported_simd_levels() {
        let one = parallel_kernels(level, 1);
        assert!(parallel_kernels(level, 3) == one, "{level:?}: 3 threads differ from 1 thread");
        runs.push((level, one));
    }
    let below: Vec<_> = runs.iter().filter(|(l, _)| *l != SimdLevel::Avx512).collect();
    for pair in below.windows(2) {
        assert!(pair[0].1 == pair[1].1, "{:?} and {:?} differ", pair[0].0, pair[1].0);
    }
    let floats = |b: &[u32]| b.iter().map(|&x| f32::from_bits(x)).collect::<Vec<_>>();
    let (first, r0) = &runs[0];
    for (level, r) in &runs[1..] {
        for (x, y, what) in [(&r0.0, &r.0, "forward"), (&r0.1, &r.1, "backward"), (&r0.2, &r.2, "gram")] {
            assert_close(&floats(y), &floats(x), 2e-5, &format!("{what}: {level:?} vs {first:?}"));
            if *first == SimdLevel::Avx512 {
                assert!(x != y, "{what}: {level:?} gave the micro-kernel's bits");
            }
        }
    }
}

/// One sgemm at every level: each matches the others to rounding; levels below AVX-512 give the
/// same bits (the same `gemm` crate kernel); where the CPU has AVX-512F, the micro-kernel's bits
/// differ from the `gemm` crate's (for most shapes, small ones too), which is why the crate does
/// not claim identical bits across levels.
#[test]
fn sgemm_levels_agree_to_rounding() {
    let (m, n, k) = (15, 33, 2);
    let mut rng = Rng::new(11);
    let (a, b) = (rng.vec(m * k), rng.vec(k * n));
    let run = |level| {
        let mut c = vec![0.0; m * n];
        with_simd_level(level, || sgemm(m, n, k, 1.0, &a, k, &b, n, false, &mut c, n));
        c
    };
    let levels = supported_simd_levels();
    let first = run(levels[0]);
    for &level in &levels[1..] {
        let c = run(level);
        assert_close(&c, &first, 1e-5, &format!("{level:?} vs {:?}", levels[0]));
        if levels[0] == SimdLevel::Avx512 {
            assert!(bits(&c) != bits(&first), "{level:?} gave the micro-kernel's bits");
        }
    }
    let below: Vec<_> = levels.iter().filter(|&&l| l != SimdLevel::Avx512).map(|&l| bits(&run(l))).collect();
    assert!(below.windows(2).all(|p| p[0] == p[1]), "levels below AVX-512 differ");
}

/// What max pooling's tie rule relies on (the first conv before a max pool runs on im2col): two
/// pixels with bit-identical 3×3 neighbourhoods get bit-identical outputs at every level, wherever
/// they fall in the image (on a 64×64 photo with flat regions, 770 pool windows tie this way).
#[test]
fn im2col_gives_identical_neighbourhoods_identical_outputs_at_every_level() {
    let mut rng = Rng::new(77);
    let (c_in, c_out, h, w) = (64, 64, 64, 64);
    let conv = Conv3x3::new(c_in, c_out, rng.vec(c_out * c_in * 9), rng.vec(c_out));
    // Flat: every channel constant over the image, so every interior pixel's neighbourhood is the same.
    let x: Vec<f32> = (0..c_in).flat_map(|_| std::iter::repeat_n(rng.uniform(), h * w)).collect();
    pool(2).install(|| {
        crate::common::each_level(|level| {
            let mut y = vec![0.0; c_out * h * w];
            conv.forward_with(ConvAlgo::Im2col, &x, h, w, true, &mut y);
            for (o, plane) in y.chunks_exact(h * w).enumerate() {
                let first = plane[w + 1];
                let differ = (1..h - 1)
                    .flat_map(|i| (1..w - 1).map(move |j| (i, j)))
                    .filter(|&(i, j)| plane[i * w + j].to_bits() != first.to_bits())
                    .count();
                assert_eq!(differ, 0, "{level:?}: channel {o}: {differ} interior pixels differ from (1, 1)");
            }
        });
    });
}
