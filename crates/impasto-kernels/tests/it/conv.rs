//! `Conv3x3` forward and backward_input against the naive twins at every SIMD level, the adjoint
//! identity, finite differences, tiling edge cases and proptest shapes.

use impasto_kernels::{Conv3x3, naive};
use proptest::prelude::*;

use crate::common::{Rng, assert_close, assert_close_f64, dot_f64, each_level, fd_grad, pool, to_f64};

struct Case {
    conv: Conv3x3,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

fn make(c_in: usize, c_out: usize, seed: u64) -> Case {
    let mut rng = Rng::new(seed);
    let weight = rng.vec(c_out * c_in * 9);
    let bias = rng.vec(c_out);
    Case { conv: Conv3x3::new(c_in, c_out, weight.clone(), bias.clone()), weight, bias }
}

/// The forward pass at every SIMD level (the weights laid out at that level) against the naive twin.
fn check_forward(c_in: usize, c_out: usize, h: usize, w: usize, relu: bool, seed: u64) {
    let Case { weight, bias, .. } = make(c_in, c_out, seed);
    let x = Rng::new(seed ^ 0xABCD).vec(c_in * h * w);
    let mut want = vec![0.0; c_out * h * w];
    naive::conv3x3_forward(&x, c_in, c_out, h, w, &weight, &bias, relu, &mut want);
    each_level(|level| {
        let conv = Conv3x3::new(c_in, c_out, weight.clone(), bias.clone());
        let mut got = vec![f32::NAN; c_out * h * w];
        conv.forward(&x, h, w, relu, &mut got);
        assert_close(
            &got,
            &want,
            1e-5,
            &format!("conv forward {level:?} {c_in}->{c_out} {h}x{w} relu={relu}"),
        );
        if relu {
            assert!(got.iter().all(|&v| v >= 0.0));
        }
    });
}

/// The backward pass at every SIMD level against the naive twin.
fn check_backward(c_in: usize, c_out: usize, h: usize, w: usize, seed: u64) {
    let Case { weight, bias, .. } = make(c_in, c_out, seed);
    let dy = Rng::new(seed ^ 0x1234).vec(c_out * h * w);
    let mut want = vec![0.0; c_in * h * w];
    naive::conv3x3_backward_input(&dy, c_in, c_out, h, w, &weight, &mut want);
    each_level(|level| {
        let conv = Conv3x3::new(c_in, c_out, weight.clone(), bias.clone());
        let mut got = vec![f32::NAN; c_in * h * w];
        conv.backward_input(&dy, h, w, &mut got);
        assert_close(&got, &want, 1e-5, &format!("conv backward {level:?} {c_in}->{c_out} {h}x{w}"));
    });
}

/// (c_in, c_out, h, w): a spread over {1, 3, 5, 63, 65}, non-square, h or w = 1.
const SPREAD: [(usize, usize, usize, usize); 14] = [
    (1, 1, 1, 1),
    (1, 3, 5, 3),
    (3, 5, 1, 7),
    (5, 3, 7, 1),
    (3, 1, 63, 5),
    (1, 63, 5, 65),
    (63, 1, 3, 5),
    (65, 3, 5, 5),
    (3, 65, 65, 1),
    (5, 5, 63, 65),
    (63, 65, 5, 3),
    (65, 63, 1, 65),
    (3, 5, 65, 63),
    (64, 64, 9, 11),
];

#[test]
fn forward_matches_naive() {
    for (idx, &(ci, co, h, w)) in SPREAD.iter().enumerate() {
        check_forward(ci, co, h, w, idx % 2 == 0, idx as u64);
    }
}

#[test]
fn backward_matches_naive() {
    for (idx, &(ci, co, h, w)) in SPREAD.iter().enumerate() {
        check_backward(ci, co, h, w, 100 + idx as u64);
    }
}

#[test]
fn multi_tile_images_match_naive() {
    // Tiles end mid-row (63*65 pixels, k = 9*65+1) and within a single long
    // row (1×5000, k = 9*64+1); 512 input channels give many small tiles. Backward with fewer
    // input than output channels runs GEMM-then-col2im over tiles of whole rows (200×700 with
    // 3 channels: four row tiles whose taps overlap); with more, im2col tiles (65 ← 64).
    pool(2).install(|| {
        check_backward(3, 8, 200, 700, 7);
        check_backward(65, 64, 63, 65, 8);
        check_forward(65, 3, 63, 65, true, 1);
        check_backward(3, 65, 63, 65, 2);
        check_forward(64, 2, 1, 5000, false, 3);
        check_backward(2, 64, 1, 5000, 4);
        check_forward(512, 2, 20, 20, true, 5);
        check_backward(2, 512, 20, 20, 6);
    });
}

#[test]
fn adjoint_identity() {
    // Without bias the conv is linear: <conv(x), dy> == <x, backward(dy)>.
    for &(ci, co, h, w) in &[(3, 5, 7, 4), (65, 63, 5, 3), (5, 3, 1, 9), (64, 64, 16, 16)] {
        let mut rng = Rng::new((ci * 1000 + co) as u64);
        let weight = rng.vec(co * ci * 9);
        let conv = Conv3x3::new(ci, co, weight, vec![0.0; co]);
        let x = rng.vec(ci * h * w);
        let dy = rng.vec(co * h * w);
        let mut y = vec![0.0; co * h * w];
        conv.forward(&x, h, w, false, &mut y);
        let mut dx = vec![0.0; ci * h * w];
        conv.backward_input(&dy, h, w, &mut dx);
        let lhs = dot_f64(&to_f64(&y), &to_f64(&dy));
        let rhs = dot_f64(&to_f64(&x), &to_f64(&dx));
        let scale = (to_f64(&y).iter().map(|v| v * v).sum::<f64>()
            * to_f64(&dy).iter().map(|v| v * v).sum::<f64>())
        .sqrt();
        assert!((lhs - rhs).abs() <= 1e-5 * scale, "adjoint {ci}->{co} {h}x{w}: {lhs} vs {rhs}");
    }
}

#[test]
fn backward_matches_finite_differences() {
    // L(x) = <r, conv(x)> in f64 via the naive twin; dL/dx = backward(r).
    let (ci, co, h, w) = (3, 4, 5, 6);
    let mut rng = Rng::new(77);
    let weight = rng.vec(co * ci * 9);
    let bias = rng.vec(co);
    let x = rng.vec_f64(ci * h * w);
    let r = rng.vec(co * h * w);
    let (w64, b64, r64) = (to_f64(&weight), to_f64(&bias), to_f64(&r));
    let fd = fd_grad(&x, 1e-3, |xp| {
        let mut y = vec![0.0f64; co * h * w];
        naive::conv3x3_forward(xp, ci, co, h, w, &w64, &b64, false, &mut y);
        dot_f64(&r64, &y)
    });
    let conv = Conv3x3::new(ci, co, weight.clone(), bias);
    let mut dx = vec![0.0f32; ci * h * w];
    conv.backward_input(&r, h, w, &mut dx);
    assert_close_f64(&to_f64(&dx), &fd, 1e-5, "conv backward vs FD");
    // And the naive backward in f64 agrees to near machine precision.
    let mut dx64 = vec![0.0f64; ci * h * w];
    naive::conv3x3_backward_input(&r64, ci, co, h, w, &w64, &mut dx64);
    assert_close_f64(&dx64, &fd, 1e-9, "naive conv backward vs FD");
}

#[test]
fn accessors_and_debug() {
    let conv = make(3, 5, 0).conv;
    assert_eq!((conv.c_in(), conv.c_out()), (3, 5));
    assert!(format!("{conv:?}").contains("c_out: 5"));
}

#[test]
#[should_panic(expected = "weight")]
fn new_rejects_wrong_weight_length() {
    let _ = Conv3x3::new(2, 3, vec![0.0; 2 * 3 * 9 - 1], vec![0.0; 3]);
}

#[test]
#[should_panic(expected = "bias")]
fn new_rejects_wrong_bias_length() {
    let _ = Conv3x3::new(2, 3, vec![0.0; 2 * 3 * 9], vec![0.0; 2]);
}

#[test]
#[should_panic(expected = "y must be")]
fn forward_rejects_wrong_output_length() {
    let conv = make(2, 3, 0).conv;
    let mut y = vec![0.0; 3 * 4 * 4 + 1];
    conv.forward(&[0.0; 2 * 4 * 4], 4, 4, false, &mut y);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn prop_forward_backward_match_naive(
        c_in in 1usize..7,
        c_out in 1usize..7,
        h in 1usize..10,
        w in 1usize..10,
        relu: bool,
        seed: u64,
    ) {
        check_forward(c_in, c_out, h, w, relu, seed);
        check_backward(c_in, c_out, h, w, seed);
    }
}
