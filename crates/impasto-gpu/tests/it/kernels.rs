//! Every GPU kernel against its naive CPU twin (impasto_kernels::naive) on odd sizes (1, 3, 5, 63, 65
//! channels and pixels) and at VGG depths, and the bitwise repeatability of a kernel.

use impasto_kernels::naive;

use crate::common::{Lcg, gpu, rel_err};

const TOL: f64 = 2e-5;

/// (c_in, c_out, h, w): odd channel counts and sizes, tile edges (63, 65) and VGG depths.
const CONV_SHAPES: [(usize, usize, usize, usize); 9] = [
    (1, 1, 1, 1),
    (3, 5, 3, 5),
    (5, 3, 5, 1),
    (3, 63, 7, 9),
    (65, 65, 5, 3),
    (63, 1, 1, 65),
    (3, 64, 13, 11),
    (256, 512, 8, 8),
    (512, 512, 4, 3),
];

#[test]
fn conv3x3_forward_matches_naive() {
    let gpu = gpu();
    let mut rng = Lcg(1);
    for (c_in, c_out, h, w) in CONV_SHAPES {
        let x = rng.vec(c_in * h * w, 1.0);
        let wt = rng.vec(c_out * c_in * 9, 0.2);
        let b = rng.vec(c_out, 0.5);
        for relu in [false, true] {
            let got = gpu.conv3x3_forward(&x, c_in, c_out, h, w, &wt, &b, relu).unwrap();
            let mut want = vec![0.0; c_out * h * w];
            naive::conv3x3_forward(&x, c_in, c_out, h, w, &wt, &b, relu, &mut want);
            let e = rel_err(&got, &want);
            assert!(e < TOL, "conv forward {c_in}→{c_out} {h}×{w} relu={relu}: rel err {e:e}");
        }
    }
}

#[test]
fn conv3x3_backward_input_matches_naive() {
    let gpu = gpu();
    let mut rng = Lcg(2);
    for (c_in, c_out, h, w) in CONV_SHAPES {
        let dy = rng.vec(c_out * h * w, 1.0);
        let wt = rng.vec(c_out * c_in * 9, 0.2);
        let got = gpu.conv3x3_backward_input(&dy, c_in, c_out, h, w, &wt).unwrap();
        let mut want = vec![0.0; c_in * h * w];
        naive::conv3x3_backward_input(&dy, c_in, c_out, h, w, &wt, &mut want);
        let e = rel_err(&got, &want);
        assert!(e < TOL, "conv backward {c_in}→{c_out} {h}×{w}: rel err {e:e}");
    }
}

/// A convolution with at most 4 output channels takes the column-per-invocation kernel; with 5 it
/// takes the 64-row tile. Both sum each output in the same order, so the channels they share have the
/// same bits, forward and backward.
#[test]
fn narrow_convolutions_give_the_tiled_bits() {
    let gpu = gpu();
    let mut rng = Lcg(5);
    for (c, h, w) in [(1, 1, 1), (3, 13, 11), (65, 5, 3), (64, 9, 17)] {
        let x = rng.vec(c * h * w, 1.0);
        let wt = rng.vec(5 * c * 9, 0.2);
        let b = rng.vec(5, 0.5);
        let tiled = gpu.conv3x3_forward(&x, c, 5, h, w, &wt, &b, true).unwrap();
        let narrow = gpu.conv3x3_forward(&x, c, 4, h, w, &wt[..4 * c * 9], &b[..4], true).unwrap();
        assert_eq!(narrow, tiled[..4 * h * w], "conv forward {c}→4 {h}×{w}");

        // Backward to 5 input channels, and to the first 4 of them (their weights unchanged).
        let dy = rng.vec(c * h * w, 1.0);
        let wt5 = rng.vec(c * 5 * 9, 0.2);
        let wt4: Vec<f32> = wt5.chunks(5 * 9).flat_map(|o| o[..4 * 9].to_vec()).collect();
        let tiled = gpu.conv3x3_backward_input(&dy, 5, c, h, w, &wt5).unwrap();
        let narrow = gpu.conv3x3_backward_input(&dy, 4, c, h, w, &wt4).unwrap();
        assert_eq!(narrow, tiled[..4 * h * w], "conv backward {c}→4 {h}×{w}");
    }
}

