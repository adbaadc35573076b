//! The Winograd F(4×4, 3×3) convolution on the device (Lavin & Gray 2016; the CPU engine's
//! algorithm): a layer's transformed weights, and the recording of one convolution as bands of tile
//! rows, each an input transform, 36 matrix products in one batched dispatch and an output transform
//! with the bias and the ReLU (`winograd.wgsl`, `matmul.wgsl`). A quarter of the multiplies of the
//! implicit-im2col product; every sum still in a fixed order, so the same device gives the same bits.

use crate::device::Gpu;
use crate::error::Result;
use crate::gemm::GemmDims;
use crate::kernels::{self, Gemm};
use crate::program::{OpParams, Program, Step, grid};

/// Points of a tile's transform (6×6), the number of products.
pub(crate) const POINTS: usize = 36;

/// 4×4 tiles from which a convolution takes the Winograd form on the device: the tile count is the
/// columns of its 36 products, and below one 64-column tile of the GEMM the padding costs what the
/// transform saves (lavapipe, 512 → 512 channels on 16×16: 176 ms either way; 256 → 256 on 32×32:
/// 56 ms against 200 ms).
pub(crate) const MIN_TILES: usize = 64;

/// The most bytes each of a program's two scratch buffers (the transformed input, the products)
/// takes by default: a band of tile rows holds at most this much. A program may be given less
/// ([`Program::scratch_cap`]): more bands, the same bits.
pub(crate) const SCRATCH_BYTES: u64 = 256 << 20;

/// A convolution's transformed weights: `36 × c_out × c_in` for the forward, `36 × c_in × c_out`
/// (of the flipped weights) for the backward to the input.
#[derive(Debug)]
pub(crate) struct WinoWeights {
    pub(crate) forward: wgpu::Buffer,
    pub(crate) backward: wgpu::Buffer,
}

/// Whether a `c_in → c_out` convolution's weights are transformed on `gpu`: the Winograd form is on,
/// the channels are enough for it at some size (the CPU engine's rule,
/// [`impasto_kernels::winograd_applies`]), and one direction's 36 matrices fit a binding.
pub(crate) fn takes_winograd(gpu: &Gpu, c_in: usize, c_out: usize) -> bool {
    gpu.winograd
        && impasto_kernels::winograd_applies(c_in, c_out, 1 << 16, 1 << 16)
        && (POINTS * c_in * c_out * 4) as u64 <= gpu.binding_cap().0
}

/// Uploads layer `layer`'s transformed weights (OIHW `weight` and its `flipped` transpose) where
/// [`takes_winograd`].
pub(crate) fn upload(
    gpu: &Gpu,
    layer: usize,
    weight: &[f32],
    flipped: &[f32],
    c_in: usize,
    c_out: usize,
) -> Result<Option<WinoWeights>> {
    if !takes_winograd(gpu, c_in, c_out) {
        return Ok(None);
    }
    let forward = impasto_kernels::winograd_weights(weight, 9 * c_in, c_out, c_in);
    let backward = impasto_kernels::winograd_weights(flipped, 9 * c_out, c_in, c_out);
    Ok(Some(WinoWeights {
        forward: gpu.upload(&format!("Winograd weights of layer {layer}"), &forward)?,
        backward: gpu.upload(&format!("Winograd backward weights of layer {layer}"), &backward)?,
    }))
}

/// Tile rows per band and the floats of each scratch buffer a band needs, for a `c → m` convolution
/// over `h`×`w` planes: as many rows as `scratch` bytes and one binding hold, and at least one.
/// `None` where the size is too small for the Winograd form
/// ([`impasto_kernels::winograd_applies`], [`MIN_TILES`]) or one row does not fit a binding: the
/// convolution is then computed directly.
pub(crate) fn band(
    gpu: &Gpu,
    scratch: u64,
    c: usize,
    m: usize,
    (h, w): (usize, usize),
) -> Option<(usize, usize)> {
    let (th, tw) = (h.div_ceil(4), w.div_ceil(4));
    if !impasto_kernels::winograd_applies(c, m, h, w) || th * tw < MIN_TILES {
        return None;
    }
    let binding = (gpu.binding_cap().0 / 4) as usize;
    let per_row = POINTS * c.max(m) * tw;
    if per_row > binding {
        return None;
    }
    let rows = ((binding.min((scratch / 4) as usize) / per_row.max(1)).max(1)).min(th);
    Some((rows, per_row * rows))
}

