//! The L-BFGS history on the device: a ring of up to `capacity` correction pairs (s, y, ρ), and the
//! quasi-Newton direction over it in a few dispatches whatever the history's length, so that only
//! the gradient goes up and the direction comes back each iteration (the pairs of a 512² run with
//! 100 of them are 630 MB, read twice per step).
//!
//! The two-loop recursion runs on the host over the dot products of the ring's vectors with one
//! another and with the gradient ("vector-free" L-BFGS, Chen et al., NeurIPS 2014): each step
//! computes on the device the dot products of every held vector with the gradient and with the
//! newest pair's s and y (one pass over the ring), reads those back, runs Nocedal's recursion on
//! them in f64 (the products among older vectors are kept from earlier steps), and sends back the
//! coefficients of the direction in the basis of the vectors, which the device sums (a second
//! pass). Where the recursion itself ran on the device, each pair cost dependent dispatches of their
//! own (402 at 100 pairs); here a step is two submissions: a dispatch per page and segment and one
//! finish, then a dispatch per run of vectors within a page (one or two a segment where a binding
//! holds the whole ring). The vectors live in pages (buffers of as many whole vectors as one storage
//! binding holds, or of one segment of each where a vector is longer than a binding). The products
//! are exact and the sums fixed-order double-f32 reductions (`shaders/history.wgsl`); the direction
//! sums its terms from the oldest pair to the newest whatever slots they occupy, so one device gives
//! the same bits run after run, and a ring restored from a checkpoint those of the ring it was read
//! from.

use std::sync::{Arc, Mutex};

use crate::device::Gpu;
use crate::error::{GpuError, Result};
use crate::program::{OpParams, Program, grid};

/// Values one workgroup of `lbfgs_dots` adds into a partial sum (256 invocations of `PER` there).
const BLOCK: usize = 256 * 64;

/// How the ring's `2·capacity` vectors of `n` values are laid out: segments of at most one
/// binding, each stored as pages of whole segments.
#[derive(Debug, Clone)]
struct Layout {
    /// (first value, length) of each segment.
    segments: Vec<(usize, usize)>,
    /// Vectors (segments) a page of each segment holds.
    per_page: Vec<usize>,
    /// The first block of each segment among a dot product's `blocks` partial sums.
    first_block: Vec<usize>,
    /// Partial sums of one dot product (all segments).
    blocks: usize,
    /// Vectors of the ring: s of slot k is vector 2k, y is 2k + 1.
    vectors: usize,
}

impl Layout {
    fn new(n: usize, capacity: usize, binding_floats: usize) -> Layout {
        let per_segment = binding_floats.max(1);
        let segments: Vec<(usize, usize)> =
            (0..n).step_by(per_segment).map(|a| (a, per_segment.min(n - a))).collect();
        let vectors = 2 * capacity;
        let per_page = segments.iter().map(|&(_, len)| (per_segment / len).clamp(1, vectors)).collect();
        let mut first_block = Vec::with_capacity(segments.len());
        let mut blocks = 0;
        for &(_, len) in &segments {
            first_block.push(blocks);
            blocks += len.div_ceil(BLOCK);
        }
        Layout { segments, per_page, first_block, blocks, vectors }
    }

    /// Pages of segment `j`.
    fn pages(&self, j: usize) -> usize {
        self.vectors.div_ceil(self.per_page[j])
    }

    /// Vectors page `page` of segment `j` holds.
    fn in_page(&self, j: usize, page: usize) -> usize {
        self.per_page[j].min(self.vectors - page * self.per_page[j])
    }

    /// (page, first value within it) of vector `v`'s segment `j`.
    fn place(&self, j: usize, v: usize) -> (usize, usize) {
        (v / self.per_page[j], (v % self.per_page[j]) * self.segments[j].1)
    }