/// Values on a coarse grid, so that pooling windows have ties.
fn coarse(rng: &mut Lcg, n: usize) -> Vec<f32> {
    (0..n).map(|_| (rng.next() * 3.0).round()).collect()
}

const POOL_SHAPES: [(usize, usize, usize); 6] =
    [(1, 1, 1), (1, 2, 2), (3, 5, 7), (5, 3, 65), (65, 6, 4), (64, 63, 65)];

#[test]
fn max_pool_matches_naive_with_ties() {
    let gpu = gpu();
    let mut rng = Lcg(3);
    for (c, h, w) in POOL_SHAPES {
        let x = coarse(&mut rng, c * h * w);
        let got = gpu.max_pool2x2_forward(&x, c, h, w).unwrap();
        let mut want = vec![0.0; c * (h / 2) * (w / 2)];
        naive::max_pool2x2_forward(&x, c, h, w, &mut want);
        assert_eq!(got, want, "max pool forward {c}×{h}×{w}");
        let dy = rng.vec(want.len(), 1.0);
        let got = gpu.max_pool2x2_backward(&x, c, h, w, &dy).unwrap();
        let mut want = vec![0.0; c * h * w];
        naive::max_pool2x2_backward(&x, c, h, w, &dy, &mut want);
        assert_eq!(got, want, "max pool backward {c}×{h}×{w} (first maximum of a tied window)");
    }
}

#[test]
fn l2_pool_matches_naive() {
    let gpu = gpu();
    let mut rng = Lcg(5);
    for (c, h, w) in POOL_SHAPES {
        // ReLU outputs on a coarse grid: windows of zeros (no gradient) occur.
        let x: Vec<f32> = coarse(&mut rng, c * h * w).into_iter().map(|v| v.max(0.0) * 0.37).collect();
        let got = gpu.l2_pool2x2_forward(&x, c, h, w).unwrap();
        let mut want = vec![0.0; c * (h / 2) * (w / 2)];
        naive::l2_pool2x2_forward(&x, c, h, w, &mut want);
        assert!(rel_err(&got, &want) < 1e-6, "l2 pool forward {c}×{h}×{w}");
        let dy = rng.vec(want.len(), 1.0);
        let got = gpu.l2_pool2x2_backward(&x, c, h, w, &dy).unwrap();
        let mut want = vec![0.0; c * h * w];
        naive::l2_pool2x2_backward(&x, c, h, w, &dy, &mut want);
        assert!(rel_err(&got, &want) < 1e-6, "l2 pool backward {c}×{h}×{w}");
    }
}

#[test]
fn avg_pool_matches_naive() {
    let gpu = gpu();
    let mut rng = Lcg(4);
    for (c, h, w) in POOL_SHAPES {
        let x = rng.vec(c * h * w, 1.0);
        let got = gpu.avg_pool2x2_forward(&x, c, h, w).unwrap();
        let mut want = vec![0.0; c * (h / 2) * (w / 2)];
        naive::avg_pool2x2_forward(&x, c, h, w, &mut want);
        assert!(rel_err(&got, &want) < 1e-6, "avg pool forward {c}×{h}×{w}");
        let dy = rng.vec(want.len(), 1.0);
        let got = gpu.avg_pool2x2_backward(c, h, w, &dy).unwrap();
        let mut want = vec![0.0; c * h * w];
        naive::avg_pool2x2_backward(c, h, w, &dy, &mut want);
        assert!(rel_err(&got, &want) < 1e-6, "avg pool backward {c}×{h}×{w}");
    }
}

#[test]
fn relu_matches_naive() {
    let gpu = gpu();
    let mut rng = Lcg(5);
    for n in [1, 3, 65, 1000] {
        let mut x = coarse(&mut rng, n);
        let got = gpu.relu_forward(&x).unwrap();
        naive::relu_inplace(&mut x);
        assert_eq!(got, x, "relu forward n={n}");
        let mut dy = rng.vec(n, 1.0);
        let got = gpu.relu_backward(&dy, &x).unwrap();
        naive::relu_backward_inplace(&mut dy, &x);
        assert_eq!(got, dy, "relu backward n={n}");
    }
}