/// Records `y = W ⊛ x` (+ bias, ReLU) for `x` `c × h·w` and `y` `m × h·w` in one buffer each, with the
/// transformed weights `u` (`36 × m × c`), band by band ([`band`]); returns false, recording nothing,
/// where [`band`] has none.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record(
    gpu: &Gpu,
    prog: &mut Program,
    u: &wgpu::Buffer,
    bias: Option<&wgpu::Buffer>,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    (c, m): (usize, usize),
    (h, w): (usize, usize),
    relu: bool,
) -> Result<bool> {
    let Some((rows, floats)) = band(gpu, prog.scratch_cap(), c, m, (h, w)) else { return Ok(false) };
    let (v, prods) = prog.winograd_scratch(gpu, floats)?;
    let (th, tw) = (h.div_ceil(4), w.div_ceil(4));
    let flags = u32::from(bias.is_some()) | if relu { 2 } else { 0 };
    let mut ty0 = 0;
    while ty0 < th {
        let tb = ((ty0 + rows).min(th) - ty0) * tw;
        let band = [tw as u32, tb as u32, ty0 as u32];
        let p = OpParams { n: c * tb, c, h, w, u: [band[0], band[1], band[2], 0], ..Default::default() };
        prog.op(gpu, "wino_input", p, &[(1, x), (2, &v)], grid(c * tb))?;
        name_last(prog, "Winograd input transform");
        let d = GemmDims {
            m,
            n: tb,
            k: c,
            flags: kernels::SPLIT,
            alpha: 1.0,
            slices: POINTS,
            c_slice: m * tb,
            ..Default::default()
        };
        prog.gemm(gpu, Gemm::Batch, u, &v, None, &prods, d)?;
        let p =
            OpParams { n: m * tb, c: m, h, w, u: [band[0], band[1], band[2], flags], ..Default::default() };
        let bias = bias.unwrap_or(&gpu.kernels.dummy);
        prog.op(gpu, "wino_output", p, &[(1, &prods), (2, y), (3, bias)], grid(m * tb))?;
        name_last(prog, "Winograd output transform");
        ty0 += rows;
    }
    Ok(true)
}

/// Names the step just recorded after the convolution it belongs to (the program's tag, as its
/// product is: `conv fwd … (layer 2), Winograd`), so that a profile gives each layer's transforms.
fn name_last(prog: &mut Program, what: &str) {
    if let (Some(tag), Some(Step::Dispatch { label, .. })) = (&prog.tag, prog.steps.last_mut()) {
        *label = format!("{tag}, {what}");
    }
}

impl Program {
    /// The most bytes each of the program's two Winograd scratch buffers takes (default
    /// [`SCRATCH_BYTES`]).
    pub(crate) fn scratch_cap(&self) -> u64 {
        self.winograd_cap.unwrap_or(SCRATCH_BYTES)
    }

    /// The two scratch buffers of this program's Winograd convolutions (the transformed input, the
    /// products), at least `floats` each: one pair shared by every convolution the program records,
    /// which run one after the other; a larger need allocates a larger pair (the steps recorded
    /// before keep theirs).
    pub(crate) fn winograd_scratch(
        &mut self,
        gpu: &Gpu,
        floats: usize,
    ) -> Result<(wgpu::Buffer, wgpu::Buffer)> {
        match &self.winograd {
            Some((v, p, len)) if *len >= floats => Ok((v.clone(), p.clone())),
            _ => {
                let v = gpu.storage("Winograd transformed input", floats)?;
                let p = gpu.storage("Winograd products", floats)?;
                self.winograd = Some((v.clone(), p.clone(), floats));
                Ok((v, p))
            }
        }
    }
}
