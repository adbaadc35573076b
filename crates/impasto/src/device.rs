//! The compute device of a run: the choice (`cpu`, `auto`, `gpu`, `gpu:N`), the GPU adapters, and the
//! network and objectives moved onto a GPU (the `gpu` feature, wgpu). Evaluation errors on the GPU
//! are kept here and turned into [`Error::Gpu`] with the last good image once the run loop stops.

use std::fmt;
use std::sync::{Arc, Mutex};

use crate::error::{Error, GpuFailure, GpuFault, Result};
use crate::model::Vgg;
use crate::visible::VisibleGpus;

/// Where the network and the losses run. On a GPU, L-BFGS keeps its correction pairs there and runs
/// its two-loop recursion there; its line search and Adam stay on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// The CPU engine.
    #[default]
    Cpu,
    /// The first hardware GPU adapter, else the CPU.
    Auto,
    /// A GPU: `None` the first hardware adapter, `Some(n)` adapter `n` of [`gpu_adapters`] (software
    /// adapters such as llvmpipe included).
    Gpu(Option<usize>),
}

impl Device {
    /// Parses `cpu`, `auto`, `gpu` or `gpu:N`.
    pub fn parse(s: &str) -> Option<Device> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Some(Device::Cpu),
            "auto" => Some(Device::Auto),
            "gpu" => Some(Device::Gpu(None)),
            other => other.strip_prefix("gpu:").and_then(|n| n.parse().ok()).map(|n| Device::Gpu(Some(n))),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Auto => f.write_str("auto"),
            Device::Gpu(None) => f.write_str("gpu"),
            Device::Gpu(Some(n)) => write!(f, "gpu:{n}"),
        }
    }
}

/// Failures to inject into a GPU run, to test its error paths (the CLI's hidden `--gpu-fault`): they
/// take the driver's own paths (see `impasto_gpu::Faults`). Ignored on the CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuFaults {
    /// Submission `n` (counting from 1) finds the device lost. A run submits once per style image
    /// (per Gram tile on a tiled scale) for each scale's style targets, once for the content targets
    /// of each scale or tile, once per evaluation, once per L-BFGS direction with a history (its
    /// pairs are on the GPU) and once per pair read back for a checkpoint.
    pub lose_device_at_submit: Option<u64>,
    /// Buffer allocation `n` (counting from 1) runs out of memory.
    pub out_of_memory_at_allocation: Option<u64>,
    /// The kernel of this name (`conv3x3`, `gram`, `relu_forward`, …) fails to compile.
    pub broken_kernel: Option<String>,
    /// Open the device with at most this storage binding size (bytes), as an adapter with smaller
    /// limits would have: small images then meet the limits that large ones meet on a real GPU.
    pub max_storage_binding: Option<u64>,
    /// Take the adapter for a discrete card with this much memory (bytes): the default GPU memory
    /// budget follows from it.
    pub device_memory: Option<u64>,
    /// With [`GpuFaults::device_memory`]: its driver leaves this process this much of it (bytes), as
    /// when other programs hold the rest.
    pub memory_budget: Option<u64>,
    /// Allocations run out of memory beyond this many bytes alive on the device (see
    /// `impasto_gpu::Faults::capacity`): a card with that much memory whose driver reports none.
    pub capacity: Option<u64>,
}

impl GpuFaults {
    /// Parses `lost@N`, `oom@N`, `kernel=NAME`, `binding=BYTES`, `memory=BYTES`,
    /// `memory=BYTES/BUDGET` (a card with `BYTES` of which its driver leaves this process `BUDGET`)
    /// or `capacity=BYTES`.
    pub fn parse(s: &str) -> Option<GpuFaults> {
        let n = |v: &str| v.parse::<u64>().ok().filter(|&n| n > 0);
        let mut f = GpuFaults::default();
        if let Some(v) = s.strip_prefix("lost@") {
            f.lose_device_at_submit = Some(n(v)?);
        } else if let Some(v) = s.strip_prefix("oom@") {
            f.out_of_memory_at_allocation = Some(n(v)?);
        } else if let Some(v) = s.strip_prefix("kernel=").filter(|v| !v.is_empty()) {
            f.broken_kernel = Some(v.to_string());
        } else if let Some(v) = s.strip_prefix("binding=") {
            f.max_storage_binding = Some(n(v)?);
        } else if let Some(v) = s.strip_prefix("memory=") {
            let (memory, budget) = match v.split_once('/') {
                Some((m, b)) => (m, Some(n(b)?)),
                None => (v, None),
            };
            f.device_memory = Some(n(memory)?);
            f.memory_budget = budget;
        } else if let Some(v) = s.strip_prefix("capacity=") {
            f.capacity = Some(n(v)?);
        } else {
            return None;
        }
        Some(f)
    }
}

