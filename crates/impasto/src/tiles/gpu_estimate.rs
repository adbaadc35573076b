//! The estimate of the bytes the GPU holds while it optimises an image of a given size, which the
//! tiler weighs against the GPU memory budget ([`crate::StyleConfig::max_gpu_memory`]).
//!
//! It mirrors the allocations of `impasto-gpu`: the forward pass's kept outputs, the gradient
//! pools of the backward pass, the targets, Grams and their slices, the loss partials, the
//! read-back of each evaluation, the kernels' parameter buffers, the network's weights and their
//! flipped copies, their Winograd transforms and scratch buffers, and L-BFGS's ring of correction
//! pairs. Measured against the bytes `impasto-gpu` allocates (`Gpu::allocated_bytes`, the test
//! below) for 33×21 to 96×80 images, with masks and with channel groups: equal to within 4 bytes
//! (one 4-byte placeholder buffer of the kernels). It leaves out what the driver adds per buffer
//! (alignment, the allocator's blocks).

use super::GpuLimits;
use super::memory::wanted;
use crate::config::{Optimizer, StyleConfig, lbfgs_history_for};
use crate::model::{LayerKind, Vgg};

/// How many partial sums a loss kernel over `n` values leaves (`impasto-gpu`'s `partial_count`).
fn partial_count(n: usize) -> usize {
    let wg = n.div_ceil(256).max(1);
    let x = wg.min(32768);
    x * wg.div_ceil(x)
}

/// Rows per channel group of a `rows×cols` tensor under a binding of `cap` bytes
/// (`impasto-gpu`'s `rows_per_block`; the caller has checked that one row fits).
fn per_block(rows: usize, cols: usize, cap: u64) -> usize {
    let fit = (cap / (cols.max(1) * 4) as u64).max(1) as usize;
    if fit >= rows { rows.max(1) } else { 1 << fit.ilog2() }
}

/// Partial sums of a loss kernel run once per channel group of a `rows×cols` tensor.
fn block_partials(rows: usize, cols: usize, cap: u64) -> usize {
    let per = per_block(rows, cols, cap);
    (0..rows.max(1)).step_by(per).map(|r0| partial_count(per.min(rows.max(1) - r0) * cols)).sum()
}

/// Points of the Winograd transform and the most bytes one of its two scratch buffers takes by
/// default (`impasto-gpu`'s `winograd::POINTS`, `winograd::SCRATCH_BYTES`).
const WINO_POINTS: usize = 36;
pub(super) const WINO_SCRATCH_BYTES: u64 = 256 << 20;
/// Tiles from which `impasto-gpu` takes the Winograd form (its `winograd::MIN_TILES`).
const WINO_MIN_TILES: usize = 64;

/// Whether `impasto-gpu` keeps a `c_in → c_out` convolution's Winograd weights (its
/// `winograd::takes_winograd`: the channels of the CPU engine's rule, one direction in a binding).
fn winograd_weights(c_in: usize, c_out: usize, cap: u64) -> bool {
    impasto_kernels::winograd_applies(c_in, c_out, 1 << 16, 1 << 16)
        && (WINO_POINTS * c_in * c_out * 4) as u64 <= cap
}

/// Tile rows per band and floats of each scratch buffer of a `c_in → c_out` convolution over
/// `h`×`w` planes in the Winograd form with scratch buffers of at most `scratch` bytes (at least one
/// row), or `None` where `impasto-gpu` computes it directly (its `net::conv` and `winograd::band`:
/// no transformed weights, input or output in channel groups, a size below the rule's, one tile
/// row beyond a binding).
fn winograd_band(
    c_in: usize,
    c_out: usize,
    (h, w): (usize, usize),
    cap: u64,
    scratch: u64,
) -> Option<(usize, usize)> {
    let n = h * w;
    let whole = |rows: usize| per_block(rows, n, cap) >= rows;
    if !winograd_weights(c_in, c_out, cap)
        || !whole(c_in)
        || !whole(c_out)
        || !impasto_kernels::winograd_applies(c_in, c_out, h, w)
    {
        return None;
    }
    let (th, tw) = (h.div_ceil(4), w.div_ceil(4));
    if th * tw < WINO_MIN_TILES {
        return None;
    }
    let binding = (cap / 4) as usize;
    let per_row = WINO_POINTS * c_in.max(c_out) * tw;
    if per_row > binding {
        return None;
    }
    let rows = (binding.min((scratch / 4) as usize) / per_row.max(1)).clamp(1, th);
    Some((rows, per_row * rows))
}

