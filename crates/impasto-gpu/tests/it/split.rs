//! Tensors larger than one storage binding, split into channel groups: a device opened with a small
//! `max_storage_binding` (a few KiB) takes on small images the paths that a 2048 px run needs on a
//! real GPU. Every kernel against the unsplit device (the same bits where the sums keep their order)
//! and the CPU naive twin; the network and the whole objective (content, Gram style with and without
//! a mask, TV, pixel mask, gradient) against the unsplit device; masked cropped Grams split and
//! unsplit against the naive ones; the PyTorch fixtures split; and the one-line error when a single
//! channel does not fit.

use std::sync::{Arc, OnceLock};

use impasto_gpu::{Choice, Gpu, GpuError, GpuNet, GpuObjective, GpuOptions, StyleTarget, StyleTerm};
use impasto_kernels::naive;

use crate::common::{Lcg, gpu, rel_err, small_net, test_adapter};

/// Binding cap of the split device: 4 KiB = 1024 floats.
const CAP: u64 = 4096;

pub(crate) fn capped(cap: u64) -> Arc<Gpu> {
    let options = GpuOptions { max_storage_binding: Some(cap), ..GpuOptions::default() };
    Gpu::with_options(Choice::Index(test_adapter()), &options).unwrap_or_else(|e| panic!("{e}"))
}

fn small() -> Arc<Gpu> {
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| capped(CAP)).clone()
}

#[test]
fn the_cap_is_what_the_device_was_opened_with() {
    assert_eq!(small().max_storage_binding(), CAP);
    assert!(gpu().max_storage_binding() > CAP);
}

/// (c_in, c_out, h, w): 65 input channels of 63 values → 5 groups (16, 16, 16, 16, 1); weights of
/// 585 values a row → one row a block; a 3-channel image of 143-value planes; a layer that fits.
const SHAPES: [(usize, usize, usize, usize); 4] =
    [(65, 33, 9, 7), (3, 17, 13, 11), (33, 65, 3, 5), (4, 4, 4, 4)];

#[test]
fn split_convolutions_give_the_unsplit_bits_and_match_naive() {
    let (split, whole) = (small(), gpu());
    let mut rng = Lcg(21);
    for (c_in, c_out, h, w) in SHAPES {
        let x = rng.vec(c_in * h * w, 1.0);
        let wt = rng.vec(c_out * c_in * 9, 0.2);
        let b = rng.vec(c_out, 0.5);
        for relu in [false, true] {
            let got = split.conv3x3_forward(&x, c_in, c_out, h, w, &wt, &b, relu).unwrap();
            let one = whole.conv3x3_forward(&x, c_in, c_out, h, w, &wt, &b, relu).unwrap();
            assert_eq!(
                got, one,
                "conv forward {c_in}→{c_out} {h}×{w} relu={relu}: split differs from unsplit"
            );
            let mut want = vec![0.0; c_out * h * w];
            naive::conv3x3_forward(&x, c_in, c_out, h, w, &wt, &b, relu, &mut want);
            assert!(rel_err(&got, &want) < 2e-5, "conv forward {c_in}→{c_out} {h}×{w}");
        }
        let dy = rng.vec(c_out * h * w, 1.0);
        let got = split.conv3x3_backward_input(&dy, c_in, c_out, h, w, &wt).unwrap();
        let one = whole.conv3x3_backward_input(&dy, c_in, c_out, h, w, &wt).unwrap();
        assert_eq!(got, one, "conv backward {c_in}→{c_out} {h}×{w}: split differs from unsplit");
        let mut want = vec![0.0; c_in * h * w];
        naive::conv3x3_backward_input(&dy, c_in, c_out, h, w, &wt, &mut want);
        assert!(rel_err(&got, &want) < 2e-5, "conv backward {c_in}→{c_out} {h}×{w}");
    }
}

