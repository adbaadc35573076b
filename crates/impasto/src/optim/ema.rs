//! What Adam returns: a bias-corrected exponential moving average of its iterates (decay > 0), which
//! removes the high-frequency noise Adam leaves behind, or else the best iterate seen (decay = 0).

/// Iterate averaging (decay > 0) or best-iterate keeping (decay = 0).
#[derive(Debug, Clone)]
pub(crate) struct Ema {
    decay: f32,
    /// The running average, or the best iterate.
    pub(crate) avg: Vec<f32>,
    /// The average's total weight (for bias correction), or the best iterate's loss.
    pub(crate) weight: f64,
}

impl Ema {
    /// Starts an average (or a best-iterate keeper when `decay == 0`) for vectors like `x`.
    pub(crate) fn new(x: &[f32], decay: f32) -> Ema {
        let weight = if decay > 0.0 { 0.0 } else { f64::INFINITY };
        Ema { decay, avg: vec![0.0; x.len()], weight }
    }

    /// Folds in a new iterate and its loss.
    pub(crate) fn update(&mut self, x: &[f32], loss: f64) {
        let d = self.decay;
        if d == 0.0 {
            if loss < self.weight {
                self.avg.copy_from_slice(x);
                self.weight = loss;
            }
            return;
        }
        for (a, &v) in self.avg.iter_mut().zip(x) {
            *a = d * *a + (1.0 - d) * v;
        }
        self.weight = d as f64 * self.weight + (1.0 - d as f64);
    }

    /// After the objective changed: a best-iterate keeper forgets its best (its loss was measured under
    /// the old objective) and keeps the next iterate; an average goes on.
    pub(crate) fn restart_best(&mut self) {
        if self.decay == 0.0 {
            self.weight = f64::INFINITY;
        }
    }

    /// The bias-corrected average (or the best iterate); `None` before the first update.
    pub(crate) fn value(&self) -> Option<Vec<f32>> {
        if self.decay == 0.0 {
            return self.weight.is_finite().then(|| self.avg.clone());
        }
        if self.weight <= 0.0 {
            return None;
        }
        let c = (1.0 / self.weight) as f32;
        Some(self.avg.iter().map(|a| (a * c).clamp(0.0, 1.0)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::Ema;

    #[test]
    fn constant_input_averages_to_itself_from_the_first_step() {
        let mut e = Ema::new(&[0.0; 3], 0.99);
        assert!(e.value().is_none());
        e.update(&[0.25, 0.5, 1.0], 1.0);
        assert_eq!(e.value().unwrap(), vec![0.25, 0.5, 1.0]);
        for _ in 0..10 {
            e.update(&[0.25, 0.5, 1.0], 1.0);
        }
        for (a, b) in e.value().unwrap().iter().zip([0.25, 0.5, 1.0]) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn zero_decay_keeps_the_best_iterate() {
        let mut e = Ema::new(&[0.0; 2], 0.0);
        assert!(e.value().is_none());
        e.update(&[0.1, 0.1], 5.0);
        e.update(&[0.2, 0.2], 3.0);
        e.update(&[0.3, 0.3], 4.0);
        assert_eq!(e.value().unwrap(), vec![0.2, 0.2]);
    }
}
