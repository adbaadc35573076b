//! The style-transfer objective on the device for one image size: content, style (Gram matrices on
//! the device, or terms of the layers' statistics on the host) and total-variation terms against
//! resident targets, with the gradient to the pixels. One evaluation = pixels up, one submit (two
//! around the host step where there are host terms), one read-back of the term sums and the gradient.

use std::fmt;
use std::sync::Arc;

use crate::blocks::{Blocks, gram_slices, record_each, record_gram, record_gram_backward};
use crate::error::{GpuError, Result};
use crate::moments::{self, MomentLoss, MomentTerm};
use crate::net::GpuNet;
use crate::program::{OpParams, Program, grid, partial_count};

/// A style term at one layer, with an optional region `mask` (one value per pixel at the layer's
/// resolution).
#[derive(Debug, Clone)]
pub struct StyleTerm {
    /// Layer index.
    pub layer: usize,
    /// What the layer's features are compared with.
    pub target: StyleTarget,
    /// Weight.
    pub weight: f32,
    /// Region mask at the layer's resolution.
    pub mask: Option<Vec<f32>>,
}

/// How a [`StyleTerm`] compares a layer's features with the style.
#[derive(Clone)]
pub enum StyleTarget {
    /// The Gram loss, on the device: `weight · mean((G − gram)²)` against this C×C target, with
    /// `G = F·Fᵀ/(C·H·W)`, or under a mask `G = (F∘m)(F∘m)ᵀ/(C·Σm)`.
    Gram(Vec<f32>),
    /// A term of the layer's [`Moments`](crate::Moments) computed on the host between the forward
    /// and the backward pass (the Wasserstein style loss), its weight included.
    Moments(MomentLoss),
}

impl fmt::Debug for StyleTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StyleTarget::Gram(g) => write!(f, "Gram({} values)", g.len()),
            StyleTarget::Moments(_) => write!(f, "Moments(host)"),
        }
    }
}

/// The three loss terms of one evaluation (each already weighted).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GpuLosses {
    /// Sum of the content terms.
    pub content: f64,
    /// Sum of the style terms.
    pub style: f64,
    /// The total-variation term.
    pub tv: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Content,
    Style,
    Tv,
}

/// One reduced term: its kind, the divisor of its mean, its weight and the kernel parameters that
/// carry the weight (rewritten when the weight changes).
#[derive(Debug)]
struct Term {
    kind: Kind,
    /// Position among the terms of its kind as given to [`GpuObjective::new`] (terms are recorded
    /// in backward order, deepest layer first).
    index: usize,
    mean_of: f64,
    weight: f32,
    /// False for a style term whose mask is empty (contributes 0, as on the CPU).
    live: bool,
    /// The kernel parameters holding the weight, one per dispatch (per channel group).
    params: Vec<(wgpu::Buffer, OpParams)>,
}

impl Term {
    fn grad_scale(&self, weight: f32) -> f32 {
        2.0 * weight / self.mean_of as f32
    }
}

/// The objective for `width`×`height` images on the device of its network.
#[derive(Debug)]
pub struct GpuObjective {
    net: Arc<GpuNet>,
    h: usize,
    w: usize,
    prog: Program,
    rgb: Blocks,
    grad: Blocks,
    sums: wgpu::Buffer,
    terms: Vec<Term>,
    /// The host terms, and the steps before their host step (`None`: one submission).
    moments: Vec<MomentTerm>,
    split: Option<usize>,
    /// Kept alive: every buffer the recorded program binds.
    _resident: Vec<wgpu::Buffer>,
}

impl GpuObjective {
    /// Builds the objective: uploads the targets and records every dispatch of an evaluation.
    /// `content` holds (layer, target features, weight); `pixel_mask` (h·w) scales the gradient.
    pub fn new(
        net: Arc<GpuNet>,
        width: usize,
        height: usize,
        content: Vec<(usize, Vec<f32>, f32)>,
        style: Vec<StyleTerm>,
        tv_weight: f32,
        pixel_mask: Option<Vec<f32>>,
    ) -> Result<GpuObjective> {
        Self::with_winograd_scratch(net, width, height, content, style, tv_weight, pixel_mask, None)
    }