#[test]
fn split_pooling_matches_naive() {
    let split = small();
    let mut rng = Lcg(22);
    // 37 channels of 33×31: 1023-value planes, one channel a group; pooled planes of 240 → 4 a group.
    for (c, h, w) in [(37, 33, 31), (5, 16, 64), (9, 7, 5)] {
        let x: Vec<f32> = (0..c * h * w).map(|_| (rng.next() * 3.0).round()).collect();
        let n = c * (h / 2) * (w / 2);
        let mut want = vec![0.0; n];
        naive::max_pool2x2_forward(&x, c, h, w, &mut want);
        assert_eq!(split.max_pool2x2_forward(&x, c, h, w).unwrap(), want, "max pool {c}×{h}×{w}");
        let dy = rng.vec(n, 1.0);
        let mut want = vec![0.0; c * h * w];
        naive::max_pool2x2_backward(&x, c, h, w, &dy, &mut want);
        assert_eq!(split.max_pool2x2_backward(&x, c, h, w, &dy).unwrap(), want, "max pool bwd {c}×{h}×{w}");
        let mut want = vec![0.0; n];
        naive::avg_pool2x2_forward(&x, c, h, w, &mut want);
        assert!(rel_err(&split.avg_pool2x2_forward(&x, c, h, w).unwrap(), &want) < 1e-6);
        let mut want = vec![0.0; c * h * w];
        naive::avg_pool2x2_backward(c, h, w, &dy, &mut want);
        assert!(rel_err(&split.avg_pool2x2_backward(c, h, w, &dy).unwrap(), &want) < 1e-6);
        let mut want = vec![0.0; n];
        naive::l2_pool2x2_forward(&x, c, h, w, &mut want);
        assert!(rel_err(&split.l2_pool2x2_forward(&x, c, h, w).unwrap(), &want) < 1e-6);
        let mut want = vec![0.0; c * h * w];
        naive::l2_pool2x2_backward(&x, c, h, w, &dy, &mut want);
        assert!(rel_err(&split.l2_pool2x2_backward(&x, c, h, w, &dy).unwrap(), &want) < 1e-6);
    }
}

#[test]
fn split_gram_and_its_backward_match_unsplit_and_naive() {
    let (split, whole) = (small(), gpu());
    let mut rng = Lcg(23);
    // 30 channels of 300 values: groups of 2; the 30×30 Gram (900 floats) leaves room for one slice.
    for (c, n) in [(30, 300), (7, 1000), (3, 5)] {
        let f = rng.vec(c * n, 1.0);
        let scale = 1.0 / (c * n) as f32;
        let got = split.gram(&f, c, n, scale, 1).unwrap();
        assert_eq!(got, whole.gram(&f, c, n, scale, 1).unwrap(), "gram {c}×{n}: split differs from unsplit");
        let mut want = vec![0.0; c * c];
        naive::gram(&f, c, n, scale, &mut want);
        assert!(rel_err(&got, &want) < 2e-5, "gram {c}×{n}");
        let sliced = split.gram(&f, c, n, scale, 8).unwrap();
        assert!(rel_err(&sliced, &want) < 2e-5, "gram {c}×{n} in slices");
        let dg = rng.vec(c * c, 1.0);
        let got = split.gram_backward(&f, c, n, &dg, scale).unwrap();
        let one = whole.gram_backward(&f, c, n, &dg, scale).unwrap();
        assert!(
            rel_err(&got, &one) < 1e-6,
            "gram backward {c}×{n}: split vs unsplit {:e}",
            rel_err(&got, &one)
        );
        let mut want = vec![0.0; c * n];
        naive::gram_backward(&f, c, n, &dg, scale, false, &mut want);
        assert!(rel_err(&got, &want) < 2e-5, "gram backward {c}×{n}");
    }
}

/// The cropped Gram over channel groups (30 channels of 15×20 planes: groups of 2) at odd offsets:
/// the unsplit bits, and the naive Gram of the crop.
#[test]
fn split_cropped_gram_matches_unsplit_and_naive() {
    let (split, whole) = (small(), gpu());
    let mut rng = Lcg(24);
    for (c, h, w, r) in [(30, 15, 20, (3, 1, 13, 11)), (7, 25, 40, (1, 5, 37, 19)), (3, 1, 5, (1, 0, 3, 1))] {
        let f = rng.vec(c * h * w, 1.0);
        let got = split.cropped_gram(&f, c, h, w, r, 1.0, 1).unwrap();
        assert_eq!(got, whole.cropped_gram(&f, c, h, w, r, 1.0, 1).unwrap(), "{c}×{h}×{w} at {r:?}");
        let (x, y, cw, ch) = r;
        let inner: Vec<f32> = f
            .chunks_exact(h * w)
            .flat_map(|p| (y..y + ch).flat_map(move |row| p[row * w + x..row * w + x + cw].to_vec()))
            .collect();
        let mut want = vec![0.0; c * c];
        naive::gram(&inner, c, cw * ch, 1.0, &mut want);
        assert!(rel_err(&got, &want) < 2e-5, "cropped gram {c}×{h}×{w} at {r:?}");
    }
}

