//! The GPUs a scheduler left a process (`CUDA_VISIBLE_DEVICES`, as Slurm and CUDA containers set it)
//! and the order in which `--device auto` and `gpu` try the adapters under it. Vulkan does not read
//! the variable, so without this every task of a multi-GPU node would take the first card.

use crate::device::GpuAdapter;

/// The PCI vendor ID of NVIDIA, the GPUs `CUDA_VISIBLE_DEVICES` names.
pub const NVIDIA_VENDOR: u32 = 0x10de;

/// The NVIDIA GPUs a process may use, in the order CUDA numbers them, as `CUDA_VISIBLE_DEVICES`
/// lists them: comma-separated indices (`2,3`: the GPUs `nvidia-smi` numbers 2 and 3, in PCI bus
/// order) or UUIDs (`GPU-9e2b0c3a-…`, or a prefix of one that names a single GPU). As in CUDA, the
/// list ends at its first entry that names no GPU here (`-1`, a MIG instance, an index past the last
/// GPU), and an empty list hides every NVIDIA GPU. The caller reads the variable; the library reads
/// no environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisibleGpus {
    value: String,
}

impl VisibleGpus {
    /// The list from the value of `CUDA_VISIBLE_DEVICES`.
    pub fn cuda(value: &str) -> VisibleGpus {
        VisibleGpus { value: value.to_string() }
    }

    /// The variable's value, as a notice quotes it.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Positions in `all` of the NVIDIA Vulkan adapters the list names, in its order; `None` where
    /// `all` has no NVIDIA hardware adapter on Vulkan (the list is about no GPU there is here).
    fn resolve(&self, all: &[GpuAdapter]) -> Option<Vec<usize>> {
        // The physical cards, once each (a card DirectX 12 lists too is left to Vulkan's entry), in
        // PCI bus order, the order of `nvidia-smi`'s numbers.
        let mut cards: Vec<usize> = (0..all.len()).filter(|&i| is_nvidia_card(&all[i])).collect();
        if cards.is_empty() {
            return None;
        }
        cards.sort_by_key(|&i| (all[i].pci_bus_id.is_none(), all[i].pci_bus_id.clone()));
        let mut visible = Vec::new();
        for entry in self.value.split(',').map(str::trim) {
            let found = if let Ok(n) = entry.parse::<usize>() {
                cards.get(n).copied()
            } else if let Some(uuid) = entry.strip_prefix("GPU-").filter(|u| !u.is_empty()) {
                let uuid = uuid.to_ascii_lowercase();
                let mut matching = cards
                    .iter()
                    .copied()
                    .filter(|&i| all[i].uuid.as_ref().is_some_and(|u| u.starts_with(&uuid)));
                matching.next().filter(|_| matching.next().is_none())
            } else {
                None
            };
            match found {
                Some(i) if !visible.contains(&i) => visible.push(i),
                Some(_) => {}
                None => break,
            }
        }
        Some(visible)
    }
}

fn is_nvidia(a: &GpuAdapter) -> bool {
    a.vendor == NVIDIA_VENDOR && !a.software
}

fn is_nvidia_card(a: &GpuAdapter) -> bool {
    is_nvidia(a) && a.backend == "Vulkan"
}

