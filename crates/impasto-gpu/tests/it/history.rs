//! The L-BFGS history on the device ([`GpuHistory`]): its two-loop direction against the host's
//! recursion (the one `impasto`'s optimiser runs: f32 vectors, f64 dot products) on odd sizes,
//! history lengths from empty to a wrapped ring, and vectors split over several storage bindings;
//! the same bits run after run; the pairs read back as pushed; a lost device as a typed error.

use std::sync::Arc;

use impasto_gpu::{Choice, Faults, Gpu, GpuError, GpuHistory, GpuOptions};

use crate::common::{Lcg, gpu, rel_err, test_adapter};

/// Binding cap of the split device: 1 KiB = 256 floats per segment.
const CAP: u64 = 1024;

fn capped() -> Arc<Gpu> {
    let options = GpuOptions { max_storage_binding: Some(CAP), ..GpuOptions::default() };
    Gpu::with_options(Choice::Index(test_adapter()), &options).unwrap_or_else(|e| panic!("{e}"))
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum()
}

/// The host's two-loop recursion over `pairs` (oldest first), as `impasto`'s `Lbfgs` runs it.
fn host_direction(pairs: &[(Vec<f32>, Vec<f32>)], g: &[f32]) -> Vec<f32> {
    let mut q: Vec<f32> = g.iter().map(|v| -v).collect();
    let rho: Vec<f64> = pairs.iter().map(|(s, y)| 1.0 / dot(y, s)).collect();
    let mut alpha = vec![0.0f64; pairs.len()];
    for i in (0..pairs.len()).rev() {
        alpha[i] = rho[i] * dot(&pairs[i].0, &q);
        let a = -(alpha[i] as f32);
        q.iter_mut().zip(&pairs[i].1).for_each(|(qi, &yi)| *qi += a * yi);
    }
    if let Some((s, y)) = pairs.last() {
        let gamma = (dot(s, y) / dot(y, y)) as f32;
        q.iter_mut().for_each(|v| *v *= gamma);
    }
    for i in 0..pairs.len() {
        let beta = rho[i] * dot(&pairs[i].1, &q);
        let c = (alpha[i] - beta) as f32;
        q.iter_mut().zip(&pairs[i].0).for_each(|(qi, &si)| *qi += c * si);
    }
    q
}

/// `count` curvature pairs of a convex quadratic with a diagonal Hessian in 0.5..2 (so yᵀs > 0),
/// steps of a few 1e-3 as in a run.
fn pairs(n: usize, count: usize, seed: u64) -> Vec<(Vec<f32>, Vec<f32>)> {
    let mut rng = Lcg(seed);
    let hess: Vec<f32> = (0..n).map(|_| 1.25 + 0.75 * rng.next()).collect();
    (0..count)
        .map(|_| {
            let s = rng.vec(n, 3e-3);
            let y = s.iter().zip(&hess).map(|(&si, &h)| h * si + 1e-5 * rng.next()).collect();
            (s, y)
        })
        .collect()
}

/// A ring of `capacity` holding `all` pushed in order: the last `capacity` of them.
fn filled(gpu: &Arc<Gpu>, n: usize, capacity: usize, all: &[(Vec<f32>, Vec<f32>)]) -> GpuHistory {
    let mut h = GpuHistory::new(gpu.clone(), n, capacity).unwrap();
    for (s, y) in all {
        h.push(s, y, dot(y, s)).unwrap();
    }
    h
}

#[test]
fn the_device_direction_matches_the_host_recursion() {
    let (whole, split) = (gpu(), capped());
    let mut worst = 0.0f64;
    // A ring of one pair reads and writes the same slot's neighbours: the spare region.
    for (device, sizes, capacity) in [
        (&whole, &[1usize, 3, 5, 63, 65, 4099][..], 4),
        (&split, &[5, 255, 257, 1000][..], 4),
        (&whole, &[5, 4099][..], 1),
        (&split, &[257][..], 1),
    ] {
        for &n in sizes {
            for pushed in [0, 1, 3, capacity + 3] {
                let all = pairs(n, pushed, 7 + n as u64);
                let h = filled(device, n, capacity, &all);
                assert_eq!(h.len(), pushed.min(capacity));
                let g = Lcg(99 + n as u64).vec(n, 1.0);
                let got = h.direction(&g).unwrap();
                let want = host_direction(&all[pushed - h.len()..], &g);
                let err = rel_err(&got, &want);
                worst = worst.max(err);
                assert!(err <= 1e-5, "n {n}, {pushed} pushed into {capacity}: relative error {err:e}");
                if pushed == 0 {
                    assert_eq!(got, want, "without pairs the direction is −g");
                }
            }
        }
    }
    eprintln!("GPU two-loop against the host's: worst relative error {worst:e}");
}

