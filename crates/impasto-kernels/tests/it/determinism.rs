//! Bitwise determinism for a fixed rayon thread count.

use impasto_kernels::{Conv3x3, gram, sgemm};

use crate::common::{Rng, pool};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn conv_is_bitwise_deterministic_on_two_threads() {
    let (ci, co, h, w) = (64, 64, 96, 80);
    let mut rng = Rng::new(42);
    let conv = Conv3x3::new(ci, co, rng.vec(co * ci * 9), rng.vec(co));
    let x = rng.vec(ci * h * w);
    let dy = rng.vec(co * h * w);
    let run = || {
        pool(2).install(|| {
            let mut y = vec![0.0; co * h * w];
            conv.forward(&x, h, w, true, &mut y);
            let mut dx = vec![0.0; ci * h * w];
            conv.backward_input(&dy, h, w, &mut dx);
            (bits(&y), bits(&dx))
        })
    };
    let first = run();
    for _ in 0..2 {
        assert!(run() == first, "conv results differ between runs");
    }
}

#[test]
fn sgemm_and_gram_are_bitwise_deterministic_on_two_threads() {
    let mut rng = Rng::new(43);
    let (m, n, k) = (128, 700, 300);
    let a = rng.vec(m * k);
    let b = rng.vec(k * n);
    let f = rng.vec(256 * 4096);
    let run = || {
        pool(2).install(|| {
            let mut c = vec![0.0; m * n];
            sgemm(m, n, k, 1.0, &a, k, &b, n, false, &mut c, n);
            let mut g = vec![0.0; 256 * 256];
            gram(&f, 256, 4096, 1.0, &mut g);
            (bits(&c), bits(&g))
        })
    };
    let first = run();
    assert!(run() == first, "sgemm / gram results differ between runs");
}
