//! The GPU's failures as the library reports them, injected through the driver's own paths
//! ([`Faults`]): a device lost mid-evaluation (the device is destroyed, its lost callback fires), an
//! allocation that runs out of memory, a kernel that does not compile. Each is a typed error whose
//! one line names the adapter and the operation, never a panic.

use std::sync::Arc;

use impasto_gpu::{
    Choice, Faults, Gpu, GpuError, GpuNet, GpuObjective, GpuOptions, LayerSpec, PreprocessSpec,
};

use crate::common::{Lcg, test_adapter};

fn open(faults: Faults) -> Result<Arc<Gpu>, GpuError> {
    Gpu::with_options(Choice::Index(test_adapter()), &GpuOptions { faults, ..GpuOptions::default() })
}

fn net(gpu: Arc<Gpu>) -> Result<GpuNet, GpuError> {
    let mut rng = Lcg(31);
    let layers = vec![
        LayerSpec::Conv { c_in: 3, c_out: 4, weight: rng.vec(4 * 3 * 9, 0.3), bias: rng.vec(4, 0.1) },
        LayerSpec::Relu,
    ];
    let pre = PreprocessSpec { planes: [0, 1, 2], scale: [1.0; 3], offset: [0.0; 3] };
    GpuNet::new(gpu, layers, pre)
}

fn one_line(e: &GpuError) -> String {
    let s = e.to_string();
    assert!(!s.contains('\n') && !s.is_empty(), "{s}");
    s
}

#[test]
fn a_device_lost_mid_run_is_a_typed_error_and_stays_lost() {
    let gpu = open(Faults { lose_device_at_submit: Some(3), ..Faults::default() }).unwrap();
    let net = Arc::new(net(gpu).unwrap());
    let (w, h) = (9, 7);
    let mut obj =
        GpuObjective::new(net, w, h, vec![(1, vec![0.5; 4 * w * h], 1.0)], vec![], 1.0, None).unwrap();
    let px = vec![0.25; 3 * w * h];
    // Submissions 1 and 2 are good evaluations; the third finds the device lost.
    let good = obj.evaluate(&px).unwrap();
    assert_eq!(obj.evaluate(&px).unwrap(), good);
    let err = obj.evaluate(&px).unwrap_err();
    assert!(matches!(err, GpuError::DeviceLost { .. }), "{err:?}");
    let line = one_line(&err);
    assert!(line.contains("was lost"), "{line}");
    // Later calls report the same, they do not hang or panic.
    assert!(matches!(obj.evaluate(&px).unwrap_err(), GpuError::DeviceLost { .. }));
}

#[test]
fn an_allocation_out_of_memory_names_what_was_allocated() {
    // Allocation 2: the weights of layer 0 (1 is their flipped copy).
    let gpu = open(Faults { out_of_memory_at_allocation: Some(2), ..Faults::default() }).unwrap();
    let err = net(gpu).unwrap_err();
    assert!(matches!(err, GpuError::OutOfMemory { .. }), "{err:?}");
    let line = one_line(&err);
    assert!(
        line.contains("out of GPU memory") && line.contains("allocating weights of layer 0 (432 bytes)"),
        "{line}"
    );
}

#[test]
fn a_kernel_that_does_not_compile_names_the_kernel() {
    for kernel in ["conv3x3", "gram", "relu_forward", "reduce_sum"] {
        let err = open(Faults { broken_kernel: Some(kernel.into()), ..Faults::default() }).unwrap_err();
        assert!(matches!(err, GpuError::Shader { .. }), "{err:?}");
        let line = one_line(&err);
        assert!(line.starts_with(&format!("GPU kernel {kernel} failed to build on ")), "{line}");
    }
}
