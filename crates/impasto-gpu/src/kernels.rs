//! The compiled kernels: the WGSL sources and their substitutions, the tiled GEMM in its variants
//! (plain, Gram, implicit-im2col convolution, cropped Gram, the Winograd batch; a
//! column-per-invocation form of the convolution for outputs of at most 4 channels) and forms, and
//! the element-wise, pooling, loss, L-BFGS and Winograd transform kernels, compiled in parallel.

use crate::device::GpuOptions;
use crate::error::{GpuError, Result};
use crate::tune::{Form, Tile};

/// The tiled GEMM: its 64×64 forms, then its other tile shapes.
const MATMUL: &str = concat!(include_str!("shaders/matmul.wgsl"), include_str!("shaders/matmul_shapes.wgsl"));
const OPS: &str = include_str!("shaders/ops.wgsl");
const HISTORY: &str = include_str!("shaders/history.wgsl");
const WINOGRAD: &str = include_str!("shaders/winograd.wgsl");
/// The ceiling kernels (`peak.rs`), appended to the plain GEMM's source.
const PEAK: &str = include_str!("shaders/peak.wgsl");
/// The parameter struct `ops.wgsl` and `history.wgsl` share, prepended to each.
const PARAMS: &str = include_str!("shaders/params.wgsl");

/// `A` read as a row-major block: row stride `lda`, first element `a_off`.
const A_PLAIN: &str = "fn a_index(row: u32, k: u32) -> u32 { return p.a_off + row * p.lda + k; }";
/// The convolution's blocks of 18 k, 2 channels × 9 taps (see [`LOAD_CONV`]).
const BLOCK_TAPS: &str = "const BK = 18u;
const TAPS = true;";
/// `tile8`'s blocks of 16 k without a per-tap path: every loader's but the convolution's.
const BLOCK16: &str = "const BK = 16u;
const TAPS = false;";
/// The per-tap load of the loaders without taps (never called).
const NO_TAPS: &str = "fn load_b_block(k0: u32, r: u32, ij: vec4<u32>) -> f32 { return 0.0; }";
/// `B` read as a row-major K×N matrix.
const LOAD_PLAIN: &str = "const B_KFAST = false;
fn b_column(col: u32) -> vec4<u32> { return vec4<u32>(0u); }
fn load_b(k: u32, col: u32, ij: vec4<u32>) -> f32 { return b[k * p.n + col]; }";
/// `B = Fᵀ` with `F` row-major N×K (the Gram matrix `F·Fᵀ`).
const LOAD_GRAM: &str = "const B_KFAST = true;
fn b_column(col: u32) -> vec4<u32> { return vec4<u32>(0u); }
fn load_b(k: u32, col: u32, ij: vec4<u32>) -> f32 { return b[col * p.k + k]; }";
/// `B` the im2col matrix of a c×h×w input for a 3×3 pad-1 convolution: row k = (c, ky, kx), column
/// = output pixel. `b_column` computes once per invocation what its column (the same for every k)
/// needs: the pixel's row and column (a division by the runtime width), its index, and which of
/// the 9 taps (3·ky + kx) fall inside the image, one bit each. `tile8` stages blocks of 18 k, 2
/// channels × 9 taps (TAPS): with the loop over a block's rows unrolled, row r's tap and channel
/// offset are constants, so a value costs an addition and a bit test ([`GpuOptions::im2col_per_value`]:
/// [`BLOCK16`] instead, each value decoded from k by `load_b`).
const LOAD_CONV: &str = "const B_KFAST = false;
fn b_column(col: u32) -> vec4<u32> {
    let i = col / p.w;
    let j = col - i * p.w;
    var taps = 0u;
    for (var t = 0u; t < 9u; t++) {
        let y = i + t / 3u;
        let x = j + t % 3u;
        if y >= 1u && y <= p.h && x >= 1u && x <= p.w {
            taps |= 1u << t;
        }
    }
    return vec4<u32>(i, j, taps, i * p.w + j);
}
fn load_b_block(k0: u32, r: u32, ij: vec4<u32>) -> f32 {
    let tap = r % 9u;
    if (ij.z & (1u << tap)) == 0u {
        return 0.0;
    }
    let ky = tap / 3u;
    return b[(k0 / 9u + r / 9u) * p.h * p.w + ij.w + ky * p.w + tap - 3u * ky - p.w - 1u];
}
fn load_b(k: u32, col: u32, ij: vec4<u32>) -> f32 {
    let r = k % 9u;
    return load_b_block(k - r, r, ij);
}";

