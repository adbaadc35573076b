//! Limited-memory BFGS (Nocedal's two-loop recursion) for pixels boxed in 0..1, with a backtracking
//! Armijo line search along the projected path that normally accepts the unit step, so one iteration
//! costs one function evaluation as in torch's L-BFGS.
//!
//! The box is handled the projected-quasi-Newton way: variables at a bound whose gradient pushes them
//! outwards form the active set; the two-loop recursion runs on the gradient with those entries zeroed,
//! the direction is zeroed there too, and every trial point is projected back into the box. So the
//! image the optimiser reports is always a valid image, and saving it loses nothing to clamping.

use std::borrow::Cow;
use std::collections::VecDeque;
#[cfg(feature = "gpu")]
use std::sync::{Arc, Mutex};

#[cfg(feature = "gpu")]
use impasto_gpu::GpuHistory;

use super::all_finite;
use super::projected::{free_gradient, mask_direction, new_pair, trial};
use super::vector::{axpy, dot, scale};
use crate::error::GpuFault;

/// What one L-BFGS iteration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LbfgsStep {
    /// A step was taken; `x`, `f`, `g` hold the new point.
    Moved,
    /// No step changes the image noticeably any more.
    Converged,
    /// Every trial point had a non-finite loss or gradient; `x`, `f`, `g` are unchanged.
    NonFinite,
}

/// L-BFGS state: the last `history` correction pairs, on the host or, when the run's objective is
/// on a GPU, on that device (see [`Lbfgs::move_to_gpu`]).
#[derive(Debug)]
pub(crate) struct Lbfgs {
    pub(crate) history: usize,
    lo: f32,
    hi: f32,
    pairs: Pairs,
    /// Largest pixel change of the next step taken without curvature pairs; doubles after each
    /// accepted one, since near the content image the loss is often concave along −g.
    pub(crate) sd_step: f64,
    /// Image-sized buffers of the last step, reused by the next so that a step allocates nothing.
    spare: Spare,
}

/// Buffers a step reuses: the direction, the trial point and the pair's s and y (whose contents
/// never carry over: each pass overwrites them whole).
#[derive(Debug, Default)]
struct Spare {
    d: Vec<f32>,
    x_new: Vec<f32>,
    s: Vec<f32>,
    y: Vec<f32>,
}

/// One correction pair as saved: s, y (borrowed on the host, read back from a GPU) and ρ = 1/yᵀs.
pub(crate) type SavedPair<'a> = (Cow<'a, [f32]>, Cow<'a, [f32]>, f64);

/// Where the correction pairs are kept.
#[derive(Debug)]
enum Pairs {
    /// In host memory, oldest first; the two-loop recursion runs here.
    Host { s: VecDeque<Vec<f32>>, y: VecDeque<Vec<f32>>, rho: VecDeque<f64> },
    /// On the GPU of the run's objective, which runs the two-loop recursion ([`GpuHistory`]): the
    /// gradient goes up and the direction comes back. A GPU error is kept in `error` (the run's
    /// [`crate::device::GpuContext`] slot) and stops the step as a non-finite loss does.
    #[cfg(feature = "gpu")]
    Gpu { ring: Box<GpuHistory>, error: Arc<Mutex<Option<GpuFault>>> },
}

/// Largest change of any pixel (0..1 scale) below which a step counts as no progress.
const MIN_STEP: f64 = 1e-7;
/// Largest pixel change (0..1 scale) of a step taken without curvature information.
const FIRST_STEP: f64 = 1.0 / 255.0;
/// Cap on `sd_step`.
const MAX_SD_STEP: f64 = 0.25;
/// Backtracking halvings tried before giving up on a direction.
const MAX_BACKTRACK: usize = 12;

impl Lbfgs {
    /// A fresh optimiser keeping `history` pairs.
    pub(crate) fn new(history: usize) -> Lbfgs {
        Lbfgs {
            history,
            lo: 0.0,
            hi: 1.0,
            pairs: Pairs::Host { s: VecDeque::new(), y: VecDeque::new(), rho: VecDeque::new() },
            sd_step: FIRST_STEP,
            spare: Spare::default(),
        }
    }