/// One GPU adapter: index (for `gpu:N`), name, backend, type and memory limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuAdapter {
    /// What `gpu:N` selects.
    pub index: usize,
    /// The adapter's name.
    pub name: String,
    /// `Vulkan`, `Metal` or `Dx12`.
    pub backend: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `VirtualGpu`, `Cpu` (software) or `Other`.
    pub device_type: String,
    /// A software adapter (llvmpipe, WARP): never chosen by `auto`.
    pub software: bool,
    /// Largest buffer, bytes.
    pub max_buffer_size: u64,
    /// Largest storage binding (one activation tensor), bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Workgroup shared memory, bytes.
    pub max_compute_workgroup_storage_size: u32,
    /// Memory for buffers, bytes: the largest device-local heap its Vulkan driver reports (`None`
    /// on other backends): a discrete card's own memory, of which the default GPU memory budget is
    /// a share ([`StyleConfig::max_gpu_memory`](crate::StyleConfig::max_gpu_memory)); on an
    /// integrated or software adapter, what the driver lets it use of the system's.
    pub device_memory: Option<u64>,
    /// What its driver said this process may use of that memory when listed (Vulkan drivers with
    /// `VK_EXT_memory_budget`; `None` elsewhere): less than `device_memory` while other programs
    /// hold some. A run asks again, and its default budget is a share of the smaller.
    pub memory_budget: Option<u64>,
    /// Its PCI address as `lspci` shows it (`0000:1b:00.0`; `nvidia-smi` writes `00000000:1B:00.0`),
    /// where the driver says: what tells two cards of one model apart.
    pub pci_bus_id: Option<String>,
    /// The driver's name and version, where the backend says.
    pub driver: Option<String>,
    /// The PCI vendor ID (`0x10de` NVIDIA, `0x1002` AMD, `0x8086` Intel), `0` where unknown.
    pub vendor: u32,
    /// Its device UUID as `nvidia-smi -L` writes it without the `GPU-` prefix, where its Vulkan
    /// driver reports one: how `CUDA_VISIBLE_DEVICES=GPU-…` names a card ([`VisibleGpus`]).
    pub uuid: Option<String>,
}

/// The GPU adapters of this machine; empty without a driver or when built without the `gpu` feature.
pub fn gpu_adapters() -> Vec<GpuAdapter> {
    #[cfg(feature = "gpu")]
    {
        impasto_gpu::adapters()
            .into_iter()
            .map(|a| GpuAdapter {
                index: a.index,
                name: a.name,
                backend: a.backend,
                device_type: a.device_type,
                software: a.software,
                max_buffer_size: a.max_buffer_size,
                max_storage_buffer_binding_size: a.max_storage_buffer_binding_size,
                max_compute_workgroup_storage_size: a.max_compute_workgroup_storage_size,
                device_memory: a.device_memory,
                memory_budget: a.memory_budget,
                pci_bus_id: a.pci_bus_id,
                driver: a.driver,
                vendor: a.vendor,
                uuid: a.uuid,
            })
            .collect()
    }
    #[cfg(not(feature = "gpu"))]
    Vec::new()
}

/// What a [`Device`] choice comes to on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvedDevice {
    /// The CPU; `notice` says why when a GPU was asked for with `auto` (one line for the user).
    Cpu {
        /// Why not a GPU.
        notice: Option<String>,
    },
    /// GPU adapter `index`.
    Gpu {
        /// What `gpu:N` selects.
        index: usize,
        /// Its name.
        name: String,
        /// Where `auto` or `gpu` took it as the first GPU of a [`VisibleGpus`] list: that list's
        /// value (`CUDA_VISIBLE_DEVICES=2,3`), for the notice naming the device.
        visible: Option<String>,
    },
}

