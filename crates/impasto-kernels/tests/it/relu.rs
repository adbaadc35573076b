//! ReLU forward/backward against the naive twins, NaN handling, finite differences.

use impasto_kernels::{naive, relu_backward_inplace, relu_inplace};

use crate::common::{Rng, assert_close_f64, dot_f64, fd_grad, pool, to_f64};

#[test]
fn matches_naive_serial_and_parallel() {
    for &len in &[1usize, 5, 63, 1 << 17] {
        let mut rng = Rng::new(len as u64);
        let x = rng.vec(len);
        let dy = rng.vec(len);
        pool(2).install(|| {
            let mut got = x.clone();
            relu_inplace(&mut got);
            let mut want = x.clone();
            naive::relu_inplace(&mut want);
            assert_eq!(got, want);
            let mut g = dy.clone();
            relu_backward_inplace(&mut g, &got);
            let mut gw = dy.clone();
            naive::relu_backward_inplace(&mut gw, &want);
            assert_eq!(g, gw);
        });
    }
}

#[test]
fn zero_and_nan_rules() {
    let mut x = vec![-1.0f32, 0.0, 2.0, f32::NAN];
    relu_inplace(&mut x);
    assert_eq!(&x[..3], &[0.0, 0.0, 2.0]);
    assert!(x[3].is_nan(), "NaN must propagate through ReLU");
    let mut dy = vec![1.0f32; 4];
    relu_backward_inplace(&mut dy, &x);
    assert_eq!(dy, vec![0.0, 0.0, 1.0, 0.0]);
}

#[test]
fn backward_matches_finite_differences() {
    let mut rng = Rng::new(11);
    // Keep |x| >= 0.1 so a step of 1e-4 never crosses the kink.
    let x: Vec<f64> = rng.vec_f64(50).into_iter().map(|v| if v >= 0.0 { v + 0.1 } else { v - 0.1 }).collect();
    let r = rng.vec_f64(50);
    let fd = fd_grad(&x, 1e-4, |xp| {
        let mut y = xp.to_vec();
        naive::relu_inplace(&mut y);
        dot_f64(&r, &y)
    });
    let mut act: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    relu_inplace(&mut act);
    let mut g: Vec<f32> = r.iter().map(|&v| v as f32).collect();
    relu_backward_inplace(&mut g, &act);
    assert_close_f64(&to_f64(&g), &fd, 1e-6, "relu backward vs FD");
}
