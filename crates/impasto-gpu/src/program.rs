//! A fixed list of dispatches over resident buffers (`Program`), each kernel bound once to its
//! buffers so that an evaluation only replays the list into one encoder; the parameters of the
//! element-wise kernels and the workgroup grid they run on.

use crate::device::Gpu;
use crate::error::Result;
use crate::tune::Choice;

/// One recorded step of an evaluation.
#[derive(Debug)]
pub(crate) enum Step {
    Dispatch { pipeline: wgpu::ComputePipeline, bind: wgpu::BindGroup, groups: [u32; 3], label: String },
    Clear(wgpu::Buffer),
}

/// A fixed list of dispatches over resident buffers, replayed into one encoder per evaluation.
#[derive(Debug, Default)]
pub(crate) struct Program {
    pub(crate) steps: Vec<Step>,
    /// Names the GEMMs recorded until the next [`Program::tag`] (for the per-kernel profile).
    pub(crate) tag: Option<String>,
    /// The GEMM steps with more than one form to choose from (a device that tunes).
    pub(crate) choices: Vec<Choice>,
    /// The Winograd convolutions' scratch buffers and their floats (`winograd.rs`).
    pub(crate) winograd: Option<(wgpu::Buffer, wgpu::Buffer, usize)>,
    /// The most bytes each of those takes, where less than the default (see
    /// [`Program::scratch_cap`]).
    pub(crate) winograd_cap: Option<u64>,
}

/// Workgroups for `n` invocations of 256: (x, y) with x·y·256 ≥ n, both within the dispatch limit.
pub(crate) fn grid(n: usize) -> [u32; 3] {
    let wg = n.div_ceil(256).max(1);
    let x = wg.min(32768);
    [x as u32, wg.div_ceil(x) as u32, 1]
}

/// How many partial sums a loss kernel over `n` values leaves.
pub(crate) fn partial_count(n: usize) -> usize {
    let g = grid(n);
    (g[0] * g[1]) as usize
}

/// Parameters of an `ops.wgsl` kernel.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OpParams {
    pub(crate) n: usize,
    pub(crate) c: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) u: [u32; 4],
    pub(crate) f: [f32; 8],
}

impl OpParams {
    pub(crate) fn words(&self) -> [u32; 16] {
        let mut w = [0u32; 16];
        w[0] = self.n as u32;
        w[1] = self.c as u32;
        w[2] = self.h as u32;
        w[3] = self.w as u32;
        w[4..8].copy_from_slice(&self.u);
        for (d, s) in w[8..].iter_mut().zip(self.f) {
            *d = s.to_bits();
        }
        w
    }
}

impl Program {
    /// Adds an `ops.wgsl` or `history.wgsl` kernel over `groups`; `buffers` are (binding, buffer). Returns the parameters.
    pub(crate) fn op(
        &mut self,
        gpu: &Gpu,
        entry: &'static str,
        p: OpParams,
        buffers: &[(u32, &wgpu::Buffer)],
        groups: [u32; 3],
    ) -> Result<wgpu::Buffer> {
        let params = gpu.params(&p.words());
        let pipeline = gpu.kernels.op(entry);
        let bind = bind_group(gpu, pipeline, &params, buffers)?;
        self.steps.push(Step::Dispatch {
            pipeline: pipeline.clone(),
            bind,
            groups,
            label: entry.to_string(),
        });
        Ok(params)
    }

    /// Names the GEMMs recorded from now on (`None`: by their variant) in [`Program::profile`].
    pub(crate) fn tag(&mut self, tag: Option<String>) {
        self.tag = tag;
    }

    /// The recorded steps, in order (for [`crate::profile`]).
    pub(crate) fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Adds the zeroing of `buffer`.
    pub(crate) fn clear(&mut self, buffer: &wgpu::Buffer) {
        self.steps.push(Step::Clear(buffer.clone()));
    }

    /// Records every step into `encoder`, consecutive dispatches in one compute pass.
    pub(crate) fn record(&self, encoder: &mut wgpu::CommandEncoder) {
        self.record_timing(encoder, &[], None);
    }

    /// [`Program::record`] with the steps `timed` (ascending) each in a pass of its own between two
    /// timestamps of `set`: the j-th at queries 2j and 2j + 1.
    pub(crate) fn record_timing(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        timed: &[usize],
        set: Option<&wgpu::QuerySet>,
    ) {
        self.record_span(encoder, 0..self.steps.len(), timed, set);
    }

    /// [`Program::record_timing`] of the steps in `span` only (an evaluation in two submissions
    /// around a host step); `timed` and the query indices are those of the whole program.
    pub(crate) fn record_span(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        span: std::ops::Range<usize>,
        timed: &[usize],
        set: Option<&wgpu::QuerySet>,
    ) {
        let mut next = timed.iter().copied().enumerate().skip_while(|&(_, at)| at < span.start).peekable();
        let end = span.end.min(self.steps.len());
        let mut i = span.start;
        while i < end {
            if let (Some(&(j, at)), Some(set)) = (next.peek(), set)
                && at == i
            {
                crate::profile::record(encoder, &self.steps[i], Some((set, 2 * j as u32)));
                next.next();
                i += 1;
                continue;
            }
            match &self.steps[i] {
                Step::Clear(b) => {
                    encoder.clear_buffer(b, 0, None);
                    i += 1;
                }
                Step::Dispatch { .. } => {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes: None,
                    });
                    while let Some(Step::Dispatch { pipeline, bind, groups, .. }) =
                        self.steps.get(i).filter(|_| i < end)
                    {
                        if set.is_some() && next.peek().is_some_and(|&(_, at)| at == i) {
                            break;
                        }
                        pass.set_pipeline(pipeline);
                        pass.set_bind_group(0, bind, &[]);
                        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                        i += 1;
                    }
                }
            }
        }
    }
}

pub(crate) fn bind_group(
    gpu: &Gpu,
    pipeline: &wgpu::ComputePipeline,
    params: &wgpu::Buffer,
    buffers: &[(u32, &wgpu::Buffer)],
) -> Result<wgpu::BindGroup> {
    let layout = pipeline.get_bind_group_layout(0);
    let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: params.as_entire_binding() }];
    entries.extend(
        buffers.iter().map(|&(binding, b)| wgpu::BindGroupEntry { binding, resource: b.as_entire_binding() }),
    );
    gpu.scoped("binding kernel buffers", 0, || {
        gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &layout,
            entries: &entries,
        })
    })
}