/// Resolves `choice` against the adapters present: `auto` falls back to the CPU with a notice;
/// `gpu` and `gpu:N` without a matching adapter are [`Error::Gpu`]. The same as
/// [`resolve_device_among`] without a list of visible GPUs.
pub fn resolve_device(choice: Device) -> Result<ResolvedDevice> {
    resolve_device_among(choice, None)
}

/// Resolves `choice` as [`resolve_device`] does, with `auto` and `gpu` taking, among NVIDIA's GPUs,
/// only those `visible` names, first the first it names (`CUDA_VISIBLE_DEVICES`, which the caller
/// reads: Vulkan does not). A list that names no GPU present hides them all: `auto` then falls back
/// to the CPU (or another vendor's GPU) with a notice, `gpu` is an error. `gpu:N` ignores the list.
/// On a machine without an NVIDIA GPU the list does not apply.
pub fn resolve_device_among(choice: Device, visible: Option<&VisibleGpus>) -> Result<ResolvedDevice> {
    if choice == Device::Cpu {
        return Ok(ResolvedDevice::Cpu { notice: None });
    }
    resolve_among(&gpu_adapters(), choice, visible)
}

/// [`resolve_device_among`] over the adapters `all`.
pub(crate) fn resolve_among(
    all: &[GpuAdapter],
    choice: Device,
    visible: Option<&VisibleGpus>,
) -> Result<ResolvedDevice> {
    let (order, listed) = crate::visible::candidates(all, visible);
    // What was found, and why none of it is taken (`by_list`: a visible list left none).
    let list = |by_list: bool| {
        if all.is_empty() {
            return if cfg!(feature = "gpu") {
                "no GPU adapter found (no Vulkan, Metal or DirectX 12 driver)".to_string()
            } else {
                NO_GPU_SUPPORT.to_string()
            };
        }
        let names: Vec<String> =
            all.iter().map(|a| format!("gpu:{} {} ({})", a.index, a.name, a.device_type)).collect();
        match visible.filter(|_| by_list && listed) {
            Some(v) => {
                format!("CUDA_VISIBLE_DEVICES=`{}` leaves no GPU (found {})", v.value(), names.join(", "))
            }
            None => format!("no hardware GPU adapter (found {})", names.join(", ")),
        }
    };
    let first = order.first().map(|&i| {
        let a = &all[i];
        let named = listed && a.vendor == crate::visible::NVIDIA_VENDOR;
        ResolvedDevice::Gpu {
            index: a.index,
            name: a.name.clone(),
            visible: visible.filter(|_| named).map(|v| v.value().to_string()),
        }
    });
    match choice {
        Device::Cpu => Ok(ResolvedDevice::Cpu { notice: None }),
        Device::Auto => Ok(first.unwrap_or_else(|| ResolvedDevice::Cpu {
            notice: Some(format!("{}; running on the CPU", list(true))),
        })),
        Device::Gpu(None) => first.ok_or_else(|| {
            let hint = if listed { "to take one all the same" } else { "for a software adapter" };
            let reason = format!("{} — use --device gpu:N {hint}, or --device cpu", list(true));
            GpuFault::new(GpuFailure::Unavailable, reason).into()
        }),
        Device::Gpu(Some(n)) => all
            .get(n)
            .map(|a| ResolvedDevice::Gpu { index: a.index, name: a.name.clone(), visible: None })
            .ok_or_else(|| {
                GpuFault::new(
                    GpuFailure::Unavailable,
                    format!("there is no GPU adapter gpu:{n}; {}", list(false)),
                )
                .into()
            }),
    }
}

/// The GPU copy of a network kept with it ([`Vgg`]'s `gpu`): the adapter index and the network there.
#[derive(Debug, Default)]
pub(crate) struct GpuCache {
    #[cfg(feature = "gpu")]
    slot: Mutex<Option<(usize, Arc<impasto_gpu::GpuNet>)>>,
}