    /// Forgets the pairs and the steepest-descent step, as a fresh optimiser, keeping the pairs'
    /// place (host or GPU).
    pub(crate) fn restart(&mut self) {
        self.clear();
        self.sd_step = FIRST_STEP;
    }

    /// Pairs held.
    pub(crate) fn len(&self) -> usize {
        match &self.pairs {
            Pairs::Host { s, .. } => s.len(),
            #[cfg(feature = "gpu")]
            Pairs::Gpu { ring, .. } => ring.len(),
        }
    }

    /// The optimiser with only its newest `keep` pairs, on the host (read back from a GPU, where a
    /// failure leaves none): to carry a tile's curvature into its next round. `None` when no pair
    /// is left.
    pub(crate) fn carried(mut self, keep: usize) -> Option<Lbfgs> {
        #[cfg(feature = "gpu")]
        self.move_to_host();
        let history = self.history;
        self.spare = Spare::default();
        match &mut self.pairs {
            Pairs::Host { s, y, rho } => keep_newest(s, y, rho, keep),
            // Not reached: `move_to_host` above left them on the host.
            #[cfg(feature = "gpu")]
            Pairs::Gpu { .. } => {}
        }
        self.history = history;
        (self.len() > 0).then_some(self)
    }

    /// Whether the pairs are on a GPU.
    #[cfg(all(test, feature = "gpu"))]
    pub(crate) fn on_gpu(&self) -> bool {
        !matches!(self.pairs, Pairs::Host { .. })
    }

    fn clear(&mut self) {
        match &mut self.pairs {
            Pairs::Host { s, y, rho } => {
                s.clear();
                y.clear();
                rho.clear();
            }
            #[cfg(feature = "gpu")]
            Pairs::Gpu { ring, .. } => ring.clear(),
        }
    }

    /// Appends the correction pair `s`, `y` with `ys` = `yᵀs` > 0, dropping the oldest when full.
    /// On a GPU, an upload error is kept and returned.
    pub(crate) fn push_pair(&mut self, s: Vec<f32>, y: Vec<f32>, ys: f64) -> Result<(), GpuFault> {
        self.restore_pair(s, y, 1.0 / ys)
    }

    /// [`Lbfgs::push_pair`] with ρ = 1/yᵀs given (as a checkpoint stores it).
    pub(crate) fn restore_pair(
        &mut self,
        s_new: Vec<f32>,
        y_new: Vec<f32>,
        rho_new: f64,
    ) -> Result<(), GpuFault> {
        match &mut self.pairs {
            Pairs::Host { s, y, rho } => {
                if s.len() == self.history {
                    // The dropped pair's memory serves the next step's s and y.
                    (self.spare.s, self.spare.y) =
                        (s.pop_front().unwrap_or_default(), y.pop_front().unwrap_or_default());
                    rho.pop_front();
                }
                rho.push_back(rho_new);
                s.push_back(s_new);
                y.push_back(y_new);
                Ok(())
            }
            #[cfg(feature = "gpu")]
            Pairs::Gpu { ring, error } => {
                let uploaded = ring.restore(&s_new, &y_new, rho_new).map_err(|e| keep(error, e));
                (self.spare.s, self.spare.y) = (s_new, y_new);
                uploaded
            }
        }
    }

    /// Changes the number of pairs kept, dropping the oldest if there are more.
    pub(crate) fn set_history(&mut self, history: usize) {
        self.history = history.max(1);
        let history = self.history;
        match &mut self.pairs {
            Pairs::Host { s, y, rho } => keep_newest(s, y, rho, history),
            #[cfg(feature = "gpu")]
            Pairs::Gpu { ring, error } => {
                if ring.capacity() != history {
                    // Another ring size: through the host (a run's history is set before its pairs
                    // move to the GPU, so this is off the way of a normal run). On an error the
                    // pairs stay on the host and the error is kept in the run's slot.
                    let (gpu, error, values) = (ring.gpu().clone(), error.clone(), ring.values());
                    self.move_to_host();
                    self.set_history(history);
                    let _ = self.move_to_gpu(gpu, error.clone(), values).map_err(|e| keep(&error, e));
                }
            }
        }
    }