    /// [`GpuObjective::new`] with each of the Winograd convolutions' two scratch buffers at most
    /// `scratch` bytes (`None`: 256 MiB), where one band of tile rows fits: less memory, more bands
    /// of rows, the same bits.
    #[allow(clippy::too_many_arguments)]
    pub fn with_winograd_scratch(
        net: Arc<GpuNet>,
        width: usize,
        height: usize,
        content: Vec<(usize, Vec<f32>, f32)>,
        style: Vec<StyleTerm>,
        tv_weight: f32,
        pixel_mask: Option<Vec<f32>>,
        scratch: Option<u64>,
    ) -> Result<GpuObjective> {
        let gpu = net.gpu.clone();
        let (h, w) = (height, width);
        let mut prog = Program { winograd_cap: scratch, ..Program::default() };
        let mut keep = Vec::new();
        let mut terms: Vec<Term> = Vec::new();
        let last = content.iter().map(|t| t.0).chain(style.iter().map(|t| t.layer)).max();
        let mut reductions: Vec<(wgpu::Buffer, usize)> = Vec::new();
        let mut moments: Vec<MomentTerm> = Vec::new();
        let mut split = None;
        let (rgb, grad_pre) = match last {
            Some(last) => {
                let mut wanted = vec![false; last + 1];
                content
                    .iter()
                    .map(|t| t.0)
                    .chain(style.iter().map(|t| t.layer))
                    .for_each(|l| wanted[l] = true);
                let fwd = net.record_forward(&mut prog, h, w, last, &wanted)?;
                // The host terms' statistics, all taken before the backward pass starts.
                for (index, t) in style.iter().enumerate() {
                    if let StyleTarget::Moments(loss) = &t.target {
                        let f = fwd.out(t.layer);
                        let at = (index, t.layer, t.weight);
                        moments.extend(MomentTerm::record(
                            &gpu,
                            &mut prog,
                            at,
                            f,
                            t.mask.as_deref(),
                            loss.clone(),
                        )?);
                    }
                }
                if !moments.is_empty() {
                    split = Some(prog.steps.len());
                }
                // Where a split Gram backward sums one channel group before adding it.
                let mut scratch: Option<wgpu::Buffer> = None;
                let longest = moments.iter().map(MomentTerm::scratch_len).max().unwrap_or(0);
                if longest > 0 {
                    scratch = Some(gpu.storage("Gram gradient scratch", longest)?);
                }
                let grad = net.record_backward(&mut prog, &fwd, last, |prog, i, g| {
                    for m in moments.iter().filter(|m| m.layer == i) {
                        m.record_backward(&gpu, prog, g, scratch.as_ref())?;
                    }
                    for (index, (layer, target, weight)) in
                        content.iter().enumerate().filter(|(_, t)| t.0 == i)
                    {
                        let (c, lh, lw) = fwd.shape[*layer];
                        let n = c * lh * lw;
                        if target.len() != n {
                            return Err(GpuError::Shape {
                                op: "content target",
                                reason: format!("layer {layer}: {} values, expected {n}", target.len()),
                            });
                        }
                        let tb = gpu.upload_blocks("content target", target, c, lh * lw)?;
                        let partials = gpu.storage("loss partials", tb.partials())?;
                        let mut term = Term {
                            kind: Kind::Content,
                            index,
                            mean_of: n as f64,
                            weight: *weight,
                            live: true,
                            params: Vec::new(),
                        };
                        let p = OpParams {
                            f: [term.grad_scale(*weight), 0., 0., 0., 0., 0., 0., 0.],
                            ..Default::default()
                        };
                        let f = fwd.out(i);
                        term.params = record_each(&gpu, prog, "content", f, p, |b| {
                            vec![(1, &f.bufs[b]), (2, &g.bufs[b]), (3, &tb.bufs[b]), (4, &partials)]
                        })?;
                        reductions.push((partials.clone(), tb.partials()));
                        keep.push(partials);
                        keep.extend(tb.bufs);
                        terms.push(term);
                    }
                    for (index, t) in style.iter().enumerate().filter(|(_, t)| t.layer == i) {
                        let StyleTarget::Gram(target) = &t.target else { continue };
                        let (c, lh, lw) = fwd.shape[t.layer];
                        let n = lh * lw;
                        if target.len() != c * c {
                            return Err(GpuError::Shape {
                                op: "style target",
                                reason: format!(
                                    "layer {}: {} values, expected {c}×{c}",
                                    t.layer,
                                    target.len()
                                ),
                            });
                        }
                        let mut term = Term {
                            kind: Kind::Style,
                            index,
                            mean_of: (c * c) as f64,
                            weight: t.weight,
                            live: true,
                            params: Vec::new(),
                        };
                        let f = fwd.out(i);
                        let (source, norm, mask) = match &t.mask {
                            None => (f.clone(), (c * n) as f32, None),
                            Some(m) => {
                                if m.len() != n {
                                    return Err(GpuError::Shape {
                                        op: "style mask",
                                        reason: format!(
                                            "layer {}: {} values, expected {lh}×{lw}",
                                            t.layer,
                                            m.len()
                                        ),
                                    });
                                }
                                let area: f64 = m.iter().map(|&v| f64::from(v)).sum();
                                if area <= 1e-6 {
                                    term.live = false;
                                    terms.push(term);
                                    continue;
                                }
                                let mb = gpu.upload("style mask", m)?;
                                let fm = gpu.blocks("masked features", c, n)?;
                                let p = OpParams { w: n, ..Default::default() };
                                record_each(&gpu, prog, "mul_planes", f, p, |b| {
                                    vec![(1, &f.bufs[b]), (2, &fm.bufs[b]), (3, &mb)]
                                })?;
                                (fm, (c as f64 * area) as f32, Some(mb))
                            }
                        };
                        let gram = gpu.storage(&format!("Gram matrix ({c}×{c})"), c * c)?;
                        let (parts, sp) =
                            record_gram(&gpu, prog, &source, 1.0 / norm, gram_slices(c, n), &gram)?;
                        let tb = gpu.upload("style target", target)?;
                        let d = gpu.storage("Gram gradient", c * c)?;
                        let partials = gpu.storage("loss partials", partial_count(c * c))?;
                        let p = OpParams {
                            n: c * c,
                            c,
                            f: [term.grad_scale(t.weight), 0., 0., 0., 0., 0., 0., 0.],
                            ..Default::default()
                        };
                        let pb = prog.op(
                            &gpu,
                            "style",
                            p,
                            &[(1, &gram), (2, &d), (3, &tb), (4, &partials)],
                            grid(c * c),
                        )?;
                        term.params = vec![(pb, p)];
                        if source.bufs.len() > 1 {
                            let len = source.per * n;
                            if scratch.as_ref().is_none_or(|s| s.size() < (len * 4) as u64) {
                                scratch = Some(gpu.storage("Gram gradient scratch", len)?);
                            }
                        }
                        record_gram_backward(
                            &gpu,
                            prog,
                            &d,
                            &source,
                            mask.as_ref(),
                            1.0 / norm,
                            g,
                            scratch.as_ref(),
                        )?;
                        reductions.push((partials.clone(), partial_count(c * c)));
                        keep.extend(source.bufs);
                        keep.extend([gram, parts, sp, tb, d, partials]);
                        keep.extend(mask);
                        terms.push(term);
                    }
                    Ok(())
                })?;
                keep.extend(scratch);
                (fwd.rgb, grad)
            }
            None => {
                let rgb = gpu.blocks("input image", 3, h * w)?;
                let g = gpu.blocks("gradient", 3, h * w)?;
                g.bufs.iter().for_each(|b| prog.clear(b));
                (rgb, g)
            }
        };
        // Total variation on the pixels, added to the gradient before the pixel mask.
        let n = 3 * h * w;
        let partials = gpu.storage("loss partials", rgb.partials())?;
        let mut term = Term {
            kind: Kind::Tv,
            index: 0,
            mean_of: n as f64,
            weight: tv_weight,
            live: true,
            params: Vec::new(),
        };
        let p = OpParams {
            h,
            w,
            f: [term.grad_scale(tv_weight), 0., 0., 0., 0., 0., 0., 0.],
            ..Default::default()
        };
        term.params = record_each(&gpu, &mut prog, "tv", &rgb, p, |b| {
            vec![(1, &rgb.bufs[b]), (2, &grad_pre.bufs[b]), (4, &partials)]
        })?;
        terms.push(term);
        reductions.push((partials.clone(), rgb.partials()));
        keep.push(partials);
        let grad = match pixel_mask {
            None => grad_pre.clone(),
            Some(m) => {
                if m.len() != h * w {
                    return Err(GpuError::Shape {
                        op: "pixel mask",
                        reason: format!("{} values for {h}×{w}", m.len()),
                    });
                }
                let mb = gpu.upload("pixel mask", &m)?;
                let out = gpu.blocks("gradient", 3, h * w)?;
                let p = OpParams { w: h * w, ..Default::default() };
                record_each(&gpu, &mut prog, "mul_planes", &out, p, |b| {
                    vec![(1, &grad_pre.bufs[b]), (2, &out.bufs[b]), (3, &mb)]
                })?;
                keep.push(mb);
                out
            }
        };
        keep.extend(grad_pre.bufs);
        // Sums of the live terms, one slot each, in the order of `terms` without the dead ones.
        let sums = gpu.storage("loss sums", reductions.len())?;
        for (slot, (partials, count)) in reductions.iter().enumerate() {
            let p = OpParams { n: *count, u: [slot as u32, 0, 0, 0], ..Default::default() };
            prog.op(&gpu, "reduce_sum", p, &[(1, partials), (2, &sums)], [1, 1, 1])?;
        }
        gpu.check("building the objective")?;
        Ok(GpuObjective { net, h, w, prog, rgb, grad, sums, terms, moments, split, _resident: keep })
    }

