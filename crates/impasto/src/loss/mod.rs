//! The objective minimised over the pixels: weighted content, style and total-variation losses on VGG
//! features, each a per-element mean so that a weight means the same at every image size.

mod content;
#[cfg(feature = "gpu")]
mod gpu;
mod style;
mod targets;
mod temporal;
mod tv;
mod wasserstein;

pub use style::gram_matrix;
pub(crate) use style::{layer_mask, masked_gram_norm};
pub(crate) use targets::TargetNet;
pub use targets::{features_on, grams_on, masked_grams_on, moments_on};
pub use temporal::Temporal;
pub(crate) use temporal::TemporalTarget;

use std::sync::Arc;

use rayon::prelude::*;

use crate::model::{Activations, BufferPool, Vgg};
use crate::observer::Losses;
pub(crate) use wasserstein::{W2Target, WholeMap};

/// One GPU evaluation timed step by step ([`Objective::gpu_profile`]).
#[derive(Debug, Clone, PartialEq)]
pub struct GpuProfile {
    /// (step, seconds) in order: `upload`, each kernel, `readback`.
    pub steps: Vec<(String, f64)>,
    /// Whether the kernels were timed with the GPU's own timestamps (all of the evaluation in one
    /// submission); otherwise with the host's clock around one submit and wait per kernel, which
    /// adds that round trip to each. `upload` and `readback` are host times either way.
    pub gpu_clock: bool,
}

/// One matrix product of a GPU evaluation whose kernel form was chosen by timing
/// ([`Objective::gpu_tune`]; every form gives the same bits).
#[derive(Debug, Clone, PartialEq)]
pub struct GpuTuned {
    /// The step's name, as in [`GpuProfile::steps`].
    pub label: String,
    /// The product's shape: C is `m`×`n`, the sum over `k`.
    pub m: usize,
    /// The sum's length.
    pub k: usize,
    /// Columns of C (pixels, for a convolution).
    pub n: usize,
    /// Each form's name and its fastest time, seconds (`None`: not timed).
    pub forms: Vec<(String, Option<f64>)>,
    /// The form in force.
    pub chosen: String,
    /// Whether the choice came from an earlier objective of the same shape on the device.
    pub remembered: bool,
}

/// A content target: the features of the content image at one layer.
#[derive(Debug, Clone)]
pub(crate) struct ContentTarget {
    pub(crate) layer: usize,
    pub(crate) features: Vec<f32>,
    pub(crate) weight: f32,
}

/// A style target: the (blended) Gram matrix of the style images at one layer.
#[derive(Debug, Clone)]
pub(crate) struct StyleTarget {
    pub(crate) layer: usize,
    pub(crate) gram: Vec<f32>,
    pub(crate) weight: f32,
    /// Region of the output this target applies to, at the layer's resolution (None = everywhere).
    pub(crate) mask: Option<Vec<f32>>,
    /// With the Wasserstein style loss, the styles' Gaussian at this layer (from `gram` and the
    /// blended channel means), which the term then compares with in place of `gram`.
    pub(crate) w2: Option<Arc<W2Target>>,
}

/// The loss of one image size: content, style and TV terms against fixed targets, with its gradient.
///
/// [`stylize`](crate::stylize) builds one internally; it is public so that custom optimisers, tests and
/// tools can evaluate the same objective. Pixels are planar RGB 0..1 (`3·H·W` values, R plane first).
#[derive(Debug)]
pub struct Objective<'a> {
    pub(crate) net: &'a Vgg,
    pub(crate) height: usize,
    pub(crate) width: usize,
    pub(crate) content: Vec<ContentTarget>,
    pub(crate) style: Vec<StyleTarget>,
    pub(crate) tv_weight: f32,
    /// Per-pixel factor on the gradient (0 = the pixel never changes), at the image's resolution.
    pub(crate) pixel_mask: Option<Vec<f32>>,
    /// Video: the warped previous frame this one is held to (see [`Temporal`]).
    pub(crate) temporal: Option<TemporalTarget>,
    /// Memory reused from one evaluation to the next.
    pub(crate) buffers: BufferPool,
    /// The same terms on a GPU, which then does every evaluation.
    pub(crate) gpu: Option<GpuBackend>,
}