/// Floats of each Winograd scratch buffer of the convolutions of an `h`×`w` image through layers
/// `0..=last` with buffers of at most `scratch` bytes: what the largest band needs (`impasto-gpu`'s
/// `GpuNet::winograd_scratch`).
pub(super) fn winograd_scratch(net: &Vgg, h: usize, w: usize, last: usize, cap: u64, scratch: u64) -> usize {
    let (mut c, mut h, mut w) = (3, h, w);
    let mut most = 0;
    for l in &net.layers()[..=last] {
        match l.kind {
            LayerKind::Conv { c_out, .. } => {
                if let Some((_, f)) = winograd_band(c, c_out, (h, w), cap, scratch) {
                    most = most.max(f);
                }
                c = c_out;
            }
            LayerKind::Pool => (h, w) = (h / 2, w / 2),
            LayerKind::Relu => {}
        }
    }
    most
}

/// Floats of the forward pass of an `h`×`w` image through layers `0..=last` keeping `wanted` (the
/// input, the network input, each kept output and the Winograd convolutions' two scratch buffers of
/// at most `scratch` bytes each, which the backward pass shares), and each layer's (channels,
/// height, width).
pub(super) fn forward(
    net: &Vgg,
    (h, w): (usize, usize),
    last: usize,
    wanted: &[bool],
    cap: u64,
    scratch: u64,
) -> (usize, Vec<(usize, usize, usize)>) {
    let layers = net.layers();
    let mut floats = 2 * 3 * h * w + 2 * winograd_scratch(net, h, w, last, cap, scratch);
    let mut shape = Vec::new();
    let (mut c, mut h, mut w) = (3, h, w);
    let mut i = 0;
    while i <= last {
        match layers[i].kind {
            LayerKind::Conv { c_out, .. } => {
                let fuse = i < last && !wanted[i] && matches!(layers[i + 1].kind, LayerKind::Relu);
                c = c_out;
                floats += c * h * w;
                shape.push((c, h, w));
                if fuse {
                    shape.push((c, h, w));
                    i += 1;
                }
            }
            LayerKind::Relu => {
                floats += c * h * w;
                shape.push((c, h, w));
            }
            LayerKind::Pool => {
                (h, w) = (h / 2, w / 2);
                floats += c * h * w;
                shape.push((c, h, w));
            }
        }
        i += 1;
    }
    (floats, shape)
}

