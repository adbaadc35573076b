//! Tuning: an objective on a device that tunes times every GEMM form in its first evaluations and
//! keeps the fastest for each product, and no result changes by a bit on the way (a host term's
//! two submissions included).

use std::sync::Arc;

use impasto_gpu::{
    Choice, Gpu, GpuNet, GpuObjective, GpuOptions, MomentGradient, MomentLoss, Moments, SmallTiles,
    StyleTarget, StyleTerm, Tune,
};

use crate::common::{Lcg, small_net, test_adapter};

fn open(tune: Tune) -> Arc<Gpu> {
    let options = GpuOptions { tune, small_tiles: SmallTiles::On, ..Default::default() };
    Gpu::with_options(Choice::Index(test_adapter()), &options).unwrap()
}

/// A pooling; convolutions wide enough for tiled products (the 3-channel backward is narrow).
fn net(gpu: Arc<Gpu>) -> Arc<GpuNet> {
    use crate::common::Layer::{Conv, MaxPool};
    Arc::new(small_net(gpu, 31, &[Conv(3, 8), Conv(8, 70), MaxPool, Conv(70, 16)]))
}

#[test]
fn tuning_times_every_form_keeps_the_fastest_and_changes_no_bit() {
    let (tuned, fixed) = (open(Tune::On), open(Tune::Off));
    assert!(tuned.tunes(), "{} has no timestamp queries: nothing to tune with", tuned.adapter().name);
    assert!(!fixed.tunes());
    let (a, b) = (net(tuned), net(fixed));
    let (w, h) = (33, 27);
    let mut rng = Lcg(32);
    let px: Vec<f32> = (0..3 * w * h).map(|_| 0.5 + 0.4 * rng.next()).collect();
    let other: Vec<f32> = (0..3 * w * h).map(|_| 0.5 + 0.1 * rng.next()).collect();
    let layers = [1, 3, 6];
    let targets = b.outputs_at(&other, h, w, &layers).unwrap();
    let grams = b.grams_at(&other, h, w, &layers).unwrap();
    let host: MomentLoss = Arc::new(|m: Moments<'_>, weight: f32| {
        let w = f64::from(weight);
        let loss = w * m.second.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>();
        let d_second = m.second.iter().map(|&v| (2.0 * w) as f32 * v).collect();
        let d_mean = m.mean.iter().map(|v| w * v).collect();
        Some(MomentGradient { loss, d_second, d_mean })
    });
    let objective = |net: &Arc<GpuNet>| {
        let style = vec![
            StyleTerm { layer: 1, target: StyleTarget::Gram(grams[0].clone()), weight: 50.0, mask: None },
            StyleTerm { layer: 3, target: StyleTarget::Gram(grams[1].clone()), weight: 20.0, mask: None },
            StyleTerm { layer: 6, target: StyleTarget::Gram(grams[2].clone()), weight: 20.0, mask: None },
            // A host term: its evaluations are two submissions, with timed products in both.
            StyleTerm { layer: 3, target: StyleTarget::Moments(host.clone()), weight: 5.0, mask: None },
        ];
        let content = vec![(6, targets[2].0.clone(), 3.0)];
        GpuObjective::new(net.clone(), w, h, content, style, 10.0, None).unwrap()
    };
    let (mut oa, mut ob) = (objective(&a), objective(&b));
    assert!(oa.tuning() && !ob.tuning());
    let mut rounds = 0;
    // An objective dropped while tuning (a tile, a scale with few iterations) leaves the tuning to
    // the next one of its shape.
    for _ in 0..3 {
        assert_eq!(oa.evaluate(&px).unwrap(), ob.evaluate(&px).unwrap(), "tuning round {rounds}");
        rounds += 1;
    }
    drop(oa);
    let mut oa = objective(&a);
    assert!(oa.tuning());
    assert!(
        oa.tuned().iter().all(|p| !p.remembered && p.forms.iter().filter(|f| f.1.is_some()).count() == 2)
    );
    while oa.tuning() {
        assert_eq!(oa.evaluate(&px).unwrap(), ob.evaluate(&px).unwrap(), "tuning round {rounds}");
        rounds += 1;
        assert!(rounds < 40, "tuning does not end");
    }
    assert_eq!(oa.evaluate(&px).unwrap(), ob.evaluate(&px).unwrap(), "after tuning");
    let products = oa.tuned();
    eprintln!("{rounds} tuning rounds");
    for p in &products {
        eprintln!("{} {}x{}x{}: {} ({:?})", p.label, p.m, p.k, p.n, p.chosen, p.forms);
    }
    // Every tiled product: the convolutions forward and backward (one narrow backward aside), the
    // Grams and their backward.
    assert!(products.len() >= 8, "{} products", products.len());
    for p in &products {
        // The convolutions' products (Winograd's batches, 7 forms, aside) choose a staging too.
        let direct = p.label.starts_with("conv") && !p.label.ends_with("Winograd");
        let expected = if direct { 14 } else { 7 };
        assert_eq!(p.forms.len(), expected, "{}", p.label);
        assert!(p.forms.iter().all(|f| f.1.is_some()), "{}: a form was not timed", p.label);
        let fastest = p.forms.iter().min_by(|x, y| x.1.unwrap().total_cmp(&y.1.unwrap())).unwrap();
        assert_eq!(p.chosen, fastest.0, "{}", p.label);
        assert!(!p.remembered);
    }
    assert!(rounds > 14, "every conv form after a warm-up: {rounds} rounds");
    assert!(ob.tuned().is_empty());
    // A new objective of the same shape on the device starts with the choices made.
    let oc = objective(&a);
    assert!(!oc.tuning());
    let again = oc.tuned();
    assert_eq!(again.len(), products.len());
    for (x, y) in again.iter().zip(&products) {
        assert!(x.remembered && x.chosen == y.chosen, "{}: {} vs {}", x.label, x.chosen, y.chosen);
    }
}
