//! The Wasserstein-2 style loss (crowsonkb/style-transfer-pytorch's): the squared 2-Wasserstein
//! distance between Gaussians fitted to a layer's features and to the style's,
//! `mean((μ − μ_s)²) + tr(Σ + Σ_s − 2·(Σ_s^½ Σ Σ_s^½)^½) / C`,
//! with `μ` the channels' means and `Σ` their covariance (C×C) over the positions.
//!
//! Where the Gram loss compares second moments entry by entry, this compares the two feature
//! distributions as wholes: the covariance term is the cost of the best linear map from one to the
//! other, so a style's correlations count by how far they are, not by the size of their entries.
//! Its gradient needs no iteration: with `M = Σ_s^½ Σ Σ_s^½` and the optimal transport map
//! `T = Σ_s^½ M^-½ Σ_s^½` (from N(μ, Σ) to N(μ_s, Σ_s)), `dL/dΣ = (I − T)/C`.
//! Both square roots come from symmetric eigendecompositions in f64 (faer).

use std::fmt;

use faer::{Mat, Side};
use impasto_kernels as k;

use crate::error::{Error, Result};

/// The term is `SCALE · weight · W2²`: with it the default style weight (100) stylises about as
/// strongly as it does with the Gram loss (astronaut + The Starry Night at 256 px, 200 iterations:
/// the Gram loss at 100 and this one at 100 keep the face about equally; without it, the style
/// takes the whole picture over), so switching losses keeps the balance of the weights.
pub(crate) const SCALE: f64 = 0.1;

/// Both covariances get `ε·I` added, with `ε` this fraction of the target's mean variance
/// (crowsonkb adds 1e-4 on torchvision's feature scale): the square roots stay well defined
/// for a style whose features span fewer than C directions, at every input scale.
const EPS: f64 = 1e-4;

/// A style's Gaussian at one layer: its mean, the trace of its covariance and the covariance's
/// square root, computed once per target.
pub(crate) struct W2Target {
    mean: Vec<f64>,
    trace: f64,
    sqrt_cov: Mat<f64>,
    eps: f64,
}

impl fmt::Debug for W2Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "W2Target {{ channels: {}, trace: {:e}, eps: {:e} }}",
            self.mean.len(),
            self.trace,
            self.eps
        )
    }
}

impl W2Target {
    /// The Gaussian of a style from its normalised Gram matrix `F·Fᵀ/(C·N)` (C×C, row-major, as
    /// the Gram targets are kept and blended: a blend of Grams is the blend of the styles' second
    /// moments) and its channels' means.
    pub(crate) fn new(gram: &[f32], mean: &[f32]) -> Result<W2Target> {
        let c = mean.len();
        if gram.len() != c * c {
            return Err(Error::Config {
                what: "Wasserstein style target",
                reason: format!("a Gram matrix of {} values for {c} channel means", gram.len()),
            });
        }
        let mean: Vec<f64> = mean.iter().map(|&v| f64::from(v)).collect();
        let cf = c as f64;
        let raw = |i: usize, j: usize| cf * 0.5 * (f64::from(gram[i * c + j]) + f64::from(gram[j * c + i]));
        let trace: f64 = (0..c).map(|i| raw(i, i) - mean[i] * mean[i]).sum();
        let eps = EPS * (trace / cf).max(0.0) + 1e-12;
        let cov = Mat::from_fn(c, c, |i, j| raw(i, j) - mean[i] * mean[j] + if i == j { eps } else { 0.0 });
        let (values, vectors) = eigen(&cov).ok_or_else(|| Error::Config {
            what: "Wasserstein style target",
            reason: format!("the eigendecomposition of the style's {c}×{c} covariance did not converge"),
        })?;
        let roots: Vec<f64> = values.iter().map(|&l| l.max(0.0).sqrt()).collect();
        let sqrt_cov = with_spectrum(&vectors, &roots);
        Ok(W2Target { mean, trace: trace + eps * cf, sqrt_cov, eps })
    }

    /// The optimal transport map `T` from the whole image's Gaussian at a coupled round's start (its
    /// second moment and means, `whole`) to this target's, with those means: computed once a round
    /// and shared by every tile's [`W2Target::transported`].
    pub(crate) fn whole_map(&self, whole: (&[f32], &[f64])) -> Result<WholeMap> {
        let c = self.mean.len();
        check_statistics(c, whole)?;
        let (map, _) = transport(self, &covariance(whole.0, whole.1, self.eps))
            .ok_or_else(|| tile_target_error(c, "the whole image's transport map did not converge"))?;
        Ok(WholeMap { map, mean: whole.1.to_vec() })
    }

