//! Per-step timing of a recorded program: the GPU's own timestamps around each dispatch where the
//! adapter has timestamp queries, else the host's clock around one submit and wait per step.

use crate::device::{Gpu, KernelClock};
use crate::error::Result;
use crate::program::{Program, Step};

/// Steps per query set: two timestamps each, within wgpu's limit on one query set.
pub(crate) const STEPS_PER_SET: usize = (wgpu::QUERY_SET_MAX_QUERIES / 2) as usize;

/// (label, seconds) of every step of `prog`, in order, measured with [`Gpu::kernel_clock`].
pub(crate) fn profile(gpu: &Gpu, prog: &Program) -> Result<Vec<(String, f64)>> {
    profile_span(gpu, prog, 0..prog.steps().len())
}

/// [`profile`] of the steps in `span` only.
pub(crate) fn profile_span(
    gpu: &Gpu,
    prog: &Program,
    span: std::ops::Range<usize>,
) -> Result<Vec<(String, f64)>> {
    let steps = &prog.steps()[span];
    match gpu.kernel_clock() {
        KernelClock::Device => on_device(gpu, steps),
        KernelClock::Host => on_host(gpu, steps),
    }
}

fn label(step: &Step) -> String {
    match step {
        Step::Clear(_) => "clear".to_string(),
        Step::Dispatch { label, .. } => label.clone(),
    }
}

/// Records `step` into `encoder` in a pass (or, for a clear, between timestamps) of its own.
pub(crate) fn record(
    encoder: &mut wgpu::CommandEncoder,
    step: &Step,
    writes: Option<(&wgpu::QuerySet, u32)>,
) {
    match step {
        Step::Clear(b) => {
            if let Some((set, i)) = writes {
                encoder.write_timestamp(set, i);
            }
            encoder.clear_buffer(b, 0, None);
            if let Some((set, i)) = writes {
                encoder.write_timestamp(set, i + 1);
            }
        }
        Step::Dispatch { pipeline, bind, groups, .. } => {
            let timestamp_writes = writes.map(|(query_set, i)| wgpu::ComputePassTimestampWrites {
                query_set,
                beginning_of_pass_write_index: Some(i),
                end_of_pass_write_index: Some(i + 1),
            });
            let mut pass =
                encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes });
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, bind, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        }
    }
}

/// Each step its own submit, waited for and timed on the host.
fn on_host(gpu: &Gpu, steps: &[Step]) -> Result<Vec<(String, f64)>> {
    let mut out = Vec::with_capacity(steps.len());
    for step in steps {
        let mut enc = gpu.encoder();
        record(&mut enc, step, None);
        let t = std::time::Instant::now();
        gpu.submit_and_wait(enc)?;
        out.push((label(step), t.elapsed().as_secs_f64()));
    }
    Ok(out)
}

/// Every step in one submission (per query set), each between two GPU timestamps.
fn on_device(gpu: &Gpu, steps: &[Step]) -> Result<Vec<(String, f64)>> {
    let mut out = Vec::with_capacity(steps.len());
    for chunk in steps.chunks(STEPS_PER_SET) {
        let stamps = Stamps::new(gpu, chunk.len())?;
        let mut enc = gpu.encoder();
        for (i, step) in chunk.iter().enumerate() {
            record(&mut enc, step, Some((&stamps.set, 2 * i as u32)));
        }
        let secs = stamps.seconds(gpu, enc)?;
        out.extend(chunk.iter().map(label).zip(secs));
    }
    Ok(out)
}

/// Two timestamp queries for each of up to [`STEPS_PER_SET`] steps, and where they are resolved.
pub(crate) struct Stamps {
    pub(crate) set: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    count: usize,
}

impl Stamps {
    /// Queries for `steps` steps (at most [`STEPS_PER_SET`]).
    pub(crate) fn new(gpu: &Gpu, steps: usize) -> Result<Stamps> {
        let count = 2 * steps.clamp(1, STEPS_PER_SET);
        let set = gpu.scoped("kernel timestamps", 0, || {
            gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("kernel timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: count as u32,
            })
        })?;
        let resolved = gpu.scoped("kernel timestamps", (count * 8) as u64, || {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps"),
                size: (count * 8) as u64,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        })?;
        Ok(Stamps { set, resolved, count })
    }

    /// Submits `encoder` with the queries resolved at its end; the seconds between each pair.
    pub(crate) fn seconds(&self, gpu: &Gpu, mut encoder: wgpu::CommandEncoder) -> Result<Vec<f64>> {
        let ns_per_tick = f64::from(gpu.queue.get_timestamp_period());
        encoder.resolve_query_set(&self.set, 0..self.count as u32, &self.resolved, 0);
        let ticks: Vec<u64> = gpu
            .finish_and_read_as(encoder, &[(&self.resolved, self.count)])?
            .into_iter()
            .next()
            .unwrap_or_default();
        Ok(ticks.chunks_exact(2).map(|t| t[1].saturating_sub(t[0]) as f64 * ns_per_tick * 1e-9).collect())
    }
}
