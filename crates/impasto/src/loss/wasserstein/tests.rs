//! The Wasserstein-2 style loss against its closed form on one channel, zero at the style's own
//! statistics, masks as sub-images, and its gradient against finite differences on odd sizes.

use super::*;

/// Features `c`×`n`, ReLU-like (some exact zeros), correlated across channels, from `seed`.
fn features(c: usize, n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let base: Vec<f64> = (0..n).map(|_| next()).collect();
    (0..c * n).map(|i| (2.0 * next() + base[i % n] * (i / n) as f64 + 0.3).max(0.0) as f32).collect()
}

fn stats(f: &[f32], c: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
    let gram = crate::loss::gram_matrix(f, c, n);
    let mean =
        f.chunks_exact(n).map(|r| (r.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64) as f32).collect();
    (gram, mean)
}

fn loss_of(f: &[f32], c: usize, n: usize, t: &W2Target, mask: Option<&[f32]>) -> (f64, Vec<f32>) {
    let mut g = vec![0.0; f.len()];
    let l = w2_loss(f, c, n, t, 3.0, mask, &mut g);
    (l, g)
}

#[test]
fn one_channel_is_the_distance_of_two_normals() {
    let (n, ns) = (41, 23);
    let f = features(1, n, 1);
    let s: Vec<f32> = features(1, ns, 2).iter().map(|v| 2.0 * v + 0.7).collect();
    let (gram, mean) = stats(&s, 1, ns);
    let t = W2Target::new(&gram, &mean).unwrap();
    let moments = |v: &[f32]| {
        let m = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        (m, v.iter().map(|&x| (f64::from(x) - m).powi(2)).sum::<f64>() / v.len() as f64)
    };
    let ((mx, vx), (ms, vs)) = (moments(&f), moments(&s));
    let eps = t.eps;
    let expected = 3.0 * SCALE * ((mx - ms).powi(2) + ((vx + eps).sqrt() - (vs + eps).sqrt()).powi(2));
    let (l, _) = loss_of(&f, 1, n, &t, None);
    assert!((l - expected).abs() <= 1e-5 * expected, "{l} vs {expected}");
}

#[test]
fn a_style_is_at_distance_zero_from_itself() {
    for (c, n) in [(1, 5), (3, 63), (5, 65), (64, 96)] {
        let f = features(c, n, c as u64);
        let (gram, mean) = stats(&f, c, n);
        let t = W2Target::new(&gram, &mean).unwrap();
        let (l, g) = loss_of(&f, c, n, &t, None);
        let scale = t.trace / c as f64;
        assert!(l.abs() <= 1e-5 * scale, "c={c} n={n}: {l} (mean variance {scale})");
        let gmax = g.iter().fold(0f32, |a, v| a.max(v.abs()));
        assert!(f64::from(gmax) <= 1e-3 * scale.sqrt(), "c={c} n={n}: gradient {gmax}");
        let other = features(c, n, 99);
        assert!(
            loss_of(&other, c, n, &t, None).0 > 1e-4 * scale,
            "c={c} n={n}: another image is at distance 0"
        );
    }
}

#[test]
fn a_binary_mask_measures_its_region_alone() {
    let (c, n) = (5, 37);
    let f = features(c, n, 3);
    let (gram, mean) = stats(&features(c, 51, 4), c, 51);
    let t = W2Target::new(&gram, &mean).unwrap();
    let mask: Vec<f32> = (0..n).map(|p| if p % 3 == 0 { 0.0 } else { 1.0 }).collect();
    let keep: Vec<usize> = (0..n).filter(|p| mask[*p] > 0.0).collect();
    let sub: Vec<f32> = f.chunks_exact(n).flat_map(|r| keep.iter().map(|&p| r[p])).collect();
    let (lm, gm) = loss_of(&f, c, n, &t, Some(&mask));
    let (ls, gs) = loss_of(&sub, c, keep.len(), &t, None);
    assert!((lm - ls).abs() <= 1e-6 * ls, "{lm} vs {ls}");
    for ch in 0..c {
        for (p, &m) in mask.iter().enumerate() {
            let got = gm[ch * n + p];
            if m == 0.0 {
                assert_eq!(got, 0.0);
            } else {
                let want = gs[ch * keep.len() + keep.iter().position(|&q| q == p).unwrap()];
                assert!((got - want).abs() <= 1e-5 * want.abs().max(1e-3), "{got} vs {want}");
            }
        }
    }
    let empty = vec![0.0; n];
    assert_eq!(loss_of(&f, c, n, &t, Some(&empty)).0, 0.0);
}