    /// A coupled tile's target (`run::coupling`): with `T` the [`WholeMap`] of the round, the
    /// Gaussian `N(μ_s + T(μ_t − μ_w), T Σ_t T)` of the tile's own statistics `own` moved by `T`.
    /// Its own best map to it is `T` again, so at the start the tile's gradient per position is the
    /// whole image's (times `N/N_t`), and the target is always a covariance: a Jacobi step on the
    /// whole-image objective that stays a Wasserstein distance.
    pub(crate) fn transported(&self, whole: &WholeMap, own: (&[f32], &[f64])) -> Result<W2Target> {
        let c = self.mean.len();
        check_statistics(c, own)?;
        if whole.mean.len() != c {
            return Err(tile_target_error(c, &format!("a transport map for {} channels", whole.mean.len())));
        }
        let map = &whole.map;
        let cov = symmetric(&(map * covariance(own.0, own.1, self.eps) * map));
        let (values, vectors) =
            eigen(&cov).ok_or_else(|| tile_target_error(c, "the eigendecomposition did not converge"))?;
        let roots: Vec<f64> = values.iter().map(|&l| l.max(0.0).sqrt()).collect();
        let moved: Vec<f64> = (0..c).map(|j| own.1[j] - whole.mean[j]).collect();
        let mean =
            (0..c).map(|i| self.mean[i] + (0..c).map(|j| map[(i, j)] * moved[j]).sum::<f64>()).collect();
        Ok(W2Target {
            mean,
            trace: (0..c).map(|i| cov[(i, i)]).sum(),
            sqrt_cov: with_spectrum(&vectors, &roots),
            eps: self.eps,
        })
    }
}

/// The whole image's optimal transport map to a style's Gaussian at a coupled round's start, and
/// the whole image's means then ([`W2Target::whole_map`]).
pub(crate) struct WholeMap {
    map: Mat<f64>,
    mean: Vec<f64>,
}

impl fmt::Debug for WholeMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WholeMap {{ channels: {} }}", self.mean.len())
    }
}

/// A coupled tile target's error: `why`, for a term of `c` channels.
fn tile_target_error(c: usize, why: &str) -> Error {
    Error::Config { what: "coupled Wasserstein tile target", reason: format!("{why} ({c} channels)") }
}

/// Statistics (second moment, means) of `c` channels, or the error naming their sizes.
fn check_statistics(c: usize, (second, mean): (&[f32], &[f64])) -> Result<()> {
    if mean.len() != c || second.len() != c * c {
        return Err(tile_target_error(
            c,
            &format!("statistics of {} and {} values", second.len(), mean.len()),
        ));
    }
    Ok(())
}

/// The covariance `S − μμᵀ + ε·I` of the statistics `S` (second moment, C×C) and `μ`, symmetrised.
fn covariance(moment: &[f32], mean: &[f64], eps: f64) -> Mat<f64> {
    let c = mean.len();
    Mat::from_fn(c, c, |i, j| {
        0.5 * (f64::from(moment[i * c + j]) + f64::from(moment[j * c + i])) - mean[i] * mean[j]
            + if i == j { eps } else { 0.0 }
    })
}

/// The optimal transport map from `N(·, cov)` to `target`'s Gaussian, `T = Σ_s^½ M^-½ Σ_s^½` with
/// `M = Σ_s^½ Σ Σ_s^½`, and `tr M^½`. `None` when the eigendecomposition does not converge.
fn transport(target: &W2Target, cov: &Mat<f64>) -> Option<(Mat<f64>, f64)> {
    let s = &target.sqrt_cov;
    let (values, vectors) = eigen(&symmetric(&(s * cov * s)))?;
    // M ≥ ε²·I in exact arithmetic (Σ and Σ_s are both ≥ ε·I); rounding may take a value below.
    let eps = target.eps;
    let roots: Vec<f64> = values.iter().map(|&l| l.max(eps * eps).sqrt()).collect();
    let inv_roots: Vec<f64> = roots.iter().map(|r| 1.0 / r).collect();
    Some((symmetric(&(s * with_spectrum(&vectors, &inv_roots) * s)), roots.iter().sum()))
}

