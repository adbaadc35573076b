//! What names an adapter outside wgpu: its Vulkan device UUID, the one `nvidia-smi -L` and CUDA show
//! (`GPU-…`), so that the GPUs a scheduler lists in `CUDA_VISIBLE_DEVICES` can be found among
//! Vulkan's adapters. Unknown on Metal and DirectX 12, which wgpu does not ask.

/// The adapter's device UUID as `nvidia-smi -L` writes one without its `GPU-` prefix
/// (`8-4-4-4-12` lowercase hex digits), where its backend is Vulkan 1.1 or later; `None` elsewhere or
/// where the driver reports all zeros.
#[cfg(any(windows, target_os = "linux", target_os = "android", target_os = "freebsd"))]
#[allow(unsafe_code)]
pub(crate) fn device_uuid(adapter: &wgpu::Adapter) -> Option<String> {
    use ash::vk;
    if adapter.get_info().backend != wgpu::Backend::Vulkan {
        return None;
    }
    // SAFETY: `as_hal` asks that nothing reached through the guard be destroyed while wgpu uses it;
    // this only reads the physical device's properties through the instance wgpu keeps, while the
    // guard (and so the adapter) is alive, and destroys nothing.
    let hal = unsafe { adapter.as_hal::<wgpu::hal::api::Vulkan>() }?;
    let v1_1 = vk::API_VERSION_1_1;
    if hal.shared_instance().instance_api_version() < v1_1
        || hal.physical_device_capabilities().properties().api_version < v1_1
    {
        return None;
    }
    let instance = hal.shared_instance().raw_instance();
    let mut id = vk::PhysicalDeviceIDProperties::default();
    let mut props2 = vk::PhysicalDeviceProperties2::default().push_next(&mut id);
    // SAFETY: the physical device handle comes from the same live instance (a valid pair), both are
    // Vulkan 1.1, where `vkGetPhysicalDeviceProperties2` and `VkPhysicalDeviceIDProperties` are core;
    // the call writes only the two structs.
    unsafe { instance.get_physical_device_properties2(hal.raw_physical_device(), &mut props2) };
    format_uuid(id.device_uuid)
}

#[cfg(not(any(windows, target_os = "linux", target_os = "android", target_os = "freebsd")))]
pub(crate) fn device_uuid(_adapter: &wgpu::Adapter) -> Option<String> {
    None
}

/// `8-4-4-4-12` lowercase hex digits; `None` for all zeros (a driver that has no UUID).
#[cfg(any(test, windows, target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn format_uuid(bytes: [u8; 16]) -> Option<String> {
    if bytes == [0; 16] {
        return None;
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]))
}

#[cfg(test)]
mod tests {
    use super::format_uuid;

    #[test]
    fn a_uuid_is_written_as_nvidia_smi_writes_it() {
        let bytes =
            [0x9e, 0x2b, 0x0c, 0x3a, 0x51, 0x7d, 0x4e, 0x01, 0xa2, 0xc3, 0x00, 0xff, 0x10, 0x20, 0x30, 0x4f];
        assert_eq!(format_uuid(bytes).as_deref(), Some("9e2b0c3a-517d-4e01-a2c3-00ff1020304f"));
        assert_eq!(format_uuid([0; 16]), None);
    }
}
