//! The L-BFGS history on the device: a ring of up to `capacity` correction pairs (s, y, ρ) and
//! Nocedal's two-loop recursion over it, so that only the gradient goes up and the direction comes
//! back each iteration (the pairs of a 512² run with 100 of them are 630 MB, read twice per step).
//!
//! Each slot of the ring has its dispatches recorded once, bound to its buffers and its ring
//! neighbours' (the next older pair is always the previous slot, the next newer the next one): the
//! first loop's `α = ρ·sᵀq; q −= α·y`, the second loop's `β = ρ·yᵀq; q += (α − β)·s`, the update of
//! q fused with the partial sums of the next pair's dot product over the updated q, so that a pair
//! costs two dispatches a loop (a segment's update and one finish), not three; and the scaling by
//! `γ = sᵀy/yᵀy` of the newest pair (computed on the host at each push) fused with the oldest pair's
//! `yᵀq`. A direction replays them in ring order into one submission, the coefficients passing from
//! kernel to kernel in small device buffers; the dot products are fixed-order double-f32 reductions
//! (see `shaders/history.wgsl`), so one device gives the same bits run after run. Vectors longer
//! than one storage binding are split into segments of at most a binding each.

use std::sync::Arc;

use crate::device::Gpu;
use crate::error::{GpuError, Result};
use crate::program::{OpParams, Program, grid};

/// Values one invocation of the `history.wgsl` kernels handles (`PER` there).
const PER: usize = 16;

/// One slot of the ring: its two vectors (in segments) and its recorded dispatches.
#[derive(Debug)]
struct Slot {
    s: Vec<wgpu::Buffer>,
    y: Vec<wgpu::Buffer>,
    /// `sᵀq` into this slot's region, when it holds the newest pair (before the first loop).
    dot: Program,
    /// `α = ρ·sᵀq` (the finish), `q −= α·y`, the partials of the previous slot's `sᵀq`.
    first: Program,
    /// When it holds the oldest pair: `q *= γ`, the partials of this slot's `yᵀq`.
    gamma: Program,
    /// `β = ρ·yᵀq` (the finish), `q += (α − β)·s`, the partials of the next slot's `yᵀq`.
    second: Program,
}

/// The buffers every slot's dispatches share, and how the vectors are split.
#[derive(Debug)]
struct Shared {
    /// (first value, length) of each segment.
    segments: Vec<(usize, usize)>,
    /// First partial sum (pair) of each segment's dot product within a region.
    offsets: Vec<usize>,
    /// Partial sums (pairs) of one dot product: a region of `partials`.
    partial_pairs: usize,
    /// The vector the recursion works on, in segments.
    q: Vec<wgpu::Buffer>,
    /// One region per slot (the partial sums of the dot product that slot's coefficient needs),
    /// and one more that nobody reads (a ring of one pair).
    partials: wgpu::Buffer,
    /// ρ, α and α − β per slot, then γ (see `history.wgsl`).
    scal: wgpu::Buffer,
    capacity: usize,
}

impl Shared {
    /// Records the finish `entry` (`lbfgs_alpha`, `lbfgs_beta`) of `slot`: its coefficient from the
    /// partial sums in its region.
    fn finish(&self, gpu: &Gpu, prog: &mut Program, entry: &'static str, slot: usize) -> Result<()> {
        let p = OpParams {
            c: self.capacity,
            h: self.partial_pairs,
            u: [0, (slot * self.partial_pairs) as u32, slot as u32, 0],
            ..OpParams::default()
        };
        prog.op(gpu, entry, p, &[(4, &self.partials), (5, &self.scal)], [1, 1, 1])?;
        Ok(())
    }