/// The products of a batch (the Winograd convolution's 36, see `winograd.rs`): product z of A is the
/// row-major M×K block at z·M·K, of B the K×N block at z·K·N (C's is slice z, flag SPLIT).
const LOAD_BATCH: &str = "const B_KFAST = false;
fn a_index(row: u32, k: u32) -> u32 { return (batch * p.m + row) * p.k + k; }
fn b_column(col: u32) -> vec4<u32> { return vec4<u32>(0u); }
fn load_b(k: u32, col: u32, ij: vec4<u32>) -> f32 { return b[(batch * p.k + k) * p.n + col]; }";

/// The cropped Gram `F_r·F_rᵀ`: `F` row-major planes of `w` values a row and `lda` values a plane, `F_r`
/// the pixels of the rectangle at (`crop_x`, `crop_y`) that is `h` wide, in row-major order (pixel k
/// of the rectangle is k). A and B are both `F` (channel groups of it).
const LOAD_CROP_GRAM: &str = "const B_KFAST = true;
fn crop_pixel(k: u32) -> u32 {
    let y = k / p.h;
    return (p.crop_y + y) * p.w + p.crop_x + (k - y * p.h);
}
fn a_index(row: u32, k: u32) -> u32 { return p.a_off + row * p.lda + crop_pixel(k); }
fn b_column(col: u32) -> vec4<u32> { return vec4<u32>(0u); }
fn load_b(k: u32, col: u32, ij: vec4<u32>) -> f32 { return b[col * p.lda + crop_pixel(k)]; }";

/// The entry points of `ops.wgsl`.
const OP_ENTRIES: [&str; 18] = [
    "relu_forward",
    "relu_backward",
    "max_pool_forward",
    "max_pool_backward",
    "avg_pool_forward",
    "avg_pool_backward",
    "l2_pool_forward",
    "l2_pool_backward",
    "affine_plane",
    "add",
    "mul_planes",
    "content",
    "style",
    "tv",
    "reduce_sum",
    "sum_slices",
    "row_sums",
    "shift_rows",
];

/// The entry points of `winograd.wgsl`.
const WINOGRAD_ENTRIES: [&str; 2] = ["wino_input", "wino_output"];

/// The entry points of `history.wgsl` (the L-BFGS two-loop recursion, see `history.rs`).
const HISTORY_ENTRIES: [&str; 3] = ["lbfgs_dots", "lbfgs_finish", "lbfgs_combine"];

/// Which GEMM variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Gemm {
    Plain,
    Gram,
    Conv,
    /// The Gram of a rectangle of the planes (`h` its width, `w` the planes', `crop` its corner).
    CropGram,
    /// A batch of plain products, one per workgroup z (the Winograd convolution's 36).
    Batch,
}