/// The eigenvalues (ascending) and eigenvectors (columns) of the symmetric matrix `m`.
fn eigen(m: &Mat<f64>) -> Option<(Vec<f64>, Mat<f64>)> {
    let e = m.self_adjoint_eigen(Side::Lower).ok()?;
    let values = e.S().column_vector().iter().copied().collect();
    Some((values, e.U().to_owned()))
}

/// `V·diag(d)·Vᵀ`, symmetrised.
fn with_spectrum(v: &Mat<f64>, d: &[f64]) -> Mat<f64> {
    let scaled = Mat::from_fn(v.nrows(), v.ncols(), |i, j| v[(i, j)] * d[j]);
    symmetric(&(&scaled * v.transpose()))
}

/// `(A + Aᵀ)/2`: products of symmetric matrices rounded back to exact symmetry.
fn symmetric(a: &Mat<f64>) -> Mat<f64> {
    Mat::from_fn(a.nrows(), a.ncols(), |i, j| 0.5 * (a[(i, j)] + a[(j, i)]))
}

/// `Σ_p w_p·F[c,p] / total` for each channel c, with `w = m²` for a `mask`, else 1.
fn weighted_means(f: &[f32], n: usize, mask: Option<&[f32]>, total: f64) -> Vec<f64> {
    f.chunks_exact(n.max(1))
        .map(|row| {
            let sum: f64 = match mask {
                Some(m) => row.iter().zip(m).map(|(&a, &b)| f64::from(a) * f64::from(b) * f64::from(b)).sum(),
                None => row.iter().map(|&a| f64::from(a)).sum(),
            };
            sum / total
        })
        .collect()
}

/// Returns `SCALE · weight · W2²(features, target)` and adds its gradient with respect to `f` (C×N) into
/// `grad`; NaN when an eigendecomposition does not converge (the run loop then stops, as on any
/// non-finite loss). [`w2_statistics`], [`w2_step`], then [`W2Step::apply`].
///
/// With a `mask` (one value per position) the features' mean and covariance are those of the
/// region, each position weighted by its mask value squared, as the masked Gram loss weighs it
/// (`(F∘m)(F∘m)ᵀ`), so a region is compared with the style as if it were a whole image; an empty
/// region (`Σm²` at most 1e-6) has no term.
#[cfg(test)]
pub(crate) fn w2_loss(
    f: &[f32],
    c: usize,
    n: usize,
    target: &W2Target,
    weight: f32,
    mask: Option<&[f32]>,
    grad: &mut [f32],
) -> f64 {
    w2_step(w2_statistics(f, c, n, mask).as_ref(), target, weight).apply(f, n, mask, grad)
}

/// A Wasserstein term at a layer's features, before its gradient is added: the term and its
/// gradient with respect to the statistics ([`w2_step`]).
#[derive(Debug)]
pub(crate) enum W2Step {
    /// An empty region: no term.
    Empty,
    /// An eigendecomposition did not converge: the term is NaN, its gradient zero.
    Failed,
    /// The term, `Σm²` (or the positions), `∂/∂Σ` and `∂/∂μ`.
    Term { loss: f64, total: f64, d_cov: Vec<f32>, d_mean: Vec<f64> },
}

/// A layer's statistics under a mask ([`w2_statistics`]): `Σm²` (or the positions), the second
/// moment `(F∘m)(F∘m)ᵀ/Σm²` and the means `(F∘m²)·1/Σm²`.
#[derive(Debug)]
pub(crate) struct W2Statistics {
    total: f64,
    moment: Vec<f32>,
    mean: Vec<f64>,
}

/// The statistics of the C×`n` features `f` under `mask` (see [`w2_loss`]); `None` for an empty
/// region. The work that grows with the pixels, on the engine's Gram kernel.
pub(crate) fn w2_statistics(f: &[f32], c: usize, n: usize, mask: Option<&[f32]>) -> Option<W2Statistics> {
    let total = match mask {
        Some(m) => m.iter().map(|&v| f64::from(v) * f64::from(v)).sum(),
        None => n as f64,
    };
    if total <= 1e-6 {
        return None;
    }
    let mean = weighted_means(f, n, mask, total);
    let mut moment = vec![0.0f32; c * c];
    match mask {
        None => k::gram(f, c, n, (1.0 / total) as f32, &mut moment),
        Some(m) => {
            let fm: Vec<f32> =
                f.chunks_exact(n).flat_map(|row| row.iter().zip(m).map(|(a, b)| a * b)).collect();
            k::gram(&fm, c, n, (1.0 / total) as f32, &mut moment);
        }
    }
    Some(W2Statistics { total, moment, mean })
}