#[test]
fn gram_and_its_backward_match_naive() {
    let gpu = gpu();
    let mut rng = Lcg(6);
    for (c, n) in [(1, 1), (3, 5), (5, 63), (65, 65), (64, 4096), (63, 1025), (512, 64)] {
        let f = rng.vec(c * n, 1.0);
        let scale = 1.0 / (c * n) as f32;
        let mut want = vec![0.0; c * c];
        naive::gram(&f, c, n, scale, &mut want);
        for slices in [1, 3, 64] {
            let got = gpu.gram(&f, c, n, scale, slices).unwrap();
            let e = rel_err(&got, &want);
            assert!(e < TOL, "gram {c}×{n} in {slices} slices: rel err {e:e}");
        }
        let dg = rng.vec(c * c, 1.0);
        let got = gpu.gram_backward(&f, c, n, &dg, scale).unwrap();
        let mut want = vec![0.0; c * n];
        naive::gram_backward(&f, c, n, &dg, scale, false, &mut want);
        let e = rel_err(&got, &want);
        assert!(e < TOL, "gram backward {c}×{n}: rel err {e:e}");
    }
}

/// A rectangle of a plane: (x, y, width, height).
type Rect = (usize, usize, usize, usize);

/// The pixels of `f` (`c` planes of `h`×`w`) inside the rectangle (x, y, width, height), row-major.
fn crop(f: &[f32], c: usize, h: usize, w: usize, (x, y, cw, ch): Rect) -> Vec<f32> {
    let mut out = Vec::with_capacity(c * cw * ch);
    for plane in f.chunks_exact(h * w) {
        for row in y..y + ch {
            out.extend_from_slice(&plane[row * w + x..row * w + x + cw]);
        }
    }
    out
}

/// (c, h, w, rectangle): 1, 3, 5, 63, 65 channels and pixels, odd offsets, a rectangle that is the
/// whole plane, one row, one column, and one crossing the GEMM's 64-wide tiles.
const CROPS: [(usize, usize, usize, Rect); 8] = [
    (1, 1, 1, (0, 0, 1, 1)),
    (3, 5, 7, (1, 1, 3, 3)),
    (5, 9, 13, (3, 1, 5, 7)),
    (63, 7, 11, (1, 3, 1, 3)),
    (65, 9, 9, (5, 3, 3, 1)),
    (65, 13, 11, (3, 5, 7, 7)),
    (64, 3, 5, (0, 0, 5, 3)),
    (3, 75, 69, (1, 3, 65, 63)),
];

#[test]
fn cropped_gram_matches_naive_on_the_crop() {
    let gpu = gpu();
    let mut rng = Lcg(8);
    for (c, h, w, r) in CROPS {
        let f = rng.vec(c * h * w, 1.0);
        let inner = crop(&f, c, h, w, r);
        let n = r.2 * r.3;
        let mut want = vec![0.0; c * c];
        naive::gram(&inner, c, n, 1.0, &mut want);
        for slices in [1, 3, 64] {
            let got = gpu.cropped_gram(&f, c, h, w, r, 1.0, slices).unwrap();
            let e = rel_err(&got, &want);
            assert!(e < TOL, "cropped gram {c}×{h}×{w} at {r:?} in {slices} slices: rel err {e:e}");
            // The same sums, in the same order, as the Gram of the crop copied out.
            assert_eq!(got, gpu.gram(&inner, c, n, 1.0, slices).unwrap(), "{c}×{h}×{w} at {r:?}");
        }
    }
    let err = gpu.cropped_gram(&[0.0; 12], 1, 3, 4, (2, 0, 3, 1), 1.0, 1).unwrap_err();
    assert!(err.to_string().contains("rectangle"), "{err}");
}

