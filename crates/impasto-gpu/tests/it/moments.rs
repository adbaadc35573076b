//! Host terms ([`StyleTarget::Moments`]): the statistics the host is given are the naive ones of the
//! layer's output (with a region mask too), split into channel groups or not; a host term that is
//! the Gram loss written on the second moment gives the device's Gram term's loss and gradient; a
//! term with a mean part gives the same result split and unsplit, and repeats; a host term that
//! cannot be computed makes the style loss NaN.

use std::sync::{Arc, Mutex};

use impasto_gpu::{GpuNet, GpuObjective, MomentGradient, MomentLoss, Moments, StyleTarget, StyleTerm};

use crate::common::{Lcg, gpu, rel_err};
use crate::split::{capped, net};

type Seen = Arc<Mutex<Vec<(Vec<f32>, Vec<f64>)>>>;

/// The Gram loss `w·mean((S/C − a)²)` on the second moment `S`, plus `w·Σ(μ − b)²` with `mean`;
/// records the statistics it is given in `seen`.
fn host_term(a: Vec<f32>, mean: Option<Vec<f64>>, seen: Seen) -> MomentLoss {
    Arc::new(move |m: Moments<'_>, weight: f32| {
        seen.lock().unwrap().push((m.second.to_vec(), m.mean.to_vec()));
        let c = m.mean.len();
        let cf = c as f64;
        let w = f64::from(weight);
        let mut loss = 0.0;
        let mut d_second = vec![0.0f32; c * c];
        for (ij, (&s, &t)) in m.second.iter().zip(&a).enumerate() {
            let d = f64::from(s) / cf - f64::from(t);
            loss += w * d * d / (cf * cf);
            d_second[ij] = (2.0 * w * d / (cf * cf * cf)) as f32;
        }
        let mut d_mean = vec![0.0; c];
        if let Some(b) = &mean {
            for ((dm, &mu), &t) in d_mean.iter_mut().zip(m.mean).zip(b) {
                loss += w * (mu - t) * (mu - t);
                *dm = 2.0 * w * (mu - t);
            }
        }
        Some(MomentGradient { loss, d_second, d_mean })
    })
}

/// The naive statistics of `f` (`c × n`) under `mask` (weights m², normalised by Σm²).
fn naive_moments(f: &[f32], c: usize, n: usize, mask: Option<&[f32]>) -> (Vec<f64>, Vec<f64>) {
    let m2 = |p: usize| mask.map_or(1.0, |m| f64::from(m[p]) * f64::from(m[p]));
    let total: f64 = (0..n).map(m2).sum();
    let mut second = vec![0.0; c * c];
    for i in 0..c {
        for j in 0..c {
            second[i * c + j] =
                (0..n).map(|p| f64::from(f[i * n + p]) * f64::from(f[j * n + p]) * m2(p)).sum::<f64>()
                    / total;
        }
    }
    let mean = (0..c).map(|i| (0..n).map(|p| f64::from(f[i * n + p]) * m2(p)).sum::<f64>() / total).collect();
    (second, mean)
}