    /// The pairs, oldest first: (s, y, ρ). On a GPU they are read back; if that fails the error is
    /// kept and there are none (a checkpoint then holds the image without its history).
    pub(crate) fn saved_pairs(&self) -> Vec<SavedPair<'_>> {
        match &self.pairs {
            Pairs::Host { s, y, rho } => s
                .iter()
                .zip(y)
                .zip(rho)
                .map(|((s, y), &r)| (Cow::Borrowed(&s[..]), Cow::Borrowed(&y[..]), r))
                .collect(),
            #[cfg(feature = "gpu")]
            Pairs::Gpu { ring, error } => (0..ring.len())
                .map(|i| ring.pair(i).map(|(s, y, r)| (Cow::Owned(s), Cow::Owned(y), r)))
                .collect::<Result<Vec<_>, _>>()
                .unwrap_or_else(|e| {
                    keep(error, e);
                    Vec::new()
                }),
        }
    }

    /// Moves the pairs onto `gpu` (a ring of `history` pairs of `values` floats, allocated now),
    /// where the two-loop recursion then runs; GPU errors of later steps go to `error`. Nothing
    /// changes if they are there already or on an error (which is returned).
    #[cfg(feature = "gpu")]
    pub(crate) fn move_to_gpu(
        &mut self,
        gpu: Arc<impasto_gpu::Gpu>,
        error: Arc<Mutex<Option<GpuFault>>>,
        values: usize,
    ) -> Result<(), GpuFault> {
        let Pairs::Host { s, y, rho } = &self.pairs else { return Ok(()) };
        let mut ring = GpuHistory::new(gpu, values, self.history)?;
        for ((s, y), &r) in s.iter().zip(y).zip(rho) {
            ring.restore(s, y, r)?;
        }
        self.pairs = Pairs::Gpu { ring: Box::new(ring), error };
        Ok(())
    }

    /// Moves the pairs back to the host (read back; none if that fails, the error kept).
    #[cfg(feature = "gpu")]
    fn move_to_host(&mut self) {
        let pairs: Vec<(Vec<f32>, Vec<f32>, f64)> =
            self.saved_pairs().into_iter().map(|(s, y, r)| (s.into_owned(), y.into_owned(), r)).collect();
        self.pairs = Pairs::Host { s: VecDeque::new(), y: VecDeque::new(), rho: VecDeque::new() };
        for (s, y, r) in pairs {
            let _ = self.restore_pair(s, y, r);
        }
    }

    /// The quasi-Newton direction `−H·g_free` (`g_free`: the gradient `g` at `x` with the active
    /// values zeroed) from the two-loop recursion, on the host (in `buffer`'s memory) or the GPU.
    fn direction(&self, x: &[f32], g: &[f32], mut buffer: Vec<f32>) -> Result<Vec<f32>, GpuFault> {
        let (lo, hi) = (self.lo, self.hi);
        match &self.pairs {
            Pairs::Host { s, y, rho } => {
                free_gradient(x, g, lo, hi, true, &mut buffer);
                host_direction(s, y, rho, &mut buffer);
                Ok(buffer)
            }
            #[cfg(feature = "gpu")]
            Pairs::Gpu { ring, error } => {
                free_gradient(x, g, lo, hi, false, &mut buffer);
                ring.direction_in_place(&mut buffer).map_err(|e| keep(error, e))?;
                Ok(buffer)
            }
        }
    }

    /// One iteration from `x` with loss `f` and gradient `g`, calling `eval` for trial points.
    /// On `Moved` the three are replaced by the new point's.
    pub(crate) fn step(
        &mut self,
        x: &mut Vec<f32>,
        f: &mut f64,
        g: &mut Vec<f32>,
        mut eval: impl FnMut(&[f32]) -> (f64, Vec<f32>),
    ) -> LbfgsStep {
        let (lo, hi) = (self.lo, self.hi);
        let buffer = std::mem::take(&mut self.spare.d);
        let Ok(mut d) = self.direction(x, g, buffer) else { return LbfgsStep::NonFinite };
        let (mut gtd, mut dmax) = mask_direction(x, g, lo, hi, &mut d);
        if gtd >= 0.0 || !gtd.is_finite() {
            // Not a descent direction: forget the history and use projected steepest descent.
            self.clear();
            free_gradient(x, g, lo, hi, true, &mut d);
            (gtd, dmax) = mask_direction(x, g, lo, hi, &mut d);
            if gtd >= 0.0 {
                self.spare.d = d;
                return LbfgsStep::Converged;
            }
        }
        // Without curvature information, take a steepest-descent step that moves no pixel by more
        // than `sd_step` (torch's 1/|g|₁ shrinks with the pixel count and stalls large images).
        let steepest = self.len() == 0;
        let mut t = if steepest { self.sd_step / dmax.max(1e-30) } else { 1.0 };
        let mut any_finite = false;
        let (mut x_new, mut s) = (std::mem::take(&mut self.spare.x_new), std::mem::take(&mut self.spare.s));
        for _ in 0..=MAX_BACKTRACK {
            if t * dmax < MIN_STEP {
                break;
            }
            let trial = trial((x, g, &d), t as f32, (lo, hi), MIN_STEP, &mut x_new, &mut s);
            if trial.negligible {
                break;
            }
            let (f_new, g_new) = eval(&x_new);
            let finite = f_new.is_finite() && all_finite(&g_new);
            any_finite |= finite;
            if finite && f_new <= *f + 1e-4 * trial.gs.min(0.0) {
                let mut y = std::mem::take(&mut self.spare.y);
                let ys = new_pair(&g_new, g, &s, &mut y);
                if steepest {
                    self.sd_step = (2.0 * t * dmax).min(MAX_SD_STEP);
                }
                self.spare.d = d;
                if ys > 1e-10 {
                    if self.push_pair(s, y, ys).is_err() {
                        self.spare.x_new = x_new;
                        return LbfgsStep::NonFinite;
                    }
                } else {
                    (self.spare.s, self.spare.y) = (s, y);
                }
                // The old point's buffers serve the next step's trial point and pair.
                self.spare.x_new = std::mem::replace(x, x_new);
                self.spare.y = std::mem::replace(g, g_new);
                *f = f_new;
                return LbfgsStep::Moved;
            }
            t *= 0.5;
        }
        (self.spare.d, self.spare.x_new, self.spare.s) = (d, x_new, s);
        if steepest {
            self.sd_step = FIRST_STEP;
        }
        if self.len() > 0 {
            // The quasi-Newton model was poor here: drop it and retry once as steepest descent.
            self.clear();
            return self.step(x, f, g, eval);
        }
        if any_finite { LbfgsStep::Converged } else { LbfgsStep::NonFinite }
    }
}

