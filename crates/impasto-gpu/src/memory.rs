//! How much memory an adapter has for buffers: the largest device-local memory heap its Vulkan
//! driver reports, and how much of that heap this process may use now (`VK_EXT_memory_budget`: the
//! heap less what other programs hold). Both unknown on Metal and DirectX 12, which wgpu does not ask.

/// Bytes of the adapter's largest device-local memory heap, where its backend is Vulkan: the card's
/// memory on a discrete GPU, the memory the driver lets an integrated or software one use (system
/// memory, or a share of it). `None` on other backends.
pub(crate) fn device_memory(adapter: &wgpu::Adapter) -> Option<u64> {
    vulkan_heap(adapter).map(|h| h.size)
}

/// What the driver says this process may allocate from that heap in all, now (its own buffers
/// included; less when other programs hold some of it), where the driver has
/// `VK_EXT_memory_budget`. `None` on other backends and drivers.
pub(crate) fn memory_budget(adapter: &wgpu::Adapter) -> Option<u64> {
    vulkan_heap(adapter).and_then(|h| h.budget)
}

/// A device-local heap: its size and the driver's budget for this process.
#[derive(Debug, Clone, Copy)]
struct Heap {
    size: u64,
    budget: Option<u64>,
}

#[cfg(any(windows, target_os = "linux", target_os = "android", target_os = "freebsd"))]
#[allow(unsafe_code)]
fn vulkan_heap(adapter: &wgpu::Adapter) -> Option<Heap> {
    use ash::{ext, vk};
    /// `VK_MEMORY_HEAP_DEVICE_LOCAL_BIT`.
    const DEVICE_LOCAL: u32 = 0x1;
    if adapter.get_info().backend != wgpu::Backend::Vulkan {
        return None;
    }
    // SAFETY: `as_hal` asks that nothing reached through the guard be destroyed while wgpu uses it;
    // this only reads the physical device's memory properties through the instance wgpu keeps,
    // while the guard (and so the adapter) is alive, and destroys nothing.
    let hal = unsafe { adapter.as_hal::<wgpu::hal::api::Vulkan>() }?;
    let instance = hal.shared_instance().raw_instance();
    let physical = hal.raw_physical_device();
    let v1_1 = vk::API_VERSION_1_1;
    // `vkGetPhysicalDeviceMemoryProperties2` is Vulkan 1.1 (instance and device); the budget
    // structure may be chained only where the device has the extension.
    let with_budget = hal.shared_instance().instance_api_version() >= v1_1
        && hal.physical_device_capabilities().properties().api_version >= v1_1
        && hal.physical_device_capabilities().supports_extension(ext::memory_budget::NAME);
    let mut budget = vk::PhysicalDeviceMemoryBudgetPropertiesEXT::default();
    let props = if with_budget {
        let mut props2 = vk::PhysicalDeviceMemoryProperties2::default().push_next(&mut budget);
        // SAFETY: the physical device handle comes from the same live instance (a valid pair), both
        // are Vulkan 1.1 and the device has `VK_EXT_memory_budget`, as a chained
        // `VkPhysicalDeviceMemoryBudgetPropertiesEXT` requires; the call writes only the two structs.
        unsafe { instance.get_physical_device_memory_properties2(physical, &mut props2) };
        props2.memory_properties
    } else {
        // SAFETY: as above, a valid pair; the call writes only the returned struct.
        unsafe { instance.get_physical_device_memory_properties(physical) }
    };
    let count = (props.memory_heap_count as usize).min(props.memory_heaps.len());
    (0..count)
        .filter(|&i| props.memory_heaps[i].flags.as_raw() & DEVICE_LOCAL != 0)
        .max_by_key(|&i| props.memory_heaps[i].size)
        .map(|i| Heap {
            size: props.memory_heaps[i].size,
            budget: Some(budget.heap_budget[i]).filter(|&b| with_budget && b > 0),
        })
        .filter(|h| h.size > 0)
}

#[cfg(not(any(windows, target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn vulkan_heap(_adapter: &wgpu::Adapter) -> Option<Heap> {
    None
}