/// Floats of the backward pass's gradient pools (`impasto-gpu`'s `GpuNet::gradient_places`): a
/// convolution writes its input's gradient into the buffer of its own output (that of the ReLU fused
/// with it) where it fits, blocked as its own tensor; a pooling layer's, the first gradient and the
/// one mapped back to RGB go into pool 0, or pool 1 when pool 0 holds the gradient being read. Each
/// pool is as many buffers as the most channel groups of what it holds, each as long as the longest
/// group.
fn gradient_pools(
    net: &Vgg,
    hw: usize,
    last: usize,
    wanted: &[bool],
    shape: &[(usize, usize, usize)],
    cap: u64,
) -> usize {
    let layers = net.layers();
    // (channels, pixels) of the network input (t = 0) or of layer t − 1's output.
    let of = |t: usize| if t == 0 { (3, hw) } else { (shape[t - 1].0, shape[t - 1].1 * shape[t - 1].2) };
    // Whether a `rows×cols` tensor's blocks fit those of the `src` tensor (`Blocks::reuse`).
    let fits = |(rows, cols): (usize, usize), (src_rows, src_cols): (usize, usize)| {
        let (per, src_per) = (per_block(rows, cols, cap), per_block(src_rows, src_cols, cap));
        let count = rows.max(1).div_ceil(per);
        count <= src_rows.max(1).div_ceil(src_per)
            && (0..count).all(|g| {
                per.min(rows.max(1) - g * per) * cols <= src_per.min(src_rows.max(1) - g * src_per) * src_cols
            })
    };
    #[derive(Clone, Copy, PartialEq)]
    enum Place {
        Pool(usize),
        Out(usize),
    }
    let other = |p: Place| if p == Place::Pool(0) { Place::Pool(1) } else { Place::Pool(0) };
    let mut held: [Vec<(usize, usize)>; 2] = [vec![of(last + 1)], Vec::new()];
    let mut g = Place::Pool(0);
    for i in (0..=last).rev() {
        let dx = of(i);
        g = match layers[i].kind {
            LayerKind::Relu => g,
            LayerKind::Conv { .. } => {
                // Fused with its ReLU (`forward`): the pair's one output is the ReLU's.
                let fused = i < last && !wanted[i] && matches!(layers[i + 1].kind, LayerKind::Relu);
                let own = if fused { i + 1 } else { i };
                if fits(dx, of(own + 1)) && g != Place::Out(own) { Place::Out(own) } else { other(g) }
            }
            LayerKind::Pool => other(g),
        };
        if let Place::Pool(k) = g {
            held[k].push(dx);
        }
    }
    held[usize::from(g == Place::Pool(0))].push((3, hw));
    held.iter()
        .filter(|h| !h.is_empty())
        .map(|h| {
            let (mut count, mut len) = (1, 1);
            for &(rows, cols) in h {
                let per = per_block(rows, cols, cap);
                count = count.max(rows.div_ceil(per));
                len = len.max(per.min(rows) * cols);
            }
            count * len
        })
        .sum()
}

/// Floats of a `c×c` Gram over `n` pixels and its K slices (`impasto-gpu`'s `gram_slices` and
/// `record_gram`).
pub(super) fn gram_floats(c: usize, n: usize, cap: u64) -> usize {
    let tiles = c.div_ceil(64).pow(2);
    let slices = (1024 / tiles).max(1).min(n.div_ceil(256)).max(1);
    let room = (cap / (c * c * 4).max(1) as u64).max(1) as usize;
    let chunk = n.div_ceil(slices.clamp(1, room)).next_multiple_of(16).max(16);
    (1 + n.div_ceil(chunk).max(1)) * c * c
}

/// Bytes of the kernels' parameter buffers of the forward pass and of the backward pass of an
/// `h`×`w` image through layers `0..=last` (80 per matrix product, 64 per other kernel): each
/// convolution takes one product per pair of channel groups (cut where the weights' row blocks end)
/// or three kernels per band of tile rows in the Winograd form (scratch buffers of at most
/// `scratch` bytes), each element-wise kernel one dispatch per channel group.
fn pass_params(
    net: &Vgg,
    (h, w): (usize, usize),
    last: usize,
    wanted: &[bool],
    cap: u64,
    scratch: u64,
) -> (usize, usize) {
    let layers = net.layers();
    let groups = |rows: usize, cols: usize| rows.max(1).div_ceil(per_block(rows, cols, cap));
    // The preprocessing's three planes, each way.
    let (mut fwd, mut bwd) = (3 * 64, 3 * 64);
    let (mut c, mut h, mut w) = (3, h, w);
    let mut i = 0;
    while i <= last {
        let n = h * w;
        match layers[i].kind {
            LayerKind::Conv { c_in, c_out, .. } => {
                if let Some((rows, _)) = winograd_band(c_in, c_out, (h, w), cap, scratch) {
                    // Each band: the input transform, the batched product, the output transform.
                    let bands = h.div_ceil(4).div_ceil(rows);
                    fwd += (64 + 80 + 64) * bands;
                    bwd += (64 + 80 + 64) * bands;
                } else {
                    let out = per_block(c_out, n, cap).min(per_block(c_out, 9 * c_in, cap));
                    fwd += 80 * groups(c_in, n) * c_out.div_ceil(out);
                    let back = per_block(c_in, n, cap).min(per_block(c_in, 9 * c_out, cap));
                    bwd += 80 * groups(c_out, n) * c_in.div_ceil(back);
                }
                c = c_out;
                if i < last && !wanted[i] && matches!(layers[i + 1].kind, LayerKind::Relu) {
                    bwd += 64 * groups(c, n);
                    i += 1;
                }
            }
            LayerKind::Relu => {
                fwd += 64 * groups(c, n);
                bwd += 64 * groups(c, n);
            }
            LayerKind::Pool => {
                fwd += 64 * groups(c, n);
                bwd += 64 * groups(c, n);
                (h, w) = (h / 2, w / 2);
            }
        }
        i += 1;
    }
    (fwd, bwd)
}

