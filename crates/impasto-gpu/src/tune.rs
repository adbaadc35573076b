//! Choosing each GEMM's form by timing it on the device. Every form of `matmul.wgsl` gives the same
//! bits (each output is the same fma chain in increasing k), so an objective may run its first
//! evaluations with the products in different forms, timed with the GPU's timestamps, and keep the
//! fastest for each product: the evaluations are real ones, their results do not depend on the
//! choice. The choice is remembered per device and product shape, so later objectives of that shape
//! (the next tile, the next run of `impasto serve`) start with it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::device::Gpu;
use crate::kernels::{Gemm, GemmTile};
use crate::profile::STEPS_PER_SET;
use crate::program::{Program, Step};

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

/// How a tile of C is computed: in one of the [`GemmTile`] forms (64×64, 128×128, 64×128), or
/// 32×32 (`tile4`).
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
    /// The tile's rows and columns of C.
    pub(crate) fn size(self) -> (usize, usize) {
        match self.tile {
            Tile::Small => (32, 32),
            Tile::Big(GemmTile::Outputs8x8Tile128) => (128, 128),
            Tile::Big(GemmTile::Outputs8x8Tile64x128) => (64, 128),
            Tile::Big(_) => (64, 64),
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
            Tile::Big(GemmTile::Outputs8x8Tile64x128) => "64x128 tile, 8x8 per invocation",
            Tile::Small => "32x32 tile, 4x4 per invocation",
        };
        match (kind, self.per_value) {
            (Gemm::Conv, false) => format!("{tile}, staged by taps"),
            (Gemm::Conv, true) => format!("{tile}, staged per value"),
            _ => tile.to_string(),
        }
    }
}

/// What identifies a product for the choice of its form: its variant, its rows, its sum's length,
/// its K slices and epilogue, and its columns (pixels) to the next power of two, so that products of
/// about the same size (a run's tiles, which differ by a few pixels) share one tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub(crate) kind: Gemm,
    pub(crate) m: usize,
    pub(crate) k: usize,
    pub(crate) n_class: usize,
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

/// The tuning of one product shape on a device: its forms, and the trials among them.
#[derive(Debug)]
struct Tuning {
    forms: Vec<Form>,
    trials: Trials,
}

/// The tunings of a device, by product shape, shared by every program on it: a product's form is
/// chosen once per device and shape, over the evaluations of as many objectives as that takes (a
/// run's tiles, or its scales and later runs of the same size, carry on where the last one stopped).
#[derive(Debug, Default)]
pub(crate) struct Tuner(Mutex<HashMap<Key, Tuning>>);

impl Tuner {
    /// Starts tuning `key` among `forms` (`default` in force until decided), unless it is known;
    /// returns whether it was already decided.
    pub(crate) fn register(&self, key: Key, forms: Vec<Form>, default: Form) -> bool {
        let Ok(mut map) = self.0.lock() else { return true };
        if let Some(t) = map.get(&key) {
            return t.trials.decided();
        }
        let first = forms.iter().position(|&f| f == default).unwrap_or(0);
        let trials = Trials::new(forms.len(), first, None);
        let decided = trials.decided();
        map.insert(key, Tuning { forms, trials });
        decided
    }

    /// The form `key` runs now (the chosen one once decided), and whether it is decided.
    fn current(&self, key: &Key) -> Option<(Form, bool)> {
        let map = self.0.lock().ok()?;
        map.get(key).map(|t| (t.forms[t.trials.current()], t.trials.decided()))
    }

    /// Whether `key`'s form is chosen (unknown keys count as chosen: nothing to tune).
    fn decided(&self, key: &Key) -> bool {
        self.current(key).is_none_or(|c| c.1)
    }

    /// Takes a time of `form` for `key`, if that is the form its trials wait for.
    fn record(&self, key: &Key, form: Form, seconds: f64) {
        if let Ok(mut map) = self.0.lock()
            && let Some(t) = map.get_mut(key)
            && !t.trials.decided()
            && t.forms[t.trials.current()] == form
        {
            t.trials.record(seconds);
        }
    }

    /// `key`'s forms with their fastest times, and the form in force.
    fn report(&self, key: &Key) -> Option<(FormTimes, Form)> {
        let map = self.0.lock().ok()?;
        let t = map.get(key)?;
        let forms = t.forms.iter().copied().zip(t.trials.best.iter().copied()).collect();
        Some((forms, t.forms[t.trials.current()]))
    }
}

/// Each form with its fastest time, seconds (`None`: not timed).
type FormTimes = Vec<(Form, Option<f64>)>;

/// A GEMM step of a program with more than one form to run in.
#[derive(Debug)]
pub(crate) struct Choice {
    /// The step of the program this chooses for.
    pub(crate) step: usize,
    pub(crate) key: Key,
    pub(crate) label: String,
    /// The product's columns.
    pub(crate) n: usize,
    /// Its forms, bound to its buffers.
    pub(crate) alts: Vec<Alt>,
    /// The alternative run where the tuner's form is not among `alts`.
    pub(crate) default: usize,
    /// Whether the form was chosen before this program existed.
    pub(crate) remembered: bool,
    /// The alternative its step holds now.
    pub(crate) running: usize,
}

