//! Checkpoints: a run interrupted and resumed from its checkpoint ends with exactly the bits of an
//! uninterrupted run (L-BFGS and Adam, across a multi-scale schedule); a checkpoint from other settings
//! is refused; an observer may ask a finished run not to write its checkpoint.

use std::ops::ControlFlow;

use impasto::{Arch, Error, NoObserver, Observer, Optimizer, Pooling, Step, StopReason, StyleConfig, Vgg};

use crate::common::{random_vgg, shared_dir};

struct StopAt(usize);

impl Observer for StopAt {
    fn on_step(&mut self, s: &Step<'_>) -> ControlFlow<()> {
        if s.iteration == self.0 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    }
}

fn bits(img: &impasto::image::Rgb32FImage) -> Vec<u32> {
    img.iter().map(|v| v.to_bits()).collect()
}

fn interrupted_equals_uninterrupted(net: &Vgg, base: StyleConfig, stop_at: usize) {
    let img = |n: &str| impasto::load_image(&shared_dir().join("images").join(n)).unwrap();
    let (content, style) = (img("chelsea.png"), img("the_scream.jpg"));
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("run.ckpt");

    let full = impasto::stylize(net, &base, &content, std::slice::from_ref(&style), &mut NoObserver).unwrap();

    let first = StyleConfig { checkpoint: Some(ckpt.clone()), checkpoint_every: 5, ..base.clone() };
    let part =
        impasto::stylize(net, &first, &content, std::slice::from_ref(&style), &mut StopAt(stop_at)).unwrap();
    assert_eq!(part.stop, StopReason::Cancelled);
    assert!(ckpt.is_file());

    let second = StyleConfig { resume: Some(ckpt.clone()), ..base.clone() };
    let rest =
        impasto::stylize(net, &second, &content, std::slice::from_ref(&style), &mut NoObserver).unwrap();
    assert_eq!(rest.iterations, full.iterations);
    assert!(bits(&rest.image) == bits(&full.image), "resumed run differs from the uninterrupted one");

    // A checkpoint from other settings is refused with a clear error.
    let other = StyleConfig { style_weight: 7.0, resume: Some(ckpt), ..base };
    let err = impasto::stylize(net, &other, &content, &[style], &mut NoObserver).unwrap_err();
    assert!(matches!(err, Error::Checkpoint { .. }) && err.to_string().contains("other settings"), "{err}");
}

fn small(optimizer: Optimizer) -> StyleConfig {
    StyleConfig {
        size: 48,
        min_size: 24,
        iterations: 12,
        scale_iterations: Some(10),
        optimizer,
        content_layers: vec!["relu2_2".into()],
        style_layers: vec!["relu1_1".into(), "relu2_1".into()],
        threads: 2,
        ..StyleConfig::default()
    }
}

#[test]
fn lbfgs_resume_is_bit_exact_across_scales() {
    let net = random_vgg(Arch::Vgg16, Pooling::Max, 4, 11);
    let config = small(Optimizer::Lbfgs { history: 5 });
    assert_eq!(config.scales(), vec![(24, 12), (48, 10)]);
    interrupted_equals_uninterrupted(&net, config.clone(), 7); // inside the first scale
    interrupted_equals_uninterrupted(&net, config, 16); // inside the second
}

#[test]
fn adam_resume_is_bit_exact() {
    let net = random_vgg(Arch::Vgg16, Pooling::Avg, 4, 12);
    interrupted_equals_uninterrupted(&net, small(Optimizer::Adam { learning_rate: 0.02 }), 9);
}

#[test]
fn schedule_is_single_scale_up_to_twice_min_size() {
    let c = |size| StyleConfig { size, ..StyleConfig::default() }.scales();
    assert_eq!(c(512), vec![(512, 500)]);
    assert_eq!(c(1000), vec![(1000, 500)]);
    assert_eq!(c(1024), vec![(512, 500), (1024, 250)]);
    assert_eq!(c(2048), vec![(512, 500), (1024, 250), (2048, 125)]);
}

