//! Style terms computed on the host from a layer's statistics (the Wasserstein style loss): the
//! device takes each such layer's second moment and channel means after the forward pass, the host
//! turns them into the term and its gradient with respect to both, and the device carries that
//! gradient back to the pixels. One evaluation becomes two submissions with a read-back of C×C + C
//! values per term between them.

use std::fmt;
use std::sync::Arc;

use rayon::prelude::*;

use crate::blocks::{Blocks, gram_slices, record_gram, record_gram_backward};
use crate::device::Gpu;
use crate::error::{GpuError, Result};
use crate::program::{OpParams, Program, grid};

/// A layer's statistics, each position weighted by its region mask squared (1 without a mask):
/// the second moment `S = (F∘m)(F∘m)ᵀ/Σm²` (C×C, row-major) and the channels' means
/// `μ = (F∘m²)·1/Σm²`.
#[derive(Debug, Clone, Copy)]
pub struct Moments<'a> {
    /// The second moment, C×C.
    pub second: &'a [f32],
    /// The channels' means.
    pub mean: &'a [f64],
}

/// A host term's value and its gradient with respect to the statistics taken as independent.
#[derive(Debug, Clone, PartialEq)]
pub struct MomentGradient {
    /// The term, weight included.
    pub loss: f64,
    /// `∂loss/∂S` (C×C, symmetric).
    pub d_second: Vec<f32>,
    /// `∂loss/∂μ`.
    pub d_mean: Vec<f64>,
}

/// The host's part of a [`crate::StyleTarget::Moments`] term: the term and its gradient at the
/// layer's statistics for the weight in force; `None` when it cannot be computed (an
/// eigendecomposition that does not converge), which makes the evaluation's style loss NaN.
pub type MomentLoss = Arc<dyn Fn(Moments<'_>, f32) -> Option<MomentGradient> + Send + Sync>;

/// One host term on the device: its statistics' buffers and where its gradient goes back in.
pub(crate) struct MomentTerm {
    /// Position among the style terms given to the objective (for its weight).
    pub(crate) index: usize,
    pub(crate) weight: f32,
    pub(crate) layer: usize,
    c: usize,
    /// `Σm²`, or the positions without a mask.
    total: f64,
    loss: MomentLoss,
    /// The features (times the mask where there is one), as the statistics and the backward read them.
    source: Blocks,
    mask: Option<wgpu::Buffer>,
    second: wgpu::Buffer,
    sums: wgpu::Buffer,
    /// `2·∂loss/∂S` and `∂loss/∂μ / Σm²`, written by the host step.
    d: wgpu::Buffer,
    shift: wgpu::Buffer,
    _kept: Vec<wgpu::Buffer>,
}

impl fmt::Debug for MomentTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MomentTerm {{ layer: {}, channels: {}, total: {:e} }}", self.layer, self.c, self.total)
    }
}

impl MomentTerm {
    /// Records the statistics of `f` (the layer's `c × n` output) under `mask`; `None` for an
    /// empty region (no term, as on the CPU).
    pub(crate) fn record(
        gpu: &Gpu,
        prog: &mut Program,
        (index, layer, weight): (usize, usize, f32),
        f: &Blocks,
        mask: Option<&[f32]>,
        loss: MomentLoss,
    ) -> Result<Option<MomentTerm>> {
        let (c, n) = (f.rows, f.cols);
        let (source, total, mask) = match mask {
            None => (f.clone(), n as f64, None),
            Some(m) => {
                if m.len() != n {
                    return Err(GpuError::Shape {
                        op: "style mask",
                        reason: format!("layer {layer}: {} values, expected {n}", m.len()),
                    });
                }
                let total: f64 = m.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
                if total <= 1e-6 {
                    return Ok(None);
                }
                let mb = gpu.upload("style mask", m)?;
                let fm = gpu.blocks("masked features", c, n)?;
                crate::blocks::record_each(
                    gpu,
                    prog,
                    "mul_planes",
                    f,
                    OpParams { w: n, ..Default::default() },
                    |b| vec![(1, &f.bufs[b]), (2, &fm.bufs[b]), (3, &mb)],
                )?;
                (fm, total, Some(mb))
            }
        };
        let second = gpu.storage(&format!("second moment ({c}×{c})"), c * c)?;
        let (parts, sp) = record_gram(gpu, prog, &source, (1.0 / total) as f32, gram_slices(c, n), &second)?;
        let sums = gpu.storage("channel sums", c)?;
        for (r0, rows, buf) in source.iter() {
            let p = OpParams {
                c: rows,
                w: n,
                u: [r0 as u32, u32::from(mask.is_some()), 0, 0],
                ..Default::default()
            };
            let weights = mask.as_ref().unwrap_or(buf);
            prog.op(gpu, "row_sums", p, &[(1, buf), (2, &sums), (3, weights)], [rows as u32, 1, 1])?;
        }
        let d = gpu.storage("second moment's gradient", c * c)?;
        let shift = gpu.storage("channel means' gradient", c)?;
        Ok(Some(MomentTerm {
            index,
            weight,
            layer,
            c,
            total,
            loss,
            source,
            mask,
            second,
            sums,
            d,
            shift,
            _kept: vec![parts, sp],
        }))
    }