#[test]
fn kernels_repeat_bit_for_bit() {
    let gpu = gpu();
    let mut rng = Lcg(7);
    let (c_in, c_out, h, w) = (64, 65, 17, 19);
    let x = rng.vec(c_in * h * w, 1.0);
    let wt = rng.vec(c_out * c_in * 9, 0.2);
    let b = rng.vec(c_out, 0.5);
    let a = gpu.conv3x3_forward(&x, c_in, c_out, h, w, &wt, &b, true).unwrap();
    let a2 = gpu.conv3x3_forward(&x, c_in, c_out, h, w, &wt, &b, true).unwrap();
    assert_eq!(a, a2, "conv forward repeats");
    let f = rng.vec(65 * 5000, 1.0);
    assert_eq!(
        gpu.gram(&f, 65, 5000, 1.0, 5).unwrap(),
        gpu.gram(&f, 65, 5000, 1.0, 5).unwrap(),
        "gram repeats"
    );
}

#[test]
fn wrong_sizes_are_errors_not_panics() {
    let gpu = gpu();
    let err = gpu.conv3x3_forward(&[0.0; 5], 1, 1, 2, 2, &[0.0; 9], &[0.0], false).unwrap_err();
    assert!(err.to_string().contains("x has 5 values, expected 4"), "{err}");
}

#[test]
fn kernels_are_timed_on_the_gpu_clock_or_on_request_the_host_clock() {
    use impasto_gpu::{Choice, Gpu, GpuOptions, KernelClock};
    // Vulkan drivers (lavapipe included) have timestamp queries: profiles read the device's clock.
    let device = gpu();
    assert_eq!(device.kernel_clock(), KernelClock::Device, "{}", device.adapter().name);
    let options = GpuOptions { host_timing: true, ..GpuOptions::default() };
    let host = Gpu::with_options(Choice::Index(crate::common::test_adapter()), &options).unwrap();
    assert_eq!(host.kernel_clock(), KernelClock::Host);
    for g in [&device, &host] {
        // A split of the output rows into several dispatches, forward and backward.
        for backward in [false, true] {
            let s = g.conv3x3_seconds(5, 65, (9, 7), backward, 2).unwrap();
            assert!(s > 0.0 && s < 60.0, "{:?} {s}", g.kernel_clock());
        }
    }
    // More dispatches than one query set holds (2048 steps): 64 single-channel input groups times
    // 64 one-row weight blocks on a device whose binding holds 1024 floats.
    let options = GpuOptions { max_storage_binding: Some(4096), ..GpuOptions::default() };
    let capped = Gpu::with_options(Choice::Index(crate::common::test_adapter()), &options).unwrap();
    assert_eq!(capped.kernel_clock(), KernelClock::Device);
    let s = capped.conv3x3_seconds(64, 64, (32, 32), false, 1).unwrap();
    assert!(s > 0.0 && s < 60.0, "{s}");
}