impl GpuCache {
    /// The adapter of the kept copy, if its device is still there.
    pub(crate) fn adapter(&self) -> Option<usize> {
        #[cfg(feature = "gpu")]
        if let Some((index, net)) = self.slot.lock().ok().and_then(|s| s.clone()) {
            return net.gpu().is_lost().is_none().then_some(index);
        }
        None
    }

    /// The kept copy on adapter `index`, unless its device was lost.
    #[cfg(feature = "gpu")]
    fn get(&self, index: usize) -> Option<Arc<impasto_gpu::GpuNet>> {
        let slot = self.slot.lock().ok()?;
        slot.as_ref().filter(|(i, net)| *i == index && net.gpu().is_lost().is_none()).map(|(_, n)| n.clone())
    }

    #[cfg(feature = "gpu")]
    fn put(&self, index: usize, net: Arc<impasto_gpu::GpuNet>) {
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some((index, net));
        }
    }
}

/// Why nothing runs on a GPU in a build without the `gpu` feature.
const NO_GPU_SUPPORT: &str = "this build has no GPU support (the `gpu` feature is off)";

/// [`NO_GPU_SUPPORT`] as the error of a call that needs a GPU.
#[cfg(not(feature = "gpu"))]
pub(crate) fn no_gpu_support() -> Error {
    GpuFault::new(GpuFailure::Unavailable, NO_GPU_SUPPORT).into()
}

/// The memory a GPU memory budget can be a share of: a discrete card's own (the device-local heap
/// its driver reports). An integrated or software adapter shares the system's memory, and the heap
/// its driver names is not the bound a card's memory is (RADV on an AMD APU reports the small VRAM
/// carve-out, lavapipe 2 GiB of the machine's memory): there the default is no budget.
#[cfg(feature = "gpu")]
fn card_memory(adapter: &impasto_gpu::AdapterSummary) -> Option<u64> {
    adapter.device_memory.filter(|_| adapter.device_type == "DiscreteGpu")
}

/// A network on a GPU for one run, and the first evaluation error of its objectives.
#[derive(Debug, Clone)]
pub(crate) struct GpuContext {
    #[cfg(feature = "gpu")]
    pub(crate) net: Arc<impasto_gpu::GpuNet>,
    pub(crate) error: Arc<Mutex<Option<GpuFault>>>,
    /// The memory of the discrete card the adapter is taken for, and its driver's budget
    /// ([`GpuFaults::device_memory`], [`GpuFaults::memory_budget`]).
    #[cfg(feature = "gpu")]
    pub(crate) card_memory: Option<(u64, Option<u64>)>,
}

impl GpuContext {
    /// Moves `net` onto the device `choice` resolves to, with `faults` injected; `None` for the CPU.
    pub(crate) fn open(choice: Device, faults: &GpuFaults, net: &Vgg) -> Result<Option<GpuContext>> {
        let index = match resolve_device(choice)? {
            ResolvedDevice::Cpu { .. } => return Ok(None),
            ResolvedDevice::Gpu { index, .. } => index,
        };
        Self::open_index(index, faults, net)
    }

    #[cfg(feature = "gpu")]
    fn open_index(index: usize, faults_in: &GpuFaults, net: &Vgg) -> Result<Option<GpuContext>> {
        use crate::model::{LayerKind, Pooling};
        use impasto_gpu::{Choice, Faults, Gpu, GpuNet, GpuOptions, LayerSpec, PreprocessSpec};
        let reuse = *faults_in == GpuFaults::default();
        if let Some(gnet) = net.gpu.get(index).filter(|_| reuse) {
            return Ok(Some(GpuContext { net: gnet, error: Arc::new(Mutex::new(None)), card_memory: None }));
        }
        let faults = Faults {
            lose_device_at_submit: faults_in.lose_device_at_submit,
            out_of_memory_at_allocation: faults_in.out_of_memory_at_allocation,
            broken_kernel: faults_in.broken_kernel.clone(),
            capacity: faults_in.capacity,
        };
        let options = GpuOptions {
            faults,
            max_storage_binding: faults_in.max_storage_binding,
            ..GpuOptions::default()
        };
        let gpu = Gpu::with_options(Choice::Index(index), &options)?;
        let specs = net
            .layers()
            .iter()
            .zip(net.conv_weights())
            .map(|(l, wb)| match (l.kind, wb) {
                (LayerKind::Conv { c_in, c_out, .. }, Some((weight, bias))) => {
                    LayerSpec::Conv { c_in, c_out, weight, bias }
                }
                (LayerKind::Pool, _) => match net.pooling() {
                    Pooling::Max => LayerSpec::MaxPool,
                    Pooling::Avg => LayerSpec::AvgPool,
                    Pooling::L2 => LayerSpec::L2Pool,
                },
                _ => LayerSpec::Relu,
            })
            .collect();
        let pre = net.preprocess();
        let ch = [0, 1, 2].map(|c| pre.channel(c));
        let spec =
            PreprocessSpec { planes: ch.map(|c| c.0), scale: ch.map(|c| c.1), offset: ch.map(|c| c.2) };
        let gnet = Arc::new(GpuNet::new(gpu, specs, spec)?);
        if reuse {
            net.gpu.put(index, gnet.clone());
        }
        let card_memory = faults_in.device_memory.map(|m| (m, faults_in.memory_budget));
        Ok(Some(GpuContext { net: gnet, error: Arc::new(Mutex::new(None)), card_memory }))
    }