fn max_rel(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[test]
fn host_terms_see_the_naive_statistics_and_match_the_device_gram_term() {
    // 37×29 on a device capped at 2048 floats a binding: layer 1 (6 channels of 1073 values) one
    // channel a group, layer 6 (20 channels of 252) eight a group.
    let (w, h) = (37, 29);
    let split = Arc::new(net(capped(8192)));
    let whole = Arc::new(net(gpu()));
    let mut rng = Lcg(31);
    let px: Vec<f32> = (0..3 * w * h).map(|_| 0.5 + 0.4 * rng.next()).collect();
    let other: Vec<f32> = (0..3 * w * h).map(|_| 0.5 + 0.1 * rng.next()).collect();
    let grams = whole.grams_at(&other, h, w, &[1, 6]).unwrap();
    // A binary mask: there the masked Gram's normalisation (Σm) and the statistics' (Σm²) agree.
    let mask: Vec<f32> = (0..14 * 18).map(|i| if i % 18 < 11 { 1.0 } else { 0.0 }).collect();
    let masks = [None, Some(mask.clone())];
    let targets = |host: Option<(bool, &Seen)>| -> Vec<StyleTerm> {
        [1, 6]
            .into_iter()
            .zip(&grams)
            .zip(&masks)
            .map(|((layer, g), m)| {
                let target = match host {
                    None => StyleTarget::Gram(g.clone()),
                    Some((with_mean, seen)) => {
                        let b = with_mean.then(|| (0..g.len().isqrt()).map(|i| 0.1 * i as f64).collect());
                        StyleTarget::Moments(host_term(g.clone(), b, seen.clone()))
                    }
                };
                StyleTerm { layer, target, weight: 30.0, mask: m.clone() }
            })
            .collect()
    };
    let objective =
        |net: &Arc<GpuNet>, style| GpuObjective::new(net.clone(), w, h, vec![], style, 5.0, None).unwrap();

    // The Gram loss as a host term: the device Gram term's loss and gradient, and the statistics.
    let seen: Seen = Arc::default();
    let (lg, gg) = objective(&whole, targets(None)).evaluate(&px).unwrap();
    let (lh, gh) = objective(&whole, targets(Some((false, &seen)))).evaluate(&px).unwrap();
    eprintln!("device Gram {lg:?}\nhost terms  {lh:?}");
    assert!(lg.style > 0.0 && (lh.style - lg.style).abs() / lg.style < 1e-5, "{} vs {}", lh.style, lg.style);
    let e = rel_err(&gh, &gg);
    eprintln!("gradient: host terms vs device Gram max rel err {e:.2e}");
    assert!(e < 1e-5, "gradient: host terms vs device Gram {e:e}");
    let outs = whole.outputs_at(&px, h, w, &[1, 6]).unwrap();
    let seen_now = seen.lock().unwrap().clone();
    assert_eq!(seen_now.len(), 2, "one call per term and evaluation");
    for (((f, (c, lh, lw)), m), (second, mean)) in outs.iter().zip(&masks).zip(&seen_now) {
        let (s, mu) = naive_moments(f, *c, lh * lw, m.as_deref());
        let second: Vec<f64> = second.iter().map(|&v| f64::from(v)).collect();
        assert!(max_rel(&second, &s) < 1e-5, "second moment {:e}", max_rel(&second, &s));
        assert!(max_rel(mean, &mu) < 1e-5, "means {:e}", max_rel(mean, &mu));
    }

    // With a mean part: split into channel groups as unsplit; repeatable; new weights reach the host.
    let (sa, sb): (Seen, Seen) = (Arc::default(), Arc::default());
    let mut oa = objective(&split, targets(Some((true, &sa))));
    let mut ob = objective(&whole, targets(Some((true, &sb))));
    let (la, ga) = oa.evaluate(&px).unwrap();
    let (lb, gb) = ob.evaluate(&px).unwrap();
    assert!(la.style > lh.style && (la.style - lb.style).abs() / lb.style < 1e-5, "{la:?} vs {lb:?}");
    let e = rel_err(&ga, &gb);
    eprintln!("gradient with means: split vs unsplit max rel err {e:.2e}");
    assert!(e < 1e-5, "gradient with means: split vs unsplit {e:e}");
    assert_eq!(oa.evaluate(&px).unwrap().1, ga, "two evaluations differ");
    oa.set_weights(&[], &[60.0, 60.0], 5.0).unwrap();
    let (l2, _) = oa.evaluate(&px).unwrap();
    assert!((l2.style - 2.0 * la.style).abs() / l2.style < 1e-5, "{} vs 2×{}", l2.style, la.style);
}

#[test]
fn a_host_term_that_fails_makes_the_style_loss_nan() {
    let (w, h) = (21, 17);
    let net = Arc::new(net(gpu()));
    let px = vec![0.5f32; 3 * w * h];
    let fails: MomentLoss = Arc::new(|_: Moments<'_>, _: f32| None);
    let style = vec![StyleTerm { layer: 3, target: StyleTarget::Moments(fails), weight: 1.0, mask: None }];
    let mut o = GpuObjective::new(net, w, h, vec![], style, 1.0, None).unwrap();
    let (l, g) = o.evaluate(&px).unwrap();
    assert!(l.style.is_nan() && l.tv.is_finite(), "{l:?}");
    assert!(g.iter().all(|v| v.is_finite()), "the failed term adds no gradient");
}
