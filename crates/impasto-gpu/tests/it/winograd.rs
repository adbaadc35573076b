//! The Winograd F(4×4, 3×3) convolution, the default for layers of at least 16 channels on both
//! sides (the CPU engine's rule) and 64 tiles of 4×4: forward (bias, ReLU) and backward to the input against
//! the CPU naive twin on odd channel counts and sizes that are not multiples of the 4×4 tile, a
//! different path from the direct form (other bits), and the same bits when a convolution runs in
//! several bands of tile rows, whether a small binding or a small scratch cap makes the bands.

use std::sync::Arc;

use impasto_gpu::{Choice, Gpu, GpuObjective, GpuOptions, StyleTarget, StyleTerm};
use impasto_kernels::naive;

use crate::common::{Layer, Lcg, gpu, rel_err, small_net, test_adapter};

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

/// An objective whose Winograd scratch is capped at 16 KiB runs its convolutions one tile row a band
/// (a row of 12 tiles of the 16 → 32 convolution at 48×40 takes 54 KiB): the same losses and gradient, bit for bit,
/// as with the default scratch, in less memory.
#[test]
fn a_capped_winograd_scratch_gives_the_same_bits_in_less_memory() {
    let gpu = open(&GpuOptions::default());
    let net = Arc::new(small_net(
        gpu.clone(),
        33,
        &[Layer::Conv(3, 16), Layer::Conv(16, 32), Layer::MaxPool, Layer::Conv(32, 32)],
    ));
    let (w, h) = (48, 40);
    let mut rng = Lcg(34);
    let px: Vec<f32> = rng.vec(3 * w * h, 0.5).iter().map(|v| v + 0.5).collect();
    let build = |scratch: Option<u64>| {
        let before = gpu.allocated_bytes();
        let style = vec![
            StyleTerm { layer: 3, target: StyleTarget::Gram(rng_gram(32, 35)), weight: 10.0, mask: None },
            StyleTerm { layer: 6, target: StyleTarget::Gram(rng_gram(32, 36)), weight: 10.0, mask: None },
        ];
        let content = vec![(6, vec![0.25; 32 * (h / 2) * (w / 2)], 2.0)];
        let o = GpuObjective::with_winograd_scratch(net.clone(), w, h, content, style, 5.0, None, scratch)
            .unwrap();
        (o, gpu.allocated_bytes() - before)
    };
    let (mut whole, whole_bytes) = build(None);
    let (mut banded, banded_bytes) = build(Some(16 << 10));
    let (a, b) = (whole.evaluate(&px).unwrap(), banded.evaluate(&px).unwrap());
    assert!(a.0.style > 0.0 && a.0.content > 0.0);
    assert_eq!(a, b, "a capped scratch changed the losses or the gradient");
    // Two scratch buffers of that convolution's 10 rows × 12 tiles × 36 points × 32 channels
    // (540 KiB each) against one row's (54 KiB each); 9 more bands forward and backward, each with
    // the parameters of its three kernels (64, 80 and 64 bytes).
    let saved = 2 * 9 * 36 * 32 * 12 * 4;
    assert_eq!(banded_bytes + saved, whole_bytes + 2 * 9 * (64 + 80 + 64));
}

fn rng_gram(c: usize, seed: u64) -> Vec<f32> {
    Lcg(seed).vec(c * c, 0.1)
}
