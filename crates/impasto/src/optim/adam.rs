//! Adam (Kingma & Ba) with bias correction, over the pixel buffer, keeping pixels in 0..1.

/// Adam state: first and second moments and the step count.
#[derive(Debug, Clone)]
pub(crate) struct Adam {
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    pub(crate) m: Vec<f32>,
    pub(crate) v: Vec<f32>,
    pub(crate) t: i32,
}

impl Adam {
    /// A fresh optimiser for `n` parameters.
    pub(crate) fn new(n: usize, lr: f32) -> Adam {
        Adam { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, m: vec![0.0; n], v: vec![0.0; n], t: 0 }
    }

    /// One update of `x` along the gradient `g`; pixels are projected back into 0..1.
    pub(crate) fn step(&mut self, x: &mut [f32], g: &[f32]) {
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t);
        let bc2 = 1.0 - self.beta2.powi(self.t);
        let step = self.lr / bc1;
        for (((xi, &gi), mi), vi) in x.iter_mut().zip(g).zip(&mut self.m).zip(&mut self.v) {
            *mi = self.beta1 * *mi + (1.0 - self.beta1) * gi;
            *vi = self.beta2 * *vi + (1.0 - self.beta2) * gi * gi;
            let denom = (*vi / bc2).sqrt() + self.eps;
            *xi = (*xi - step * *mi / denom).clamp(0.0, 1.0);
        }
    }
}