    /// Records `entry` of `history.wgsl` for `slot`, one dispatch per segment: it updates q with `a`
    /// (and the slot's coefficient) and leaves the partials of `b·q` in the region of `to`.
    fn step(
        &self,
        gpu: &Gpu,
        prog: &mut Program,
        entry: &'static str,
        slot: usize,
        (a, b): (Option<&[wgpu::Buffer]>, Option<&[wgpu::Buffer]>),
        to: usize,
    ) -> Result<()> {
        for (j, &(_, len)) in self.segments.iter().enumerate() {
            let p = OpParams {
                n: len,
                c: self.capacity,
                h: self.partial_pairs,
                u: [(to * self.partial_pairs + self.offsets[j]) as u32, 0, slot as u32, 0],
                ..OpParams::default()
            };
            let mut bufs = vec![(3, &self.q[j]), (4, &self.partials)];
            if entry != "lbfgs_dot" {
                bufs.push((5, &self.scal));
            }
            if let Some(a) = a {
                bufs.push((1, &a[j]));
            }
            if let Some(b) = b {
                bufs.push((2, &b[j]));
            }
            prog.op(gpu, entry, p, &bufs, grid(len.div_ceil(PER)))?;
        }
        Ok(())
    }
}

/// Up to `capacity` L-BFGS correction pairs of `n` values each, resident on the device.
#[derive(Debug)]
pub struct GpuHistory {
    gpu: Arc<Gpu>,
    n: usize,
    shared: Shared,
    slots: Vec<Slot>,
    /// ρ = 1/yᵀs of each slot as pushed (the device holds it as f32).
    rho: Vec<f64>,
    /// Slot of the oldest pair.
    head: usize,
    len: usize,
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
        let per_segment = (gpu.binding_cap().0 / 4) as usize;
        let segments: Vec<(usize, usize)> =
            (0..n).step_by(per_segment).map(|a| (a, per_segment.min(n - a))).collect();
        let mut offsets = Vec::with_capacity(segments.len());
        let mut partial_pairs = 0;
        for &(_, len) in &segments {
            offsets.push(partial_pairs);
            let g = grid(len.div_ceil(PER));
            partial_pairs += (g[0] * g[1]) as usize;
        }
        let what = |v: &str, j: usize| format!("L-BFGS {v} (segment {j} of {n} values)");
        let vectors = |v: &str| -> Result<Vec<wgpu::Buffer>> {
            segments.iter().enumerate().map(|(j, &(_, len))| gpu.storage(&what(v, j), len)).collect()
        };
        let m = capacity;
        let shared = Shared {
            q: vectors("direction")?,
            partials: gpu.storage("L-BFGS partial sums", 2 * (m + 1) * partial_pairs)?,
            scal: gpu.upload("L-BFGS coefficients", &vec![0.0; 3 * m + 1])?,
            segments: segments.clone(),
            offsets,
            partial_pairs,
            capacity,
        };
        let mut vecs = Vec::with_capacity(capacity);
        for _ in 0..capacity {
            vecs.push((vectors("s")?, vectors("y")?));
        }
        // The region a slot leaves its neighbour's partials in: the neighbour's, or (a ring of one
        // pair, where the neighbour is the slot itself) the spare one.
        let region = |slot: usize, other: usize| if other == slot { m } else { other };
        let mut slots = Vec::with_capacity(capacity);
        for (slot, (s, y)) in vecs.iter().enumerate() {
            let (older, newer) = ((slot + m - 1) % m, (slot + 1) % m);
            let mut dot = Program::default();
            shared.step(&gpu, &mut dot, "lbfgs_dot", slot, (Some(s), None), slot)?;
            // A loop's step: the slot's coefficient (finish), then the update of q with `a` and the
            // partials of `b·q` in the region of `to`.
            let pass = |finish, entry, a: &[wgpu::Buffer], b: &[wgpu::Buffer], to| -> Result<Program> {
                let mut prog = Program::default();
                shared.finish(&gpu, &mut prog, finish, slot)?;
                shared.step(&gpu, &mut prog, entry, slot, (Some(a), Some(b)), to)?;
                Ok(prog)
            };
            let first = pass("lbfgs_alpha", "lbfgs_first", y, &vecs[older].0, region(slot, older))?;
            let mut gamma = Program::default();
            shared.step(&gpu, &mut gamma, "lbfgs_gamma", slot, (None, Some(y)), slot)?;
            let second = pass("lbfgs_beta", "lbfgs_second", s, &vecs[newer].1, region(slot, newer))?;
            slots.push(Slot { s: s.clone(), y: y.clone(), dot, first, gamma, second });
        }
        Ok(GpuHistory { gpu, n, shared, slots, rho: vec![0.0; capacity], head: 0, len: 0 })
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
        self.slots.len()
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
    }

    /// Keeps only the newest `keep` pairs.
    pub fn keep_newest(&mut self, keep: usize) {
        if keep < self.len {
            self.head = (self.head + self.len - keep) % self.capacity();
            self.len = keep;
        }
    }

    /// The slot of pair `i` (0 the oldest).
    fn slot(&self, i: usize) -> usize {
        (self.head + i) % self.capacity()
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
        let slot = if self.len < self.capacity() {
            self.len += 1;
            self.slot(self.len - 1)
        } else {
            let oldest = self.head;
            self.head = (self.head + 1) % self.capacity();
            oldest
        };
        self.rho[slot] = rho;
        let queue = &self.gpu.queue;
        for (j, &(a, len)) in self.shared.segments.iter().enumerate() {
            queue.write_buffer(&self.slots[slot].s[j], 0, bytemuck::cast_slice(&s[a..a + len]));
            queue.write_buffer(&self.slots[slot].y[j], 0, bytemuck::cast_slice(&y[a..a + len]));
        }
        queue.write_buffer(&self.shared.scal, (4 * slot) as u64, bytemuck::bytes_of(&(rho as f32)));
        // γ = sᵀy / yᵀy of this pair, the newest now, in f64 as the host recursion computes it.
        let yy: f64 = y.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        let gamma = (1.0 / rho / yy) as f32;
        queue.write_buffer(&self.shared.scal, (12 * self.capacity()) as u64, bytemuck::bytes_of(&gamma));
        Ok(())
    }

    /// The quasi-Newton direction `−H·g` by the two-loop recursion over the pairs held: `g` goes up,
    /// every step runs on the device in one submission, the direction comes back. Without pairs it
    /// is `−g`, computed here.
    pub fn direction(&self, g: &[f32]) -> Result<Vec<f32>> {
        self.check_len("GpuHistory::direction", "g", g.len())?;
        let q: Vec<f32> = g.iter().map(|v| -v).collect();
        if self.len == 0 {
            return Ok(q);
        }
        self.gpu.check("uploading the gradient")?;
        for (j, &(a, len)) in self.shared.segments.iter().enumerate() {
            self.gpu.queue.write_buffer(&self.shared.q[j], 0, bytemuck::cast_slice(&q[a..a + len]));
        }
        let mut enc = self.gpu.encoder();
        self.slots[self.slot(self.len - 1)].dot.record(&mut enc);
        for i in (0..self.len).rev() {
            self.slots[self.slot(i)].first.record(&mut enc);
        }
        self.slots[self.slot(0)].gamma.record(&mut enc);
        for i in 0..self.len {
            self.slots[self.slot(i)].second.record(&mut enc);
        }
        let reads: Vec<(&wgpu::Buffer, usize)> =
            self.shared.q.iter().zip(&self.shared.segments).map(|(b, &(_, len))| (b, len)).collect();
        Ok(self.gpu.finish_and_read(enc, &reads)?.concat())
    }

    /// Pair `i` (0 the oldest) read back: (s, y, ρ) with ρ exactly as pushed.
    pub fn pair(&self, i: usize) -> Result<(Vec<f32>, Vec<f32>, f64)> {
        if i >= self.len {
            return Err(GpuError::Shape {
                op: "GpuHistory::pair",
                reason: format!("pair {i} of a history of {}", self.len),
            });
        }
        let slot = &self.slots[self.slot(i)];
        let lens = self.shared.segments.iter().map(|&(_, len)| len);
        let reads: Vec<(&wgpu::Buffer, usize)> =
            slot.s.iter().zip(lens.clone()).chain(slot.y.iter().zip(lens)).collect();
        let mut parts = self.gpu.finish_and_read(self.gpu.encoder(), &reads)?;
        let y = parts.split_off(self.shared.segments.len()).concat();
        Ok((parts.concat(), y, self.rho[self.slot(i)]))
    }
}