impl Program {
    /// Puts each product's form in force (the chosen one, or the one its tuning runs next) into its
    /// step; returns the steps to time this round (those of products still tuned, ascending, at most
    /// [`STEPS_PER_SET`]) with the shape and form each runs.
    pub(crate) fn round(&mut self, gpu: &Gpu) -> Vec<(usize, Key, Form)> {
        let mut timed = Vec::new();
        for c in &mut self.choices {
            let current = gpu.tuner.current(&c.key);
            let alt =
                current.and_then(|(form, _)| c.alts.iter().position(|a| a.form == form)).unwrap_or(c.default);
            // Once decided, a step keeps its alternative: rewrite it only when that changes.
            if alt != c.running {
                self.steps[c.step] = dispatch(c, alt);
                c.running = alt;
            }
            if let Some((form, false)) = current
                && c.alts[alt].form == form
                && timed.len() < STEPS_PER_SET
            {
                timed.push((c.step, c.key, form));
            }
        }
        timed
    }

    /// Takes the times of the steps [`Program::round`] returned, in order: the time of a shape's
    /// form this round is the sum over the steps of that shape.
    pub(crate) fn record_round(&self, gpu: &Gpu, timed: &[(usize, Key, Form)], seconds: &[f64]) {
        let mut sums: Vec<(Key, Form, f64)> = Vec::new();
        for (&(_, key, form), &s) in timed.iter().zip(seconds) {
            match sums.iter_mut().find(|x| x.0 == key && x.1 == form) {
                Some(x) => x.2 += s,
                None => sums.push((key, form, s)),
            }
        }
        for (key, form, s) in sums {
            gpu.tuner.record(&key, form, s);
        }
    }

    /// Whether some product's form is still being chosen.
    pub(crate) fn tuning(&self, gpu: &Gpu) -> bool {
        self.choices.iter().any(|c| !gpu.tuner.decided(&c.key))
    }

    /// Every product with a choice of form: the forms' times and the one in force.
    pub(crate) fn tuned(&self, gpu: &Gpu) -> Vec<TunedProduct> {
        let mut out = Vec::new();
        for c in &self.choices {
            let Some((forms, chosen)) = gpu.tuner.report(&c.key) else { continue };
            let name = |f: Form| f.name(c.key.kind);
            out.push(TunedProduct {
                label: c.label.clone(),
                m: c.key.m,
                k: c.key.k,
                n: c.n,
                forms: forms.into_iter().map(|(f, t)| (name(f), t)).collect(),
                chosen: name(chosen),
                remembered: c.remembered,
            });
        }
        out
    }
}

/// The step that runs alternative `alt` of `c`.
pub(crate) fn dispatch(c: &Choice, alt: usize) -> Step {
    let a = &c.alts[alt];
    Step::Dispatch {
        pipeline: a.pipeline.clone(),
        bind: a.bind.clone(),
        groups: a.groups,
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
    /// Whether the choice was made before this objective existed (by an earlier one of about the
    /// same shape on this device).
    pub remembered: bool,
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

    fn key(m: usize) -> Key {
        Key { kind: Gemm::Conv, m, k: 576, n_class: 4096, slices: 1, flags: 0 }
    }

    fn forms() -> Vec<Form> {
        [GemmTile::Outputs8x8, GemmTile::Outputs4x4, GemmTile::Outputs8x8Tile128]
            .map(|t| Form { tile: Tile::Big(t), per_value: false })
            .to_vec()
    }

    #[test]
    fn objectives_of_one_shape_share_its_tuning_and_a_stale_time_is_ignored() {
        let tuner = Tuner::default();
        let f = forms();
        assert!(!tuner.register(key(64), f.clone(), f[1]));
        // The warm-up runs the default, then every form in order.
        assert_eq!(tuner.current(&key(64)), Some((f[1], false)));
        tuner.record(&key(64), f[1], 9.0);
        assert_eq!(tuner.current(&key(64)), Some((f[0], false)));
        // A second objective of the shape (or one of about its size) continues the same trials; a
        // time of a form the trials no longer wait for (another objective's round) is dropped.
        assert!(!tuner.register(key(64), f.clone(), f[0]));
        tuner.record(&key(64), f[1], 0.1);
        assert_eq!(tuner.current(&key(64)), Some((f[0], false)));
        for (form, s) in [(f[0], 2.0), (f[1], 3.0), (f[2], 1.0)] {
            tuner.record(&key(64), form, s);
        }
        assert_eq!(tuner.current(&key(64)), Some((f[2], true)));
        assert!(tuner.register(key(64), f.clone(), f[0]), "decided: nothing left to tune");
        let (times, chosen) = tuner.report(&key(64)).unwrap();
        assert_eq!(chosen, f[2]);
        assert_eq!(times, vec![(f[0], Some(2.0)), (f[1], Some(3.0)), (f[2], Some(1.0))]);
        // Another shape is tuned on its own; an unknown one has nothing to tune.
        assert!(!tuner.register(key(128), f.clone(), f[0]));
        assert!(!tuner.decided(&key(128)) && tuner.decided(&key(256)));
    }
}
