//! `impasto devices` (the GPU adapters with their limits) and the resolution of `--device` before a
//! run or a benchmark: `auto` without a hardware GPU becomes the CPU with a one-line notice.

use std::io::Write;

use anyhow::Result;
use clap::Args;
use impasto::{Device, ResolvedDevice, VisibleGpus};
use serde_json::json;

/// Arguments of `impasto devices`.
#[derive(Debug, Args)]
pub struct DevicesArgs {
    /// Print one JSON object per adapter instead of a table
    #[arg(long)]
    pub json: bool,
}

/// Parses `--device`.
pub fn parse_device(s: &str) -> Result<Device, String> {
    Device::parse(s).ok_or_else(|| format!("`{s}` is not auto, cpu, gpu or gpu:N"))
}

/// The variable through which Slurm, Kubernetes' NVIDIA device plugin and CUDA containers give a
/// process its GPUs; Vulkan does not read it, so `auto` and `gpu` do ([`impasto::VisibleGpus`]).
pub const CUDA_VISIBLE_DEVICES: &str = "CUDA_VISIBLE_DEVICES";

/// The GPUs `CUDA_VISIBLE_DEVICES` leaves this process, if it is set.
fn visible_gpus() -> Option<VisibleGpus> {
    std::env::var(CUDA_VISIBLE_DEVICES).ok().map(|v| VisibleGpus::cuda(&v))
}

/// What `device` comes to: `auto` becomes `gpu:N` or `cpu` (saying why on stderr when `announce`);
/// `gpu` becomes `gpu:N`, both among the NVIDIA GPUs `CUDA_VISIBLE_DEVICES` names where it is set; a
/// missing adapter is an error. With `announce`, a GPU is named on stderr:
/// `impasto: running on gpu:0 (NVIDIA H200, Vulkan)`.
pub fn settle(device: Device, announce: bool) -> Result<Device> {
    Ok(match impasto::resolve_device_among(device, visible_gpus().as_ref())? {
        ResolvedDevice::Cpu { notice } => {
            if let (Some(n), true) = (notice, announce) {
                crate::progress::note(&format!("impasto: {n}"));
            }
            Device::Cpu
        }
        ResolvedDevice::Gpu { index, visible, .. } => {
            let gpu = Device::Gpu(Some(index));
            if announce {
                let by = chosen_from(visible.as_deref());
                crate::progress::note(&format!("impasto: running on {}{by}", describe(gpu)));
            }
            gpu
        }
    })
}

/// `, the first of CUDA_VISIBLE_DEVICES=2,3` where the list chose the GPU, else nothing.
fn chosen_from(visible: Option<&str>) -> String {
    visible.map_or(String::new(), |v| format!(", the first of {CUDA_VISIBLE_DEVICES}={v}"))
}

/// `gpu:0 (NVIDIA H200, Vulkan)` or `cpu`.
pub fn describe(device: Device) -> String {
    match device {
        Device::Gpu(Some(n)) => match impasto::gpu_adapters().into_iter().find(|a| a.index == n) {
            Some(a) => format!("gpu:{n} ({}, {})", a.name, a.backend),
            None => format!("gpu:{n}"),
        },
        d => d.to_string(),
    }
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes >> 20)
}

/// Runs `impasto devices`.
pub fn run(args: &DevicesArgs) -> Result<()> {
    let list = impasto::gpu_adapters();
    let mut out = std::io::stdout().lock();
    for a in &list {
        let line = if args.json {
            json!({
                "device": format!("gpu:{}", a.index),
                "name": a.name,
                "backend": a.backend,
                "type": a.device_type,
                "software": a.software,
                "max_buffer_size": a.max_buffer_size,
                "max_storage_buffer_binding_size": a.max_storage_buffer_binding_size,
                "max_compute_workgroup_storage_size": a.max_compute_workgroup_storage_size,
                "device_memory": a.device_memory,
                "memory_budget": a.memory_budget,
                "pci_bus_id": a.pci_bus_id,
                "vendor": a.vendor,
                "uuid": a.uuid,
                "driver": a.driver,
            })
            .to_string()
        } else {
            let memory = match (a.device_memory, a.memory_budget) {
                (Some(m), Some(b)) => format!("memory {} ({} available), ", mib(m), mib(b)),
                (Some(m), None) => format!("memory {}, ", mib(m)),
                (None, _) => String::new(),
            };
            let pci = a.pci_bus_id.as_ref().map_or(String::new(), |b| format!(", PCI {b}"));
            let driver = a.driver.as_ref().map_or(String::new(), |d| format!(", driver {d}"));
            let uuid = match &a.uuid {
                Some(u) if a.vendor == impasto::NVIDIA_VENDOR => format!(", UUID GPU-{u}"),
                Some(u) => format!(", UUID {u}"),
                None => String::new(),
            };
            format!(
                "gpu:{}  {}  [{}, {}{}{pci}]  {memory}max buffer {}, max storage binding {}, workgroup memory {} KiB{driver}{uuid}",
                a.index,
                a.name,
                a.backend,
                a.device_type,
                if a.software { ", software" } else { "" },
                mib(a.max_buffer_size),
                mib(a.max_storage_buffer_binding_size),
                a.max_compute_workgroup_storage_size / 1024
            )
        };
        let _ = writeln!(out, "{line}");
    }
    if !args.json {
        let auto = match impasto::resolve_device_among(Device::Auto, visible_gpus().as_ref())? {
            ResolvedDevice::Gpu { index, name, visible } => {
                format!("--device auto uses gpu:{index} ({name}{})", chosen_from(visible.as_deref()))
            }
            ResolvedDevice::Cpu { notice } => {
                format!("--device auto uses the CPU: {}", notice.unwrap_or_default())
            }
        };
        let _ = writeln!(out, "{auto}");
    }
    Ok(())
}
