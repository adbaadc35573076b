//! `impasto devices` (the GPU adapters with their limits) and the resolution of `--device` before a
//! run or a benchmark: `auto` without a hardware GPU becomes the CPU with a one-line notice.

use std::io::Write;

use anyhow::Result;
use clap::Args;
use impasto::{Device, ResolvedDevice};
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

/// What `device` comes to: `auto` becomes `gpu:N` or `cpu` (saying why on stderr when `announce`);
/// `gpu` becomes `gpu:N`; a missing adapter is an error. With `announce`, a GPU is named on stderr:
/// `impasto: running on gpu:0 (NVIDIA H200, Vulkan)`.
pub fn settle(device: Device, announce: bool) -> Result<Device> {
    Ok(match impasto::resolve_device(device)? {
        ResolvedDevice::Cpu { notice } => {
            if let (Some(n), true) = (notice, announce) {
                crate::progress::note(&format!("impasto: {n}"));
            }
            Device::Cpu
        }
        ResolvedDevice::Gpu { index, .. } => {
            let gpu = Device::Gpu(Some(index));
            if announce {
                crate::progress::note(&format!("impasto: running on {}", describe(gpu)));
            }
            gpu
        }
    })
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
            format!(
                "gpu:{}  {}  [{}, {}{}{pci}]  {memory}max buffer {}, max storage binding {}, workgroup memory {} KiB{driver}",
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
        let auto = match impasto::resolve_device(Device::Auto)? {
            ResolvedDevice::Gpu { index, name } => format!("--device auto uses gpu:{index} ({name})"),
            ResolvedDevice::Cpu { notice } => {
                format!("--device auto uses the CPU: {}", notice.unwrap_or_default())
            }
        };
        let _ = writeln!(out, "{auto}");
    }
    Ok(())
}