#[test]
fn the_device_direction_has_the_same_bits_run_after_run() {
    let gpu = gpu();
    let n = 3 * 48 * 48 + 7;
    let all = pairs(n, 9, 3);
    let g = Lcg(4).vec(n, 1.0);
    let a = filled(&gpu, n, 5, &all);
    let first = a.direction(&g).unwrap();
    assert_eq!(a.direction(&g).unwrap(), first, "the same ring twice");
    let b = filled(&gpu, n, 5, &all);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&b.direction(&g).unwrap()), bits(&first), "a second ring with the same pairs");
}

#[test]
fn the_pairs_read_back_as_pushed_and_the_ring_drops_the_oldest() {
    let split = capped();
    let n = 600;
    let all = pairs(n, 6, 5);
    let mut h = filled(&split, n, 4, &all);
    assert_eq!((h.len(), h.capacity(), h.values()), (4, 4, n));
    for i in 0..4 {
        let (s, y, rho) = h.pair(i).unwrap();
        let (ws, wy) = &all[2 + i];
        assert_eq!((&s, &y), (ws, wy), "pair {i}");
        assert_eq!(rho.to_bits(), (1.0 / dot(wy, ws)).to_bits(), "ρ of pair {i}");
    }
    h.keep_newest(2);
    assert_eq!(h.len(), 2);
    assert_eq!(h.pair(0).unwrap().0, all[4].0);
    let g = Lcg(6).vec(n, 1.0);
    assert!(rel_err(&h.direction(&g).unwrap(), &host_direction(&all[4..], &g)) <= 1e-5);
    assert!(matches!(h.pair(2), Err(GpuError::Shape { .. })));
    assert!(matches!(h.direction(&g[1..]), Err(GpuError::Shape { .. })));
    h.clear();
    assert!(h.is_empty());
    assert_eq!(h.direction(&g).unwrap(), g.iter().map(|v| -v).collect::<Vec<_>>());
}

#[test]
fn a_device_lost_or_out_of_memory_is_a_typed_error() {
    let open = |faults| {
        Gpu::with_options(Choice::Index(test_adapter()), &GpuOptions { faults, ..GpuOptions::default() })
            .unwrap()
    };
    let n = 100;
    let all = pairs(n, 2, 8);
    let lost = open(Faults { lose_device_at_submit: Some(1), ..Faults::default() });
    let h = filled(&lost, n, 3, &all);
    let err = h.direction(&vec![1.0; n]).unwrap_err();
    assert!(matches!(err, GpuError::DeviceLost { .. }), "{err:?}");
    assert!(matches!(h.pair(0).unwrap_err(), GpuError::DeviceLost { .. }));
    let oom = open(Faults { out_of_memory_at_allocation: Some(4), ..Faults::default() });
    let err = GpuHistory::new(oom, n, 3).unwrap_err();
    assert!(matches!(err, GpuError::OutOfMemory { .. }), "{err:?}");
    assert!(err.to_string().contains("L-BFGS"), "{err}");
}

#[test]
fn a_ring_restored_from_its_pairs_gives_the_same_bits_whatever_slots_they_take() {
    // A resumed run restores its checkpoint's pairs oldest first from slot 0, where the run it
    // resumes had them wrapped round its ring: the direction must not depend on the slots.
    // On the split device (1 KiB bindings): 3 segments a vector, a page each; and pages of 3
    // vectors, which the ring's wrap splits.
    for (device, n) in [(gpu(), 3 * 24 * 24 + 5), (capped(), 700), (capped(), 80)] {
        let all = pairs(n, 9, 3);
        let g = Lcg(4).vec(n, 1.0);
        let mut wrapped = GpuHistory::new(device.clone(), n, 5).unwrap();
        for (s, y) in &all {
            wrapped.push(s, y, dot(y, s)).unwrap();
            wrapped.direction(&g).unwrap();
        }
        let mut restored = GpuHistory::new(device.clone(), n, 5).unwrap();
        for i in 0..wrapped.len() {
            let (s, y, rho) = wrapped.pair(i).unwrap();
            restored.restore(&s, &y, rho).unwrap();
        }
        let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(restored.direction(&g).unwrap()), bits(wrapped.direction(&g).unwrap()));
    }
}
