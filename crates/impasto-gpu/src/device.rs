//! The opened device: choosing an adapter (listed by `adapters.rs`), opening it, and the buffer,
//! upload, read-back and error-scope helpers every other module goes through.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::adapters::{AdapterSummary, enumerate, summary};
use crate::error::{GpuError, Result};
use crate::kernels::{GemmTile, Kernels, SmallTiles};
use crate::tune::{Tune, Tuner};

/// Which adapter to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Choice {
    /// The first hardware (non-software) adapter.
    #[default]
    Auto,
    /// Adapter `n` of [`adapters`](crate::adapters), software ones included.
    Index(usize),
}

/// How to open a device: the defaults are what a run uses; the rest is for tests and tools.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuOptions {
    /// Ask the driver for at most this storage-buffer binding size (bytes) instead of the adapter's
    /// own: small images then take the channel-group paths that large ones need on a real GPU.
    pub max_storage_binding: Option<u64>,
    /// Failures to inject, to test the error paths.
    pub faults: Faults,
    /// Compile the kernels with naga's per-loop iteration counters, wgpu's default. Off, the kernels
    /// are compiled without them (they keep drivers from unrolling loops; bounds checks stay on
    /// either way): this is for measuring what they cost (`examples/conv_rate.rs`).
    pub loop_counters: bool,
    /// Time kernels on the host (one submit and wait per dispatch) even where the adapter has
    /// timestamp queries, which profiles otherwise use ([`Gpu::kernel_clock`]).
    pub host_timing: bool,
    /// The GEMM's form (the default: 8×8 outputs per invocation); both give the same bits.
    pub gemm_tile: GemmTile,
    /// Which products take 32×32 tiles (the default: those with few 64×64 tiles, on GPUs).
    pub small_tiles: SmallTiles,
    /// Stage the convolution's implicit im2col matrix as before blocks of 2 channels × 9 taps:
    /// 16 k at a time, each value's channel and tap decoded from k (about a dozen integer
    /// instructions). The same bits; for measuring what the taps save (`examples/conv_rate.rs`).
    pub im2col_per_value: bool,
    /// Whether objectives time every GEMM form during their first evaluations and keep the fastest
    /// for each product (the default: on GPUs with timestamp queries). All forms give the same bits.
    pub tune: Tune,
    /// Compute every convolution as one implicit-im2col product, also where the default takes the
    /// Winograd F(4×4, 3×3) form (both sides at least 16 channels; a quarter of the multiplies,
    /// results within about 1e-6 of the output's scale, as the CPU engine's Winograd).
    pub direct_convolutions: bool,
}

/// Failures injected through the same paths as the driver's own reports: a destroyed device (the
/// device-lost callback fires, as for a driver reset), an allocation whose out-of-memory error scope
/// reports a failure, a kernel whose WGSL source is broken so that the shader compiler rejects it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Submission `n` (counting from 1) finds the device lost.
    pub lose_device_at_submit: Option<u64>,
    /// Buffer allocation `n` (counting from 1) runs out of memory.
    pub out_of_memory_at_allocation: Option<u64>,
    /// The kernel of this name (`conv3x3`, `gram`, `relu_forward`, …) fails to compile.
    pub broken_kernel: Option<String>,
    /// Allocations run out of memory once the buffers alive on the device (the allocator's count)
    /// and the new one would exceed this many bytes: a device with that much memory for buffers
    /// and a driver that reports none.
    pub capacity: Option<u64>,
}

/// An opened device with its compiled kernels.
#[derive(Debug)]
pub struct Gpu {
    /// The adapter, for the driver's memory budget ([`Gpu::memory_budget`]).
    adapter: wgpu::Adapter,
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    summary: AdapterSummary,
    pub(crate) limits: wgpu::Limits,
    pub(crate) kernels: Kernels,
    lost: Arc<Mutex<Option<String>>>,
    uncaptured: Arc<Mutex<Option<String>>>,
    faults: Faults,
    submits: AtomicU64,
    allocations: AtomicU64,
    /// Bytes of every buffer created so far (storage, uniform and read-back buffers).
    allocated: AtomicU64,
    /// Whether profiles read the GPU's timestamps (the adapter has them and the host clock was not asked for).
    timestamps: bool,
    /// The choice of each product shape's GEMM form on this device.
    pub(crate) tuner: Tuner,
    /// Whether convolutions of enough channels take the Winograd form ([`GpuOptions::direct_convolutions`] off).
    pub(crate) winograd: bool,
}