/// Bytes of the network's weights on a GPU whose bindings hold `cap` bytes: each convolution's
/// weights, their flipped copy for the backward pass, the biases, and where a layer takes the
/// Winograd form the 36 transformed matrices of each direction.
pub fn gpu_weight_bytes(net: &Vgg, cap: u64) -> u64 {
    net.layers()
        .iter()
        .map(|l| match l.kind {
            LayerKind::Conv { c_in, c_out, .. } => {
                let wino =
                    if winograd_weights(c_in, c_out, cap) { 2 * WINO_POINTS * c_in * c_out } else { 0 };
                4 * (2 * 9 * c_in * c_out + c_out + wino) as u64
            }
            _ => 0,
        })
        .sum()
}

/// The layers a run's style terms use, and how many terms each has (one per style-mask region).
pub(super) fn style_layers(net: &Vgg, config: &StyleConfig) -> Vec<usize> {
    if config.style_weight <= 0.0 {
        return Vec::new();
    }
    config.style_layers.iter().filter_map(|n| net.layer_index(n).ok()).collect()
}

/// What one objective over a `width`×`height` image holds on the GPU with Winograd scratch buffers
/// of at most `scratch` bytes: (bytes of its resident buffers and of one evaluation's read-back, the
/// floats of that read-back).
pub(super) fn objective_bytes(
    net: &Vgg,
    config: &StyleConfig,
    (width, height): (u32, u32),
    cap: u64,
    scratch: u64,
) -> (u64, usize) {
    let (h, w) = (height as usize, width as usize);
    let hw = h * w;
    let Some((last, wanted, content)) = wanted(net, config) else {
        // Only TV: the image, the gradient, the partials, the sums, the read-back.
        let floats = 2 * 3 * hw + block_partials(3, hw, cap) + 1 + (1 + 3 * hw);
        return (4 * floats as u64, 1 + 3 * hw);
    };
    let (mut floats, shape) = forward(net, (h, w), last, &wanted, cap, scratch);
    floats += gradient_pools(net, hw, last, &wanted, &shape, cap);
    let (fwd, bwd) = pass_params(net, (h, w), last, &wanted, cap, scratch);
    let mut params = fwd + bwd;
    let groups = |rows: usize, cols: usize| rows.max(1).div_ceil(per_block(rows, cols, cap));
    let mut reductions = 0;
    for &l in &content {
        let (c, lh, lw) = shape[l];
        floats += c * lh * lw + block_partials(c, lh * lw, cap);
        params += 64 * groups(c, lh * lw);
        reductions += 1;
    }
    let regions = config.style_masks.as_ref().map_or(1, Vec::len);
    let masked = config.style_masks.is_some() || config.mask.is_some();
    let style = style_layers(net, config);
    // The backward pass records the style terms from the deepest layer up; the scratch buffer of a
    // split Gram backward grows when a term needs more.
    let mut order: Vec<usize> = (0..regions).flat_map(|_| style.iter().copied()).collect();
    order.sort_by_key(|&l| std::cmp::Reverse(l));
    let mut scratch = 0;
    for l in order {
        let (c, lh, lw) = shape[l];
        let n = lh * lw;
        let g = groups(c, n);
        if masked {
            floats += n + c * n;
            params += 64 * g;
        }
        // The Gram's products, its slices' sum, the loss, the Gram backward's products and sums.
        params += 80 * g * g + 64 + 64 + if g == 1 { 80 } else { g * (80 * g + 64) };
        // The Gram and its slices, the target, its gradient, the partials.
        floats += gram_floats(c, n, cap) + 2 * c * c + partial_count(c * c);
        let per = per_block(c, n, cap);
        if per < c && per * n > scratch {
            scratch = per * n;
            floats += scratch;
        }
        reductions += 1;
    }
    // Total variation, the pixel mask and its masked gradient, the sums.
    floats += block_partials(3, hw, cap) + 1;
    params += 64 * groups(3, hw);
    reductions += 1;
    if config.mask.is_some() {
        floats += hw + 3 * hw;
        params += 64 * groups(3, hw);
    }
    floats += reductions;
    params += 64 * reductions;
    let readback = reductions + 3 * hw;
    (4 * (floats + readback) as u64 + params as u64, readback)
}

