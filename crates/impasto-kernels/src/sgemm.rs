//! The project's single GEMM entry point: row-major f32 `sgemm`, on the AVX-512F micro-kernel
//! (`microkernel.rs`) where the CPU has it, over the `gemm` crate otherwise.

use gemm::Parallelism;

use crate::microkernel;

/// Multiply-add count (m·n·k) under which a GEMM runs single-threaded.
const GEMM_PAR_MIN_WORK: usize = 1 << 20;

/// C (m×n) = (if `accumulate` { C } else { 0 }) + `alpha` · A (m×k) · B (k×n).
///
/// All matrices are row-major with row strides `lda`, `ldb`, `ldc` (each at
/// least the matrix's column count; element (i, j) of A is `a[i * lda + j]`).
/// When `accumulate` is false, C is never read, so it may hold garbage (NaN).
///
/// This is the only GEMM of the project. It runs on the current rayon pool
/// (`rayon::current_num_threads()` threads) when the problem is large enough,
/// single-threaded otherwise. The reduction over `k` is never split across
/// threads, so results are bitwise reproducible for a fixed pool size.
///
/// # Panics
/// If a stride is smaller than its matrix's column count or a slice is too
/// short for its matrix.
pub fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    accumulate: bool,
    c: &mut [f32],
    ldc: usize,
) {
    assert!(lda >= k, "sgemm: lda ({lda}) < k ({k})");
    assert!(ldb >= n, "sgemm: ldb ({ldb}) < n ({n})");
    let a = MatRef { data: a, rs: lda, cs: 1 };
    let b = MatRef { data: b, rs: ldb, cs: 1 };
    gemm_strided(m, n, k, alpha, a, b, accumulate, c, ldc, auto_parallelism(m, n, k));
}

/// A read-only strided matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MatRef<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

/// The parallelism `sgemm` picks for an m×n×k problem on the current pool.
pub(crate) fn auto_parallelism(m: usize, n: usize, k: usize) -> Parallelism {
    let threads = rayon::current_num_threads();
    let work = m.saturating_mul(n).saturating_mul(k);
    if threads <= 1 || work < GEMM_PAR_MIN_WORK { Parallelism::None } else { Parallelism::Rayon(threads) }
}

/// Length a slice needs to hold a `rows`×`cols` view with strides `rs`, `cs`.
fn required_len(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 { 0 } else { (rows - 1) * rs + (cols - 1) * cs + 1 }
}

/// C (m×n, row-major, row stride `ldc`) = (accumulate ? C : 0) + alpha·A·B with
/// arbitrary (non-negative) strides for A (m×k) and B (k×n).
///
/// Bounds are checked here; this is the one place that calls into `gemm` (or, where available,
/// the AVX-512F micro-kernel, on `parallelism`'s thread count).
pub(crate) fn gemm_strided(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    accumulate: bool,
    c: &mut [f32],
    ldc: usize,
    parallelism: Parallelism,
) {
    assert!(ldc >= n, "sgemm: ldc ({ldc}) < n ({n})");
    let need_a = required_len(m, k, a.rs, a.cs);
    let need_b = required_len(k, n, b.rs, b.cs);
    let need_c = required_len(m, n, ldc, 1);
    assert!(a.data.len() >= need_a, "sgemm: A ({m}×{k}) needs {need_a} floats, got {}", a.data.len());
    assert!(b.data.len() >= need_b, "sgemm: B ({k}×{n}) needs {need_b} floats, got {}", b.data.len());
    assert!(c.len() >= need_c, "sgemm: C ({m}×{n}) needs {need_c} floats, got {}", c.len());
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for row in c.chunks_mut(ldc).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    let threads = match parallelism {
        Parallelism::Rayon(0) => rayon::current_num_threads(),
        Parallelism::Rayon(t) => t,
        _ => 1,
    };
    if microkernel::gemm(m, n, k, alpha, a, b, accumulate, c, ldc, threads) {
        return;
    }
    let as_isize = |v: usize| isize::try_from(v).expect("sgemm: stride overflows isize");
    // SAFETY: the asserts above guarantee every element (i, j) addressed by
    // `gemm` (i < m, j < n, depth < k) lies inside `a.data`, `b.data` and `c`,
    // all strides are non-negative and fit in isize (slice lengths do). Since
    // ldc >= n, distinct (i, j) of C map to distinct elements, and C is a
    // unique `&mut` borrow, so it cannot alias A or B. With `read_dst = false`
    // gemm does not read C; otherwise C is initialised f32 data.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            as_isize(ldc),
            accumulate,
            a.data.as_ptr(),
            as_isize(a.cs),
            as_isize(a.rs),
            b.data.as_ptr(),
            as_isize(b.cs),
            as_isize(b.rs),
            1.0,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
}
