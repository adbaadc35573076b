//! 2×2 max / average / L2 pooling against the naive twins, the max tie rule,
//! finite differences and proptest shapes.

use impasto_kernels::{
    avg_pool2x2_backward, avg_pool2x2_forward, l2_pool2x2_backward, l2_pool2x2_forward, max_pool2x2_backward,
    max_pool2x2_forward, naive,
};
use proptest::prelude::*;

use crate::common::{Rng, SIZES, assert_close, assert_close_f64, dot_f64, fd_grad, pool, to_f64};

fn check_all(c: usize, h: usize, w: usize, seed: u64) {
    let (oh, ow) = (h / 2, w / 2);
    let mut rng = Rng::new(seed);
    let x = rng.vec(c * h * w);
    let dy = rng.vec(c * oh * ow);
    let ctx = format!("pool c={c} {h}x{w}");

    let mut y = vec![f32::NAN; c * oh * ow];
    let mut yw = vec![0.0; c * oh * ow];
    max_pool2x2_forward(&x, c, h, w, &mut y);
    naive::max_pool2x2_forward(&x, c, h, w, &mut yw);
    assert_eq!(y, yw, "max forward {ctx}");

    let mut dx = vec![f32::NAN; c * h * w];
    let mut dxw = vec![0.0; c * h * w];
    max_pool2x2_backward(&x, c, h, w, &dy, &mut dx);
    naive::max_pool2x2_backward(&x, c, h, w, &dy, &mut dxw);
    assert_eq!(dx, dxw, "max backward {ctx}");

    avg_pool2x2_forward(&x, c, h, w, &mut y);
    naive::avg_pool2x2_forward(&x, c, h, w, &mut yw);
    assert_close(&y, &yw, 1e-6, &format!("avg forward {ctx}"));

    dx.fill(f32::NAN);
    avg_pool2x2_backward(c, h, w, &dy, &mut dx);
    naive::avg_pool2x2_backward(c, h, w, &dy, &mut dxw);
    assert_eq!(dx, dxw, "avg backward {ctx}");

    // L2 on ReLU-like input (about half zeros, so windows of zeros occur) and on signed input.
    let relu: Vec<f32> = x.iter().map(|v| v.max(0.0)).collect();
    for (input, kind) in [(&relu, "relu"), (&x, "signed")] {
        y.fill(f32::NAN);
        l2_pool2x2_forward(input, c, h, w, &mut y);
        naive::l2_pool2x2_forward(input, c, h, w, &mut yw);
        assert_close(&y, &yw, 1e-6, &format!("l2 forward {kind} {ctx}"));
        dx.fill(f32::NAN);
        l2_pool2x2_backward(input, c, h, w, &dy, &mut dx);
        naive::l2_pool2x2_backward(input, c, h, w, &dy, &mut dxw);
        assert_close(&dx, &dxw, 1e-5, &format!("l2 backward {kind} {ctx}"));
    }
}

#[test]
fn matches_naive_on_spread() {
    let mut seed = 0;
    for &c in &[1usize, 3, 65] {
        for &h in &SIZES {
            for &w in &SIZES {
                seed += 1;
                check_all(c, h, w, seed);
            }
        }
    }
}

#[test]
fn matches_naive_on_parallel_path() {
    pool(2).install(|| {
        check_all(64, 65, 63, 5);
        check_all(3, 256, 255, 6);
    });
}

#[test]
fn max_tie_goes_to_first_in_row_major_order() {
    // Windows (row-major): all equal; max at (0,1)=(1,0); max at (1,0)=(1,1).
    let cases: [([f32; 4], usize); 4] = [
        ([1.0, 1.0, 1.0, 1.0], 0),
        ([0.0, 2.0, 2.0, 1.0], 1),
        ([0.0, 1.0, 2.0, 2.0], 2),
        ([-3.0, -3.0, -5.0, -3.0], 0),
    ];
    for (win, want) in cases {
        let x = [win[0], win[1], win[2], win[3]];
        let mut dx = [f32::NAN; 4];
        max_pool2x2_backward(&x, 1, 2, 2, &[7.0], &mut dx);
        let mut expect = [0.0f32; 4];
        expect[want] = 7.0;
        assert_eq!(dx, expect, "window {win:?}");
        let mut dxn = [0.0f32; 4];
        naive::max_pool2x2_backward(&x, 1, 2, 2, &[7.0], &mut dxn);
        assert_eq!(dxn, expect, "naive, window {win:?}");
    }
}