/// The bytes the GPU holds at most while a `width`×`height` image (a whole scale, or one tile) is
/// optimised on it under `config`, with the tensor binding `limits.tensor`: the network's weights,
/// and the larger of the objective (its resident buffers and one evaluation's read-back, its
/// Winograd scratch as `objective_scratch` caps it) and the forward pass that computes its content
/// targets. The style targets are computed before, in passes of their own (see the tiler).
pub fn estimate_gpu_peak(
    net: &Vgg,
    config: &StyleConfig,
    width: u32,
    height: u32,
    limits: &GpuLimits,
) -> u64 {
    let scratch = super::gpu::objective_scratch(net, config, width, height, limits);
    peak_with(net, config, (width, height), limits.tensor, scratch.unwrap_or(WINO_SCRATCH_BYTES))
}

/// [`estimate_gpu_peak`] with the objective's Winograd scratch buffers at most `scratch` bytes each.
pub(super) fn peak_with(
    net: &Vgg,
    config: &StyleConfig,
    (width, height): (u32, u32),
    cap: u64,
    scratch: u64,
) -> u64 {
    let objective = objective_bytes(net, config, (width, height), cap, scratch).0;
    let objective = objective + lbfgs_ring_bytes(config, width, height, cap);
    gpu_weight_bytes(net, cap) + objective.max(content_pass(net, config, width, height, cap).0)
}

/// The L-BFGS history a GPU run allocates beside the objective when a scale or tile starts
/// (impasto-gpu's `GpuHistory`, its vectors split into segments of one `tensor` binding, each
/// segment's stored in pages of as many as a binding holds), with one direction's read-backs: `s` and
/// `y` of every pair the run keeps at this size, the gradient/direction and its read-back, the held-vector flags, the dot products' partial sums (one per 16384 values, three per
/// vector) and their read-back, the coefficients, and the 64-byte parameters of each slot's
/// dot-product pass (one dispatch per page and segment, and a finish) and of each slot's
/// combination (one dispatch per run of vectors within a page). Adam keeps its state on the host.
fn lbfgs_ring_bytes(config: &StyleConfig, width: u32, height: u32, tensor: u64) -> u64 {
    let Optimizer::Lbfgs { history } = config.optimizer else { return 0 };
    let values = 3 * width as u64 * height as u64;
    let pairs = lbfgs_history_for(history, values as usize) as u64;
    let vectors = 2 * pairs;
    let per_segment = (tensor / 4).max(1);
    let lens: Vec<u64> =
        (0..values.div_ceil(per_segment)).map(|j| (values - j * per_segment).min(per_segment)).collect();
    let blocks: u64 = lens.iter().map(|len| len.div_ceil(16384)).sum();
    let per_page: Vec<u64> = lens.iter().map(|&len| (per_segment / len).clamp(1, vectors)).collect();
    let pages: u64 = per_page.iter().map(|&p| vectors.div_ceil(p)).sum();
    // The combination's runs within a page, from each slot's s round the ring: one more than the
    // pages where the slot's s is not a page's first vector.
    let chunks: u64 = per_page
        .iter()
        .map(|&p| (0..pairs).map(|slot| vectors.div_ceil(p) + u64::from((2 * slot) % p != 0)).sum::<u64>())
        .sum();
    4 * values * (vectors + 2)
        + 4 * vectors
        + 4 * 6 * vectors * blocks
        + 2 * 4 * 6 * vectors
        + 4 * (vectors + 1)
        + 64 * (pairs * (pages + 1) + chunks)
}

