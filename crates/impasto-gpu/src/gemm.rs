//! Recording one matrix product into a program: its K slices, tiles and workgroups, and, on a device
//! that tunes, every compiled form of it bound to the same buffers for the tuner to choose from.

use crate::device::Gpu;
use crate::error::{GpuError, Result};
use crate::kernels::{Gemm, NARROW_ROWS};
use crate::program::{Program, Step, bind_group};
use crate::tune::{Alt, Choice, Key};

/// The shape of one GEMM: C (M×N) (+)= alpha·A (M×K)·B (K×N); `h`, `w` for the convolution. A and C
/// may be sub-blocks of larger row-major matrices: `lda`, `ldc` their row strides (0: K, N), `a_off`,
/// `c_off` their first elements, `c_slice` the distance between SPLIT slices (0: M·N), `bias_off`
/// the bias of row 0.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GemmDims {
    pub(crate) m: usize,
    pub(crate) n: usize,
    pub(crate) k: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) flags: u32,
    pub(crate) alpha: f32,
    /// K split into this many slices (flag SPLIT; C then holds `slices` M×N results).
    pub(crate) slices: usize,
    pub(crate) lda: usize,
    pub(crate) a_off: usize,
    pub(crate) ldc: usize,
    pub(crate) c_off: usize,
    pub(crate) c_slice: usize,
    pub(crate) bias_off: usize,
    /// The cropped Gram's rectangle corner (column, row).
    pub(crate) crop: (usize, usize),
}

impl Program {
    /// Adds a GEMM; returns its parameter buffer.
    pub(crate) fn gemm(
        &mut self,
        gpu: &Gpu,
        kind: Gemm,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        extra: Option<&wgpu::Buffer>,
        c: &wgpu::Buffer,
        d: GemmDims,
    ) -> Result<wgpu::Buffer> {
        let slices = d.slices.max(1);
        // K slices start on a block of the kernel (`BK` of `matmul.wgsl`). A batch's workgroups
        // along z are its products (`slices` of them), each over the whole of K.
        let block = if kind == Gemm::Conv { 18 } else { 16 };
        let chunk = d.k.div_ceil(slices).next_multiple_of(block).max(block);
        let (chunk, slices) = match kind {
            Gemm::Batch => (d.k.next_multiple_of(block).max(block), slices),
            _ => (chunk, d.k.div_ceil(chunk).max(1)),
        };
        let label = self.tag.clone().map(|t| if kind == Gemm::Batch { format!("{t}, Winograd") } else { t });
        let label = label.unwrap_or_else(|| {
            match kind {
                Gemm::Plain => "gram bwd",
                Gemm::Gram | Gemm::CropGram => "gram",
                Gemm::Conv => "conv",
                Gemm::Batch => "winograd",
            }
            .to_string()
        });
        let extra = extra.unwrap_or(&gpu.kernels.dummy);
        let buffers = [(1, a), (2, b), (3, extra), (4, c)];
        // A convolution with few output rows runs a column per invocation, 256 columns a workgroup.
        if kind == Gemm::Conv && d.m <= NARROW_ROWS {
            let (params, groups) = gemm_params(gpu, &d, chunk, slices, None)?;
            let pipeline = &gpu.kernels.conv_narrow;
            let bind = bind_group(gpu, pipeline, &params, &buffers)?;
            self.steps.push(Step::Dispatch { pipeline: pipeline.clone(), bind, groups, label });
            return Ok(params);
        }
        let big = d.m.div_ceil(64) * d.n.div_ceil(64) * slices;
        let default = gpu.kernels.default_form(kind, big);
        // The default form, and every other compiled one where the device tunes; one parameter
        // buffer per tile size. A form whose workgroups exceed the dispatch limit is left out.
        let (params, groups) = gemm_params(gpu, &d, chunk, slices, Some(default.size()))?;
        let mut sized = vec![(default.size(), params.clone(), groups)];
        let mut alts = Vec::new();
        for (form, pipeline) in gpu.kernels.forms(kind) {
            if form != default && !gpu.kernels.tune {
                continue;
            }
            let at = match sized.iter().position(|p| p.0 == form.size()) {
                Some(i) => i,
                None => match gemm_params(gpu, &d, chunk, slices, Some(form.size())) {
                    Ok((b, g)) => {
                        sized.push((form.size(), b, g));
                        sized.len() - 1
                    }
                    Err(_) => continue,
                },
            };
            let (_, pb, groups) = &sized[at];
            let bind = bind_group(gpu, pipeline, pb, &buffers)?;
            alts.push(Alt { form, pipeline: pipeline.clone(), bind, groups: *groups });
        }
        let Some(first) = alts.iter().position(|a| a.form == default) else {
            return Err(GpuError::Shape {
                op: "matrix product",
                reason: format!("no kernel for {default:?}"),
            });
        };
        let key = Key { kind, m: d.m, k: d.k, n_class: d.n.next_power_of_two(), slices, flags: d.flags };
        let step = self.steps.len();
        let remembered =
            alts.len() < 2 || gpu.tuner.register(key, alts.iter().map(|a| a.form).collect(), default);
        let choice = Choice { step, key, label, n: d.n, alts, default: first, remembered, running: first };
        self.steps.push(crate::tune::dispatch(&choice, first));
        if choice.alts.len() > 1 {
            self.choices.push(choice);
        }
        Ok(params)
    }
}

/// The parameter buffer and workgroups of a product `d` in K slices of `chunk` (`slices` of them),
/// in tiles of `tile` (rows, columns) of outputs, or (`None`) one column per invocation in
/// workgroups of 256.
fn gemm_params(
    gpu: &Gpu,
    d: &GemmDims,
    chunk: usize,
    slices: usize,
    tile: Option<(usize, usize)>,
) -> Result<(wgpu::Buffer, [u32; 3])> {
    let m_tiles = tile.map_or(1, |t| d.m.div_ceil(t.0).max(1));
    let n_tiles = d.n.div_ceil(tile.map_or(256, |t| t.1)).max(1);
    let xn = n_tiles.min(32768);
    let yn = n_tiles.div_ceil(xn);
    let groups = [xn as u32, (m_tiles * yn) as u32, slices as u32];
    let max = gpu.limits.max_compute_workgroups_per_dimension;
    if groups.iter().any(|&g| g > max) {
        return Err(GpuError::Limit {
            adapter: gpu.name(),
            what: format!("a {}×{}×{} matrix product", d.m, d.k, d.n),
            limit: "max_compute_workgroups_per_dimension",
            needed: u64::from(*groups.iter().max().unwrap_or(&0)),
            allowed: u64::from(max),
        });
    }
    let or = |v: usize, default: usize| if v == 0 { default } else { v } as u32;
    let words = [
        d.m as u32,
        d.n as u32,
        d.k as u32,
        n_tiles as u32,
        m_tiles as u32,
        xn as u32,
        chunk as u32,
        d.flags,
        d.h as u32,
        d.w as u32,
        or(d.lda, d.k),
        d.a_off as u32,
        d.alpha.to_bits(),
        or(d.ldc, d.n),
        d.c_off as u32,
        or(d.c_slice, d.m * d.n),
        d.bias_off as u32,
        d.crop.0 as u32,
        d.crop.1 as u32,
        0,
    ];
    Ok((gpu.params(&words), groups))
}
