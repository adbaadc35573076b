//! L-BFGS's history on the GPU in whole runs: a GPU run allocates its correction pairs on the device
//! (out of memory there is the last failure before the run) and ends within 1 % of the CPU run with
//! a wrapped ring; a checkpoint written on the GPU carries the pairs read back and resumes on the GPU
//! with the bits of an uninterrupted run, and on the CPU; a CPU checkpoint resumes on the GPU.

use std::ops::ControlFlow;
use std::path::Path;

use impasto::{Arch, Device, NoObserver, Observer, Optimizer, Pooling, Step, StyleConfig, Vgg};

use crate::common::random_vgg;
use crate::gpu::{device, img, rel, small_config};

/// 64 px, five pairs: ten iterations wrap the ring.
fn config(device: Device) -> StyleConfig {
    StyleConfig { iterations: 10, optimizer: Optimizer::Lbfgs { history: 5 }, ..small_config(device) }
}

fn run(net: &Vgg, config: &StyleConfig, observer: &mut dyn Observer) -> impasto::Result<impasto::Stylized> {
    let (content, style) = (img("astronaut.png"), img("starry_night.jpg"));
    impasto::stylize(net, config, &content, std::slice::from_ref(&style), observer)
}

#[test]
fn a_gpu_run_keeps_its_pairs_on_the_device_and_ends_within_one_percent_of_the_cpu() {
    let gpu = device();
    let net = random_vgg(Arch::Vgg16, Pooling::Max, 3, 21);
    let cpu = run(&net, &config(Device::Cpu), &mut NoObserver).unwrap();
    let a = run(&net, &config(gpu), &mut NoObserver).unwrap();
    eprintln!("cpu {:?}\ngpu {:?} ({} iterations)", cpu.losses, a.losses, a.iterations);
    assert_eq!(a.iterations, cpu.iterations);
    let (ga, c) = (a.losses.total(), cpu.losses.total());
    assert!(rel(ga, c) < 0.01, "final loss {ga} vs {c}");
    let b = run(&net, &config(gpu), &mut NoObserver).unwrap();
    assert_eq!(a.image.as_raw(), b.image.as_raw(), "two GPU runs differ");
    // The ring is the last thing allocated before the run: an allocation failure up to it stops the
    // run before it starts, the first one past it none (one iteration suffices to see that).
    let fails = |n: u64| {
        let faults = impasto::GpuFaults { out_of_memory_at_allocation: Some(n), ..Default::default() };
        let c = StyleConfig { gpu_faults: faults, iterations: 1, ..config(gpu) };
        run(&net, &c, &mut NoObserver).err()
    };
    let (mut lo, mut hi) = (1u64, 64u64);
    while fails(hi).is_some() {
        assert!(hi < 1 << 16, "oom@{hi} still fails");
        (lo, hi) = (hi, hi * 2);
    }
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if fails(mid).is_some() { lo = mid } else { hi = mid }
    }
    let line = fails(lo).expect("the last allocation fails").to_string();
    assert!(line.contains("out of GPU memory") && line.contains("allocating L-BFGS"), "oom@{lo}: {line}");
}

struct StopAt(usize);

impl Observer for StopAt {
    fn on_step(&mut self, s: &Step<'_>) -> ControlFlow<()> {
        if s.iteration == self.0 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    }
}

/// The number of correction pairs a checkpoint holds.
fn pairs_in(path: &Path) -> usize {
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap_or_default();
    meta["lbfgs.pairs"].parse().unwrap()
}

#[test]
fn checkpoints_move_between_gpu_and_cpu_runs() {
    let gpu = device();
    let net = random_vgg(Arch::Vgg16, Pooling::Max, 3, 22);
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("run.ckpt");
    let full_gpu = run(&net, &config(gpu), &mut NoObserver).unwrap();
    let full_cpu = run(&net, &config(Device::Cpu), &mut NoObserver).unwrap();
    let bits = |s: &impasto::Stylized| s.image.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    for (from, to) in [(gpu, gpu), (gpu, Device::Cpu), (Device::Cpu, gpu)] {
        let first = StyleConfig { checkpoint: Some(ckpt.clone()), ..config(from) };
        run(&net, &first, &mut StopAt(7)).unwrap();
        let pairs = pairs_in(&ckpt);
        assert_eq!(pairs, 5, "{from} → {to}: a full ring is saved");
        let rest =
            run(&net, &StyleConfig { resume: Some(ckpt.clone()), ..config(to) }, &mut NoObserver).unwrap();
        assert_eq!(rest.iterations, 10, "{from} → {to}");
        let full = if to == Device::Cpu { &full_cpu } else { &full_gpu };
        let (r, f) = (rest.losses.total(), full.losses.total());
        eprintln!("{from} → {to}: resumed {r}, uninterrupted {f}");
        assert!(rel(r, f) < 0.01, "{from} → {to}: final loss {r} vs {f}");
        if from == to {
            assert!(
                bits(&rest) == bits(full),
                "resumed on the GPU, the run differs from the uninterrupted one"
            );
        }
    }
}