    /// The vectors of segment `j` from vector `first` round the ring, as (first vector, count) runs
    /// within one page each: a direction's sum when the oldest pair is in slot `first / 2`.
    fn chunks(&self, j: usize, first: usize) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (a, b) in [(first, self.vectors), (0, first)] {
            let mut v = a;
            while v < b {
                let end = b.min((v / self.per_page[j] + 1) * self.per_page[j]);
                out.push((v, end - v));
                v = end;
            }
        }
        out
    }
}

/// The dot products the host keeps between steps.
#[derive(Debug)]
struct Table {
    /// vᵀu of every two held vectors (row-major, `vectors`²).
    gram: Vec<f64>,
    /// Slots whose pair was written since their dot products were last taken.
    pending: Vec<usize>,
}

/// Up to `capacity` L-BFGS correction pairs of `n` values each, resident on the device.
#[derive(Debug)]
pub struct GpuHistory {
    gpu: Arc<Gpu>,
    n: usize,
    capacity: usize,
    layout: Layout,
    /// The pages of each segment.
    pages: Vec<Vec<wgpu::Buffer>>,
    /// The gradient in, the direction out, in segments.
    q: Vec<wgpu::Buffer>,
    held: wgpu::Buffer,
    dots: wgpu::Buffer,
    coef: wgpu::Buffer,
    /// Per slot: the dot products of every held vector with the gradient and that slot's pair.
    passes: Vec<Program>,
    /// Per slot of the oldest pair: the direction from the coefficients.
    combine: Vec<Program>,
    /// ρ = 1/yᵀs of each slot as pushed.
    rho: Vec<f64>,
    /// γ = sᵀy/yᵀy of the newest pair, on the host's f32 vectors in f64.
    gamma: f64,
    /// Slot of the oldest pair.
    head: usize,
    len: usize,
    table: Mutex<Table>,
}

