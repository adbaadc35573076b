//! The kernels as wgpu's Metal and DirectX 12 backends receive them, on machines without either:
//! every pipeline's WGSL translated by naga to MSL and to HLSL with the options those backends use.
//!
//! CI runs the kernels on Vulkan (lavapipe) only. On a Mac or under DX12 wgpu hands the same WGSL to
//! naga's MSL or HLSL writer; a construct one of them does not support would only show up there, as
//! a shader compile failure at the user's first run. The Metal and DXC compilers themselves do not
//! run on Linux, so what is checked is naga's half: the translation.

use naga::back::{hlsl, msl};
use naga::proc::{BoundsCheckPolicies, BoundsCheckPolicy};
use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};

use crate::device::GpuOptions;
use crate::kernels::{Job, jobs, peak_jobs};

/// Every pipeline any device compiles: all GEMM forms (as a tuning device with room for each in its
/// workgroup memory has them), the 32×32 tiles, both stagings of the convolution's input, and the
/// other kernels, and the ceiling kernels; each source and entry point once.
fn every_job() -> Vec<Job> {
    let mut all: Vec<Job> = peak_jobs();
    for per_value in [false, true] {
        let options = GpuOptions { im2col_per_value: per_value, ..Default::default() };
        for job in jobs(&options, true, true, u32::MAX).jobs {
            if !all.iter().any(|j| j.1 == job.1 && j.2 == job.2) {
                all.push(job);
            }
        }
    }
    all
}

/// The job's module, validated as wgpu validates it.
fn module((kernel, src, _): &Job) -> (naga::Module, ModuleInfo) {
    let module =
        naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{kernel}: {}", e.emit_to_string(src)));
    let info = Validator::new(ValidationFlags::all(), Capabilities::default())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{kernel}: {}", e.emit_to_string(src)));
    (module, info)
}

/// What wgpu's backends ask of naga: bounds checks that restrict indices (wgpu's checked runtime
/// checks), with and without the loop counters (the kernels are compiled without them unless
/// [`GpuOptions::loop_counters`]).
const LOOP_BOUNDING: [bool; 2] = [false, true];

#[test]
fn every_kernel_translates_to_metal_shading_language() {
    let jobs = every_job();
    assert!(jobs.len() > 50, "{} pipelines", jobs.len());
    let restrict = BoundsCheckPolicy::Restrict;
    let checks = BoundsCheckPolicies {
        index: restrict,
        buffer: restrict,
        image_load: restrict,
        binding_array: BoundsCheckPolicy::Unchecked,
    };
    for job in &jobs {
        let (module, info) = module(job);
        // MSL 2.2 is macOS 10.15's, the oldest wgpu's Metal backend maps; 3.2 macOS 15's.
        for lang_version in [(2, 2), (3, 2)] {
            for force_loop_bounding in LOOP_BOUNDING {
                let options = msl::Options {
                    lang_version,
                    bounds_check_policies: checks,
                    force_loop_bounding,
                    fake_missing_bindings: true,
                    ..Default::default()
                };
                let pipeline = msl::PipelineOptions {
                    entry_point: Some((naga::ShaderStage::Compute, job.2.to_string())),
                    ..Default::default()
                };
                let (text, _) = msl::write_string(&module, &info, &options, &pipeline)
                    .unwrap_or_else(|e| panic!("{} ({}), MSL {lang_version:?}: {e}", job.0, job.2));
                assert!(text.contains("kernel void"), "{} ({}): no kernel in the MSL", job.0, job.2);
            }
        }
    }
}

#[test]
fn every_kernel_translates_to_hlsl() {
    for job in &every_job() {
        let (module, info) = module(job);
        // Shader model 5.1 is FXC's, which wgpu falls back to on a Windows machine without DXC
        // (dxcompiler.dll); 6.0 the least it takes with DXC.
        for (shader_model, force_loop_bounding) in [hlsl::ShaderModel::V5_1, hlsl::ShaderModel::V6_0]
            .into_iter()
            .flat_map(|m| LOOP_BOUNDING.map(|b| (m, b)))
        {
            let options = hlsl::Options {
                shader_model,
                restrict_indexing: true,
                force_loop_bounding,
                fake_missing_bindings: true,
                ..Default::default()
            };
            let pipeline =
                hlsl::PipelineOptions { entry_point: Some((naga::ShaderStage::Compute, job.2.to_string())) };
            let mut text = String::new();
            hlsl::Writer::new(&mut text, &options, &pipeline)
                .write(&module, &info, None)
                .unwrap_or_else(|e| panic!("{} ({}), HLSL {shader_model:?}: {e}", job.0, job.2));
            assert!(text.contains("[numthreads("), "{} ({}): no compute entry in the HLSL", job.0, job.2);
        }
    }
}
