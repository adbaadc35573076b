//! What the adapter reports and reaches: its memory (a Vulkan driver's largest device-local heap,
//! and its budget for this process),
//! and its ceilings: the fma, GEMM-inner-step and copy kernels
//! run, give the results their arithmetic gives (checked inside `Gpu::ceilings`), and yield finite
//! rates.

use impasto_gpu::adapters;

use crate::common::{gpu, test_adapter};

#[test]
fn a_vulkan_adapter_reports_its_memory() {
    let listed = &adapters()[test_adapter()];
    if listed.backend == "Vulkan" {
        assert!(listed.device_memory.is_some_and(|m| m >= 1 << 20), "{listed:?}");
    }
    assert_eq!(gpu().adapter().device_memory, listed.device_memory);
}

/// The driver's budget for this process (`VK_EXT_memory_budget`), where it has one, is part of the
/// heap, asked again on the opened device; `eprintln!` shows the figures.
#[test]
fn a_memory_budget_is_within_the_heap() {
    let listed = &adapters()[test_adapter()];
    let now = gpu().memory_budget();
    eprintln!(
        "{}: heap {:?}, budget {:?} listed, {now:?} now",
        listed.name, listed.device_memory, listed.memory_budget
    );
    for budget in [listed.memory_budget, now].into_iter().flatten() {
        let heap = listed.device_memory.expect("a budget comes with its heap");
        assert!(budget > 0 && budget <= heap, "budget {budget} of a {heap} byte heap");
    }
    assert_eq!(listed.memory_budget.is_some(), now.is_some());
}

#[test]
fn ceilings_run_check_their_outputs_and_give_finite_rates() {
    let gpu = gpu();
    let t = std::time::Instant::now();
    let c = gpu.ceilings(3).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("ceilings on {}: {c:?} in {:.2} s", gpu.adapter().name, t.elapsed().as_secs_f64());
    for (what, v) in [("fma", c.fma_gflops), ("inner step", c.inner_gflops), ("copy", c.copy_gbps)] {
        assert!(v.is_finite() && v > 0.0, "{what}: {v}");
    }
    assert_eq!(c.clock, gpu.kernel_clock());
}