impl GpuHistory {
    /// Allocates a ring of `capacity` pairs of `n`-value vectors on `gpu`, all of it now, so that a
    /// history that does not fit fails before the run starts.
    pub fn new(gpu: Arc<Gpu>, n: usize, capacity: usize) -> Result<GpuHistory> {
        if n == 0 || capacity == 0 {
            return Err(GpuError::Shape {
                op: "GpuHistory::new",
                reason: format!("{capacity} pairs of {n} values (both must be at least 1)"),
            });
        }
        let layout = Layout::new(n, capacity, (gpu.binding_cap().0 / 4) as usize);
        let v = layout.vectors;
        let mut pages = Vec::with_capacity(layout.segments.len());
        let mut q = Vec::with_capacity(layout.segments.len());
        for (j, &(_, len)) in layout.segments.iter().enumerate() {
            let what = |p: usize| format!("L-BFGS pairs (segment {j}, page {p} of {n}-value vectors)");
            let seg: Result<Vec<_>> =
                (0..layout.pages(j)).map(|p| gpu.storage(&what(p), layout.in_page(j, p) * len)).collect();
            pages.push(seg?);
            q.push(gpu.storage(&format!("L-BFGS direction (segment {j} of {n} values)"), len)?);
        }
        let held = gpu.storage("L-BFGS held vectors", v)?;
        let partials = gpu.storage("L-BFGS partial sums", 2 * 3 * v * layout.blocks)?;
        let dots = gpu.storage("L-BFGS dot products", 2 * 3 * v)?;
        let coef = gpu.storage("L-BFGS coefficients", v + 1)?;
        let mut passes = Vec::with_capacity(capacity);
        for slot in 0..capacity {
            let mut prog = Program::default();
            for (j, &(_, len)) in layout.segments.iter().enumerate() {
                let ((ps, s_at), (py, y_at)) = (layout.place(j, 2 * slot), layout.place(j, 2 * slot + 1));
                let b = len.div_ceil(BLOCK);
                let (by, bz) = (b.min(32768), b.div_ceil(32768));
                for (page, buf) in pages[j].iter().enumerate() {
                    let p = OpParams {
                        n: len,
                        c: v,
                        h: layout.blocks,
                        u: [
                            (page * layout.per_page[j]) as u32,
                            s_at as u32,
                            y_at as u32,
                            layout.first_block[j] as u32,
                        ],
                        ..OpParams::default()
                    };
                    let (s_page, y_page) = (&pages[j][ps], &pages[j][py]);
                    let bufs = [(1, buf), (2, &q[j]), (3, s_page), (4, y_page), (5, &held), (6, &partials)];
                    let groups = [layout.in_page(j, page) as u32, by as u32, bz as u32];
                    prog.op(&gpu, "lbfgs_dots", p, &bufs, groups)?;
                }
            }
            let p = OpParams { c: v, h: layout.blocks, ..OpParams::default() };
            prog.op(&gpu, "lbfgs_finish", p, &[(5, &held), (6, &partials), (7, &dots)], [v as u32, 3, 1])?;
            passes.push(prog);
        }
        let mut combine = Vec::with_capacity(capacity);
        for head in 0..capacity {
            let mut prog = Program::default();
            for (j, &(_, len)) in layout.segments.iter().enumerate() {
                let chunks = layout.chunks(j, 2 * head);
                for (c, &(first, count)) in chunks.iter().enumerate() {
                    let (page, at) = (first / layout.per_page[j], first % layout.per_page[j]);
                    let first_chunk = u32::from(c == 0);
                    let p = OpParams {
                        n: len,
                        c: v,
                        w: count,
                        u: [first as u32, first_chunk, at as u32, 0],
                        ..OpParams::default()
                    };
                    let bufs = [(1, &pages[j][page]), (8, &coef), (9, &q[j])];
                    prog.op(&gpu, "lbfgs_combine", p, &bufs, grid(len))?;
                }
            }
            combine.push(prog);
        }
        let table = Mutex::new(Table { gram: vec![0.0; v * v], pending: Vec::new() });
        Ok(GpuHistory {
            gpu,
            n,
            capacity,
            layout,
            pages,
            q,
            held,
            dots,
            coef,
            passes,
            combine,
            rho: vec![0.0; capacity],
            gamma: 1.0,
            head: 0,
            len: 0,
            table,
        })
    }

    /// The device.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// Values per vector.
    pub fn values(&self) -> usize {
        self.n
    }