/// Every form of the tiled GEMM (`GemmTile`: 64×64, 128×128 and 64×128 tiles), 32×32 tiles for the products with few 64×64 ones
/// (`SmallTiles::On`, here all of them), and the convolution's input staged a value at a time instead
/// of 2 channels × 9 taps (`im2col_per_value`), gives the default's bits in every variant:
/// convolution forward and backward, Gram (split K), cropped Gram and the Gram backward, on odd sizes
/// and on tile edges, and with tensors split into channel groups (a capped binding: ACC_INIT chains).
#[test]
fn every_gemm_tile_gives_the_same_bits() {
    use impasto_gpu::{Choice, GemmTile, Gpu, GpuOptions, SmallTiles};
    let open_with = |gemm_tile, im2col_per_value, small_tiles, cap| {
        let options = GpuOptions {
            gemm_tile,
            im2col_per_value,
            small_tiles,
            max_storage_binding: cap,
            ..GpuOptions::default()
        };
        Gpu::with_options(Choice::Index(crate::common::test_adapter()), &options).unwrap()
    };
    let open =
        |gemm_tile, im2col_per_value, cap| open_with(gemm_tile, im2col_per_value, SmallTiles::Off, cap);
    let mut rng = Lcg(11);
    for cap in [None, Some(4096)] {
        let reference = open(GemmTile::default(), false, cap);
        let others = [
            ("4x4", open(GemmTile::Outputs4x4, false, cap)),
            ("8x8 pipelined", open(GemmTile::Outputs8x8Pipelined, false, cap)),
            ("8x8, im2col per value", open(GemmTile::Outputs8x8, true, cap)),
            ("8x8 pipelined, im2col per value", open(GemmTile::Outputs8x8Pipelined, true, cap)),
            ("8x8 prefetched", open(GemmTile::Outputs8x8Prefetch, false, cap)),
            ("8x8 prefetched, im2col per value", open(GemmTile::Outputs8x8Prefetch, true, cap)),
            ("128x128 tiles", open(GemmTile::Outputs8x8Tile128, false, cap)),
            ("128x128 tiles, im2col per value", open(GemmTile::Outputs8x8Tile128, true, cap)),
            ("64x128 tiles", open(GemmTile::Outputs8x8Tile64x128, false, cap)),
            ("64x128 tiles, im2col per value", open(GemmTile::Outputs8x8Tile64x128, true, cap)),
            ("32x32 tiles", open_with(GemmTile::Outputs8x8, false, SmallTiles::On, cap)),
            ("32x32 tiles, im2col per value", open_with(GemmTile::Outputs8x8, true, SmallTiles::On, cap)),
        ];
        // Two 128-row tiles unsplit; split, a weight channel must fit the binding (100·9 floats).
        let tall = if cap.is_none() { 131 } else { 100 };
        for (c_in, c_out, h, w) in [
            (3, 5, 3, 5),
            (65, 33, 9, 7),
            (5, 65, 13, 11),
            (64, 64, 8, 9),
            (33, 6, 1, 65),
            (7, tall, 12, 11),
            (20, 70, 33, 29),
        ] {
            let x = rng.vec(c_in * h * w, 1.0);
            let wt = rng.vec(c_out * c_in * 9, 0.2);
            let b = rng.vec(c_out, 0.5);
            let dy = rng.vec(c_out * h * w, 1.0);
            let fwd = |g: &Gpu| g.conv3x3_forward(&x, c_in, c_out, h, w, &wt, &b, true).unwrap();
            let bwd = |g: &Gpu| g.conv3x3_backward_input(&dy, c_in, c_out, h, w, &wt).unwrap();
            let (want_fwd, want_bwd) = (fwd(&reference), bwd(&reference));
            for (tile, g) in &others {
                assert_eq!(fwd(g), want_fwd, "{tile} conv forward {c_in}→{c_out} {h}×{w} cap {cap:?}");
                assert_eq!(bwd(g), want_bwd, "{tile} conv backward {c_out}→{c_in} {h}×{w} cap {cap:?}");
            }
        }
        // A Gram must fit one binding: 65 channels (two row tiles) unsplit, 31 split.
        let wide = if cap.is_none() { 65 } else { 31 };
        for (c, h, w) in
            [(5, 7, 9), (wide, 9, 31), (3, 13, 65), (if cap.is_none() { 130 } else { 20 }, 5, 29)]
        {
            let f = rng.vec(c * h * w, 1.0);
            let n = h * w;
            let dg = rng.vec(c * c, 1.0);
            let gram = |g: &Gpu| g.gram(&f, c, n, 0.5, 3).unwrap();
            let crop = |g: &Gpu| g.cropped_gram(&f, c, h, w, (1, 2, w - 3, h - 4), 1.0, 2).unwrap();
            let back = |g: &Gpu| g.gram_backward(&f, c, n, &dg, 0.25).unwrap();
            let (want_gram, want_crop, want_back) = (gram(&reference), crop(&reference), back(&reference));
            for (tile, g) in &others {
                assert_eq!(gram(g), want_gram, "{tile} gram {c}×{n} cap {cap:?}");
                assert_eq!(crop(g), want_crop, "{tile} cropped gram {c} {h}×{w} cap {cap:?}");
                assert_eq!(back(g), want_back, "{tile} gram backward {c}×{n} cap {cap:?}");
            }
        }
    }
}