    /// Records the term's gradient into `g` (the layer's gradient, blocked as its output):
    /// `g_p += m_p²/Σm² · (2·∂S·F_p) + m_p²·∂μ/Σm²`.
    pub(crate) fn record_backward(
        &self,
        gpu: &Gpu,
        prog: &mut Program,
        g: &Blocks,
        scratch: Option<&wgpu::Buffer>,
    ) -> Result<()> {
        let alpha = (1.0 / self.total) as f32;
        record_gram_backward(gpu, prog, &self.d, &self.source, self.mask.as_ref(), alpha, g, scratch)?;
        for (r0, rows, buf) in g.iter() {
            let n = rows * g.cols;
            let p = OpParams {
                n,
                w: g.cols,
                u: [r0 as u32, u32::from(self.mask.is_some()), 0, 0],
                ..Default::default()
            };
            let weights = self.mask.as_ref().unwrap_or(&self.shift);
            prog.op(gpu, "shift_rows", p, &[(1, &self.shift), (2, buf), (3, weights)], grid(n))?;
        }
        Ok(())
    }

    /// Floats a split Gram backward of this term sums in its scratch buffer (0: not split).
    pub(crate) fn scratch_len(&self) -> usize {
        if self.source.bufs.len() > 1 { self.source.per * self.source.cols } else { 0 }
    }
}

/// The buffers the host step reads, in the order [`host_step`] takes them back.
pub(crate) fn reads(terms: &[MomentTerm]) -> Vec<(&wgpu::Buffer, usize)> {
    terms.iter().flat_map(|t| [(&t.second, t.c * t.c), (&t.sums, t.c)]).collect()
}

/// The host step between the two submissions: each term from its statistics (`read`, as
/// [`reads`] lists them), its gradient written for the backward. Returns the terms' sum (NaN
/// when one cannot be computed; its gradient is then zero). The terms are computed side by side
/// (their eigendecompositions keep a core each busier than one shared among them) and summed in
/// their order, so the sum has the same bits as one after the other.
pub(crate) fn host_step(gpu: &Gpu, terms: &[MomentTerm], read: &[Vec<f32>]) -> f64 {
    let results: Vec<Option<MomentGradient>> = terms
        .par_iter()
        .zip(read.par_chunks_exact(2))
        .map(|(t, pair)| {
            let mean: Vec<f64> = pair[1].iter().map(|&s| f64::from(s) / t.total).collect();
            (t.loss)(Moments { second: &pair[0], mean: &mean }, t.weight)
                .filter(|g| g.d_second.len() == t.c * t.c && g.d_mean.len() == t.c)
        })
        .collect();
    let mut sum = 0.0;
    for (t, g) in terms.iter().zip(results) {
        let (d, shift) = match g {
            Some(g) => {
                sum += g.loss;
                let d: Vec<f32> = g.d_second.iter().map(|v| 2.0 * v).collect();
                let shift: Vec<f32> = g.d_mean.iter().map(|v| (v / t.total) as f32).collect();
                (d, shift)
            }
            None => {
                sum = f64::NAN;
                (vec![0.0; t.c * t.c], vec![0.0; t.c])
            }
        };
        gpu.queue.write_buffer(&t.d, 0, bytemuck::cast_slice(&d));
        gpu.queue.write_buffer(&t.shift, 0, bytemuck::cast_slice(&shift));
    }
    sum
}
