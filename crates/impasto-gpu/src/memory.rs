//! How much memory an adapter has for buffers: the largest device-local memory heap its Vulkan
//! driver reports (unknown on Metal and DirectX 12, which wgpu does not ask).

/// Bytes of the adapter's largest device-local memory heap, where its backend is Vulkan: the card's
/// memory on a discrete GPU, the memory the driver lets an integrated or software one use (system
/// memory, or a share of it). `None` on other backends.
pub(crate) fn device_memory(adapter: &wgpu::Adapter) -> Option<u64> {
    vulkan_heap(adapter)
}

#[cfg(any(windows, target_os = "linux", target_os = "android", target_os = "freebsd"))]
#[allow(unsafe_code)]
fn vulkan_heap(adapter: &wgpu::Adapter) -> Option<u64> {
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
    // SAFETY: the physical device handle comes from the same live instance (a valid pair, as the
    // query requires); the call writes only the returned struct.
    let props = unsafe { instance.get_physical_device_memory_properties(hal.raw_physical_device()) };
    let count = (props.memory_heap_count as usize).min(props.memory_heaps.len());
    props.memory_heaps[..count]
        .iter()
        .filter(|h| h.flags.as_raw() & DEVICE_LOCAL != 0)
        .map(|h| h.size)
        .max()
        .filter(|&size| size > 0)
}

#[cfg(not(any(windows, target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn vulkan_heap(_adapter: &wgpu::Adapter) -> Option<u64> {
    None
}