/// What a kernel profile's times were measured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelClock {
    /// The GPU's own timestamps at the start and end of each dispatch, all of one evaluation in one
    /// submission: the kernels' time on the device.
    Device,
    /// The host's clock around one submit and wait per dispatch: each time includes that round trip.
    Host,
}

impl Gpu {
    /// Opens the adapter `choice` names and compiles every kernel.
    pub fn new(choice: Choice) -> Result<Arc<Gpu>> {
        Gpu::with_options(choice, &GpuOptions::default())
    }

    /// [`Gpu::new`] with `options`.
    pub fn with_options(choice: Choice, options: &GpuOptions) -> Result<Arc<Gpu>> {
        let all = enumerate();
        let names = || {
            if all.is_empty() {
                "no Vulkan, Metal or DirectX 12 adapter was found (is a driver installed?)".to_string()
            } else {
                let list: Vec<String> =
                    all.iter().enumerate().map(|(i, a)| format!("gpu:{i} {}", a.get_info().name)).collect();
                format!("adapters: {}", list.join(", "))
            }
        };
        let index = match choice {
            Choice::Auto => all
                .iter()
                .position(|a| a.get_info().device_type != wgpu::DeviceType::Cpu)
                .ok_or_else(|| GpuError::NoAdapter { reason: format!("no hardware adapter; {}", names()) })?,
            Choice::Index(n) if n < all.len() => n,
            Choice::Index(n) => {
                return Err(GpuError::NoAdapter { reason: format!("there is no gpu:{n}; {}", names()) });
            }
        };
        let adapter = &all[index];
        let summary = summary(index, adapter);
        let mut limits = adapter.limits();
        if let Some(cap) = options.max_storage_binding {
            let cap = (cap / 256 * 256).max(256);
            limits.max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size.min(cap);
        }
        let clock = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
        let timestamps = !options.host_timing && adapter.features().contains(clock);
        let desc = wgpu::DeviceDescriptor {
            label: Some("impasto"),
            required_features: if timestamps { clock } else { wgpu::Features::empty() },
            required_limits: limits.clone(),
            memory_hints: wgpu::MemoryHints::Performance,
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| GpuError::RequestDevice { adapter: summary.name.clone(), reason: e.to_string() })?;
        let lost = Arc::new(Mutex::new(None));
        let uncaptured = Arc::new(Mutex::new(None));
        {
            let lost = lost.clone();
            device.set_device_lost_callback(move |reason, msg| {
                if let Ok(mut l) = lost.lock() {
                    let why = match reason {
                        wgpu::DeviceLostReason::Destroyed => "the device was destroyed",
                        _ => "the driver reset or removed it",
                    };
                    *l = Some(if msg.trim().is_empty() {
                        why.to_string()
                    } else {
                        format!("{why} ({})", msg.trim())
                    });
                }
            });
            let uncaptured = uncaptured.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                if let Ok(mut u) = uncaptured.lock()
                    && u.is_none()
                {
                    *u = Some(e.to_string());
                }
            }));
        }
        let small_tiles = match options.small_tiles {
            SmallTiles::Auto => adapter.get_info().device_type != wgpu::DeviceType::Cpu,
            SmallTiles::On => true,
            SmallTiles::Off => false,
        };
        let software = adapter.get_info().device_type == wgpu::DeviceType::Cpu;
        let tune = timestamps
            && match options.tune {
                Tune::Auto => !software,
                Tune::On => true,
                Tune::Off => false,
            };
        let kernels = Kernels::build(&device, &summary.name, options, small_tiles, tune)?;
        Ok(Arc::new(Gpu {
            adapter: adapter.clone(),
            device,
            queue,
            summary,
            limits,
            kernels,
            lost,
            uncaptured,
            faults: options.faults.clone(),
            submits: AtomicU64::new(0),
            allocations: AtomicU64::new(0),
            allocated: AtomicU64::new(0),
            timestamps,
            tuner: Tuner::default(),
            winograd: !options.direct_convolutions,
        }))
    }

    /// The adapter this device runs on.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.summary
    }

    /// What the driver says this process may allocate in all from the adapter's memory now, bytes:
    /// its own buffers included, less than [`AdapterSummary::device_memory`] when other programs
    /// hold some (Vulkan drivers with `VK_EXT_memory_budget`; `None` elsewhere).
    pub fn memory_budget(&self) -> Option<u64> {
        crate::memory::memory_budget(&self.adapter)
    }

    pub(crate) fn name(&self) -> String {
        self.summary.name.clone()
    }

    /// What [`crate::GpuObjective::profile`] and [`Gpu::conv3x3_seconds`] time kernels with.
    pub fn kernel_clock(&self) -> KernelClock {
        if self.timestamps { KernelClock::Device } else { KernelClock::Host }
    }

    /// Whether objectives on this device choose each product's GEMM form by timing ([`Tune`]).
    pub fn tunes(&self) -> bool {
        self.kernels.tune
    }

    /// Why the device was lost, if it was (it then fails every later call).
    pub fn is_lost(&self) -> Option<String> {
        self.lost.lock().ok().and_then(|l| l.clone())
    }

    /// The largest tensor one binding holds, bytes (a multiple of 4), and the limit that sets it.
    pub(crate) fn binding_cap(&self) -> (u64, &'static str) {
        let (b, m) = (self.limits.max_storage_buffer_binding_size, self.limits.max_buffer_size);
        if b <= m { (b / 4 * 4, "max_storage_buffer_binding_size") } else { (m / 4 * 4, "max_buffer_size") }
    }

    /// The largest tensor (one channel group of an activation, one Gram matrix) one storage binding
    /// holds, bytes, and the name of the limit that sets it (`max_storage_buffer_binding_size`, or
    /// `max_buffer_size` where that is smaller).
    pub fn max_tensor_bytes(&self) -> (u64, &'static str) {
        self.binding_cap()
    }

    /// The largest buffer of the opened device, bytes (bounds one read-back).
    pub fn max_buffer_size(&self) -> u64 {
        self.limits.max_buffer_size
    }

    /// Bytes of every buffer created on this device so far (storage, uniform and read-back buffers),
    /// freed ones included: the difference across a call is what it allocated.
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }

    /// The largest storage binding of the opened device, bytes (what [`GpuOptions::max_storage_binding`]
    /// asked for, or the adapter's).
    pub fn max_storage_binding(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size
    }

    /// Fails with the device-lost reason or the first uncaptured error, if any.
    pub(crate) fn check(&self, op: &'static str) -> Result<()> {
        if let Some(reason) = self.lost.lock().ok().and_then(|l| l.clone()) {
            return Err(GpuError::DeviceLost { adapter: self.name(), reason });
        }
        if let Some(reason) = self.uncaptured.lock().ok().and_then(|mut u| u.take()) {
            return Err(self.classify(op, reason));
        }
        Ok(())
    }

    fn classify(&self, op: &'static str, reason: String) -> GpuError {
        if reason.to_ascii_lowercase().contains("out of memory") {
            GpuError::OutOfMemory { adapter: self.name(), what: op.into(), bytes: 0 }
        } else if reason.to_ascii_lowercase().contains("lost") {
            GpuError::DeviceLost { adapter: self.name(), reason }
        } else {
            GpuError::Driver { adapter: self.name(), op, reason }
        }
    }

    /// Runs `f` inside out-of-memory and validation error scopes; an error there becomes typed.
    pub(crate) fn scoped<T>(&self, op: &'static str, bytes: u64, f: impl FnOnce() -> T) -> Result<T> {
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let out = f();
        let oom_err = pollster::block_on(oom.pop());
        let val_err = pollster::block_on(validation.pop());
        let injected = op == "buffer allocation"
            && (self.faults.out_of_memory_at_allocation
                == Some(self.allocations.fetch_add(1, Ordering::Relaxed) + 1)
                || self.over_capacity(bytes));
        if oom_err.is_some() || injected {
            return Err(GpuError::OutOfMemory { adapter: self.name(), what: op.into(), bytes });
        }
        if let Some(e) = val_err {
            return Err(self.classify(op, e.to_string()));
        }
        self.check(op)?;
        Ok(out)
    }

    /// Whether a new buffer of `bytes` (just created) takes the buffers alive on the device beyond
    /// [`Faults::capacity`]: this program's buffers, not wgpu's own (the staging copies of uploads,
    /// freed at the next submission). Buffers the program dropped are freed once the device is polled.
    fn over_capacity(&self, bytes: u64) -> bool {
        let Some(capacity) = self.faults.capacity else { return false };
        let _ = self.device.poll(wgpu::PollType::Poll);
        let live: u64 = self.device.generate_allocator_report().map_or(0, |r| {
            r.allocations.iter().filter(|a| !a.name.starts_with("(wgpu internal)")).map(|a| a.size).sum()
        });
        // The new buffer is already counted.
        live > capacity || bytes > capacity
    }

    /// A storage buffer of `len` floats (at least one), checked against the adapter's limits.
    pub(crate) fn storage(&self, what: &str, len: usize) -> Result<wgpu::Buffer> {
        let bytes = (len.max(1) * 4) as u64;
        let (allowed, limit) = self.binding_cap();
        if bytes > allowed {
            return Err(GpuError::Limit {
                adapter: self.name(),
                what: what.into(),
                limit,
                needed: bytes,
                allowed,
            });
        }
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        self.allocated.fetch_add(bytes, Ordering::Relaxed);
        self.scoped("buffer allocation", bytes, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(what),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        })
        .map_err(|e| match e {
            GpuError::OutOfMemory { adapter, bytes, .. } => {
                GpuError::OutOfMemory { adapter, what: what.into(), bytes }
            }
            e => e,
        })
    }

    /// A storage buffer holding `data`.
    pub(crate) fn upload(&self, what: &str, data: &[f32]) -> Result<wgpu::Buffer> {
        let b = self.storage(what, data.len())?;
        if !data.is_empty() {
            self.queue.write_buffer(&b, 0, bytemuck::cast_slice(data));
        }
        Ok(b)
    }

    /// A uniform buffer of kernel parameters (a multiple of 4 words).
    pub(crate) fn params(&self, words: &[u32]) -> wgpu::Buffer {
        self.allocated.fetch_add((words.len() * 4) as u64, Ordering::Relaxed);
        let b = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: (words.len() * 4) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue.write_buffer(&b, 0, bytemuck::cast_slice(words));
        b
    }

    /// Submits `encoder` after copying each `(buffer, floats)` into one mappable buffer, waits, and
    /// returns the floats of each, in order: one submit, one map.
    pub(crate) fn finish_and_read(
        &self,
        encoder: wgpu::CommandEncoder,
        reads: &[(&wgpu::Buffer, usize)],
    ) -> Result<Vec<Vec<f32>>> {
        self.finish_and_read_as(encoder, reads)
    }

    /// [`Gpu::finish_and_read`] for values of any plain type `T` (`reads` counts values of `T`).
    pub(crate) fn finish_and_read_as<T: bytemuck::Pod>(
        &self,
        encoder: wgpu::CommandEncoder,
        reads: &[(&wgpu::Buffer, usize)],
    ) -> Result<Vec<Vec<T>>> {
        let ranges: Vec<(&wgpu::Buffer, usize, usize)> = reads.iter().map(|&(b, n)| (b, 0, n)).collect();
        self.finish_and_read_ranges(encoder, &ranges)
    }

    /// [`Gpu::finish_and_read_as`] of `(buffer, first value, values)` ranges.
    pub(crate) fn finish_and_read_ranges<T: bytemuck::Pod>(
        &self,
        encoder: wgpu::CommandEncoder,
        reads: &[(&wgpu::Buffer, usize, usize)],
    ) -> Result<Vec<Vec<T>>> {
        self.finish_and_map(encoder, reads, |all: &[T]| {
            let mut at = 0;
            reads
                .iter()
                .map(|&(_, _, n)| {
                    at += n;
                    all[at - n..at].to_vec()
                })
                .collect()
        })
    }

    /// [`Gpu::finish_and_read`] into `out`, the reads' floats one after the other: `out`'s memory
    /// serves again (no image-sized allocation, whose pages the kernel would zero, per read).
    pub(crate) fn finish_and_read_into(
        &self,
        encoder: wgpu::CommandEncoder,
        reads: &[(&wgpu::Buffer, usize)],
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let ranges: Vec<(&wgpu::Buffer, usize, usize)> = reads.iter().map(|&(b, n)| (b, 0, n)).collect();
        self.finish_and_map(encoder, &ranges, |all: &[f32]| {
            out.clear();
            out.extend_from_slice(all);
        })
    }

    /// Submits `encoder` after copying the `(buffer, first value, values)` ranges into one mappable
    /// buffer, waits, and hands `read` the values of all of them, in order: one submit, one map.
    fn finish_and_map<T: bytemuck::Pod, R>(
        &self,
        mut encoder: wgpu::CommandEncoder,
        reads: &[(&wgpu::Buffer, usize, usize)],
        read: impl FnOnce(&[T]) -> R,
    ) -> Result<R> {
        let size = std::mem::size_of::<T>();
        let total: usize = reads.iter().map(|r| r.2).sum();
        let bytes = (total.max(1) * size) as u64;
        if bytes > self.limits.max_buffer_size {
            return Err(GpuError::Limit {
                adapter: self.name(),
                what: format!("a read-back of {total} values"),
                limit: "max_buffer_size",
                needed: bytes,
                allowed: self.limits.max_buffer_size,
            });
        }
        self.allocated.fetch_add(bytes, Ordering::Relaxed);
        let staging = self.scoped("read-back buffer", bytes, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("read-back"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        let mut off = 0u64;
        for &(b, first, n) in reads {
            if n > 0 {
                encoder.copy_buffer_to_buffer(b, (first * size) as u64, &staging, off, (n * size) as u64);
            }
            off += (n * size) as u64;
        }
        self.submit(encoder)?;
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| self.classify("waiting for the GPU", e.to_string()))?;
        self.check("kernels")?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(self.classify("read-back", e.to_string())),
            Err(_) => return Err(self.classify("read-back", "the map callback never ran".into())),
        }
        let out = {
            let view = staging.get_mapped_range(..).map_err(|e| self.classify("read-back", e.to_string()))?;
            let all: &[T] = bytemuck::cast_slice(&view);
            read(&all[..total])
        };
        staging.unmap();
        Ok(out)
    }

    /// Submits `encoder` and waits until the GPU has run it.
    pub(crate) fn submit_and_wait(&self, encoder: wgpu::CommandEncoder) -> Result<()> {
        self.submit(encoder)?;
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| self.classify("waiting for the GPU", e.to_string()))?;
        self.check("kernels")
    }

    /// Submits `encoder`; the injected device loss destroys the device first, so that the loss is
    /// reported by the driver's own device-lost callback.
    fn submit(&self, encoder: wgpu::CommandEncoder) -> Result<()> {
        if self.faults.lose_device_at_submit == Some(self.submits.fetch_add(1, Ordering::Relaxed) + 1) {
            self.device.destroy();
        }
        self.scoped("kernel submission", 0, || self.queue.submit([encoder.finish()]))?;
        Ok(())
    }

    pub(crate) fn encoder(&self) -> wgpu::CommandEncoder {
        self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("impasto") })
    }
}