/// Drops the oldest host pairs beyond the newest `keep`.
fn keep_newest(s: &mut VecDeque<Vec<f32>>, y: &mut VecDeque<Vec<f32>>, rho: &mut VecDeque<f64>, keep: usize) {
    let old = s.len().saturating_sub(keep);
    s.drain(..old);
    y.drain(..old);
    rho.drain(..old);
}

/// The two-loop recursion on the host over the pairs `s`, `y`, `rho` (oldest first): `q` holds
/// `−g` and becomes `−H·g`.
#[allow(clippy::needless_range_loop)] // the recursion is stated with indices in Nocedal & Wright
fn host_direction(s: &VecDeque<Vec<f32>>, y: &VecDeque<Vec<f32>>, rho: &VecDeque<f64>, q: &mut [f32]) {
    let k = s.len();
    let mut alpha = vec![0.0f64; k];
    for i in (0..k).rev() {
        alpha[i] = rho[i] * dot(&s[i], q);
        axpy(-(alpha[i] as f32), &y[i], q);
    }
    if k > 0 {
        let gamma = (dot(&s[k - 1], &y[k - 1]) / dot(&y[k - 1], &y[k - 1])) as f32;
        scale(gamma, q);
    }
    for i in 0..k {
        let beta = rho[i] * dot(&y[i], q);
        axpy((alpha[i] - beta) as f32, &s[i], q);
    }
}

