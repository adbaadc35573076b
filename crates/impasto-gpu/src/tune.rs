//! Choosing each GEMM's form by timing it on the device. Every form of `matmul.wgsl` gives the same
//! bits (each output is the same fma chain in increasing k), so an objective may run its first
//! evaluations with the products in different forms, timed with the GPU's timestamps, and keep the
//! fastest for each product: the evaluations are real ones, their results do not depend on the
//! choice. The choice is remembered per device and product shape, so later objectives of that shape
//! (the next tile, the next run of `impasto serve`) start with it.

use std::collections::VecDeque;

use crate::device::Gpu;
use crate::kernels::{Gemm, GemmTile, Program, Step};
use crate::profile::STEPS_PER_SET;

/// Whether objectives time the GEMM forms and keep the fastest for each product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tune {
    /// On adapters that are not CPUs and have timestamp queries. A software adapter (lavapipe) runs
    /// a workgroup on a core, where the forms' order is known (`tile8`, measured) and the extra
    /// kernels would only cost compile time.
    #[default]
    Auto,
    /// On any adapter with timestamp queries (to test the tuning on a software one).
    On,
    /// Every product in the form [`crate::GpuOptions`] set.
    Off,
}

/// How a tile of C is computed: in one of the [`GemmTile`] forms (64×64 or 128×128), or 32×32 (`tile4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Tile {
    Big(GemmTile),
    Small,
}

/// One compiled form of a GEMM variant: its tile, and for the convolution whether its input is
/// staged a value at a time (16 k) rather than 2 channels × 9 taps (18 k).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Form {
    pub(crate) tile: Tile,
    pub(crate) per_value: bool,
}

impl Form {
    /// The tile's side (128, 64 or 32 outputs).
    pub(crate) fn size(self) -> usize {
        match self.tile {
            Tile::Small => 32,
            Tile::Big(GemmTile::Outputs8x8Tile128) => 128,
            Tile::Big(_) => 64,
        }
    }

    /// A short name: the tile and outputs per invocation, and the convolution's staging.
    pub(crate) fn name(self, kind: Gemm) -> String {
        let tile = match self.tile {
            Tile::Big(GemmTile::Outputs8x8) => "64x64 tile, 8x8 per invocation",
            Tile::Big(GemmTile::Outputs8x8Pipelined) => "64x64 tile, 8x8, two buffers",
            Tile::Big(GemmTile::Outputs8x8Prefetch) => "64x64 tile, 8x8, prefetched",
            Tile::Big(GemmTile::Outputs4x4) => "64x64 tile, 4x4 per invocation",
            Tile::Big(GemmTile::Outputs8x8Tile128) => "128x128 tile, 8x8 per invocation",
            Tile::Small => "32x32 tile, 4x4 per invocation",
        };
        match (kind, self.per_value) {
            (Gemm::Conv, false) => format!("{tile}, staged by taps"),
            (Gemm::Conv, true) => format!("{tile}, staged per value"),
            _ => tile.to_string(),
        }
    }
}

/// What identifies a product for the remembered choice: its variant and everything that sets its
/// work and workgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub(crate) kind: Gemm,
    pub(crate) m: usize,
    pub(crate) n: usize,
    pub(crate) k: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) slices: usize,
    pub(crate) flags: u32,
}

/// A form a product may take, bound to the product's buffers.
#[derive(Debug)]
pub(crate) struct Alt {
    pub(crate) form: Form,
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) bind: wgpu::BindGroup,
    pub(crate) groups: [u32; 3],
}

/// Alternatives within this factor of the fastest first time are timed a second time.
const CLOSE: f64 = 1.25;

/// Which of `n` alternatives is fastest, from one time per round: first the default as a warm-up
/// (its time is not kept), then every alternative once, then those within [`CLOSE`] of the fastest
/// once more; the fastest time wins.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Trials {
    /// The alternative in force: the default until decided, then the fastest.
    pub(crate) chosen: usize,
    /// The fastest time of each alternative, seconds.
    pub(crate) best: Vec<Option<f64>>,
    /// Alternatives still to run, the next in front.
    todo: VecDeque<usize>,
    warmed: bool,
    second_pass: bool,
}

