//! Parallelism policy: when a kernel fans out over the current rayon pool.
//!
//! Every decision here depends only on problem sizes and on
//! `rayon::current_num_threads()`, never on timing, so results are bitwise
//! reproducible for a fixed pool size.

/// Element count under which elementwise / per-channel kernels stay serial.
pub(crate) const PAR_MIN_ELEMS: usize = 1 << 16;

/// True if a pass touching `elems` values should run on the rayon pool.
#[inline]
pub(crate) fn worth_parallel(elems: usize) -> bool {
    elems >= PAR_MIN_ELEMS && rayon::current_num_threads() > 1
}