    /// The image size (width, height).
    pub fn size(&self) -> (usize, usize) {
        (self.w, self.h)
    }

    /// Sets the weights: one per content term and per style term (in the order given to
    /// [`GpuObjective::new`]) and the TV weight. Only changed parameters are rewritten.
    pub fn set_weights(&mut self, content: &[f32], style: &[f32], tv: f32) -> Result<()> {
        let gpu = self.net.gpu.clone();
        for t in &mut self.terms {
            let new = match t.kind {
                Kind::Content => *content.get(t.index).ok_or_else(|| too_few("content"))?,
                Kind::Style => *style.get(t.index).ok_or_else(|| too_few("style"))?,
                Kind::Tv => tv,
            };
            if new.to_bits() == t.weight.to_bits() {
                continue;
            }
            t.weight = new;
            let scale = t.grad_scale(new);
            for (buf, p) in &mut t.params {
                p.f[0] = scale;
                gpu.queue.write_buffer(buf, 0, bytemuck::cast_slice(&p.words()));
            }
        }
        for m in &mut self.moments {
            m.weight = *style.get(m.index).ok_or_else(|| too_few("style"))?;
        }
        Ok(())
    }

    /// The loss terms at `pixels` (planar RGB 0..1, 3·h·w) and the gradient of their sum.
    pub fn evaluate(&mut self, pixels: &[f32]) -> Result<(GpuLosses, Vec<f32>)> {
        let n = 3 * self.h * self.w;
        if pixels.len() != n {
            return Err(GpuError::Shape {
                op: "evaluate",
                reason: format!("{} pixels values, expected {n}", pixels.len()),
            });
        }
        let gpu = self.net.gpu.clone();
        self.rgb.write(&gpu, pixels);
        // While products are being tuned, each runs this round's form between two timestamps.
        let timed = self.prog.round(&gpu);
        let round =
            if timed.is_empty() { None } else { Some(crate::profile::Stamps::new(&gpu, timed.len())?) };
        let steps: Vec<usize> = timed.iter().map(|t| t.0).collect();
        let set = round.as_ref().map(|s| &s.set);
        let mut host = 0.0;
        let mut start = 0;
        if let Some(split) = self.split {
            let mut enc = gpu.encoder();
            self.prog.record_span(&mut enc, 0..split, &steps, set);
            let read = gpu.finish_and_read(enc, &moments::reads(&self.moments))?;
            host = moments::host_step(&gpu, &self.moments, &read);
            start = split;
        }
        let mut enc = gpu.encoder();
        self.prog.record_span(&mut enc, start..self.prog.steps.len(), &steps, set);
        let live = self.terms.iter().filter(|t| t.live).count();
        let mut reads = vec![(&self.sums, live)];
        reads.extend(self.grad.reads());
        let mut out = gpu.finish_and_read(enc, &reads)?;
        let mut parts = out.split_off(1);
        // One block (every image whose planes fit a binding) is the gradient as read: no copy.
        let grad = if parts.len() == 1 { parts.pop().unwrap_or_default() } else { parts.concat() };
        let sums = out.pop().unwrap_or_default();
        if let Some(stamps) = round {
            let seconds = stamps.seconds(&gpu, gpu.encoder())?;
            self.prog.record_round(&gpu, &timed, &seconds);
        }
        let mut losses = GpuLosses { style: host, ..GpuLosses::default() };
        let mut s = sums.iter();
        for t in self.terms.iter().filter(|t| t.live) {
            let v = f64::from(t.weight) * f64::from(*s.next().unwrap_or(&0.0)) / t.mean_of;
            match t.kind {
                Kind::Content => losses.content += v,
                Kind::Style => losses.style += v,
                Kind::Tv => losses.tv += v,
            }
        }
        Ok((losses, grad))
    }
}