    #[cfg(not(feature = "gpu"))]
    fn open_index(_index: usize, _faults: &GpuFaults, _net: &Vgg) -> Result<Option<GpuContext>> {
        Err(no_gpu_support())
    }

    /// The limits of the opened device that decide how a run is tiled on it.
    pub(crate) fn limits(&self) -> crate::tiles::GpuLimits {
        #[cfg(feature = "gpu")]
        {
            let gpu = self.net.gpu();
            let (tensor, tensor_limit) = gpu.max_tensor_bytes();
            let (memory, available) = match self.card_memory {
                Some((memory, budget)) => (Some(memory), budget),
                None => {
                    let memory = card_memory(gpu.adapter());
                    (memory, memory.and_then(|_| gpu.memory_budget()))
                }
            };
            crate::tiles::GpuLimits {
                adapter: gpu.adapter().name.clone(),
                tensor,
                tensor_limit,
                buffer: gpu.max_buffer_size(),
                memory,
                available,
                fitted: None,
            }
        }
        #[cfg(not(feature = "gpu"))]
        unreachable!("a GPU context exists only with the `gpu` feature")
    }

    /// Bytes of every buffer the device has allocated since it was opened (see
    /// `impasto_gpu::Gpu::allocated_bytes`).
    #[cfg(feature = "gpu")]
    pub(crate) fn allocated_bytes(&self) -> u64 {
        self.net.gpu().allocated_bytes()
    }

    /// `e` as the GPU error it hides: a run stopped by a failed GPU evaluation reports the GPU's
    /// reason with the last good image.
    pub(crate) fn explain(&self, e: Error) -> Error {
        let Some(fault) = self.error.lock().ok().and_then(|mut r| r.take()) else { return e };
        match e {
            Error::NonFinite { last_good, .. } => fault.into_error(Some(last_good)),
            Error::Gpu { last_good, .. } => fault.into_error(last_good),
            e => e,
        }
    }
}

#[cfg(all(test, feature = "gpu"))]
mod tests {
    use super::card_memory;

    #[test]
    fn only_a_discrete_card_s_memory_sets_a_default_budget() {
        let adapter = |device_type: &str, device_memory| impasto_gpu::AdapterSummary {
            index: 0,
            name: "a".into(),
            backend: "Vulkan".into(),
            device_type: device_type.into(),
            software: device_type == "Cpu",
            max_buffer_size: 1 << 30,
            max_storage_buffer_binding_size: 1 << 27,
            max_compute_workgroup_storage_size: 32768,
            device_memory,
            memory_budget: None,
            pci_bus_id: None,
            driver: None,
            vendor: 0x10de,
            uuid: None,
        };
        assert_eq!(card_memory(&adapter("DiscreteGpu", Some(8 << 30))), Some(8 << 30));
        assert_eq!(card_memory(&adapter("DiscreteGpu", None)), None);
        for shared in ["IntegratedGpu", "Cpu", "VirtualGpu", "Other"] {
            assert_eq!(card_memory(&adapter(shared, Some(2 << 30))), None, "{shared}");
        }
    }
}
