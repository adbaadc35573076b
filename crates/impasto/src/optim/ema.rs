//! Iterate averaging: a bias-corrected exponential moving average of the image, which removes the
//! high-frequency noise a stochastic-looking optimiser such as Adam leaves behind.

/// Exponential moving average of a vector with bias correction (so early values are not pulled to 0).
#[derive(Debug, Clone)]
pub(crate) struct Ema {
    decay: f32,
    pub(crate) avg: Vec<f32>,
    pub(crate) weight: f64,
}

impl Ema {
    /// Starts an average; with `decay == 0` it simply tracks the last value.
    pub(crate) fn new(x: &[f32], decay: f32) -> Ema {
        Ema { decay, avg: vec![0.0; x.len()], weight: 0.0 }
    }

    /// Folds in a new value.
    pub(crate) fn update(&mut self, x: &[f32]) {
        let d = self.decay;
        for (a, &v) in self.avg.iter_mut().zip(x) {
            *a = d * *a + (1.0 - d) * v;
        }
        self.weight = self.decay as f64 * self.weight + (1.0 - self.decay as f64);
    }

    /// The bias-corrected average (the values folded in so far, weighted towards the latest);
    /// `None` before the first update.
    pub(crate) fn value(&self) -> Option<Vec<f32>> {
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
        e.update(&[0.25, 0.5, 1.0]);
        assert!(Ema::new(&[0.0; 3], 0.99).value().is_none());
        assert_eq!(e.value().unwrap(), vec![0.25, 0.5, 1.0]);
        for _ in 0..10 {
            e.update(&[0.25, 0.5, 1.0]);
        }
        for (a, b) in e.value().unwrap().iter().zip([0.25, 0.5, 1.0]) {
            assert!((a - b).abs() < 1e-6);
        }
    }
}