/// The hardware adapters `auto` and `gpu` try, first choice first: `all`'s order (discrete cards
/// first), except that with a list that applies the NVIDIA GPUs are the ones it names, in its order,
/// where the first NVIDIA adapter was. The flag: whether the list applied.
pub(crate) fn candidates(all: &[GpuAdapter], visible: Option<&VisibleGpus>) -> (Vec<usize>, bool) {
    let named = visible.and_then(|v| v.resolve(all));
    let hardware = (0..all.len()).filter(|&i| !all[i].software);
    let Some(named) = named else { return (hardware.collect(), false) };
    let mut order = Vec::new();
    let mut placed = false;
    for i in hardware {
        if !is_nvidia(&all[i]) {
            order.push(i);
        } else if !placed {
            order.extend(&named);
            placed = true;
        }
    }
    (order, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(index: usize, name: &str, vendor: u32, pci: Option<&str>, uuid: Option<&str>) -> GpuAdapter {
        GpuAdapter {
            index,
            name: name.into(),
            backend: "Vulkan".into(),
            device_type: if vendor == 0x10005 { "Cpu" } else { "DiscreteGpu" }.into(),
            software: vendor == 0x10005,
            max_buffer_size: 1 << 30,
            max_storage_buffer_binding_size: 1 << 27,
            max_compute_workgroup_storage_size: 49152,
            device_memory: None,
            memory_budget: None,
            pci_bus_id: pci.map(String::from),
            driver: None,
            vendor,
            uuid: uuid.map(String::from),
        }
    }

    /// Four H200s as the Vulkan loader may list them (not in bus order), and lavapipe.
    fn node() -> Vec<GpuAdapter> {
        let nv = |i, pci, uuid| adapter(i, "NVIDIA H200", NVIDIA_VENDOR, Some(pci), Some(uuid));
        vec![
            nv(0, "0000:9b:00.0", "cccc0000-0000-0000-0000-000000000002"),
            nv(1, "0000:1b:00.0", "aaaa0000-0000-0000-0000-000000000000"),
            nv(2, "0000:bb:00.0", "cccc1111-0000-0000-0000-000000000003"),
            nv(3, "0000:5b:00.0", "bbbb0000-0000-0000-0000-000000000001"),
            adapter(4, "llvmpipe", 0x10005, None, Some("6d657361-0000-0000-0000-000000000000")),
        ]
    }

    fn order(all: &[GpuAdapter], value: Option<&str>) -> (Vec<usize>, bool) {
        candidates(all, value.map(VisibleGpus::cuda).as_ref())
    }

    #[test]
    fn indices_count_nvidia_gpus_in_pci_bus_order() {
        let all = node();
        // Without the variable: the loader's order, hardware only.
        assert_eq!(order(&all, None), (vec![0, 1, 2, 3], false));
        // Bus order 1b, 5b, 9b, bb is adapters 1, 3, 0, 2.
        assert_eq!(order(&all, Some("0")), (vec![1], true));
        assert_eq!(order(&all, Some("2,3")), (vec![0, 2], true));
        assert_eq!(order(&all, Some(" 3 , 1 ")), (vec![2, 3], true));
        assert_eq!(order(&all, Some("1,1,0")), (vec![3, 1], true));
    }

    #[test]
    fn uuids_and_unique_prefixes_name_a_gpu() {
        let all = node();
        assert_eq!(order(&all, Some("GPU-cccc1111-0000-0000-0000-000000000003")), (vec![2], true));
        assert_eq!(order(&all, Some("GPU-BBBB,0")), (vec![3, 1], true));
        // A prefix that fits two cards names neither, and the list ends there; so does an empty one.
        assert_eq!(order(&all, Some("1,GPU-cccc,0")), (vec![3], true));
        assert_eq!(order(&all, Some("1,GPU-,0")), (vec![3], true));
        assert_eq!(order(&all, Some("GPU-aaaa0000-0000-0000-0000-00000000000")), (vec![1], true));
        assert_eq!(order(&all, Some("GPU-cccc0,GPU-ffff,0")), (vec![0], true));
    }

    #[test]
    fn the_list_ends_at_its_first_entry_that_names_no_gpu() {
        let all = node();
        for hidden in ["", "-1", "NoDevFiles", "4", "MIG-9e2b0c3a-517d-4e01-a2c3-00ff1020304f", "none,0"] {
            assert_eq!(order(&all, Some(hidden)), (vec![], true), "{hidden:?}");
        }
        assert_eq!(order(&all, Some("2,7,0")), (vec![0], true));
    }

    /// What `auto`, `gpu` and `gpu:N` come to under a list: the adapter, the list that chose it, and
    /// the notice or error when the list leaves none.
    #[test]
    fn auto_and_gpu_take_the_first_visible_gpu_and_gpu_n_ignores_the_list() {
        use crate::device::{Device, ResolvedDevice, resolve_among};
        let all = node();
        let visible = VisibleGpus::cuda("2,3");
        let chosen = |v: Option<&VisibleGpus>| ResolvedDevice::Gpu {
            index: 0,
            name: "NVIDIA H200".into(),
            visible: v.map(|v| v.value().to_string()),
        };
        for choice in [Device::Auto, Device::Gpu(None)] {
            assert_eq!(resolve_among(&all, choice, Some(&visible)).unwrap(), chosen(Some(&visible)));
        }
        assert_eq!(resolve_among(&all, Device::Gpu(Some(0)), Some(&visible)).unwrap(), chosen(None));
        let first = ResolvedDevice::Gpu { index: 1, name: "NVIDIA H200".into(), visible: Some("0".into()) };
        assert_eq!(resolve_among(&all, Device::Auto, Some(&VisibleGpus::cuda("0"))).unwrap(), first);
        let hidden = VisibleGpus::cuda("-1");
        let ResolvedDevice::Cpu { notice: Some(notice) } =
            resolve_among(&all, Device::Auto, Some(&hidden)).unwrap()
        else {
            panic!("auto with every GPU hidden is the CPU")
        };
        assert!(
            notice.starts_with(
                "CUDA_VISIBLE_DEVICES=`-1` leaves no GPU (found gpu:0 NVIDIA H200 (DiscreteGpu), "
            )
        );
        assert!(notice.ends_with("; running on the CPU"), "{notice}");
        let err = resolve_among(&all, Device::Gpu(None), Some(&hidden)).unwrap_err().to_string();
        assert!(err.contains("CUDA_VISIBLE_DEVICES=`-1` leaves no GPU (found gpu:0 NVIDIA H200"), "{err}");
        assert!(err.ends_with("use --device gpu:N to take one all the same, or --device cpu"), "{err}");
        assert_eq!(
            resolve_among(&all, Device::Gpu(Some(4)), Some(&hidden)).unwrap(),
            ResolvedDevice::Gpu { index: 4, name: "llvmpipe".into(), visible: None }
        );
        // Without NVIDIA's GPUs the list names nothing here: auto is the AMD card, chosen by no list.
        let amd = vec![adapter(0, "AMD Radeon", 0x1002, None, None)];
        assert_eq!(
            resolve_among(&amd, Device::Auto, Some(&hidden)).unwrap(),
            ResolvedDevice::Gpu { index: 0, name: "AMD Radeon".into(), visible: None }
        );
    }

    /// Other vendors' adapters keep their places; the named NVIDIA GPUs take the first NVIDIA one's;
    /// DirectX 12's entries of NVIDIA cards are not counted apart from their Vulkan ones.
    #[test]
    fn other_adapters_keep_their_place_and_a_list_about_no_gpu_here_is_ignored() {
        let mut all = node();
        all.insert(1, adapter(1, "AMD Radeon", 0x1002, Some("0000:03:00.0"), None));
        let mut dx12 = adapter(6, "NVIDIA H200", NVIDIA_VENDOR, None, None);
        dx12.backend = "Dx12".into();
        all.push(dx12);
        for (i, a) in all.iter_mut().enumerate() {
            a.index = i;
        }
        assert_eq!(order(&all, Some("1")), (vec![4, 1], true));
        assert_eq!(order(&all, Some("")), (vec![1], true));
        assert_eq!(order(&all, None), (vec![0, 1, 2, 3, 4, 6], false));
        // No NVIDIA card (an AMD machine where the variable was left set; lavapipe): ignored.
        let amd =
            vec![adapter(0, "AMD Radeon", 0x1002, None, None), adapter(1, "llvmpipe", 0x10005, None, None)];
        assert_eq!(order(&amd, Some("")), (vec![0], false));
        assert_eq!(order(&amd, Some("3")), (vec![0], false));
    }
}