    /// Pairs the ring holds at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Pairs held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no pair is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every pair.
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
        self.table_mut().pending.clear();
    }

    /// Keeps only the newest `keep` pairs.
    pub fn keep_newest(&mut self, keep: usize) {
        if keep < self.len {
            self.head = (self.head + self.len - keep) % self.capacity;
            self.len = keep;
            let held: Vec<usize> = (0..keep).map(|i| self.slot(i)).collect();
            self.table_mut().pending.retain(|k| held.contains(k));
        }
    }

    fn table_mut(&mut self) -> &mut Table {
        self.table.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The slot of pair `i` (0 the oldest).
    fn slot(&self, i: usize) -> usize {
        (self.head + i) % self.capacity
    }

    fn check_len(&self, op: &'static str, what: &str, len: usize) -> Result<()> {
        if len != self.n {
            return Err(GpuError::Shape {
                op,
                reason: format!("{what} has {len} values, expected {}", self.n),
            });
        }
        Ok(())
    }

    /// Appends the pair `s`, `y` with `ys = yᵀs` (> 0), dropping the oldest when the ring is full.
    /// Uploads only: the next submission carries the writes.
    pub fn push(&mut self, s: &[f32], y: &[f32], ys: f64) -> Result<()> {
        self.restore(s, y, 1.0 / ys)
    }

    /// [`GpuHistory::push`] with `ρ = 1/yᵀs` given (as a checkpoint keeps it, so that it reads back
    /// with the same bits).
    pub fn restore(&mut self, s: &[f32], y: &[f32], rho: f64) -> Result<()> {
        self.check_len("GpuHistory::push", "s", s.len())?;
        self.check_len("GpuHistory::push", "y", y.len())?;
        self.gpu.check("uploading an L-BFGS pair")?;
        let slot = if self.len < self.capacity {
            self.len += 1;
            self.slot(self.len - 1)
        } else {
            let oldest = self.head;
            self.head = (self.head + 1) % self.capacity;
            oldest
        };
        self.rho[slot] = rho;
        for (j, &(a, len)) in self.layout.segments.iter().enumerate() {
            for (v, data) in [(2 * slot, s), (2 * slot + 1, y)] {
                let (page, at) = self.layout.place(j, v);
                let bytes = bytemuck::cast_slice(&data[a..a + len]);
                self.gpu.queue.write_buffer(&self.pages[j][page], (4 * at) as u64, bytes);
            }
        }
        // γ = sᵀy / yᵀy of this pair, the newest now, with the host recursion's own f64 sum (in
        // parallel chunks: a serial sum took about 0.8 ms of every step at 512 px).
        let yy = impasto_kernels::dot::dot(y, y);
        self.gamma = 1.0 / rho / yy;
        let table = self.table_mut();
        table.pending.retain(|&k| k != slot);
        table.pending.push(slot);
        Ok(())
    }

    /// The quasi-Newton direction `−H·g` by the two-loop recursion over the pairs held: `g` goes up,
    /// the dot products come back, the coefficients go up, the direction comes back. Without pairs
    /// it is `−g`, computed here.
    pub fn direction(&self, g: &[f32]) -> Result<Vec<f32>> {
        let mut q = g.to_vec();
        self.direction_in_place(&mut q)?;
        Ok(q)
    }

    /// [`GpuHistory::direction`] in `q`'s memory: `q` holds `g` and becomes `−H·g`, as the host
    /// recursion's `q` does, so a step allocates no image-sized vector for it. On an error `q` holds
    /// `g` still or a partial read; the caller drops the step.
    pub fn direction_in_place(&self, q: &mut Vec<f32>) -> Result<()> {
        self.check_len("GpuHistory::direction", "g", q.len())?;
        if self.len == 0 {
            q.iter_mut().for_each(|v| *v = -*v);
            return Ok(());
        }
        let g = &q[..];
        self.gpu.check("uploading the gradient")?;
        let queue = &self.gpu.queue;
        for (j, &(a, len)) in self.layout.segments.iter().enumerate() {
            queue.write_buffer(&self.q[j], 0, bytemuck::cast_slice(&g[a..a + len]));
        }
        let slots: Vec<usize> = (0..self.len).map(|i| self.slot(i)).collect();
        let mut table = self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let newest = slots[self.len - 1];
        // Pairs written since their products were taken (several after a restore), each with the
        // held vectors of the pairs already in the table and its own (the rest take their products
        // with it in their own pass), then the pass that also takes the gradient's, with the newest
        // pair and every held vector.
        let earlier: Vec<usize> = table.pending.iter().copied().filter(|&k| k != newest).collect();
        let mut held = vec![0u32; self.layout.vectors];
        for &k in slots.iter().filter(|&&k| k != newest && !earlier.contains(&k)) {
            held[2 * k..2 * k + 2].fill(1);
        }
        let mut grad_dots = Vec::new();
        for k in earlier.iter().copied().chain([newest]) {
            if k == newest {
                slots.iter().for_each(|&k| held[2 * k..2 * k + 2].fill(1));
            }
            held[2 * k..2 * k + 2].fill(1);
            queue.write_buffer(&self.held, 0, bytemuck::cast_slice(&held));
            let mut enc = self.gpu.encoder();
            self.passes[k].record(&mut enc);
            let read = self.gpu.finish_and_read(enc, &[(&self.dots, 6 * self.layout.vectors)])?;
            grad_dots = self.take_dots(&mut table, k, &read.concat(), &held);
        }
        table.pending.clear();
        let coef = self.coefficients(&table.gram, &grad_dots, &slots);
        drop(table);
        queue.write_buffer(&self.coef, 0, bytemuck::cast_slice(&coef));
        let mut enc = self.gpu.encoder();
        self.combine[self.head].record(&mut enc);
        let reads: Vec<(&wgpu::Buffer, usize)> =
            self.q.iter().zip(&self.layout.segments).map(|(b, &(_, len))| (b, len)).collect();
        self.gpu.finish_and_read_into(enc, &reads, q)
    }

    /// Enters the dot products `read` (hi, lo pairs: the gradient's, slot `k`'s s and y, each with
    /// every vector) of the vectors flagged in `held` into the table; returns the gradient's.
    fn take_dots(&self, table: &mut Table, k: usize, read: &[f32], held: &[u32]) -> Vec<f64> {
        let v = self.layout.vectors;
        let at = |x: usize, u: usize| f64::from(read[2 * (x * v + u)]) + f64::from(read[2 * (x * v + u) + 1]);
        let mut grad = vec![0.0; v];
        for u in (0..v).filter(|&u| held[u] == 1) {
            grad[u] = at(0, u);
            for (x, w) in [(1, 2 * k), (2, 2 * k + 1)] {
                let d = at(x, u);
                table.gram[w * v + u] = d;
                table.gram[u * v + w] = d;
            }
        }
        grad
    }

    /// Nocedal's two-loop recursion on coefficients: q = Σ c_u·u + c_g·g over the held vectors u
    /// and the gradient, each dot product uᵀq from `gram` and `grad` (gᵀu). Returns the direction's
    /// coefficients, the vectors' then the gradient's.
    fn coefficients(&self, gram: &[f64], grad: &[f64], slots: &[usize]) -> Vec<f32> {
        let v = self.layout.vectors;
        let mut c = vec![0.0f64; v];
        let mut cg = -1.0f64;
        let basis: Vec<usize> = slots.iter().flat_map(|&s| [2 * s, 2 * s + 1]).collect();
        let dot = |w: usize, c: &[f64], cg: f64| -> f64 {
            basis.iter().fold(cg * grad[w], |acc, &u| acc + c[u] * gram[w * v + u])
        };
        let mut alpha = vec![0.0f64; slots.len()];
        for (i, &k) in slots.iter().enumerate().rev() {
            alpha[i] = self.rho[k] * dot(2 * k, &c, cg);
            c[2 * k + 1] -= alpha[i];
        }
        c.iter_mut().for_each(|x| *x *= self.gamma);
        cg *= self.gamma;
        for (i, &k) in slots.iter().enumerate() {
            let beta = self.rho[k] * dot(2 * k + 1, &c, cg);
            c[2 * k] += alpha[i] - beta;
        }
        c.iter().chain([&cg]).map(|&x| x as f32).collect()
    }

    /// Pair `i` (0 the oldest) read back: (s, y, ρ) with ρ exactly as pushed.
    pub fn pair(&self, i: usize) -> Result<(Vec<f32>, Vec<f32>, f64)> {
        if i >= self.len {
            return Err(GpuError::Shape {
                op: "GpuHistory::pair",
                reason: format!("pair {i} of a history of {}", self.len),
            });
        }
        let slot = self.slot(i);
        let mut reads = Vec::new();
        for v in [2 * slot, 2 * slot + 1] {
            for (j, &(_, len)) in self.layout.segments.iter().enumerate() {
                let (page, at) = self.layout.place(j, v);
                reads.push((&self.pages[j][page], at, len));
            }
        }
        let mut parts: Vec<Vec<f32>> = self.gpu.finish_and_read_ranges(self.gpu.encoder(), &reads)?;
        let y = parts.split_off(self.layout.segments.len()).concat();
        Ok((parts.concat(), y, self.rho[slot]))
    }
}
