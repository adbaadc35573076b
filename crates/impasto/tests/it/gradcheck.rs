//! The whole objective's gradient (preprocessing, convolutions, ReLU, pooling, Gram or Wasserstein style
//! terms, content, TV) against central finite differences on single pixels, on small random networks
//! (VGG-16 and VGG-19 layouts).

use impasto::{Arch, Objective, Pooling, StyleLoss, Vgg, gram_matrix};

use crate::common::{Lcg, random_vgg};

fn objective<'a>(net: &'a Vgg, w: usize, h: usize, rng: &mut Lcg, loss: StyleLoss) -> Objective<'a> {
    let mut obj = Objective::new(net, w, h);
    let px = rng.vec(3 * w * h, 0.5).into_iter().map(|v| v + 0.5).collect::<Vec<_>>();
    let feats = net.features(&px, w, h, &["relu1_1", "relu2_1", "relu2_2", "pool2"]).unwrap();
    // Content target: perturbed features of another image; style targets: Grams of it.
    let (f, _) = &feats[2];
    obj.add_content("relu2_2", f.iter().map(|v| v * 0.7).collect(), 3.0).unwrap();
    for (name, (f, [c, fh, fw])) in
        ["relu1_1", "relu2_1", "pool2"].iter().zip([&feats[0], &feats[1], &feats[3]])
    {
        let gram = gram_matrix(f, *c, fh * fw);
        match loss {
            StyleLoss::Gram => obj.add_style(name, gram, 50.0).unwrap(),
            StyleLoss::Wasserstein => {
                let n = fh * fw;
                let mean: Vec<f32> = f.chunks_exact(n).map(|r| r.iter().sum::<f32>() / n as f32).collect();
                obj.add_style_wasserstein(name, gram, &mean, 5.0).unwrap();
            }
        }
    }
    obj.set_tv_weight(0.5);
    obj
}

/// Central differences with step `eps`, at every 7th input value.
fn check(arch: Arch, pooling: Pooling, seed: u64, eps: f32) {
    check_with(arch, pooling, seed, eps, StyleLoss::Gram);
}

fn check_with(arch: Arch, pooling: Pooling, seed: u64, eps: f32, loss: StyleLoss) {
    let (w, h) = (9, 8);
    let net = random_vgg(arch, pooling, 4, seed);
    let mut rng = Lcg(seed ^ 0x9e37_79b9);
    let obj = objective(&net, w, h, &mut rng, loss);
    let x: Vec<f32> = rng.vec(3 * w * h, 0.4).into_iter().map(|v| v + 0.5).collect();
    let (_, grad) = obj.evaluate(&x);
    let gmax = grad.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let mut worst = 0.0f32;
    for i in (0..x.len()).step_by(7) {
        let mut xp = x.clone();
        xp[i] += eps;
        let mut xm = x.clone();
        xm[i] -= eps;
        let fd = ((obj.evaluate(&xp).0.total() - obj.evaluate(&xm).0.total()) / (2.0 * eps as f64)) as f32;
        let err = (fd - grad[i]).abs() / gmax;
        worst = worst.max(err);
    }
    eprintln!("{arch} {pooling:?} {loss:?}: worst |fd − grad| / max|grad| = {worst:.2e}");
    assert!(worst < 2e-2, "{arch} {pooling:?}: finite differences disagree ({worst:e})");
}

#[test]
fn objective_gradient_matches_finite_differences_vgg16_avg() {
    check(Arch::Vgg16, Pooling::Avg, 1, 1e-3);
}

#[test]
fn objective_gradient_matches_finite_differences_vgg19_max() {
    check(Arch::Vgg19, Pooling::Max, 2, 1e-3);
}

#[test]
fn objective_gradient_matches_finite_differences_vgg16_l2() {
    // The root mean square curves more than max or average: the differences' own error is larger at
    // the same step (2.6e-2 at 3e-3, 2.2e-2 at 1e-3, 9.6e-3 at 3e-4 of max|grad|), shrinking with it.
    check(Arch::Vgg16, Pooling::L2, 3, 3e-4);
}

#[test]
fn objective_gradient_matches_finite_differences_wasserstein() {
    check_with(Arch::Vgg16, Pooling::Max, 4, 1e-3, StyleLoss::Wasserstein);
    check_with(Arch::Vgg19, Pooling::Avg, 5, 1e-3, StyleLoss::Wasserstein);
}