impl GpuObjective {
    /// Whether some matrix product's form is still being chosen: the device tunes
    /// ([`crate::Tune`]) and fewer evaluations than the choice needs have run. Tuning changes no
    /// result (every form gives the same bits), only the time of these first evaluations.
    pub fn tuning(&self) -> bool {
        self.prog.tuning(&self.net.gpu)
    }

    /// Evaluates at `pixels` until every product's form is chosen; returns the evaluations run.
    pub fn tune(&mut self, pixels: &[f32]) -> Result<usize> {
        let mut rounds = 0;
        while self.tuning() {
            self.evaluate(pixels)?;
            rounds += 1;
        }
        Ok(rounds)
    }

    /// Every matrix product with a choice of form (none where the device does not tune): each
    /// form's fastest time so far and the form in force.
    pub fn tuned(&self) -> Vec<crate::TunedProduct> {
        self.prog.tuned(&self.net.gpu)
    }

    /// What [`GpuObjective::profile`] times the kernels with.
    pub fn kernel_clock(&self) -> crate::KernelClock {
        self.net.gpu.kernel_clock()
    }

    /// One evaluation at `pixels` with every step timed on its own: (what, seconds) per step in order,
    /// `upload` first and `readback` last (those two on the host's clock), for finding slow kernels;
    /// with host terms, `host terms` (their statistics' read-back, the host's computation and their
    /// gradient's upload, on the host's clock) between the forward and the backward pass.
    /// The kernels are timed with [`Gpu::kernel_clock`](crate::Gpu::kernel_clock): the GPU's
    /// timestamps where it has them, else the host's clock around one submit and wait per step.
    pub fn profile(&mut self, pixels: &[f32]) -> Result<Vec<(String, f64)>> {
        let n = 3 * self.h * self.w;
        if pixels.len() != n {
            return Err(GpuError::Shape {
                op: "profile",
                reason: format!("{} pixels values, expected {n}", pixels.len()),
            });
        }
        let gpu = &self.net.gpu;
        let t = std::time::Instant::now();
        self.rgb.write(gpu, pixels);
        gpu.submit_and_wait(gpu.encoder())?;
        let mut out = vec![("upload".to_string(), t.elapsed().as_secs_f64())];
        // Each product in the form in force (while tuning, the one its trials run next).
        self.prog.round(gpu);
        let end = self.prog.steps.len();
        let split = self.split.unwrap_or(end);
        out.extend(crate::profile::profile_span(gpu, &self.prog, 0..split)?);
        if split < end {
            // The host terms: their statistics read back, computed, their gradient sent up.
            let t = std::time::Instant::now();
            let read = gpu.finish_and_read(gpu.encoder(), &moments::reads(&self.moments))?;
            moments::host_step(gpu, &self.moments, &read);
            out.push(("host terms".to_string(), t.elapsed().as_secs_f64()));
        }
        out.extend(crate::profile::profile_span(gpu, &self.prog, split..end)?);
        let live = self.terms.iter().filter(|t| t.live).count();
        let t = std::time::Instant::now();
        let mut reads = vec![(&self.sums, live)];
        reads.extend(self.grad.reads());
        gpu.finish_and_read(gpu.encoder(), &reads)?;
        out.push(("readback".to_string(), t.elapsed().as_secs_f64()));
        Ok(out)
    }
}

fn too_few(what: &str) -> GpuError {
    GpuError::Shape { op: "set_weights", reason: format!("fewer {what} weights than {what} terms") }
}