#[test]
fn max_forward_propagates_nan() {
    let x = [1.0, f32::NAN, 3.0, 2.0];
    let mut y = [0.0f32];
    max_pool2x2_forward(&x, 1, 2, 2, &mut y);
    assert!(y[0].is_nan());
}

#[test]
fn max_backward_nan_rule_matches_naive() {
    // A NaN always takes over the sequential scan, so the last NaN wins.
    let n = f32::NAN;
    for win in [[1.0, n, 3.0, n], [n, 1.0, 2.0, 0.5], [n, n, n, n], [0.0, 1.0, n, 2.0]] {
        let mut dx = [f32::NAN; 4];
        max_pool2x2_backward(&win, 1, 2, 2, &[7.0], &mut dx);
        let mut dxn = [0.0f32; 4];
        naive::max_pool2x2_backward(&win, 1, 2, 2, &[7.0], &mut dxn);
        assert_eq!(dx, dxn, "window {win:?}");
        assert_eq!(dx.iter().filter(|&&v| v == 7.0).count(), 1);
    }
}

#[test]
fn odd_edges_get_zero_gradient() {
    let (c, h, w) = (2, 3, 5);
    let x = Rng::new(1).vec(c * h * w);
    let dy = vec![1.0f32; c * 2];
    let mut dx = vec![f32::NAN; c * h * w];
    avg_pool2x2_backward(c, h, w, &dy, &mut dx);
    for ch in 0..c {
        for i in 0..h {
            for j in 0..w {
                let v = dx[(ch * h + i) * w + j];
                assert_eq!(v, if i < 2 && j < 4 { 0.25 } else { 0.0 });
            }
        }
    }
    max_pool2x2_backward(&x, c, h, w, &dy, &mut dx);
    assert_eq!(dx.iter().filter(|&&v| v != 0.0).count(), c * 2);
}

#[test]
fn max_backward_matches_finite_differences() {
    let (c, h, w) = (2, 5, 7);
    // Distinct values at least 0.01 apart: no ties, a step of 1e-4 never
    // changes any argmax.
    let n = c * h * w;
    let mut rng = Rng::new(9);
    let mut perm: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        perm.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    let x: Vec<f64> = perm.iter().map(|&p| p as f64 * 0.01 - 0.3).collect();
    let r = rng.vec(c * (h / 2) * (w / 2));
    let r64 = to_f64(&r);
    let fd = fd_grad(&x, 1e-4, |xp| {
        let mut y = vec![0.0f64; r64.len()];
        naive::max_pool2x2_forward(xp, c, h, w, &mut y);
        dot_f64(&r64, &y)
    });
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let mut dx = vec![0.0f32; n];
    max_pool2x2_backward(&x32, c, h, w, &r, &mut dx);
    assert_close_f64(&to_f64(&dx), &fd, 1e-8, "max pool backward vs FD");
}

#[test]
fn avg_backward_matches_finite_differences() {
    let (c, h, w) = (3, 5, 4);
    let mut rng = Rng::new(10);
    let x = rng.vec_f64(c * h * w);
    let r = rng.vec(c * (h / 2) * (w / 2));
    let r64 = to_f64(&r);
    let fd = fd_grad(&x, 1e-3, |xp| {
        let mut y = vec![0.0f64; r64.len()];
        naive::avg_pool2x2_forward(xp, c, h, w, &mut y);
        dot_f64(&r64, &y)
    });
    let mut dx = vec![0.0f32; c * h * w];
    avg_pool2x2_backward(c, h, w, &r, &mut dx);
    assert_close_f64(&to_f64(&dx), &fd, 1e-8, "avg pool backward vs FD");
}

