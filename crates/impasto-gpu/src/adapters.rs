//! The machine's adapters: listing them in a stable order (discrete cards first, software ones last)
//! with their limits and memory figures, as `impasto devices` shows them.

/// One adapter as `impasto devices` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterSummary {
    /// Position in [`adapters`] (what `gpu:N` selects).
    pub index: usize,
    /// The adapter's name, e.g. `NVIDIA H200` or `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub name: String,
    /// The graphics API it runs on: `Vulkan`, `Metal` or `Dx12`.
    pub backend: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `VirtualGpu`, `Cpu` (a software rasteriser) or `Other`.
    pub device_type: String,
    /// Whether it is a software adapter (llvmpipe/lavapipe, WARP, SwiftShader).
    pub software: bool,
    /// Largest buffer, bytes.
    pub max_buffer_size: u64,
    /// Largest storage-buffer binding, bytes (bounds one activation tensor).
    pub max_storage_buffer_binding_size: u64,
    /// Workgroup shared memory, bytes.
    pub max_compute_workgroup_storage_size: u32,
    /// Memory for buffers, bytes: the largest device-local heap (Vulkan; `None` where unknown): a
    /// discrete card's own memory; on an integrated or software adapter, what the driver lets it use
    /// of the system's.
    pub device_memory: Option<u64>,
    /// What the driver says this process may allocate from that heap when the list was made
    /// (Vulkan drivers with `VK_EXT_memory_budget`; `None` elsewhere): the heap less what other
    /// programs hold. [`Gpu::memory_budget`](crate::Gpu::memory_budget) asks again.
    pub memory_budget: Option<u64>,
    /// Its PCI address as `lspci` shows it (`0000:1b:00.0`; `nvidia-smi` writes `00000000:1B:00.0`),
    /// where the driver says (Vulkan with `VK_EXT_pci_bus_info`): what tells two cards of one model
    /// apart.
    pub pci_bus_id: Option<String>,
    /// The driver's name and version (`llvmpipe Mesa 22.3.6 (LLVM 15.0.6)`), where the backend says.
    pub driver: Option<String>,
    /// The PCI vendor ID (`0x10de` NVIDIA, `0x1002` AMD, `0x8086` Intel; Mesa's software adapters
    /// `0x10005`), `0` where the backend does not say.
    pub vendor: u32,
    /// Its device UUID as `nvidia-smi -L` writes it without the `GPU-` prefix
    /// (`9e2b0c3a-517d-4e01-a2c3-00ff1020304f`), where its Vulkan driver reports one: the name that
    /// `CUDA_VISIBLE_DEVICES=GPU-…` gives a card.
    pub uuid: Option<String>,
}

fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12;
    desc.flags = wgpu::InstanceFlags::empty();
    wgpu::Instance::new(desc)
}

pub(crate) fn summary(index: usize, adapter: &wgpu::Adapter) -> AdapterSummary {
    let info = adapter.get_info();
    let limits = adapter.limits();
    AdapterSummary {
        index,
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        software: info.device_type == wgpu::DeviceType::Cpu,
        max_buffer_size: limits.max_buffer_size,
        max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
        max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
        device_memory: crate::memory::device_memory(adapter),
        memory_budget: crate::memory::memory_budget(adapter),
        pci_bus_id: Some(info.device_pci_bus_id.clone()).filter(|b| !b.is_empty()),
        driver: Some(format!("{} {}", info.driver.trim_matches('?'), info.driver_info).trim().to_string())
            .filter(|d| !d.is_empty()),
        vendor: info.vendor,
        uuid: crate::identity::device_uuid(adapter),
    }
}

pub(crate) fn enumerate() -> Vec<wgpu::Adapter> {
    let inst = instance();
    let mut all: Vec<wgpu::Adapter> = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()))
        .into_iter()
        .filter(|a| a.get_info().backend != wgpu::Backend::Gl)
        .collect();
    // Stable: the loader's order within a kind and backend.
    all.sort_by_key(|a| preference(a.get_info().device_type, a.get_info().backend));
    all
}

/// Where an adapter comes in the list (lower first): discrete cards, then integrated ones, then the
/// rest, software rasterisers last; within a kind, Vulkan and Metal before DirectX 12. The Vulkan
/// loader lists the GPU driving the display first (Mesa's device-select layer does so on purpose),
/// which on a laptop with two is the integrated one, while the first hardware adapter is what `auto`
/// takes. On Windows a GPU appears twice, through Vulkan and DX12: Vulkan is the backend CI and the
/// measurements ran, and DX12 compiles the kernels with FXC where DXC's `dxcompiler.dll` is absent.
fn preference(kind: wgpu::DeviceType, backend: wgpu::Backend) -> (u8, u8) {
    let kind = match kind {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    (kind, u8::from(backend == wgpu::Backend::Dx12))
}

/// Every compute-capable adapter of the machine, in a stable order: discrete GPUs first, then
/// integrated, virtual and other ones, software rasterisers last; within a kind, Vulkan and Metal
/// before DirectX 12, then as the driver loader lists them. Empty without a driver (no Vulkan
/// loader, no ICD): never a panic.
pub fn adapters() -> Vec<AdapterSummary> {
    enumerate().iter().enumerate().map(|(i, a)| summary(i, a)).collect()
}

#[cfg(test)]
mod tests {
    use super::preference;
    use wgpu::Backend as B;
    use wgpu::DeviceType as T;

    /// A hybrid Windows laptop as wgpu lists it (the display's integrated GPU first, DX12 adapters
    /// before some Vulkan ones), with lavapipe: the discrete card comes first, through Vulkan before
    /// DX12, the software rasteriser last, each kind and backend in the loader's order.
    #[test]
    fn discrete_adapters_come_first_vulkan_before_dx12_and_software_ones_last() {
        let mut listed = [
            (T::IntegratedGpu, B::Dx12, "Intel DX12"),
            (T::IntegratedGpu, B::Vulkan, "Intel Vulkan"),
            (T::Cpu, B::Vulkan, "llvmpipe"),
            (T::DiscreteGpu, B::Dx12, "NVIDIA DX12"),
            (T::DiscreteGpu, B::Vulkan, "NVIDIA Vulkan"),
            (T::Other, B::Vulkan, "other"),
            (T::VirtualGpu, B::Vulkan, "virtio"),
            (T::DiscreteGpu, B::Metal, "Apple Metal"),
        ];
        listed.sort_by_key(|a| preference(a.0, a.1));
        let names: Vec<&str> = listed.iter().map(|a| a.2).collect();
        assert_eq!(
            names,
            [
                "NVIDIA Vulkan",
                "Apple Metal",
                "NVIDIA DX12",
                "Intel Vulkan",
                "Intel DX12",
                "virtio",
                "other",
                "llvmpipe"
            ]
        );
    }
}