#[cfg(feature = "gpu")]
pub(crate) type GpuBackend = gpu::Backend;
/// Without the `gpu` feature there is no GPU backend.
#[cfg(not(feature = "gpu"))]
#[derive(Debug)]
pub(crate) enum GpuBackend {}

impl<'a> Objective<'a> {
    /// An objective with no terms for `width`×`height` images.
    pub fn new(net: &'a Vgg, width: usize, height: usize) -> Objective<'a> {
        Objective {
            net,
            height,
            width,
            content: Vec::new(),
            style: Vec::new(),
            tv_weight: 0.0,
            pixel_mask: None,
            temporal: None,
            buffers: BufferPool::default(),
            gpu: None,
        }
    }

    /// Runs every later evaluation on `device` ([`crate::Device::Cpu`]: stays on the CPU). Targets and
    /// weights are taken as they are now; weights changed later are sent with each evaluation.
    pub fn use_device(&mut self, device: crate::Device) -> crate::Result<()> {
        self.gpu = None;
        let ctx = crate::device::GpuContext::open(device, &Default::default(), self.net)?;
        self.attach(ctx.as_ref(), None)
    }

    /// The first error of a GPU evaluation (which then returned NaN losses), if any.
    pub(crate) fn gpu_error(&self) -> Option<crate::error::GpuFault> {
        #[cfg(feature = "gpu")]
        if let Some(g) = &self.gpu {
            return g.error();
        }
        None
    }

    /// Bytes of every buffer allocated on the objective's GPU since the device was opened (the
    /// network's weights, the objective's buffers, each evaluation's read-back); `None` on the CPU.
    pub(crate) fn gpu_allocated_bytes(&self) -> Option<u64> {
        #[cfg(feature = "gpu")]
        if let Some(g) = &self.gpu {
            return Some(g.context().allocated_bytes());
        }
        None
    }

    /// The GPU the objective runs on, if it does.
    #[cfg(feature = "gpu")]
    pub(crate) fn gpu_context(&self) -> Option<&crate::device::GpuContext> {
        self.gpu.as_ref().map(|g| g.context())
    }

    /// One GPU evaluation at `pixels` with every step (upload, each kernel, read-back) timed on its
    /// own. Errors when the objective is on the CPU.
    pub fn gpu_profile(&self, pixels: &[f32]) -> crate::Result<GpuProfile> {
        #[cfg(feature = "gpu")]
        if let Some(g) = &self.gpu {
            return g.profile(self, pixels);
        }
        let _ = pixels;
        Err(crate::Error::Config { what: "GPU profile", reason: "the objective runs on the CPU".into() })
    }

    /// On a GPU that tunes (`impasto_gpu::Tune`: GPUs with timestamp queries), evaluates at `pixels`
    /// until every matrix product's kernel form is chosen, as a run's first evaluations otherwise
    /// do; returns the evaluations this took and each product's forms with their times. Nothing on
    /// the CPU or where the device does not tune.
    pub fn gpu_tune(&self, pixels: &[f32]) -> crate::Result<(usize, Vec<GpuTuned>)> {
        #[cfg(feature = "gpu")]
        if let Some(g) = &self.gpu {
            return g.tune(pixels);
        }
        let _ = pixels;
        Ok((0, Vec::new()))
    }

    /// Moves the evaluation onto the GPU of `ctx` (targets and weights as they are now; later weight
    /// changes are sent with each evaluation), with Winograd scratch buffers of at most `scratch`
    /// bytes each (`None`: the default; see `tiles::objective_scratch`). Without a context the
    /// objective stays on the CPU.
    pub(crate) fn attach(
        &mut self,
        ctx: Option<&crate::device::GpuContext>,
        scratch: Option<u64>,
    ) -> crate::Result<()> {
        #[cfg(feature = "gpu")]
        if let Some(ctx) = ctx {
            self.gpu = Some(gpu::Backend::new(ctx, self, scratch)?);
        }
        #[cfg(not(feature = "gpu"))]
        let _ = (ctx, scratch);
        Ok(())
    }

    /// Adds `weight · mean((F_layer(x) − target)²)`. `target` must have the layer's size.
    pub fn add_content(&mut self, layer: &str, target: Vec<f32>, weight: f32) -> crate::Result<()> {
        let layer = self.net.layer_index(layer)?;
        self.content.push(ContentTarget { layer, features: target, weight });
        Ok(())
    }

    /// Adds `weight · mean((G_layer(x) − target)²)` with `G = F·Fᵀ/(C·H·W)`; `target` is C×C.
    pub fn add_style(&mut self, layer: &str, target: Vec<f32>, weight: f32) -> crate::Result<()> {
        let layer = self.net.layer_index(layer)?;
        self.style.push(StyleTarget { layer, gram: target, weight, mask: None, w2: None });
        Ok(())
    }

    /// Adds the Wasserstein style term `weight/10 · (mean((μ − mean)²) + tr(Σ + Σ_s − 2(Σ_s^½ Σ Σ_s^½)^½)/C)`
    /// ([`StyleLoss::Wasserstein`](crate::StyleLoss)): `μ`, `Σ` the channels' mean and covariance
    /// at the layer, the style's `Σ_s` from its normalised Gram `gram` (C×C, as
    /// [`gram_matrix`] computes it) and its channel means `mean` (C). On a GPU the device takes the
    /// layer's statistics and the host the eigendecompositions, between the forward and backward pass.
    pub fn add_style_wasserstein(
        &mut self,
        layer: &str,
        gram: Vec<f32>,
        mean: &[f32],
        weight: f32,
    ) -> crate::Result<()> {
        let layer = self.net.layer_index(layer)?;
        let w2 = Some(Arc::new(W2Target::new(&gram, mean)?));
        self.style.push(StyleTarget { layer, gram, weight, mask: None, w2 });
        Ok(())
    }

    /// Sets the total-variation weight.
    pub fn set_tv_weight(&mut self, weight: f32) {
        self.tv_weight = weight;
    }

    /// Adds the temporal term `weight · Σ m·(x − target)² / (3·Σ m)`: `target` is planar RGB
    /// (`3·H·W` values), `mask` one value per pixel (`H·W`).
    pub fn set_temporal(&mut self, target: Vec<f32>, mask: Vec<f32>, weight: f32) {
        assert_eq!(target.len(), 3 * self.width * self.height, "temporal target size");
        assert_eq!(mask.len(), self.width * self.height, "temporal mask size");
        self.temporal = Some(TemporalTarget { target, mask, weight });
    }

    /// The deepest layer any term needs.
    fn last_layer(&self) -> Option<usize> {
        self.content.iter().map(|t| t.layer).chain(self.style.iter().map(|t| t.layer)).max()
    }

    /// Loss terms at `pixels` (planar RGB 0..1) and the gradient of their sum with respect to the pixels.
    pub fn evaluate(&self, pixels: &[f32]) -> (Losses, Vec<f32>) {
        #[cfg(feature = "gpu")]
        if let Some(g) = &self.gpu {
            // The GPU evaluates the network terms and TV (pixel mask applied); the temporal term is
            // elementwise on the pixels and is added here.
            let (mut losses, mut grad) = g.evaluate(self, pixels);
            if let Some(t) = &self.temporal {
                let mut tg = vec![0.0; grad.len()];
                losses.temporal = temporal::temporal_loss(pixels, t, &mut tg);
                self.mask_gradient(&mut tg);
                grad.iter_mut().zip(&tg).for_each(|(a, b)| *a += b);
            }
            return (losses, grad);
        }
        let (h, w) = (self.height, self.width);
        let mut losses = Losses::default();
        let mut grad = match self.last_layer() {
            Some(last) => {
                let mut wanted = vec![false; last + 1];
                for l in self.content.iter().map(|t| t.layer).chain(self.style.iter().map(|t| t.layer)) {
                    wanted[l] = true;
                }
                let acts = self.net.forward(pixels, h, w, last, &wanted, &self.buffers);
                let w2 = self.w2_steps(&acts);
                let grad = self.net.backward(&acts, last, &self.buffers, |i, g| {
                    for t in self.content.iter().filter(|t| t.layer == i) {
                        losses.content += content::content_loss(acts.get(i), &t.features, t.weight, g);
                    }
                    for (t, step) in self.style.iter().zip(&w2).filter(|(t, _)| t.layer == i) {
                        let (c, lh, lw) = acts.shape[i];
                        let mask = t.mask.as_deref();
                        let f = acts.get(i);
                        losses.style += match step {
                            Some(step) => step.apply(f, lh * lw, mask, g),
                            None => style::style_loss(f, c, lh * lw, &t.gram, t.weight, mask, g),
                        };
                    }
                });
                acts.recycle(&self.buffers);
                grad
            }
            None => vec![0.0; pixels.len()],
        };
        losses.tv = tv::tv_loss(pixels, h, w, self.tv_weight, &mut grad);
        if let Some(t) = &self.temporal {
            losses.temporal = temporal::temporal_loss(pixels, t, &mut grad);
        }
        self.mask_gradient(&mut grad);
        (losses, grad)
    }

    /// Each Wasserstein style term's step at the forward pass's outputs `acts` (`None` for a Gram
    /// term): the statistics one layer after the other (each on every core), then the terms with
    /// their eigendecompositions side by side (they are small and each keeps a core busier than
    /// one shared among them; see `host_step` of the GPU's, which does the same).
    fn w2_steps(&self, acts: &Activations) -> Vec<Option<wasserstein::W2Step>> {
        let stats: Vec<_> = self
            .style
            .iter()
            .map(|t| {
                t.w2.as_ref().map(|_| {
                    let (c, lh, lw) = acts.shape[t.layer];
                    wasserstein::w2_statistics(acts.get(t.layer), c, lh * lw, t.mask.as_deref())
                })
            })
            .collect();
        self.style
            .par_iter()
            .zip(&stats)
            .map(|(t, s)| Some(wasserstein::w2_step(s.as_ref()?.as_ref(), t.w2.as_deref()?, t.weight)))
            .collect()
    }

    /// Multiplies a pixel gradient by the pixel mask (0 = the pixel never changes), if there is one.
    fn mask_gradient(&self, grad: &mut [f32]) {
        if let Some(m) = &self.pixel_mask {
            for plane in grad.chunks_exact_mut(self.height * self.width) {
                for (gv, &mv) in plane.iter_mut().zip(m) {
                    *gv *= mv;
                }
            }
        }
    }
}

/// A layer output seen in place: the values and (channels, height, width).
pub(crate) type LayerView<'a> = (&'a [f32], (usize, usize, usize));