impl Trials {
    /// Trials of `n` alternatives, `default` in force; none when `decided` is already known.
    pub(crate) fn new(n: usize, default: usize, decided: Option<usize>) -> Trials {
        let todo = match decided {
            None if n > 1 => std::iter::once(default).chain(0..n).collect(),
            _ => VecDeque::new(),
        };
        Trials {
            chosen: decided.unwrap_or(default),
            best: vec![None; n],
            todo,
            warmed: false,
            second_pass: false,
        }
    }

    /// Whether the choice is made.
    pub(crate) fn decided(&self) -> bool {
        self.todo.is_empty()
    }

    /// The alternative this round runs.
    pub(crate) fn current(&self) -> usize {
        self.todo.front().copied().unwrap_or(self.chosen)
    }

    /// Takes this round's time of [`Trials::current`]; returns true when that decides the choice.
    pub(crate) fn record(&mut self, seconds: f64) -> bool {
        let Some(a) = self.todo.pop_front() else { return false };
        if self.warmed {
            self.best[a] = Some(self.best[a].map_or(seconds, |b| b.min(seconds)));
        }
        self.warmed = true;
        if !self.todo.is_empty() {
            return false;
        }
        if !self.second_pass {
            self.second_pass = true;
            let fastest = self.best.iter().flatten().fold(f64::INFINITY, |a, &b| a.min(b));
            let close: VecDeque<usize> = (0..self.best.len())
                .filter(|&i| self.best[i].is_some_and(|b| b <= CLOSE * fastest))
                .collect();
            if close.len() > 1 {
                self.todo = close;
                return false;
            }
        }
        let timed = self.best.iter().enumerate().filter_map(|(i, b)| b.map(|b| (i, b)));
        if let Some((i, _)) = timed.min_by(|x, y| x.1.total_cmp(&y.1)) {
            self.chosen = i;
        }
        true
    }
}

/// The choice of form for one GEMM step of a program.
#[derive(Debug)]
pub(crate) struct Choice {
    /// The step of the program this chooses for.
    pub(crate) step: usize,
    pub(crate) key: Key,
    pub(crate) label: String,
    pub(crate) alts: Vec<Alt>,
    pub(crate) trials: Trials,
    /// Taken from an earlier objective's tuning, not timed here.
    pub(crate) remembered: bool,
}

impl Choice {
    /// A step with alternatives `alts`, `default` in force; decided when `remembered` names one.
    pub(crate) fn new(
        step: usize,
        key: Key,
        label: String,
        alts: Vec<Alt>,
        default: usize,
        remembered: Option<Form>,
    ) -> Choice {
        let known = remembered.and_then(|f| alts.iter().position(|a| a.form == f));
        let trials = Trials::new(alts.len(), default, known);
        Choice { step, key, label, alts, trials, remembered: known.is_some() }
    }

    /// The alternative this round runs (or the chosen one).
    pub(crate) fn current(&self) -> &Alt {
        &self.alts[self.trials.current()]
    }
}

impl Program {
    /// Whether some product's form is still being chosen.
    pub(crate) fn tuning(&self) -> bool {
        self.choices.iter().any(|c| !c.trials.decided())
    }

    /// Puts this round's alternative into the step of every product still being tuned (at most
    /// [`STEPS_PER_SET`] of them) and returns those steps, ascending: the steps to time.
    pub(crate) fn begin_round(&mut self) -> Vec<usize> {
        let mut timed = Vec::new();
        for c in self.choices.iter().filter(|c| !c.trials.decided()).take(STEPS_PER_SET) {
            self.steps[c.step] = dispatch(c);
            timed.push(c.step);
        }
        timed
    }