/// The forward pass of the content targets: (bytes with its read-back, read-back floats).
pub(super) fn content_pass(
    net: &Vgg,
    config: &StyleConfig,
    width: u32,
    height: u32,
    cap: u64,
) -> (u64, usize) {
    let content: Vec<usize> = config.content_layers.iter().filter_map(|n| net.layer_index(n).ok()).collect();
    let Some(&last) = content.iter().max() else { return (0, 0) };
    let mut wanted = vec![false; last + 1];
    content.iter().for_each(|&l| wanted[l] = true);
    let (floats, shape) =
        forward(net, (height as usize, width as usize), last, &wanted, cap, WINO_SCRATCH_BYTES);
    let readback: usize = content.iter().map(|&l| shape[l].0 * shape[l].1 * shape[l].2).sum();
    (4 * (floats + readback) as u64, readback)
}

#[cfg(all(test, feature = "gpu"))]
mod tests {
    use super::*;
    use crate::device::{Device, GpuContext, GpuFaults};
    use crate::loss::{ContentTarget, Objective, StyleTarget};
    use crate::model::{Arch, Pooling, Preprocess};

    fn random_vgg(convs: usize) -> Vgg {
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 0.1
        };
        let mut weights = Vec::new();
        for l in Arch::Vgg16.layers() {
            if let LayerKind::Conv { c_in, c_out, conv, .. } = l.kind {
                if conv >= convs {
                    break;
                }
                weights.push((
                    (0..c_out * c_in * 9).map(|_| next()).collect(),
                    (0..c_out).map(|_| next()).collect(),
                ));
            }
        }
        Vgg::from_tensors(Arch::Vgg16, Pooling::Max, Preprocess::Torch, weights).unwrap()
    }

    /// The objective `config` describes for a `w`×`h` image (zero targets: only the sizes matter),
    /// built on a fresh device with the binding `cap` and Winograd scratch buffers of at most
    /// `scratch` bytes, and evaluated once: (estimated, allocated) bytes.
    fn measured(
        net: &Vgg,
        config: &StyleConfig,
        (w, h): (u32, u32),
        cap: Option<u64>,
        scratch: Option<u64>,
    ) -> (u64, u64) {
        // Never the network's kept device (other objectives were built on it): a fresh one.
        let faults = GpuFaults { max_storage_binding: Some(cap.unwrap_or(u64::MAX)), ..GpuFaults::default() };
        let ctx = GpuContext::open(Device::Gpu(Some(0)), &faults, net).unwrap().expect("a GPU adapter");
        let (last, wanted, content) = wanted(net, config).unwrap();
        let (_, shape) = forward(net, (h as usize, w as usize), last, &wanted, u64::MAX, WINO_SCRATCH_BYTES);
        let (hw, wu) = (h as usize * w as usize, w as usize);
        let mut o = Objective::new(net, wu, h as usize);
        o.tv_weight = 1.0;
        for &l in &content {
            let (c, lh, lw) = shape[l];
            o.content.push(ContentTarget { layer: l, features: vec![0.0; c * lh * lw], weight: 1.0 });
        }
        let regions = config.style_masks.as_ref().map_or(1, Vec::len);
        let masked = config.style_masks.is_some() || config.mask.is_some();
        for _ in 0..regions {
            for l in style_layers(net, config) {
                let (c, lh, lw) = shape[l];
                let mask = masked.then(|| vec![0.5; lh * lw]);
                o.style.push(StyleTarget { layer: l, gram: vec![0.0; c * c], weight: 1.0, mask, w2: None });
            }
        }
        o.pixel_mask = config.mask.as_ref().map(|_| vec![1.0; hw]);
        o.attach(Some(&ctx), scratch).unwrap();
        let (losses, _) = o.evaluate(&vec![0.5; 3 * hw]);
        assert!(losses.total().is_finite());
        // Everything the device allocated: the weights, the objective, one evaluation's read-back.
        let got = ctx.allocated_bytes();
        let tensor = ctx.limits().tensor;
        let scratch = scratch.unwrap_or(WINO_SCRATCH_BYTES);
        let est = objective_bytes(net, config, (w, h), tensor, scratch).0 + gpu_weight_bytes(net, tensor);
        (est, got)
    }

    #[test]
    #[allow(clippy::print_stderr)] // the measured difference, shown with --nocapture
    fn the_lbfgs_ring_estimate_equals_what_impasto_gpu_allocates() {
        let net = random_vgg(4);
        // The last case with 16 KiB bindings: each vector in 6 segments.
        for (w, h, history, cap) in
            [(33u32, 21u32, 100, None), (96, 80, 7, None), (96, 80, 7, Some(16u64 << 10))]
        {
            let faults = GpuFaults { max_storage_binding: cap, ..GpuFaults::default() };
            let ctx = GpuContext::open(Device::Gpu(Some(0)), &faults, &net).unwrap().expect("a GPU adapter");
            let tensor = ctx.limits().tensor;
            let config = StyleConfig { optimizer: Optimizer::Lbfgs { history }, ..StyleConfig::default() };
            let n = 3 * (w * h) as usize;
            let before = ctx.allocated_bytes();
            let mut ring =
                impasto_gpu::GpuHistory::new(ctx.net.gpu().clone(), n, lbfgs_history_for(history, n))
                    .unwrap();
            ring.push(&vec![1e-3; n], &vec![2e-3; n], 2e-6 * n as f64).unwrap();
            ring.direction(&vec![0.5; n]).unwrap();
            let (est, got) = (lbfgs_ring_bytes(&config, w, h, tensor), ctx.allocated_bytes() - before);
            let rel = (est as f64 - got as f64) / got as f64;
            eprintln!(
                "L-BFGS ring {w}x{h}, history {history}, binding {tensor}: estimated {est}, allocated {got} ({:+.4} %)",
                100.0 * rel
            );
            assert!(rel.abs() < 1e-4, "{w}x{h}, binding {tensor}: estimated {est}, allocated {got}");
        }
        let adam =
            StyleConfig { optimizer: Optimizer::Adam { learning_rate: 0.01 }, ..StyleConfig::default() };
        assert_eq!(lbfgs_ring_bytes(&adam, 96, 80, 1 << 20), 0);
    }

    #[test]
    #[allow(clippy::print_stderr)] // the measured difference, shown with --nocapture
    fn the_gpu_estimate_equals_what_impasto_gpu_allocates() {
        let net = random_vgg(4);
        let base = StyleConfig {
            content_layers: vec!["relu2_1".into()],
            style_layers: vec!["relu1_1".into(), "relu1_2".into(), "relu2_1".into()],
            ..StyleConfig::default()
        };
        let mask = image::ImageBuffer::from_pixel(4, 4, image::Luma([1.0f32]));
        let masked = StyleConfig {
            mask: Some(mask.clone()),
            style_masks: Some(vec![mask.clone(), mask]),
            ..base.clone()
        };
        // A pooling layer last and terms on convolutions: both gradient pools, and gradients in
        // the buffers of unfused convolutions' outputs.
        let pooled = StyleConfig {
            content_layers: vec!["pool1".into()],
            style_layers: vec!["conv1_2".into(), "relu1_1".into()],
            ..StyleConfig::default()
        };
        for (what, config, (w, h), cap, scratch) in [
            ("plain", &base, (33, 21), None, None),
            ("pooled", &pooled, (40, 36), None, None),
            ("pooled split", &pooled, (48, 40), Some(120 << 10), None),
            ("plain", &base, (96, 80), None, None),
            // Winograd scratch buffers of 1 MiB (four of the 24 tile rows of the 64-channel
            // layers a band), and of 64 KiB (less than one row: one row a band).
            ("plain, scratch 1 MiB", &base, (96, 80), None, Some(1 << 20)),
            ("plain, scratch 64 KiB", &base, (96, 80), None, Some(64 << 10)),
            ("masked", &masked, (64, 48), None, None),
            // Bindings of 120 KiB: four channel groups at 64 channels, two at 128.
            ("split", &base, (48, 40), Some(120 << 10), None),
            ("masked split", &masked, (48, 40), Some(120 << 10), None),
        ] {
            let (est, got) = measured(&net, config, (w, h), cap, scratch);
            let rel = (est as f64 - got as f64) / got as f64;
            eprintln!("{what} {w}x{h} cap {cap:?}: estimated {est}, allocated {got} ({:+.3} %)", 100.0 * rel);
            assert!(rel.abs() < 1e-4, "{what} {w}x{h}: estimated {est}, allocated {got}");
        }
    }
}