#[test]
fn a_channel_larger_than_a_binding_is_one_line_naming_the_limit() {
    let err = small()
        .conv3x3_forward(&vec![0.0; 2 * 40 * 40], 2, 1, 40, 40, &[0.0; 18], &[0.0], false)
        .unwrap_err();
    assert!(matches!(err, GpuError::Limit { .. }), "{err:?}");
    let line = err.to_string();
    assert!(!line.contains('\n'), "{line}");
    assert!(line.contains("one channel of x (1600 values)"), "{line}");
    assert!(line.contains("max_storage_buffer_binding_size is 4096"), "{line}");
    assert!(line.contains("6400"), "{line}");
}

/// A small VGG-like network: every pooling, channel counts that split unevenly.
pub(crate) fn net(gpu: Arc<Gpu>) -> GpuNet {
    use crate::common::Layer::{AvgPool, Conv, L2Pool, MaxPool};
    small_net(
        gpu,
        24,
        &[Conv(3, 6), Conv(6, 9), MaxPool, Conv(9, 20), AvgPool, Conv(20, 12), L2Pool, Conv(12, 5)],
    )
}

#[test]
fn a_split_network_and_objective_match_the_unsplit_device() {
    // 37×29: 1073-value planes, above the 1024-float cap at full size: every tensor of the first
    // block is split one channel a group, the image and its gradient included.
    let cap = 8192;
    let (w, h) = (37, 29);
    let split = Arc::new(net(capped(cap)));
    let whole = Arc::new(net(gpu()));
    let mut rng = Lcg(25);
    let px: Vec<f32> = (0..3 * w * h).map(|_| 0.5 + 0.4 * rng.next()).collect();
    let other: Vec<f32> = (0..3 * w * h).map(|_| 0.5 + 0.1 * rng.next()).collect();
    let layers = [1, 3, 6, 9, 12];
    let a = split.outputs_at(&px, h, w, &layers).unwrap();
    let b = whole.outputs_at(&px, h, w, &layers).unwrap();
    assert_eq!(a, b, "layer outputs: split differs from unsplit");
    let ga = split.grams_at(&px, h, w, &layers).unwrap();
    let gb = whole.grams_at(&px, h, w, &layers).unwrap();
    for (x, y) in ga.iter().zip(&gb) {
        assert!(rel_err(x, y) < 1e-6, "Gram: split vs unsplit {:e}", rel_err(x, y));
    }
    let targets = whole.outputs_at(&other, h, w, &layers).unwrap();
    let grams = whole.grams_at(&other, h, w, &layers).unwrap();
    let mask: Vec<f32> = (0..14 * 18).map(|i| if i % 18 < 9 { 1.0 } else { 0.25 }).collect();
    let pixel: Vec<f32> = (0..h * w).map(|i| if i % w < 20 { 1.0 } else { 0.5 }).collect();
    let objective = |net: &Arc<GpuNet>| {
        let style = vec![
            StyleTerm { layer: 1, target: StyleTarget::Gram(grams[0].clone()), weight: 50.0, mask: None },
            StyleTerm { layer: 3, target: StyleTarget::Gram(grams[1].clone()), weight: 20.0, mask: None },
            StyleTerm {
                layer: 6,
                target: StyleTarget::Gram(grams[2].clone()),
                weight: 20.0,
                mask: Some(mask.clone()),
            },
        ];
        // Layer 12 is after the L2 pooling: its gradient passes back through every pooling.
        let content = vec![(3, targets[1].0.clone(), 3.0), (12, targets[4].0.clone(), 1.0)];
        GpuObjective::new(net.clone(), w, h, content, style, 10.0, Some(pixel.clone())).unwrap()
    };
    let (mut oa, mut ob) = (objective(&split), objective(&whole));
    let (la, gra) = oa.evaluate(&px).unwrap();
    let (lb, grb) = ob.evaluate(&px).unwrap();
    eprintln!("split {la:?}\nwhole {lb:?}");
    for (what, x, y) in
        [("content", la.content, lb.content), ("style", la.style, lb.style), ("tv", la.tv, lb.tv)]
    {
        assert!(x > 0.0 && (x - y).abs() / y < 1e-5, "{what}: split {x} vs unsplit {y}");
    }
    let e = rel_err(&gra, &grb);
    eprintln!("gradient: split vs unsplit max rel err {e:.2e}");
    assert!(e < 1e-5, "gradient: split vs unsplit {e:e}");
    // Repeatable, and new weights reach every group's kernels.
    assert_eq!(oa.evaluate(&px).unwrap().1, gra);
    oa.set_weights(&[6.0, 2.0], &[100.0, 40.0, 40.0], 20.0).unwrap();
    ob.set_weights(&[6.0, 2.0], &[100.0, 40.0, 40.0], 20.0).unwrap();
    let (la2, _) = oa.evaluate(&px).unwrap();
    let (lb2, _) = ob.evaluate(&px).unwrap();
    assert!(
        (la2.content - 2.0 * la.content).abs() / la2.content < 1e-5
            && (la2.tv - lb2.tv).abs() / lb2.tv < 1e-5
    );
}