/// Which form of the tiled GEMM computes the tiles of C (`matmul.wgsl`). All give the same bits: each
/// output is the same fma chain in increasing k.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GemmTile {
    /// 64 invocations of 8×8 outputs each (`tile8`): 4 vec4 reads of workgroup memory per 64 fma.
    #[default]
    Outputs8x8,
    /// `Outputs8x8` with two buffers in workgroup memory: the next block of K is staged while this
    /// one is read, one barrier a block instead of two (twice the workgroup memory).
    Outputs8x8Pipelined,
    /// `Outputs8x8` reading the next block of K from global memory into registers before this one's
    /// fma and storing it to workgroup memory after them, so that the reads' latency overlaps the
    /// fma (what most GPU matrix products do; 2·18 more registers an invocation).
    Outputs8x8Prefetch,
    /// 256 invocations of 4×4 outputs each (`main`): 8 float reads per 16 fma.
    Outputs4x4,
    /// 128×128 tiles of 256 invocations of 8×8 outputs each (`tile8w`): each value staged in
    /// workgroup memory feeds twice the fma of `Outputs8x8`'s, each barrier four times the work.
    Outputs8x8Tile128,
    /// 64×128 tiles (64 rows, 128 columns) of 128 invocations of 8×8 outputs each (`tile8m`): the
    /// same for products of 64 rows (the first block's convolutions), which 128-row tiles would
    /// leave half empty.
    Outputs8x8Tile64x128,
}

/// Bytes of workgroup memory `tile` needs with blocks of `bk` k (as declared in `matmul.wgsl` and `matmul_shapes.wgsl`).
fn workgroup_bytes(tile: Tile, bk: u32) -> u32 {
    let quads = match tile {
        Tile::Big(GemmTile::Outputs8x8 | GemmTile::Outputs8x8Prefetch) => 2 * bk * 17,
        Tile::Big(GemmTile::Outputs8x8Pipelined) => 4 * bk * 17,
        Tile::Big(GemmTile::Outputs4x4) => 2 * 1040 / 4,
        Tile::Big(GemmTile::Outputs8x8Tile128 | GemmTile::Outputs8x8Tile64x128) => 2 * bk * 33,
        Tile::Small => 2 * bk * 9,
    };
    16 * quads
}

/// Whether products with few 64×64 tiles take 32×32 tiles (`tile4` of `matmul_shapes.wgsl`): four times
/// the workgroups, the same bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmallTiles {
    /// On adapters that are not CPUs: a product with fewer than 256 workgroups of 64×64 tiles (K
    /// slices counted) takes 32×32 tiles. On a CPU (lavapipe) a workgroup runs on a core, and any
    /// count keeps the cores busy.
    #[default]
    Auto,
    /// As on a GPU, on any adapter (to test the small tiles on a software one).
    On,
    /// 64×64 tiles for every product.
    Off,
}

/// Workgroups of 64×64 tiles below which a product takes 32×32 tiles ([`SmallTiles`]): about 2 per
/// multiprocessor of a large GPU (an H200 has 132), where most of each one's issue slots go unused.
/// Above, the 64×64 form wins: the 32×32 one reads 2 vec4s of workgroup memory per 16 fma, which
/// bounds it at about half a GPU's fma rate (and on lavapipe it is 1.85× slower per fma).
pub(crate) const SMALL_BELOW: usize = 256;

/// Output rows up to which a convolution takes the column-per-invocation kernel (its accumulators
/// are one `vec4`); above, a 64-row tile leaves less of its work unused.
pub(crate) const NARROW_ROWS: usize = 4;

/// GEMM epilogue flags (as in `matmul.wgsl`).
pub(crate) const RELU: u32 = 1;
pub(crate) const BIAS: u32 = 2;
pub(crate) const ACCUMULATE: u32 = 4;
pub(crate) const COLMASK: u32 = 8;
pub(crate) const SPLIT: u32 = 16;
pub(crate) const ACC_INIT: u32 = 32;

