//! Limited-memory BFGS (Nocedal's two-loop recursion) with a backtracking Armijo line search that
//! normally accepts the unit step, so one iteration costs one function evaluation as in torch's L-BFGS.

use std::collections::VecDeque;

use super::{all_finite, dot};

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
    history: usize,
    s: VecDeque<Vec<f32>>,
    y: VecDeque<Vec<f32>>,
    rho: VecDeque<f64>,
    first: bool,
}

/// Largest change of any pixel (0..1 scale) below which a step counts as no progress.
const MIN_STEP: f64 = 1e-7;
/// Backtracking halvings tried before giving up on a direction.
const MAX_BACKTRACK: usize = 12;

impl Lbfgs {
    /// A fresh optimiser keeping `history` pairs.
    pub(crate) fn new(history: usize) -> Lbfgs {
        Lbfgs { history, s: VecDeque::new(), y: VecDeque::new(), rho: VecDeque::new(), first: true }
    }

    /// The quasi-Newton direction `-H·g` from the two-loop recursion.
    fn direction(&self, g: &[f32]) -> Vec<f32> {
        let mut q: Vec<f32> = g.iter().map(|v| -v).collect();
        let k = self.s.len();
        let mut alpha = vec![0.0f64; k];
        for i in (0..k).rev() {
            alpha[i] = self.rho[i] * dot(&self.s[i], &q);
            let a = alpha[i] as f32;
            for (qj, yj) in q.iter_mut().zip(&self.y[i]) {
                *qj -= a * yj;
            }
        }
        if k > 0 {
            let gamma = (dot(&self.s[k - 1], &self.y[k - 1]) / dot(&self.y[k - 1], &self.y[k - 1])) as f32;
            for qj in &mut q {
                *qj *= gamma;
            }
        }
        for i in 0..k {
            let beta = self.rho[i] * dot(&self.y[i], &q);
            let c = (alpha[i] - beta) as f32;
            for (qj, sj) in q.iter_mut().zip(&self.s[i]) {
                *qj += c * sj;
            }
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
        let mut d = self.direction(g);
        let mut gtd = dot(g, &d);
        if gtd >= 0.0 || !gtd.is_finite() {
            // Not a descent direction: forget the history and use steepest descent.
            self.s.clear();
            self.y.clear();
            self.rho.clear();
            self.first = true;
            d = g.iter().map(|v| -v).collect();
            gtd = dot(g, &d);
            if gtd >= 0.0 {
                return LbfgsStep::Converged;
            }
        }
        let mut t = if self.first {
            let l1: f64 = g.iter().map(|v| v.abs() as f64).sum();
            (1.0f64).min(1.0 / l1.max(1e-30))
        } else {
            1.0
        };
        let dmax = d.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
        let mut any_finite = false;
        for _ in 0..=MAX_BACKTRACK {
            if t * dmax < MIN_STEP {
                break;
            }
            let x_new: Vec<f32> = x.iter().zip(&d).map(|(&xi, &di)| xi + (t as f32) * di).collect();
            let (f_new, g_new) = eval(&x_new);
            let finite = f_new.is_finite() && all_finite(&g_new);
            any_finite |= finite;
            if finite && f_new <= *f + 1e-4 * t * gtd {
                let s: Vec<f32> = x_new.iter().zip(x.iter()).map(|(a, b)| a - b).collect();
                let y: Vec<f32> = g_new.iter().zip(g.iter()).map(|(a, b)| a - b).collect();
                let ys = dot(&y, &s);
                if ys > 1e-10 {
                    if self.s.len() == self.history {
                        self.s.pop_front();
                        self.y.pop_front();
                        self.rho.pop_front();
                    }
                    self.s.push_back(s);
                    self.y.push_back(y);
                    self.rho.push_back(1.0 / ys);
                }
                self.first = false;
                *x = x_new;
                *f = f_new;
                *g = g_new;
                return LbfgsStep::Moved;
            }
            t *= 0.5;
        }
        if !self.s.is_empty() {
            // The quasi-Newton model was poor here: drop it and retry once as steepest descent.
            self.s.clear();
            self.y.clear();
            self.rho.clear();
            self.first = true;
            return self.step(x, f, g, eval);
        }
        if any_finite { LbfgsStep::Converged } else { LbfgsStep::NonFinite }
    }
}
