//! Steering: weights changed by an observer mid-run take effect at the next iteration (the reported
//! losses jump by the weight ratio), carry over to later scales, and a run that is never steered — or
//! steered to the weights it already has — is bit-for-bit the plain run.

use std::ops::ControlFlow;

use impasto::{Arch, Losses, NoObserver, Observer, Optimizer, Pooling, Step, StyleConfig, Vgg, Weights};

use crate::common::{random_vgg, shared_dir};

/// Records every step's losses and answers `steer` with `to` right after iteration `at`.
struct SteerAt {
    at: usize,
    to: Weights,
    last: usize,
    losses: Vec<Losses>,
}

impl Observer for SteerAt {
    fn on_step(&mut self, s: &Step<'_>) -> ControlFlow<()> {
        self.last = s.iteration;
        self.losses.push(s.losses);
        ControlFlow::Continue(())
    }
    fn steer(&mut self) -> Option<Weights> {
        (self.last == self.at).then_some(self.to)
    }
}

/// Answers every poll with the weights the run already has.
struct SteerSame(Weights);

impl Observer for SteerSame {
    fn steer(&mut self) -> Option<Weights> {
        Some(self.0)
    }
}

fn inputs() -> (impasto::image::Rgb32FImage, impasto::image::Rgb32FImage) {
    let img = |n: &str| impasto::load_image(&shared_dir().join("images").join(n)).unwrap();
    (img("chelsea.png"), img("the_scream.jpg"))
}

fn net() -> Vgg {
    random_vgg(Arch::Vgg16, Pooling::Max, 4, 11)
}

fn small(optimizer: Optimizer) -> StyleConfig {
    StyleConfig {
        size: 48,
        min_size: 24,
        iterations: 8,
        scale_iterations: Some(6),
        optimizer,
        content_layers: vec!["relu2_2".into()],
        style_layers: vec!["relu1_1".into(), "relu2_1".into()],
        threads: 2,
        ..StyleConfig::default()
    }
}

fn bits(img: &impasto::image::Rgb32FImage) -> Vec<u32> {
    img.iter().map(|v| v.to_bits()).collect()
}

fn ratio(after: f64, before: f64) -> f64 {
    after / before
}

fn steer_takes_effect(optimizer: Optimizer) {
    let net = net();
    let (content, style) = inputs();
    let config = small(optimizer);
    let to = Weights { content: config.content_weight * 0.5, style: config.style_weight * 10.0, tv: 0.0 };
    let mut obs = SteerAt { at: 3, to, last: 0, losses: Vec::new() };
    let out = impasto::stylize(&net, &config, &content, std::slice::from_ref(&style), &mut obs).unwrap();
    assert_eq!(out.iterations, 14, "the run goes on after the steer, across both scales");
    let (before, after) = (obs.losses[2], obs.losses[3]);
    let (rs, rc) = (ratio(after.style, before.style), ratio(after.content, before.content));
    eprintln!("{optimizer:?}: style ×{rs:.3} (weight ×10), content ×{rc:.3} (weight ×0.5), tv {}", after.tv);
    // One step moves the image a little, so the jump is close to, not exactly, the weight ratio.
    assert!((5.0..=12.0).contains(&rs), "style loss changed ×{rs} after its weight was multiplied by 10");
    assert!((0.3..=0.9).contains(&rc), "content loss changed ×{rc} after its weight was halved");
    assert_eq!(after.tv, 0.0, "TV weight 0 must give a TV loss of 0");
    assert!(obs.losses[4..].iter().all(|l| l.tv == 0.0), "the steered weights must hold on the next scale");

    // The final losses are the returned image's under the steered weights at the final scale.
    let steered =
        StyleConfig { content_weight: to.content, style_weight: to.style, tv_weight: to.tv, ..config };
    let scored = impasto::score(&net, &steered, &content, &[style], &out.image).unwrap();
    for (a, b) in [(scored.content, out.losses.content), (scored.style, out.losses.style)] {
        assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "scored {scored:?}, reported {:?}", out.losses);
    }
}

#[test]
fn lbfgs_steer_takes_effect_at_the_next_step_and_on_later_scales() {
    steer_takes_effect(Optimizer::Lbfgs { history: 10 });
}

#[test]
fn adam_steer_takes_effect_at_the_next_step_and_on_later_scales() {
    steer_takes_effect(Optimizer::Adam { learning_rate: 0.005 });
}

#[test]
fn steering_to_the_same_weights_changes_no_bit() {
    let net = net();
    let (content, style) = inputs();
    for optimizer in [Optimizer::Lbfgs { history: 10 }, Optimizer::Adam { learning_rate: 0.02 }] {
        let config = small(optimizer);
        let plain =
            impasto::stylize(&net, &config, &content, std::slice::from_ref(&style), &mut NoObserver).unwrap();
        let mut same = SteerSame(Weights::of(&config));
        let steered =
            impasto::stylize(&net, &config, &content, std::slice::from_ref(&style), &mut same).unwrap();
        assert!(
            bits(&plain.image) == bits(&steered.image),
            "{optimizer:?}: steering to the same weights changed the result"
        );
        assert_eq!(plain.losses, steered.losses);
    }
}

#[test]
fn invalid_steered_weights_end_the_run_with_a_config_error() {
    let net = net();
    let (content, style) = inputs();
    let config = small(Optimizer::Lbfgs { history: 10 });
    let to = Weights { content: 1.0, style: f32::NAN, tv: 0.0 };
    let mut obs = SteerAt { at: 1, to, last: 0, losses: Vec::new() };
    let err = impasto::stylize(&net, &config, &content, &[style], &mut obs).unwrap_err();
    assert!(matches!(err, impasto::Error::Config { .. }), "{err}");
    assert!(err.to_string().contains("style weight NaN"), "{err}");
}