/// Every pipeline, compiled once per device.
#[derive(Debug)]
pub(crate) struct Kernels {
    /// Each compiled form of each [`Gemm`] variant's tiled GEMM: the default ones, and with tuning
    /// every one ([`Kernels::forms`]).
    gemm: Vec<(Gemm, Form, wgpu::ComputePipeline)>,
    /// The form of a product's 64×64 tiles where nothing was tuned ([`GpuOptions::gemm_tile`]).
    tile: GemmTile,
    /// Whether products with few 64×64 tiles take 32×32 ones by default ([`SmallTiles`]).
    small: bool,
    /// Whether the convolution stages its input a value at a time by default.
    per_value: bool,
    /// Whether every form is compiled, for objectives to time them ([`crate::Tune`]).
    pub(crate) tune: bool,
    /// The convolution as [`NARROW_ROWS`] or fewer output rows per column (`narrow` of `matmul_shapes.wgsl`).
    pub(crate) conv_narrow: wgpu::ComputePipeline,
    /// The `ops.wgsl` and `history.wgsl` kernels, by entry point.
    ops: Vec<(&'static str, wgpu::ComputePipeline)>,
    /// Bound where a kernel's optional input is unused.
    pub(crate) dummy: wgpu::Buffer,
}

/// Where [`Kernels::build`] compiles: the device, the adapter's name (for errors), whether to keep
/// naga's loop counters.
struct Target<'a> {
    device: &'a wgpu::Device,
    adapter: &'a str,
    loop_counters: bool,
}

fn pipeline(
    t: &Target<'_>,
    kernel: &'static str,
    source: &str,
    entry: &str,
) -> Result<wgpu::ComputePipeline> {
    let (device, adapter) = (t.device, t.adapter);
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let desc =
        wgpu::ShaderModuleDescriptor { label: Some(kernel), source: wgpu::ShaderSource::Wgsl(source.into()) };
    let module = if t.loop_counters {
        device.create_shader_module(desc)
    } else {
        module_without_loop_counters(device, desc)
    };
    let p = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(kernel),
        layout: None,
        module: &module,
        entry_point: Some(entry),
        // No zeroing of workgroup memory at every workgroup's start (WebGPU's default, which the
        // driver or naga then does for every workgroup): every kernel writes each workgroup slot
        // it reads, in the same block and before the barrier that precedes the read, and a GEMM
        // workgroup of a small K would spend a noticeable part of its time clearing 17–34 KiB.
        compilation_options: wgpu::PipelineCompilationOptions {
            zero_initialize_workgroup_memory: false,
            ..Default::default()
        },
        cache: None,
    });
    if let Some(e) = pollster::block_on(validation.pop()) {
        return Err(GpuError::Shader { kernel, adapter: adapter.into(), reason: first_line(&e.to_string()) });
    }
    Ok(p)
}

/// Compiles one of this crate's WGSL sources with every bounds check wgpu applies, but without the
/// iteration counter naga otherwise adds to every loop so that a driver cannot assume an endless loop
/// away. That counter is a local variable the driver's compiler cannot see through: it keeps loops
/// such as the GEMM's 16-step inner product from being unrolled (gfx-rs/wgpu#7698 reports 100×
/// slower compute passes from it).
#[allow(unsafe_code)]
fn module_without_loop_counters(
    device: &wgpu::Device,
    desc: wgpu::ShaderModuleDescriptor<'_>,
) -> wgpu::ShaderModule {
    let checks =
        wgpu::ShaderRuntimeChecks { force_loop_bounding: false, ..wgpu::ShaderRuntimeChecks::checked() };
    // SAFETY: `create_shader_module_trusted` asks that the shader never index out of bounds (the
    // bounds checks stay on, so wgpu still guarantees that) and never loop forever. Every loop in
    // `shaders/*.wgsl` is a `for` over a u32 counter that moves towards a bound fixed before the loop:
    // constants, halvings down to 0, or `k`/`n` values below 2^31 (a buffer binding holds fewer than
    // 2^30 floats), so no counter can wrap past its bound. There is no `loop` or `while`.
    unsafe { device.create_shader_module_trusted(desc, checks) }
}

/// The first non-empty line of a (multi-line) driver message, for a one-line error.
fn first_line(s: &str) -> String {
    let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines.iter().take(3).copied().collect::<Vec<_>>().join(" ")
}