#[test]
fn l2_backward_matches_finite_differences() {
    let (c, h, w) = (3, 5, 4);
    let mut rng = Rng::new(11);
    let x = rng.vec_f64(c * h * w);
    let r = rng.vec(c * (h / 2) * (w / 2));
    let r64 = to_f64(&r);
    let fd = fd_grad(&x, 1e-4, |xp| {
        let mut y = vec![0.0f64; r64.len()];
        naive::l2_pool2x2_forward(xp, c, h, w, &mut y);
        dot_f64(&r64, &y)
    });
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let mut dx = vec![0.0f32; c * h * w];
    l2_pool2x2_backward(&x32, c, h, w, &r, &mut dx);
    assert_close_f64(&to_f64(&dx), &fd, 1e-5, "l2 pool backward vs FD");
}

#[test]
fn l2_of_equal_values_keeps_them_and_zeros_have_zero_gradient() {
    let mut y = [0.0f32; 2];
    l2_pool2x2_forward(&[3.0, 3.0, 0.0, 0.0, 3.0, 3.0, 0.0, 0.0], 1, 2, 4, &mut y);
    assert_eq!(y, [3.0, 0.0]);
    let mut dx = [f32::NAN; 8];
    l2_pool2x2_backward(&[3.0, 3.0, 0.0, 0.0, 3.0, 3.0, 0.0, 0.0], 1, 2, 4, &[4.0, 5.0], &mut dx);
    assert_eq!(dx, [1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
}

#[test]
#[should_panic(expected = "max_pool2x2_forward: y")]
fn wrong_output_length_panics() {
    let mut y = vec![0.0; 3];
    max_pool2x2_forward(&[0.0; 16], 1, 4, 4, &mut y);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prop_pools_match_naive(c in 1usize..5, h in 1usize..12, w in 1usize..12, seed: u64) {
        check_all(c, h, w, seed);
    }
}

/// `max_pool2x2_forward_argmax` + `max_pool2x2_backward_argmax` against the naive max pool and the
/// naive ReLU-then-pool backward, on ReLU outputs with ties at zero and odd sizes.
fn check_argmax(c: usize, h: usize, w: usize, seed: u64) {
    use impasto_kernels::{max_pool2x2_backward_argmax, max_pool2x2_forward_argmax};
    let (oh, ow) = (h / 2, w / 2);
    let mut rng = Rng::new(seed);
    // ReLU output: about half zeros, so all-zero windows and ties at 0 occur.
    let x: Vec<f32> = rng.vec(c * h * w).into_iter().map(|v| v.max(0.0)).collect();
    let dy = rng.vec(c * oh * ow);
    let (mut y, mut yw) = (vec![f32::NAN; c * oh * ow], vec![0.0; c * oh * ow]);
    let mut idx = vec![9u8; c * oh * ow];
    max_pool2x2_forward_argmax(&x, c, h, w, &mut y, &mut idx);
    naive::max_pool2x2_forward(&x, c, h, w, &mut yw);
    assert_eq!(y, yw, "argmax pool forward c={c} {h}x{w}");
    let (mut dx, mut dxw) = (vec![f32::NAN; c * h * w], vec![0.0; c * h * w]);
    max_pool2x2_backward_argmax(&idx, c, h, w, &dy, &mut dx);
    naive::relu_max_pool2x2_backward(&x, c, h, w, &dy, &mut dxw);
    assert_eq!(dx, dxw, "argmax pool backward c={c} {h}x{w}");
}

#[test]
fn argmax_pool_matches_naive() {
    let mut seed = 1000;
    for &c in &[1usize, 3, 65] {
        for &h in &SIZES {
            for &w in &SIZES {
                seed += 1;
                check_argmax(c, h, w, seed);
            }
        }
    }
    pool(2).install(|| check_argmax(64, 130, 67, 1));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn prop_argmax_pool_matches_naive(c in 1usize..5, h in 0usize..12, w in 0usize..12, seed: u64) {
        check_argmax(c, h, w, seed);
    }
}