/// The term `SCALE · weight · W2²` at a layer's statistics (`None`: an empty region) and its
/// gradient with respect to them: the C×C work with the eigendecompositions, the same at any
/// size, which the CPU loss runs for all its layers side by side.
pub(crate) fn w2_step(stats: Option<&W2Statistics>, target: &W2Target, weight: f32) -> W2Step {
    let Some(s) = stats else { return W2Step::Empty };
    match w2_of_moments(target, weight, &s.moment, &s.mean) {
        Some((loss, d_cov, d_mean)) => W2Step::Term { loss, total: s.total, d_cov, d_mean },
        None => W2Step::Failed,
    }
}

impl W2Step {
    /// Adds the term's gradient with respect to the C×`n` features `f` (those it was computed from,
    /// under the same `mask`) into `grad`; returns the term.
    pub(crate) fn apply(&self, f: &[f32], n: usize, mask: Option<&[f32]>, grad: &mut [f32]) -> f64 {
        let (loss, total, d_cov, d_mean) = match self {
            W2Step::Empty => return 0.0,
            W2Step::Failed => return f64::NAN,
            W2Step::Term { loss, total, d_cov, d_mean } => (*loss, *total, d_cov, d_mean),
        };
        let c = d_mean.len();
        // (dΣ + dΣᵀ)·(F∘m²) / Σm² = 2·dΣ·F_p·m_p² / Σm², added into `grad` in place; then the
        // mean's part, the same for every position of a channel (times m_p²).
        let scale = (1.0 / total) as f32;
        match mask {
            None => k::gram_backward(f, c, n, d_cov, scale, true, grad),
            Some(m) => {
                let fm2: Vec<f32> =
                    f.chunks_exact(n).flat_map(|row| row.iter().zip(m).map(|(a, b)| a * b * b)).collect();
                k::gram_backward(&fm2, c, n, d_cov, scale, true, grad);
            }
        }
        for (g_row, dm) in grad.chunks_exact_mut(n).zip(d_mean) {
            let shift = (dm / total) as f32;
            match mask {
                None => g_row.iter_mut().for_each(|g| *g += shift),
                Some(m) => g_row.iter_mut().zip(m).for_each(|(g, mv)| *g += mv * mv * shift),
            }
        }
        loss
    }
}

/// The term `SCALE · weight · W2²` from a layer's statistics (the second moment `S`, C×C, and the
/// means `μ`, each position weighted by its mask value squared) and its gradient with respect to
/// both taken as independent: `(loss, ∂/∂S, ∂/∂μ)`. `None` when an eigendecomposition does not
/// converge. The CPU loss and the GPU's host step both go through here.
pub(crate) fn w2_of_moments(
    target: &W2Target,
    weight: f32,
    moment: &[f32],
    mean: &[f64],
) -> Option<(f64, Vec<f32>, Vec<f64>)> {
    let c = mean.len();
    let cov = covariance(moment, mean, target.eps);
    let (map, root_trace) = transport(target, &cov)?;
    let cf = c as f64;
    let mean_term: f64 = mean.iter().zip(&target.mean).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() / cf;
    let cov_trace: f64 = (0..c).map(|i| cov[(i, i)]).sum();
    let loss = mean_term + (cov_trace + target.trace - 2.0 * root_trace) / cf;

    // dL/dΣ = w·(I − T)/C; through Σ = S − μμᵀ the mean's gradient gains −2·dΣ·μ:
    // dμ = w·2(μ − μ_s)/C − 2·dΣ·μ.
    let w = SCALE * f64::from(weight);
    let d_cov: Vec<f32> = (0..c * c)
        .map(|ij| {
            let (i, j) = (ij / c, ij % c);
            (w * (if i == j { 1.0 } else { 0.0 } - map[(i, j)]) / cf) as f32
        })
        .collect();
    let d_mean: Vec<f64> = (0..c)
        .map(|i| {
            let pulled: f64 = (0..c).map(|j| f64::from(d_cov[i * c + j]) * mean[j]).sum();
            w * 2.0 * (mean[i] - target.mean[i]) / cf - 2.0 * pulled
        })
        .collect();
    Some((w * loss, d_cov, d_mean))
}

#[cfg(test)]
mod tests;
