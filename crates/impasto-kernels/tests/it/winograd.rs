//! Winograd F(4×4, 3×3) (`ConvAlgo::Winograd`) against the naive twin at every SIMD level: odd sizes (partial tiles),
//! several blocks, forward with bias/ReLU, backward, thread-count independence and proptest shapes.

use impasto_kernels::{Conv3x3, ConvAlgo, naive};
use proptest::prelude::*;

use crate::common::{Rng, each_level, max_abs, pool};

/// Winograd's bound: `|got − want| ≤ REL · max|want|`; F(4×4) transforms amplify f32 rounding.
const REL: f32 = 2e-5;

/// max |got − want| / max |want|.
fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    let e = got.iter().zip(want).fold(0.0f32, |m, (g, w)| m.max((g - w).abs()));
    e / max_abs(want).max(1e-30)
}

/// Winograd forward and backward at every SIMD level (weights laid out at that level) against the
/// naive twins; returns the worst relative errors.
fn check(c_in: usize, c_out: usize, h: usize, w: usize, relu: bool, seed: u64) -> (f32, f32) {
    let mut rng = Rng::new(seed);
    let weight = rng.vec(c_out * c_in * 9);
    let bias = rng.vec(c_out);
    let x = rng.vec(c_in * h * w);
    let dy = rng.vec(c_out * h * w);
    let mut want_y = vec![0.0; c_out * h * w];
    naive::conv3x3_forward(&x, c_in, c_out, h, w, &weight, &bias, relu, &mut want_y);
    let mut want_dx = vec![0.0; c_in * h * w];
    naive::conv3x3_backward_input(&dy, c_in, c_out, h, w, &weight, &mut want_dx);
    let (mut worst_f, mut worst_b) = (0.0f32, 0.0f32);
    each_level(|level| {
        let conv = Conv3x3::new(c_in, c_out, weight.clone(), bias.clone());
        let mut got = vec![f32::NAN; c_out * h * w];
        conv.forward_with(ConvAlgo::Winograd, &x, h, w, relu, &mut got);
        let ef = rel_err(&got, &want_y);
        assert!(ef <= REL, "winograd forward {level:?} {c_in}->{c_out} {h}x{w} relu={relu}: rel err {ef:e}");
        if relu {
            assert!(got.iter().all(|&v| v >= 0.0));
        }
        let mut got = vec![f32::NAN; c_in * h * w];
        conv.backward_input_with(ConvAlgo::Winograd, &dy, h, w, &mut got);
        let eb = rel_err(&got, &want_dx);
        assert!(eb <= REL, "winograd backward {level:?} {c_in}->{c_out} {h}x{w}: rel err {eb:e}");
        (worst_f, worst_b) = (worst_f.max(ef), worst_b.max(eb));
    });
    (worst_f, worst_b)
}

#[test]
fn winograd_matches_naive_on_odd_shapes() {
    for (idx, &(ci, co, h, w)) in [
        (1, 1, 1, 1),
        (3, 5, 7, 9),
        (5, 3, 4, 4),
        (16, 16, 13, 6),
        (64, 64, 9, 11),
        (65, 63, 17, 5),
        (3, 65, 1, 30),
    ]
    .iter()
    .enumerate()
    {
        check(ci, co, h, w, idx % 2 == 0, idx as u64);
    }
}

#[test]
fn winograd_matches_naive_at_vgg_depths() {
    // Many blocks (64 channels over 96² tiles past the scratch budget) and a deep 512-channel layer.
    let (ef, eb) = pool(2).install(|| check(64, 64, 130, 190, true, 7));
    assert!(ef.max(eb) <= REL);
    pool(2).install(|| check(512, 256, 12, 10, false, 8));
}

#[test]
fn winograd_is_thread_count_independent() {
    let (ci, co, h, w) = (32, 48, 37, 45);
    let mut rng = Rng::new(9);
    let conv = Conv3x3::new(ci, co, rng.vec(co * ci * 9), rng.vec(co));
    let x = rng.vec(ci * h * w);
    let run = |t: usize| {
        pool(t).install(|| {
            let mut y = vec![0.0; co * h * w];
            conv.forward_with(ConvAlgo::Winograd, &x, h, w, true, &mut y);
            let mut dx = vec![0.0; ci * h * w];
            conv.backward_input_with(ConvAlgo::Winograd, &y, h, w, &mut dx);
            (
                y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                dx.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            )
        })
    };
    let one = run(1);
    assert!(run(2) == one && run(3) == one, "winograd results depend on the thread count");
}

#[test]
fn auto_matches_im2col_closely() {
    let (ci, co, h, w) = (64, 64, 40, 24);
    let mut rng = Rng::new(10);
    let conv = Conv3x3::new(ci, co, rng.vec(co * ci * 9), rng.vec(co));
    let x = rng.vec(ci * h * w);
    let (mut a, mut b) = (vec![0.0; co * h * w], vec![0.0; co * h * w]);
    conv.forward_with(ConvAlgo::Auto, &x, h, w, false, &mut a);
    conv.forward_with(ConvAlgo::Im2col, &x, h, w, false, &mut b);
    assert!(rel_err(&a, &b) <= REL);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn prop_winograd_matches_naive(
        c_in in 1usize..20,
        c_out in 1usize..20,
        h in 1usize..23,
        w in 1usize..23,
        relu: bool,
        seed: u64,
    ) {
        check(c_in, c_out, h, w, relu, seed);
    }
}