/// Keeps the first GPU error of a run in its slot; returns its text.
#[cfg(feature = "gpu")]
fn keep(slot: &Mutex<Option<GpuFault>>, e: impl Into<GpuFault>) -> GpuFault {
    let fault = e.into();
    if let Ok(mut s) = slot.lock()
        && s.is_none()
    {
        *s = Some(fault.clone());
    }
    fault
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loss and its gradient.
    type Evaluation = (f64, Vec<f32>);

    /// f(x) = Σ wᵢ (xᵢ − cᵢ)² on `n` values, some cᵢ outside the box: (clamp(c, 0, 1), the loss).
    fn quadratic(n: usize) -> (Vec<f32>, impl Fn(&[f32]) -> Evaluation) {
        let c: Vec<f32> = (0..n).map(|i| i as f32 / 20.0 - 0.7).collect();
        let w: Vec<f32> = (0..n).map(|i| 1.0 + (i % 7) as f32).collect();
        let answer = c.iter().map(|v| v.clamp(0.0, 1.0)).collect();
        let eval = move |x: &[f32]| {
            let f = x.iter().zip(&c).zip(&w).map(|((&a, &b), &k)| (k * (a - b) * (a - b)) as f64).sum();
            let g = x.iter().zip(&c).zip(&w).map(|((&a, &b), &k)| 2.0 * k * (a - b)).collect();
            (f, g)
        };
        (answer, eval)
    }

    /// Steps `opt` from 0.5 everywhere until it converges (at most 100 steps): the iterates.
    fn descend(opt: &mut Lbfgs, n: usize, eval: &impl Fn(&[f32]) -> Evaluation) -> Vec<Vec<f32>> {
        let mut x = vec![0.5f32; n];
        let (mut f, mut g) = eval(&x);
        let mut path = vec![x.clone()];
        for _ in 0..100 {
            assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
            let step = opt.step(&mut x, &mut f, &mut g, eval);
            assert_ne!(step, LbfgsStep::NonFinite);
            path.push(x.clone());
            if step == LbfgsStep::Converged {
                break;
            }
        }
        path
    }

    #[test]
    fn bounded_quadratic_converges_to_the_clamped_minimum() {
        let (answer, eval) = quadratic(50);
        let mut opt = Lbfgs::new(5);
        let x = descend(&mut opt, 50, &eval).pop().unwrap_or_default();
        for (xi, ai) in x.iter().zip(&answer) {
            assert!((xi - ai).abs() < 1e-4, "{xi} vs {ai}");
        }
    }

    /// With its pairs on a GPU, the optimiser takes the host's steps (to f32 rounding) and reaches the
    /// same minimum; the ring wraps (more accepted steps than pairs).
    #[cfg(feature = "gpu")]
    #[test]
    fn the_history_on_a_gpu_takes_the_host_steps() {
        let index = std::env::var("IMPASTO_TEST_GPU").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        let gpu = impasto_gpu::Gpu::new(impasto_gpu::Choice::Index(index)).unwrap_or_else(|e| panic!("{e}"));
        let n = 67;
        let (answer, eval) = quadratic(n);
        let host = descend(&mut Lbfgs::new(3), n, &eval);
        let mut opt = Lbfgs::new(3);
        let error = Arc::new(Mutex::new(None));
        opt.move_to_gpu(gpu, error.clone(), n).unwrap();
        assert!(opt.on_gpu());
        let device = descend(&mut opt, n, &eval);
        assert!(opt.on_gpu() && error.lock().unwrap().is_none());
        assert!(host.len() > 5, "{} steps", host.len());
        for (k, (a, b)) in host.iter().zip(&device).take(5).enumerate() {
            let err = a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(err < 1e-5, "step {k}: the iterates differ by {err}");
        }
        for (xi, ai) in device.last().unwrap_or(&answer).iter().zip(&answer) {
            assert!((xi - ai).abs() < 1e-4, "{xi} vs {ai}");
        }
    }
}