    /// Takes the times of the steps [`Program::begin_round`] returned, in order; a product whose
    /// choice that decides takes its fastest form, which `gpu` remembers for its shape.
    pub(crate) fn end_round(&mut self, gpu: &Gpu, seconds: &[f64]) {
        let undecided = self.choices.iter_mut().filter(|c| !c.trials.decided()).take(STEPS_PER_SET);
        for (c, &s) in undecided.zip(seconds) {
            if c.trials.record(s) {
                gpu.remember(c.key, c.alts[c.trials.chosen].form);
            }
            self.steps[c.step] = dispatch(c);
        }
    }

    /// Every product with a choice of form: the forms' times and the one in force.
    pub(crate) fn tuned(&self) -> Vec<TunedProduct> {
        self.choices.iter().map(TunedProduct::of).collect()
    }
}

/// The step that runs `c`'s current alternative.
pub(crate) fn dispatch(c: &Choice) -> Step {
    let alt = c.current();
    Step::Dispatch {
        pipeline: alt.pipeline.clone(),
        bind: alt.bind.clone(),
        groups: alt.groups,
        label: c.label.clone(),
    }
}

/// One tuned product as [`crate::GpuObjective::tuning`] reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct TunedProduct {
    /// The step's name in profiles (`conv fwd 2`, `gram`, …).
    pub label: String,
    /// C is `m`×`n`, the sum over `k`.
    pub m: usize,
    /// The product's inner dimension.
    pub k: usize,
    /// Columns of C (pixels, for a convolution).
    pub n: usize,
    /// Each form's name and its fastest time, seconds (`None` where it was not timed).
    pub forms: Vec<(String, Option<f64>)>,
    /// The form in force.
    pub chosen: String,
    /// Whether the choice came from an earlier objective of the same shape on this device.
    pub remembered: bool,
}

impl TunedProduct {
    pub(crate) fn of(c: &Choice) -> TunedProduct {
        let name = |a: &Alt| a.form.name(c.key.kind);
        TunedProduct {
            label: c.label.clone(),
            m: c.key.m,
            k: c.key.k,
            n: c.key.n,
            forms: c.alts.iter().zip(&c.trials.best).map(|(a, t)| (name(a), *t)).collect(),
            chosen: name(&c.alts[c.trials.chosen]),
            remembered: c.remembered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `t` to its decision with the times `time(alternative)`; returns the alternatives run.
    fn run(t: &mut Trials, mut time: impl FnMut(usize) -> f64) -> Vec<usize> {
        let mut ran = Vec::new();
        while !t.decided() {
            let a = t.current();
            ran.push(a);
            t.record(time(a));
        }
        ran
    }

    #[test]
    fn the_fastest_alternative_wins_after_a_warm_up_and_a_second_look_at_close_ones() {
        let mut t = Trials::new(4, 0, None);
        assert_eq!(t.chosen, 0);
        // Alternative 0's warm-up is slow (cold caches) and not kept; 1 and 3 are within 25 % of
        // the fastest (3) and are timed again; 2 is not.
        let times = [1.0, 1.2, 5.0, 1.0];
        let mut first = true;
        let ran = run(&mut t, |a| if std::mem::take(&mut first) { 100.0 } else { times[a] });
        assert_eq!(ran, vec![0, 0, 1, 2, 3, 0, 1, 3]);
        assert_eq!(t.chosen, 0, "the first of equal times");
        assert_eq!(t.best, vec![Some(1.0), Some(1.2), Some(5.0), Some(1.0)]);
        assert_eq!(t.current(), 0);
    }

    #[test]
    fn a_clear_winner_needs_no_second_look() {
        let mut t = Trials::new(3, 2, None);
        let ran = run(&mut t, |a| [3.0, 1.0, 2.0][a]);
        assert_eq!(ran, vec![2, 0, 1, 2]);
        assert_eq!(t.chosen, 1);
    }

    #[test]
    fn one_alternative_or_a_remembered_choice_is_decided_at_once() {
        let t = Trials::new(1, 0, None);
        assert!(t.decided());
        let t = Trials::new(4, 0, Some(2));
        assert!(t.decided());
        assert_eq!(t.current(), 2);
    }
}
