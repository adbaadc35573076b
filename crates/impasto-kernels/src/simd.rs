//! Runtime CPU dispatch and its per-call override: [`multiversion!`] compiles a kernel body three
//! times (AVX-512, AVX2+FMA, portable) and picks one per call from [`simd_level`]; the GEMM picks
//! the AVX-512F micro-kernel or the `gemm` crate the same way. Other architectures get the portable
//! build only. No `target-cpu=native` is needed anywhere.
//!
//! The level is the best one the CPU supports, capped by [`with_simd_level`] on the calling
//! thread; kernels carry the caller's cap into the parallel tasks they spawn ([`in_level`]), so
//! tests can run every level side by side in one process.
//!
//! The `multiversion!` bodies are plain loops over slices that LLVM vectorises at each level. Rust
//! never contracts `a * b + c` into an FMA on its own, so those bodies round identically: the
//! Winograd transforms give the same bits at every level (tested). The GEMM does not: the AVX-512F
//! micro-kernel and the `gemm` crate sum in different orders, so results at the AVX-512 level
//! differ in the last bits from those below it.

use std::cell::Cell;

/// An instruction-set level of the kernels' runtime dispatch, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SimdLevel {
    /// AVX-512F (with AVX2 and FMA): the crate's own GEMM micro-kernel and the AVX-512 builds of
    /// the Winograd transforms.
    Avx512,
    /// AVX2 and FMA: the `gemm` crate's GEMM and the AVX2+FMA builds of the transforms.
    Avx2Fma,
    /// Baseline code (SSE2 on x86-64): the portable builds of the transforms. The GEMM is the
    /// `gemm` crate's, which picks its own kernel from the CPU (FMA where the CPU has it).
    Portable,
}

impl SimdLevel {
    /// Every level, best first.
    pub const ALL: [SimdLevel; 3] = [SimdLevel::Avx512, SimdLevel::Avx2Fma, SimdLevel::Portable];

    /// A short lowercase name: `avx512`, `avx2` or `portable`.
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Avx512 => "avx512",
            SimdLevel::Avx2Fma => "avx2",
            SimdLevel::Portable => "portable",
        }
    }

    /// The level named by [`SimdLevel::name`].
    pub fn from_name(name: &str) -> Option<SimdLevel> {
        SimdLevel::ALL.into_iter().find(|l| l.name() == name)
    }
}

thread_local! {
    /// The cap set by [`with_simd_level`] on this thread (`None`: the CPU's best).
    static CAP: Cell<Option<SimdLevel>> = const { Cell::new(None) };
}

/// The best level this CPU supports (feature detection is cached by std).
fn detected() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2_fma = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        if avx2_fma && is_x86_feature_detected!("avx512f") {
            SimdLevel::Avx512
        } else if avx2_fma {
            SimdLevel::Avx2Fma
        } else {
            SimdLevel::Portable
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        SimdLevel::Portable
    }
}

/// The levels this CPU can run, best first (always ending with [`SimdLevel::Portable`]).
pub fn supported_simd_levels() -> Vec<SimdLevel> {
    let best = detected();
    SimdLevel::ALL.into_iter().filter(|&l| l >= best).collect()
}

/// The level kernels called on this thread use now: the CPU's best, capped by
/// [`with_simd_level`]. Never above what the CPU supports.
#[inline]
pub fn simd_level() -> SimdLevel {
    let best = detected();
    CAP.with(Cell::get).map_or(best, |cap| cap.max(best))
}

/// Runs `f` with the kernels it calls on this thread (and the parallel tasks they spawn) capped at
/// `level`; a level above what the CPU supports runs at the CPU's best. For tests and benchmarks
/// that compare the levels; nothing else changes. Note that `ThreadPool::install` runs its closure
/// on a pool thread: call this inside it.
pub fn with_simd_level<R>(level: SimdLevel, f: impl FnOnce() -> R) -> R {
    in_level(Some(level), f)
}

/// The cap of this thread, for [`in_level`] in a task spawned from it.
#[inline]
pub(crate) fn cap() -> Option<SimdLevel> {
    CAP.with(Cell::get)
}

/// Runs `f` under `cap` (from [`cap`] on the spawning thread), restoring this thread's own cap
/// after, also on unwinding. Every parallel task that runs level-dependent code goes through this.
#[inline]
pub(crate) fn in_level<R>(cap: Option<SimdLevel>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<SimdLevel>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CAP.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CAP.with(|c| c.replace(cap)));
    f()
}

/// Defines `fn $name(args)` that runs `$body` compiled for [`simd_level`].
/// Arguments must be plain identifiers; the body must be safe code.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            fn avx512($($arg: $ty),*) { body($($arg),*) }

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2($($arg: $ty),*) { body($($arg),*) }

            #[cfg(target_arch = "x86_64")]
            match $crate::simd::simd_level() {
                // SAFETY: `simd_level()` is never above the detected level, and it reported
                // AVX-512F, AVX2 and FMA on this CPU, which is all `avx512` is compiled for; the
                // body itself is safe code.
                $crate::simd::SimdLevel::Avx512 => unsafe { avx512($($arg),*) },
                // SAFETY: as above, AVX2 and FMA were detected, which is all `avx2` needs.
                $crate::simd::SimdLevel::Avx2Fma => unsafe { avx2($($arg),*) },
                $crate::simd::SimdLevel::Portable => body($($arg),*),
            }
            #[cfg(not(target_arch = "x86_64"))]
            body($($arg),*)
        }
    };
}

pub(crate) use multiversion;