/// Compiles `jobs` (kernel, WGSL source, entry point) in order, on up to one thread per core: a
/// device that tunes compiles every GEMM form, over fifty pipelines, which one thread takes seconds
/// for. The first failure in `jobs`' order is the error.
fn compile_all(
    t: &Target<'_>,
    jobs: &[(&'static str, String, &'static str)],
) -> Result<Vec<wgpu::ComputePipeline>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, jobs.len().max(1));
    let mut done: Vec<Option<Result<wgpu::ComputePipeline>>> = (0..jobs.len()).map(|_| None).collect();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|i| {
                s.spawn(move || {
                    let mine = jobs.iter().enumerate().skip(i).step_by(threads);
                    mine.map(|(j, (kernel, src, entry))| (j, pipeline(t, kernel, src, entry)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for w in workers {
            for (j, r) in w.join().unwrap_or_default() {
                done[j] = Some(r);
            }
        }
    });
    jobs.iter()
        .zip(done)
        .map(|((kernel, _, _), r)| {
            r.unwrap_or_else(|| {
                Err(GpuError::Shader {
                    kernel,
                    adapter: t.adapter.into(),
                    reason: "its compiler thread stopped".into(),
                })
            })
        })
        .collect()
}

/// One pipeline to compile: its kernel's name, its WGSL source, its entry point.
pub(crate) type Job = (&'static str, String, &'static str);

/// The loaders of a GEMM with a row-major A and blocks of 16 k, with `load` for B.
fn plain_a(load: &str) -> String {
    format!("{A_PLAIN}\n{BLOCK16}\n{NO_TAPS}\n{load}")
}

/// The WGSL of the tiled GEMM for `load` and the `tile8` staging flags (pipelined, prefetched,
/// batched).
fn gemm_source(load: &str, (pipelined, prefetch, batched): (bool, bool, bool)) -> String {
    let tile8 =
        format!("const PIPELINED = {pipelined};\nconst PREFETCH = {prefetch};\nconst BATCHED = {batched};");
    MATMUL.replace("//LOAD_B", load).replace("//TILE8", &tile8)
}

/// The ceiling kernels `peak_fma`, `peak_inner` and `peak_copy` (`peak.rs`): appended to the plain
/// GEMM of the default form.
pub(crate) fn peak_jobs() -> Vec<Job> {
    let src = format!("{}\n{PEAK}", gemm_source(&plain_a(LOAD_PLAIN), (false, false, false)));
    ["peak_fma", "peak_inner", "peak_copy"].map(|e| (e, src.clone(), e)).into()
}

/// [`peak_jobs`], compiled as every kernel is (without naga's loop counters).
pub(crate) fn peak_pipelines(gpu: &crate::Gpu) -> Result<[wgpu::ComputePipeline; 3]> {
    let adapter = gpu.name();
    let t = Target { device: &gpu.device, adapter: &adapter, loop_counters: false };
    let mut p = compile_all(&t, &peak_jobs())?.into_iter();
    match (p.next(), p.next(), p.next()) {
        (Some(a), Some(b), Some(c)) => Ok([a, b, c]),
        _ => Err(GpuError::Shader { kernel: "peak", adapter, reason: "not compiled".into() }),
    }
}

/// What [`Kernels::build`] compiles, in order: the GEMM forms (each with its variant and form in
/// `forms`), the narrow convolution, then the entries of `OP_ENTRIES`, `HISTORY_ENTRIES` and
/// `WINOGRAD_ENTRIES`.
pub(crate) struct Jobs {
    pub(crate) jobs: Vec<Job>,
    pub(crate) forms: Vec<(Gemm, Form)>,
}

/// The pipelines a device with `memory` bytes of workgroup memory compiles for `options`,
/// `small_tiles` and `tune` (see [`Kernels::build`]), without a device.
pub(crate) fn jobs(options: &GpuOptions, small_tiles: bool, tune: bool, memory: u32) -> Jobs {
    let (broken, tile) = (options.faults.broken_kernel.as_deref(), options.gemm_tile);
    let asked = tile;
    let source = |kernel: &str, src: String| {
        if broken == Some(kernel) { format!("{src}\nfn injected_fault( {{") } else { src }
    };
    let gemm_src = |kernel: &str, load: &str, (pipelined, prefetch): (bool, bool)| {
        source(kernel, gemm_source(load, (pipelined, prefetch, kernel == "winograd")))
    };
    let conv =
        |per_value: bool| format!("{A_PLAIN}\n{}\n{LOAD_CONV}", if per_value { BLOCK16 } else { BLOCK_TAPS });
    let mut tiles = if tune {
        [
            GemmTile::Outputs8x8,
            GemmTile::Outputs8x8Pipelined,
            GemmTile::Outputs8x8Prefetch,
            GemmTile::Outputs4x4,
            GemmTile::Outputs8x8Tile128,
            GemmTile::Outputs8x8Tile64x128,
        ]
        .into_iter()
        .map(Tile::Big)
        .collect()
    } else {
        vec![Tile::Big(tile)]
    };
    if small_tiles {
        tiles.push(Tile::Small);
    }
    let stagings = if tune { vec![false, true] } else { vec![options.im2col_per_value] };
    // The GEMM forms first, in `forms` order.
    let mut jobs: Vec<Job> = Vec::new();
    let mut forms = Vec::new();
    for (kind, kernel) in [
        (Gemm::Plain, "gemm"),
        (Gemm::Gram, "gram"),
        (Gemm::Conv, "conv3x3"),
        (Gemm::CropGram, "gram_crop"),
        (Gemm::Batch, "winograd"),
    ] {
        for &tile in &tiles {
            let per_values = if kind == Gemm::Conv { stagings.clone() } else { vec![false] };
            for per_value in per_values {
                // A form the adapter's workgroup memory cannot hold is only left out of the
                // choice; the form the options name is built (and fails) as asked.
                let bk = if kind == Gemm::Conv && !per_value { 18 } else { 16 };
                if tune && tile != Tile::Big(asked) && workgroup_bytes(tile, bk) > memory {
                    continue;
                }
                let load = match kind {
                    Gemm::Plain => plain_a(LOAD_PLAIN),
                    Gemm::Gram => plain_a(LOAD_GRAM),
                    Gemm::Conv => conv(per_value),
                    Gemm::CropGram => format!("{BLOCK16}\n{NO_TAPS}\n{LOAD_CROP_GRAM}"),
                    Gemm::Batch => format!("{BLOCK16}\n{NO_TAPS}\n{LOAD_BATCH}"),
                };
                let (entry, staging) = match tile {
                    Tile::Big(GemmTile::Outputs8x8) => ("tile8", (false, false)),
                    Tile::Big(GemmTile::Outputs8x8Pipelined) => ("tile8", (true, false)),
                    Tile::Big(GemmTile::Outputs8x8Prefetch) => ("tile8", (false, true)),
                    Tile::Big(GemmTile::Outputs4x4) => ("main", (false, false)),
                    Tile::Big(GemmTile::Outputs8x8Tile128) => ("tile8w", (false, false)),
                    Tile::Big(GemmTile::Outputs8x8Tile64x128) => ("tile8m", (false, false)),
                    Tile::Small => ("tile4", (false, false)),
                };
                jobs.push((kernel, gemm_src(kernel, &load, staging), entry));
                forms.push((kind, Form { tile, per_value }));
            }
        }
    }
    let narrow_src = gemm_src("conv3x3_narrow", &conv(options.im2col_per_value), (false, false));
    jobs.push(("conv3x3_narrow", narrow_src, "narrow"));
    for e in OP_ENTRIES {
        jobs.push((e, source(e, format!("{PARAMS}{OPS}")), e));
    }
    for e in HISTORY_ENTRIES {
        jobs.push((e, source(e, format!("{PARAMS}{HISTORY}")), e));
    }
    for e in WINOGRAD_ENTRIES {
        jobs.push((e, source(e, format!("{PARAMS}{WINOGRAD}")), e));
    }
    Jobs { jobs, forms }
}

impl Kernels {
    /// Compiles every kernel as `options` ask: `faults.broken_kernel` names one whose source is made
    /// invalid (fault injection); `loop_counters` keeps naga's per-loop counters (see
    /// [`module_without_loop_counters`]); `gemm_tile` is the GEMM's form; `im2col_per_value` stages
    /// the convolution's input 16 k at a time, each value decoded from k. `small_tiles`: also compile
    /// the 32×32-tile form; `tune`: every form, for objectives to choose among by timing.
    pub(crate) fn build(
        device: &wgpu::Device,
        adapter: &str,
        options: &GpuOptions,
        small_tiles: bool,
        tune: bool,
    ) -> Result<Kernels> {
        let t = Target { device, adapter, loop_counters: options.loop_counters };
        let memory = device.limits().max_compute_workgroup_storage_size;
        let Jobs { jobs, forms } = jobs(options, small_tiles, tune, memory);
        let mut pipelines = compile_all(&t, &jobs)?.into_iter();
        let gemm: Vec<_> = forms.into_iter().zip(pipelines.by_ref()).map(|((k, f), p)| (k, f, p)).collect();
        let conv_narrow = pipelines.next().ok_or_else(|| GpuError::Shader {
            kernel: "conv3x3_narrow",
            adapter: adapter.into(),
            reason: "not compiled".into(),
        })?;
        let ops =
            OP_ENTRIES.into_iter().chain(HISTORY_ENTRIES).chain(WINOGRAD_ENTRIES).zip(pipelines).collect();
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("unused"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Ok(Kernels {
            gemm,
            tile: options.gemm_tile,
            small: small_tiles,
            per_value: options.im2col_per_value,
            tune,
            conv_narrow,
            ops,
            dummy,
        })
    }

    /// The form a product of `kind` with `big` workgroups of 64×64 tiles takes where nothing was
    /// tuned: 32×32 tiles below [`SMALL_BELOW`] where they are compiled, else the options' form.
    pub(crate) fn default_form(&self, kind: Gemm, big: usize) -> Form {
        let tile = if self.small && big < SMALL_BELOW { Tile::Small } else { Tile::Big(self.tile) };
        Form { tile, per_value: kind == Gemm::Conv && self.per_value }
    }

    /// The compiled forms of `kind`, with their pipelines.
    pub(crate) fn forms(&self, kind: Gemm) -> impl Iterator<Item = (Form, &wgpu::ComputePipeline)> {
        self.gemm.iter().filter(move |g| g.0 == kind).map(|g| (g.1, &g.2))
    }

    pub(crate) fn op(&self, name: &str) -> &wgpu::ComputePipeline {
        &self
            .ops
            .iter()
            .find(|(n, _)| *n == name)
            .expect("kernel entry point listed in OP_ENTRIES, HISTORY_ENTRIES or WINOGRAD_ENTRIES")
            .1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `module_without_loop_counters` relies on: every loop of every shader is a `for`, none a
    /// `loop` or `while` that only a `break` could end.
    #[test]
    fn every_shader_loop_is_a_for_loop() {
        for (name, src) in [
            ("matmul and matmul_shapes", MATMUL),
            ("ops", OPS),
            ("history", HISTORY),
            ("params", PARAMS),
            ("winograd", WINOGRAD),
            ("peak", PEAK),
        ] {
            for (n, line) in src.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                let words: Vec<&str> = code
                    .split(|c: char| !c.is_alphanumeric() && c != '_')
                    .filter(|w| !w.is_empty())
                    .collect();
                assert!(
                    !words.iter().any(|w| ["loop", "while", "continuing"].contains(w)),
                    "{name}.wgsl line {}: {line}",
                    n + 1
                );
            }
        }
        for load in [
            LOAD_PLAIN,
            LOAD_GRAM,
            LOAD_CONV,
            LOAD_CROP_GRAM,
            LOAD_BATCH,
            A_PLAIN,
            BLOCK16,
            BLOCK_TAPS,
            NO_TAPS,
        ] {
            assert!(!load.contains("loop") && !load.contains("while"), "{load}");
        }
    }
}
