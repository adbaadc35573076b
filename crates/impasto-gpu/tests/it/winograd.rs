//! The Winograd F(4×4, 3×3) convolution, the default for layers of at least 16 channels on both
//! sides (the CPU engine's rule) and 64 tiles of 4×4: forward (bias, ReLU) and backward to the input against
//! the CPU naive twin on odd channel counts and sizes that are not multiples of the 4×4 tile, a
//! different path from the direct form (other bits), and the same bits when a convolution runs in
//! several bands of tile rows.

use std::sync::Arc;

use impasto_gpu::{Choice, Gpu, GpuOptions};
use impasto_kernels::naive;

use crate::common::{Lcg, gpu, rel_err, test_adapter};

const TOL: f64 = 2e-5;

/// (c_in, c_out, h, w): 64 tiles exactly, odd channels, sizes off the 4-pixel grid, a tall one.
const SHAPES: [(usize, usize, usize, usize); 5] =
    [(16, 16, 32, 32), (17, 33, 29, 37), (64, 65, 33, 31), (65, 16, 95, 13), (16, 130, 17, 61)];

fn open(options: &GpuOptions) -> Arc<Gpu> {
    Gpu::with_options(Choice::Index(test_adapter()), options).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn winograd_convolutions_match_naive_and_are_not_the_direct_form() {
    let (gpu, direct) = (gpu(), open(&GpuOptions { direct_convolutions: true, ..GpuOptions::default() }));
    let mut rng = Lcg(31);
    for (c_in, c_out, h, w) in SHAPES {
        let x = rng.vec(c_in * h * w, 1.0);
        let wt = rng.vec(c_out * c_in * 9, 0.2);
        let b = rng.vec(c_out, 0.5);
        for relu in [false, true] {
            let got = gpu.conv3x3_forward(&x, c_in, c_out, h, w, &wt, &b, relu).unwrap();
            let mut want = vec![0.0; c_out * h * w];
            naive::conv3x3_forward(&x, c_in, c_out, h, w, &wt, &b, relu, &mut want);
            let e = rel_err(&got, &want);
            eprintln!("Winograd forward {c_in}→{c_out} {h}×{w} relu={relu}: rel err {e:.2e}");
            assert!(e < TOL, "Winograd forward {c_in}→{c_out} {h}×{w} relu={relu}: rel err {e:e}");
            let other = direct.conv3x3_forward(&x, c_in, c_out, h, w, &wt, &b, relu).unwrap();
            assert_ne!(got, other, "forward {c_in}→{c_out} {h}×{w}: the direct form's bits");
        }
        let dy = rng.vec(c_out * h * w, 1.0);
        let got = gpu.conv3x3_backward_input(&dy, c_in, c_out, h, w, &wt).unwrap();
        let mut want = vec![0.0; c_in * h * w];
        naive::conv3x3_backward_input(&dy, c_in, c_out, h, w, &wt, &mut want);
        let e = rel_err(&got, &want);
        eprintln!("Winograd backward {c_out}→{c_in} {h}×{w}: rel err {e:.2e}");
        assert!(e < TOL, "Winograd backward {c_out}→{c_in} {h}×{w}: rel err {e:e}");
        let other = direct.conv3x3_backward_input(&dy, c_in, c_out, h, w, &wt).unwrap();
        assert_ne!(got, other, "backward {c_out}→{c_in} {h}×{w}: the direct form's bits");
    }
}

/// A device whose bindings hold 128 KiB keeps a 16-channel 40×40 image (100 KiB) in one buffer, but
/// its transformed input (225 KiB) in two bands of tile rows: each tile's sums are the same, so are
/// the bits.
#[test]
fn bands_of_tile_rows_give_the_same_bits() {
    let banded = open(&GpuOptions { max_storage_binding: Some(128 << 10), ..GpuOptions::default() });
    let (c, h, w) = (16, 40, 40);
    let mut rng = Lcg(32);
    let x = rng.vec(c * h * w, 1.0);
    let wt = rng.vec(c * c * 9, 0.2);
    let b = rng.vec(c, 0.5);
    let one = gpu().conv3x3_forward(&x, c, c, h, w, &wt, &b, true).unwrap();
    assert_eq!(banded.conv3x3_forward(&x, c, c, h, w, &wt, &b, true).unwrap(), one, "forward");
    let mut want = vec![0.0; c * h * w];
    naive::conv3x3_forward(&x, c, c, h, w, &wt, &b, true, &mut want);
    assert!(rel_err(&one, &want) < TOL);
    let one = gpu().conv3x3_backward_input(&x, c, c, h, w, &wt).unwrap();
    assert_eq!(banded.conv3x3_backward_input(&x, c, c, h, w, &wt).unwrap(), one, "backward");
}