/// A run stopped (or finished) with a checkpoint and resumed with more iterations ends with exactly
/// the bits of an uninterrupted run of the larger count: the resumed scale goes on to its new count.
fn resumed_for_longer_equals_a_longer_run(
    net: &Vgg,
    short: StyleConfig,
    longer: StyleConfig,
    stop_at: Option<usize>,
) {
    let img = |n: &str| impasto::load_image(&shared_dir().join("images").join(n)).unwrap();
    let (content, style) = (img("chelsea.png"), img("the_scream.jpg"));
    let styles = std::slice::from_ref(&style);
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("run.ckpt");

    let first = StyleConfig { checkpoint: Some(ckpt.clone()), ..short.clone() };
    let part = match stop_at {
        Some(n) => impasto::stylize(net, &first, &content, styles, &mut StopAt(n)).unwrap(),
        None => impasto::stylize(net, &first, &content, styles, &mut NoObserver).unwrap(),
    };
    match stop_at {
        Some(_) => assert_eq!(part.stop, StopReason::Cancelled),
        None => assert!(matches!(part.stop, StopReason::Finished | StopReason::Converged)),
    }
    assert!(ckpt.is_file(), "a finished run writes its checkpoint at the end");

    // Only how long the run goes on differs (and the time limit may).
    let hour = Some(std::time::Duration::from_secs(3600));
    let resumed = StyleConfig { resume: Some(ckpt), time_limit: hour, ..longer.clone() };
    let rest = impasto::stylize(net, &resumed, &content, styles, &mut NoObserver).unwrap();
    let full = impasto::stylize(net, &longer, &content, styles, &mut NoObserver).unwrap();
    assert_eq!((rest.iterations, rest.stop), (full.iterations, StopReason::Finished));
    assert!(bits(&rest.image) == bits(&full.image), "resumed run differs from the longer uninterrupted one");
    assert!(bits(&part.image) != bits(&full.image));
}

#[test]
fn a_finished_run_resumes_for_more_iterations() {
    let net = random_vgg(Arch::Vgg16, Pooling::Max, 4, 11);
    let single = StyleConfig { min_size: 48, ..small(Optimizer::Lbfgs { history: 5 }) };
    let more = |c: &StyleConfig, iterations| StyleConfig { iterations, ..c.clone() };
    resumed_for_longer_equals_a_longer_run(&net, more(&single, 6), more(&single, 10), None);
    let adam = StyleConfig { min_size: 48, ..small(Optimizer::Adam { learning_rate: 0.02 }) };
    resumed_for_longer_equals_a_longer_run(&net, more(&adam, 6), more(&adam, 9), None);
}

#[test]
fn a_stopped_multi_scale_run_resumes_for_more_iterations() {
    let net = random_vgg(Arch::Vgg16, Pooling::Max, 4, 11);
    let config = StyleConfig { iterations: 8, ..small(Optimizer::Lbfgs { history: 5 }) };
    assert_eq!(config.scales(), vec![(24, 8), (48, 10)]);
    // Stopped in the first scale: it goes on to 14 iterations, then the second scale runs.
    let longer = StyleConfig { iterations: 14, ..config.clone() };
    resumed_for_longer_equals_a_longer_run(&net, config.clone(), longer, Some(5));
    // Stopped in the last scale, 2 of its 4 iterations done: it goes on to its new count, 7.
    let short = StyleConfig { scale_iterations: Some(4), ..config };
    let longer = StyleConfig { scale_iterations: Some(7), ..short.clone() };
    resumed_for_longer_equals_a_longer_run(&net, short, longer, Some(10));
}

/// Stops at an iteration, and answers that a finished run writes no checkpoint.
struct NoFinalCheckpoint(Option<usize>);

impl Observer for NoFinalCheckpoint {
    fn on_step(&mut self, s: &Step<'_>) -> ControlFlow<()> {
        if Some(s.iteration) == self.0 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    }

    fn checkpoint_at_end(&self) -> bool {
        false
    }
}

/// An observer that answers no to `checkpoint_at_end`: a finished run leaves no checkpoint, one
/// stopped early still writes it (and it resumes as any other).
#[test]
fn a_finished_run_writes_no_checkpoint_when_the_observer_says_so() {
    let net = random_vgg(Arch::Vgg16, Pooling::Max, 4, 11);
    let img = |n: &str| impasto::load_image(&shared_dir().join("images").join(n)).unwrap();
    let (content, style) = (img("chelsea.png"), img("the_scream.jpg"));
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("run.ckpt");
    let config = StyleConfig {
        min_size: 48,
        checkpoint: Some(ckpt.clone()),
        ..small(Optimizer::Lbfgs { history: 5 })
    };
    let styles = std::slice::from_ref(&style);
    let done = impasto::stylize(&net, &config, &content, styles, &mut NoFinalCheckpoint(None)).unwrap();
    assert_eq!(done.stop, StopReason::Finished);
    assert!(!ckpt.exists(), "a finished run wrote its checkpoint");
    impasto::stylize(&net, &config, &content, styles, &mut NoObserver).unwrap();
    assert!(ckpt.is_file(), "by default a finished run writes its checkpoint");
    std::fs::remove_file(&ckpt).unwrap();
    let part = impasto::stylize(&net, &config, &content, styles, &mut NoFinalCheckpoint(Some(3))).unwrap();
    assert_eq!(part.stop, StopReason::Cancelled);
    assert!(ckpt.is_file(), "a stopped run writes its checkpoint");
    let resumed = StyleConfig { resume: Some(ckpt.clone()), ..config.clone() };
    let rest = impasto::stylize(&net, &resumed, &content, styles, &mut NoFinalCheckpoint(None)).unwrap();
    assert!(bits(&rest.image) == bits(&done.image), "the resumed run differs from the uninterrupted one");
}