/// Runs the forward pass of `pixels` to the deepest of `layers` with buffers from `pool`, hands `f`
/// the outputs at the given layer indices in order, then gives the buffers back to `pool`.
pub(crate) fn with_outputs<R>(
    net: &Vgg,
    pixels: &[f32],
    (h, w): (usize, usize),
    layers: &[usize],
    pool: &BufferPool,
    f: impl FnOnce(&[LayerView<'_>]) -> R,
) -> R {
    let Some(&last) = layers.iter().max() else { return f(&[]) };
    let mut wanted = vec![false; last + 1];
    for &l in layers {
        wanted[l] = true;
    }
    let acts = net.forward(pixels, h, w, last, &wanted, pool);
    let views: Vec<LayerView<'_>> = layers.iter().map(|&l| (acts.get(l), acts.shape[l])).collect();
    let r = f(&views);
    drop(views);
    acts.recycle(pool);
    r
}

/// Outputs of `pixels` at the given layer indices with their (channels, height, width), in order.
pub(crate) fn outputs_at(
    net: &Vgg,
    pixels: &[f32],
    h: usize,
    w: usize,
    layers: &[usize],
    pool: &BufferPool,
) -> Vec<(Vec<f32>, (usize, usize, usize))> {
    with_outputs(net, pixels, (h, w), layers, pool, |o| o.iter().map(|&(v, s)| (v.to_vec(), s)).collect())
}

/// Normalised Gram matrices of `pixels` at the given layers, in the order given.
pub(crate) fn grams_at(
    net: &Vgg,
    pixels: &[f32],
    h: usize,
    w: usize,
    layers: &[usize],
    pool: &BufferPool,
) -> Vec<Vec<f32>> {
    with_outputs(net, pixels, (h, w), layers, pool, |o| {
        o.iter().map(|&(f, (c, lh, lw))| gram_matrix(f, c, lh * lw)).collect()
    })
}