#[test]
fn gradient_matches_finite_differences() {
    for (c, n, masked) in [(1, 5, false), (3, 63, false), (5, 37, true), (7, 65, false)] {
        let f = features(c, n, 10 + c as u64);
        let (gram, mean) = stats(&features(c, 29, 20 + c as u64), c, 29);
        let t = W2Target::new(&gram, &mean).unwrap();
        let mask: Option<Vec<f32>> = masked.then(|| (0..n).map(|p| (p % 5) as f32 / 4.0).collect());
        let (_, g) = loss_of(&f, c, n, &t, mask.as_deref());
        let gmax = g.iter().fold(0f32, |a, v| a.max(v.abs()));
        let h = 1e-2f32;
        for i in (0..c * n).step_by(7) {
            let mut fp = f.clone();
            fp[i] += h;
            let mut fm = f.clone();
            fm[i] -= h;
            let lp = loss_of(&fp, c, n, &t, mask.as_deref()).0;
            let lm = loss_of(&fm, c, n, &t, mask.as_deref()).0;
            let fd = ((lp - lm) / f64::from(fp[i] - fm[i])) as f32;
            assert!(
                (fd - g[i]).abs() <= 2e-3 * gmax,
                "c={c} n={n} [{i}]: analytic {} vs {fd} (max {gmax})",
                g[i]
            );
        }
    }
}

#[test]
fn a_target_needs_a_gram_of_its_channels() {
    let err = W2Target::new(&[1.0; 5], &[0.0; 2]).unwrap_err().to_string();
    assert!(err.contains("5 values for 2 channel means"), "{err}");
}

/// A coupled tile's target (the style moved by the whole image's transport map): at the round's
/// start the tile's gradient at each of its positions is the whole image's there times `N/N_t`,
/// also where the tile's statistics are far from the whole image's (the shift of the statistics
/// this replaced left the covariances there).
#[test]
fn a_transported_target_gives_a_tile_the_whole_images_gradient() {
    let (c, n, nw) = (6, 31, 90);
    let whole = features(c, nw, 41);
    // The tile: the first `n` positions of the whole image, scaled to be unlike the rest.
    let whole: Vec<f32> = whole
        .chunks_exact(nw)
        .flat_map(|r| r.iter().enumerate().map(|(p, &v)| if p < n { 3.0 * v } else { v }))
        .collect();
    let tile: Vec<f32> = whole.chunks_exact(nw).flat_map(|r| r[..n].to_vec()).collect();
    let (gram, mean) = stats(&features(c, 29, 42), c, 29);
    let t = W2Target::new(&gram, &mean).unwrap();
    let moments = |f: &[f32], m: usize| {
        let second: Vec<f32> = crate::loss::gram_matrix(f, c, m).iter().map(|v| v * c as f32).collect();
        let means: Vec<f64> =
            f.chunks_exact(m).map(|r| r.iter().map(|&v| f64::from(v)).sum::<f64>() / m as f64).collect();
        (second, means)
    };
    let (sw, mw) = moments(&whole, nw);
    let (st, mt) = moments(&tile, n);
    let map = t.whole_map((&sw, &mw)).unwrap();
    let moved = t.transported(&map, (&st, &mt)).unwrap();
    let (lt, gt) = loss_of(&tile, c, n, &moved, None);
    let (_, gw) = loss_of(&whole, c, nw, &t, None);
    assert!(lt.is_finite() && lt >= 0.0, "{lt}");
    let gmax = gw.iter().fold(0f32, |a, v| a.max(v.abs())) * nw as f32;
    for ch in 0..c {
        for p in 0..n {
            let (a, b) = (gt[ch * n + p] * n as f32, gw[ch * nw + p] * nw as f32);
            assert!((a - b).abs() <= 1e-4 * gmax, "[{ch}, {p}]: tile {a} vs whole {b} (max {gmax})");
        }
    }
    let err = t.whole_map((&sw[1..], &mw)).unwrap_err().to_string();
    assert!(err.contains("statistics of 35 and 6 values"), "{err}");
    let err = t.transported(&map, (&st, &mt[1..])).unwrap_err().to_string();
    assert!(err.contains("statistics of 36 and 5 values"), "{err}");
}