/// The masked cropped Grams of the network's layers (a layer twice, with two region masks; one
/// without a mask) at odd rectangles, split into channel groups and not: the naive Gram of the
/// masked features' crop, with the channels' sums the naive ones, and one line for a mask of the
/// wrong size.
#[test]
fn masked_cropped_grams_match_naive_split_and_unsplit() {
    let (w, h) = (37, 29);
    let split = net(capped(8192));
    let whole = net(gpu());
    let mut rng = Lcg(26);
    let px: Vec<f32> = (0..3 * w * h).map(|_| 0.5 + 0.4 * rng.next()).collect();
    let layers = [1, 1, 3, 6];
    let outs = whole.outputs_at(&px, h, w, &layers).unwrap();
    let masks: Vec<Option<Vec<f32>>> = outs
        .iter()
        .enumerate()
        .map(|(i, (_, (_, lh, lw)))| {
            (i != 2).then(|| {
                (0..lh * lw).map(|j| if (j % lw < lw / 2) == (i == 0) { 1.0 } else { 0.3 }).collect()
            })
        })
        .collect();
    let crops = [(3, 2, 30, 25), (0, 0, 37, 29), (1, 1, 15, 11), (2, 0, 6, 7)];
    let m: Vec<Option<&[f32]>> = masks.iter().map(Option::as_deref).collect();
    let a = split.cropped_grams_at(&px, h, w, &layers, &crops, &m).unwrap();
    let b = whole.cropped_grams_at(&px, h, w, &layers, &crops, &m).unwrap();
    for (i, ((f, (c, lh, lw)), (x, y, cw, ch))) in outs.iter().zip(crops).enumerate() {
        let inner: Vec<f32> = f
            .chunks_exact(lh * lw)
            .flat_map(|p| {
                let m = &masks[i];
                (y..y + ch).flat_map(move |row| {
                    (x..x + cw)
                        .map(move |col| p[row * lw + col] * m.as_ref().map_or(1.0, |m| m[row * lw + col]))
                })
            })
            .collect();
        let mut want = vec![0.0; c * c];
        naive::gram(&inner, *c, cw * ch, 1.0, &mut want);
        for (what, got) in [("split", &a[i]), ("unsplit", &b[i])] {
            let e = rel_err(got, &want);
            assert!(e < 2e-5, "{what} masked cropped Gram {i} (layer {}): {e:e}", layers[i]);
        }
        // With the channels' sums over the crop, Σ F·m² (Σ F without a mask): the same Grams.
        let sums: Vec<f32> = f
            .chunks_exact(lh * lw)
            .map(|p| {
                let m = &masks[i];
                let at = |row: usize, col: usize| m.as_ref().map_or(1.0, |m| f64::from(m[row * lw + col]));
                (y..y + ch)
                    .flat_map(|row| (x..x + cw).map(move |col| (row, col)))
                    .map(|(row, col)| f64::from(p[row * lw + col]) * at(row, col) * at(row, col))
                    .sum::<f64>() as f32
            })
            .collect();
        for (what, on) in [("split", &split), ("unsplit", &whole)] {
            let got = on.cropped_moments_at(&px, h, w, &layers, &crops, &m).unwrap();
            let grams = if what == "split" { &a[i] } else { &b[i] };
            assert_eq!(&got[i].0, grams, "{what}: the moments' Gram is the cropped Gram");
            let e = rel_err(&got[i].1, &sums);
            assert!(e < 2e-5, "{what} cropped sums {i} (layer {}): {e:e}", layers[i]);
        }
    }
    let short = [Some(&[1.0f32; 5][..])];
    let err = whole.cropped_grams_at(&px, h, w, &[1], &[(0, 0, 3, 3)], &short).unwrap_err().to_string();
    assert!(!err.contains('\n') && err.contains("a mask of 5 values, expected 29×37"), "{err}");
}
