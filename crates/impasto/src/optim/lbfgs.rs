//! Limited-memory BFGS (Nocedal's two-loop recursion) for pixels boxed in 0..1, with a backtracking
//! Armijo line search along the projected path that normally accepts the unit step, so one iteration
//! costs one function evaluation as in torch's L-BFGS.
//!
//! The box is handled the projected-quasi-Newton way: variables at a bound whose gradient pushes them
//! outwards form the active set; the two-loop recursion runs on the gradient with those entries zeroed,
//! the direction is zeroed there too, and every trial point is projected back into the box. So the
//! image the optimiser reports is always a valid image, and saving it loses nothing to clamping.

use std::collections::VecDeque;

use super::all_finite;
use super::vector::{axpy, dot, scale};

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

/// L-BFGS state: the last `history` correction pairs.
#[derive(Debug, Clone)]
pub(crate) struct Lbfgs {
    pub(crate) history: usize,
    lo: f32,
    hi: f32,
    pub(crate) s: VecDeque<Vec<f32>>,
    pub(crate) y: VecDeque<Vec<f32>>,
    pub(crate) rho: VecDeque<f64>,
    /// Largest pixel change of the next step taken without curvature pairs; doubles after each
    /// accepted one, since near the content image the loss is often concave along −g.
    pub(crate) sd_step: f64,
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
            s: VecDeque::new(),
            y: VecDeque::new(),
            rho: VecDeque::new(),
            sd_step: FIRST_STEP,
        }
    }

    /// Appends the correction pair `s`, `y` with `ys` = `yᵀs` > 0, dropping the oldest when full.
    pub(crate) fn push_pair(&mut self, s: Vec<f32>, y: Vec<f32>, ys: f64) {
        if self.s.len() == self.history {
            self.s.pop_front();
            self.y.pop_front();
            self.rho.pop_front();
        }
        self.rho.push_back(1.0 / ys);
        self.s.push_back(s);
        self.y.push_back(y);
    }

    /// Changes the number of pairs kept, dropping the oldest if there are more.
    pub(crate) fn set_history(&mut self, history: usize) {
        self.history = history.max(1);
        while self.s.len() > self.history {
            self.s.pop_front();
            self.y.pop_front();
            self.rho.pop_front();
        }
    }

    /// The quasi-Newton direction `-H·g` from the two-loop recursion.
    #[allow(clippy::needless_range_loop)] // the recursion is stated with indices in Nocedal & Wright
    fn direction(&self, g: &[f32]) -> Vec<f32> {
        let mut q: Vec<f32> = g.iter().map(|v| -v).collect();
        let k = self.s.len();
        let mut alpha = vec![0.0f64; k];
        for i in (0..k).rev() {
            alpha[i] = self.rho[i] * dot(&self.s[i], &q);
            axpy(-(alpha[i] as f32), &self.y[i], &mut q);
        }
        if k > 0 {
            let gamma = (dot(&self.s[k - 1], &self.y[k - 1]) / dot(&self.y[k - 1], &self.y[k - 1])) as f32;
            scale(gamma, &mut q);
        }
        for i in 0..k {
            let beta = self.rho[i] * dot(&self.y[i], &q);
            axpy((alpha[i] - beta) as f32, &self.s[i], &mut q);
        }
        q
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
        let active: Vec<bool> = x
            .iter()
            .zip(g.iter())
            .map(|(&xi, &gi)| (xi <= lo && gi > 0.0) || (xi >= hi && gi < 0.0))
            .collect();
        let g_free: Vec<f32> = g.iter().zip(&active).map(|(&gi, &a)| if a { 0.0 } else { gi }).collect();
        let mut d = self.direction(&g_free);
        for (di, &a) in d.iter_mut().zip(&active) {
            if a {
                *di = 0.0;
            }
        }
        let mut gtd = dot(g, &d);
        if gtd >= 0.0 || !gtd.is_finite() {
            // Not a descent direction: forget the history and use projected steepest descent.
            self.s.clear();
            self.y.clear();
            self.rho.clear();
            d = g_free.iter().map(|v| -v).collect();
            gtd = dot(g, &d);
            if gtd >= 0.0 {
                return LbfgsStep::Converged;
            }
        }
        let dmax = d.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
        // Without curvature information, take a steepest-descent step that moves no pixel by more
        // than `sd_step` (torch's 1/|g|₁ shrinks with the pixel count and stalls large images).
        let steepest = self.s.is_empty();
        let mut t = if steepest { self.sd_step / dmax.max(1e-30) } else { 1.0 };
        let mut any_finite = false;
        for _ in 0..=MAX_BACKTRACK {
            if t * dmax < MIN_STEP {
                break;
            }
            let x_new: Vec<f32> =
                x.iter().zip(&d).map(|(&xi, &di)| (xi + (t as f32) * di).clamp(lo, hi)).collect();
            let s: Vec<f32> = x_new.iter().zip(x.iter()).map(|(a, b)| a - b).collect();
            if s.iter().all(|v| (v.abs() as f64) < MIN_STEP) {
                break;
            }
            let (f_new, g_new) = eval(&x_new);
            let finite = f_new.is_finite() && all_finite(&g_new);
            any_finite |= finite;
            if finite && f_new <= *f + 1e-4 * dot(g, &s).min(0.0) {
                let y: Vec<f32> = g_new.iter().zip(g.iter()).map(|(a, b)| a - b).collect();
                if steepest {
                    self.sd_step = (2.0 * t * dmax).min(MAX_SD_STEP);
                }
                let ys = dot(&y, &s);
                if ys > 1e-10 {
                    self.push_pair(s, y, ys);
                }
                *x = x_new;
                *f = f_new;
                *g = g_new;
                return LbfgsStep::Moved;
            }
            t *= 0.5;
        }
        if steepest {
            self.sd_step = FIRST_STEP;
        }
        if !self.s.is_empty() {
            // The quasi-Newton model was poor here: drop it and retry once as steepest descent.
            self.s.clear();
            self.y.clear();
            self.rho.clear();
            return self.step(x, f, g, eval);
        }
        if any_finite { LbfgsStep::Converged } else { LbfgsStep::NonFinite }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f(x) = Σ wᵢ (xᵢ − cᵢ)² with some cᵢ outside the box: the answer is clamp(c, 0, 1).
    #[test]
    fn bounded_quadratic_converges_to_the_clamped_minimum() {
        let n = 50;
        let c: Vec<f32> = (0..n).map(|i| i as f32 / 20.0 - 0.7).collect();
        let w: Vec<f32> = (0..n).map(|i| 1.0 + (i % 7) as f32).collect();
        let eval = |x: &[f32]| {
            let f = x.iter().zip(&c).zip(&w).map(|((&a, &b), &k)| (k * (a - b) * (a - b)) as f64).sum();
            let g = x.iter().zip(&c).zip(&w).map(|((&a, &b), &k)| 2.0 * k * (a - b)).collect();
            (f, g)
        };
        let mut x = vec![0.5f32; n];
        let (mut f, mut g) = eval(&x);
        let mut opt = Lbfgs::new(5);
        for _ in 0..100 {
            assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
            if opt.step(&mut x, &mut f, &mut g, eval) == LbfgsStep::Converged {
                break;
            }
        }
        for (xi, ci) in x.iter().zip(&c) {
            assert!((xi - ci.clamp(0.0, 1.0)).abs() < 1e-4, "{xi} vs {ci}");
        }
    }
}
