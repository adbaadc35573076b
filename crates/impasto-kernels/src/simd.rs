//! Runtime CPU dispatch: [`multiversion!`] compiles a kernel body three times (AVX-512, AVX2+FMA,
//! portable) and picks one per call from `is_x86_feature_detected!`; other architectures get the
//! portable build only. No `target-cpu=native` is needed anywhere.
//!
//! The bodies are plain loops over slices that LLVM vectorises at each feature level. Rust never
//! contracts `a * b + c` into an FMA on its own, so every variant rounds identically: results are
//! bitwise the same whichever variant runs.

/// Which instruction-set level the x86-64 dispatch selects on this machine.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    /// AVX-512F (with AVX2 and FMA).
    Avx512,
    /// AVX2 and FMA.
    Avx2,
    /// Baseline x86-64 (SSE2).
    Portable,
}

/// The best level this CPU supports (feature detection is cached by std).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn level() -> Level {
    if is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
    {
        Level::Avx512
    } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        Level::Avx2
    } else {
        Level::Portable
    }
}

/// Defines `fn $name(args)` that runs `$body` compiled for the best available instruction set.
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
            match $crate::simd::level() {
                // SAFETY: `level()` reported AVX-512F, AVX2 and FMA on this CPU, which is all
                // `avx512` is compiled for; the body itself is safe code.
                $crate::simd::Level::Avx512 => unsafe { avx512($($arg),*) },
                // SAFETY: `level()` reported AVX2 and FMA on this CPU, which is all `avx2` needs.
                $crate::simd::Level::Avx2 => unsafe { avx2($($arg),*) },
                $crate::simd::Level::Portable => body($($arg),*),
            }
            #[cfg(not(target_arch = "x86_64"))]
            body($($arg),*)
        }
    };
}

pub(crate) use multiversion;
