//! Hand-written AVX-512F single-precision GEMM (BLIS-style), used by [`crate::sgemm`] where the
//! CPU has AVX-512F; every other CPU (and every other architecture) keeps the `gemm` crate path.
//!
//! `C (m×n) = alpha · A (m×k) · B (k×n) (+ C)` with C row-major and arbitrary strides for A and
//! B. The loops, outer to inner:
//!
//! * `m` in blocks of at most `MC_MAX` rows (only a strided A that tall; bounds the buffer);
//! * `k` in blocks of at most `KC_MAX` (evenly split, so the block sizes depend on `k` only);
//!   the A block is packed into row panels of `MR = 14` rows (`p`-major, `MR` floats per `p`),
//!   the last panel holding the `m % MR` leftover rows exactly (no padding in M), unless A was
//!   packed ahead ([`PackedA`], the Winograd weights);
//! * `n` in blocks whose packed B (`kc × nc`, at most 512 KiB, kept in L2) is cut into column
//!   panels of `NR = 32` floats per `p` (zero padded; a last panel of ≤ 16 columns is 16 wide);
//! * per A panel (kept in L1), per B panel: the micro-kernel, `MR × NR` accumulators in 28 zmm
//!   registers, one FMA per (row, vector) per `p` with A broadcast and B loaded; C is written
//!   through column masks, so no edge tile needs a scratch copy.
//!
//! The reduction over `k` runs in a fixed order (block by block, `p` ascending inside), so the
//! result depends only on the shapes, never on threads or timing. The micro-kernel rounds
//! differently from the `gemm` crate (both are plain f32 FMA chains).

#[cfg(target_arch = "x86_64")]
use std::cell::RefCell;

use crate::pack::pack_a_panel;
use crate::sgemm::MatRef;
use crate::simd::{SimdLevel, simd_level};

/// Rows of the micro-kernel (A panel height).
pub(crate) const MR: usize = 14;
/// Columns of the micro-kernel (two zmm vectors).
#[cfg(target_arch = "x86_64")]
const NR: usize = 32;
/// Largest row block of a strided A (a multiple of `MR`; VGG's 512 channels fit in one).
#[cfg(target_arch = "x86_64")]
const MC_MAX: usize = 40 * MR;
/// Largest depth block; `k` above it is split into equal blocks. 640 keeps `k = 577` (the im2col
/// conv1_2 of VGG, feeding pool1) one sequential FMA chain per element, as the `gemm` crate does:
/// splitting it (289 + 288, or finer) measured more accurate activations yet moved the tied-input
/// fixture gradient (`impasto` crate, `fixtures`) from 5.5e-7 to 2.2e-4 of its max.
const KC_MAX: usize = 640;
/// Budget (floats) of one packed B block `kc × nc` (512 KiB, half of L2).
#[cfg(target_arch = "x86_64")]
const B_BLOCK_FLOATS: usize = 128 * 1024;

/// True if the AVX-512F path is usable now: the CPU has AVX-512F and [`simd_level`] (the
/// calling thread's level, see `simd.rs`) is not capped below it.
#[inline]
pub(crate) fn available() -> bool {
    simd_level() == SimdLevel::Avx512
}

/// The depth block size for depth `k`: equal blocks of at most [`KC_MAX`].
fn kc_for(k: usize) -> usize {
    k.div_ceil(k.div_ceil(KC_MAX).max(1)).max(1)
}

/// `C = alpha·A·B (+ C if accumulate)` on the AVX-512F micro-kernel, on `threads` tasks of the
/// current rayon pool (1: on the calling thread).
///
/// Returns false, touching nothing, if the AVX-512F path is not [`available`]. The caller has
/// checked the bounds (every addressed element of A, B and C is inside its slice, `ldc ≥ n`)
/// and handled `m`, `n` or `k` = 0. C is split into column stripes (few rows or a wide C) or
/// row stripes; each element's arithmetic does not depend on the stripes, so neither does the
/// result.
pub(crate) fn gemm(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    accumulate: bool,
    c: &mut [f32],
    ldc: usize,
    threads: usize,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if available() {
        x86::gemm_par(m, n, k, alpha, a, b, accumulate, c, ldc, threads);
        return true;
    }
    let _ = (m, n, k, alpha, a, b, accumulate, c, ldc, threads);
    false
}

/// A matrix packed once for [`gemm_packed`] (the Winograd weights): for each depth block
/// `p0 .. p0 + kc` (sizes from [`kc_for`]), its `m × kc` floats at `p0·m`, as row panels of
/// [`MR`] rows (the last one `m % MR` rows), each `kc × mr`, p-major.
#[derive(Clone, Debug)]
pub(crate) struct PackedA {
    m: usize,
    k: usize,
    data: Vec<f32>,
}

impl PackedA {
    /// Packs A (`m × k`).
    pub(crate) fn new(m: usize, k: usize, a: MatRef<'_>) -> Self {
        let mut data = vec![0.0f32; m * k];
        let kc_blk = kc_for(k);
        let mut p0 = 0;
        while p0 < k {
            let kc = kc_blk.min(k - p0);
            let block = &mut data[p0 * m..(p0 + kc) * m];
            for (ir, i0) in (0..m).step_by(MR).enumerate() {
                pack_a_panel(a, i0, MR.min(m - i0), p0, kc, &mut block[ir * MR * kc..]);
            }
            p0 += kc;
        }
        Self { m, k, data }
    }

    /// The packed depth block starting at `p0`, `kc` deep.
    fn block(&self, p0: usize, kc: usize) -> &[f32] {
        &self.data[p0 * self.m..(p0 + kc) * self.m]
    }
}

/// `C (m×n) = alpha·A·B (+ C if accumulate)` with A pre-packed, single-threaded: the
/// micro-kernel where [`available`], else the portable GEMM panel by panel. Same contract on B
/// and C as [`gemm`].
pub(crate) fn gemm_packed(
    a: &PackedA,
    n: usize,
    alpha: f32,
    b: MatRef<'_>,
    accumulate: bool,
    c: &mut [f32],
    ldc: usize,
) {
    let (m, k) = (a.m, a.k);
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
    #[cfg(target_arch = "x86_64")]
    if available() {
        x86::gemm(m, n, k, alpha, ASrc::Packed(a), b, accumulate, c, ldc);
        return;
    }
    // Portable: each packed panel is an `mr × kc` matrix with strides (1, mr).
    let kc_blk = kc_for(k);
    let mut p0 = 0;
    while p0 < k {
        let kc = kc_blk.min(k - p0);
        let block = a.block(p0, kc);
        for (ir, i0) in (0..m).step_by(MR).enumerate() {
            let mr = MR.min(m - i0);
            let ap = MatRef { data: &block[ir * MR * kc..], rs: 1, cs: mr };
            let bp = MatRef { data: &b.data[p0 * b.rs..], rs: b.rs, cs: b.cs };
            let acc = accumulate || p0 > 0;
            crate::sgemm::gemm_strided(
                mr,
                n,
                kc,
                alpha,
                ap,
                bp,
                acc,
                &mut c[i0 * ldc..],
                ldc,
                gemm::Parallelism::None,
            );
        }
        p0 += kc;
    }
}

/// Where the micro-kernel driver gets A from.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
enum ASrc<'a> {
    /// A strided matrix, packed block by block into the thread's work buffer.
    Strided(MatRef<'a>),
    /// Packed once ahead.
    Packed(&'a PackedA),
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __mmask16, _mm512_fmadd_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_mul_ps,
        _mm512_set1_ps, _mm512_setzero_ps,
    };

    use rayon::prelude::*;

    use super::{ASrc, B_BLOCK_FLOATS, MC_MAX, MR, MatRef, NR, RefCell, kc_for};
    use crate::pack::x86::{lanes, pack_a, pack_b};

    thread_local! {
        /// Packed A block and packed B block, reused across calls on this thread.
        static WORK: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    }

    /// A micro-kernel: `kc`, packed A panel, packed B panel, C tile, ldc, alpha, load C,
    /// column masks of the two vectors.
    type Kernel = unsafe fn(usize, *const f32, *const f32, usize, *mut f32, usize, f32, bool, u16, u16);

    macro_rules! kernels {
        ($($mr:literal)*) => { [$([kernel::<$mr, 1> as Kernel, kernel::<$mr, 2> as Kernel]),*] };
    }

    /// `KERNELS[mr − 1][nv − 1]`: the kernel for `mr` rows and `nv` vectors of 16 columns.
    static KERNELS: [[Kernel; 2]; MR] = kernels!(1 2 3 4 5 6 7 8 9 10 11 12 13 14);

    /// The micro-kernel: C tile (`R` rows × `16·V` columns, column masks `m0`, `m1`) =
    /// `alpha · Σ_p a[p·R + i] · b[p·ldb + j]` (+ the tile's old value if `load_c`); B columns
    /// whose mask bit is clear are read as zero.
    ///
    /// # Safety
    /// AVX-512F must be available. `a` must hold `kc·R` floats. For every `p < kc` and column
    /// `j < 16·V` whose mask bit (`m0` for `j < 16`, `m1` for the rest) is set, `b + p·ldb + j`
    /// must be a valid f32, and `c + i·ldc + j` a valid, writable f32 for every row `i < R`;
    /// the first column of each vector with a non-zero mask must be in bounds of C's allocation.
    #[target_feature(enable = "avx512f")]
    unsafe fn kernel<const R: usize, const V: usize>(
        kc: usize,
        a: *const f32,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        alpha: f32,
        load_c: bool,
        m0: u16,
        m1: u16,
    ) {
        let masks: [__mmask16; 2] = [m0, m1];
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        let (mut pa, mut pb) = (a, b);
        for _ in 0..kc {
            // `pb` points at row p of the B panel and `pa` at the p-th group of R floats of the A
            // panel (p < kc; caller's contract).
            let mut bv = [_mm512_setzero_ps(); V];
            for (v, bvv) in bv.iter_mut().enumerate() {
                // SAFETY: the lanes enabled by the mask are valid B elements (contract); disabled
                // lanes are not accessed.
                *bvv = unsafe { _mm512_maskz_loadu_ps(masks[v], pb.wrapping_add(16 * v)) };
            }
            for (i, row) in acc.iter_mut().enumerate() {
                // SAFETY: i < R, inside the p-th group of the A panel.
                let ai = _mm512_set1_ps(unsafe { *pa.add(i) });
                for (r, &bvv) in row.iter_mut().zip(&bv) {
                    *r = _mm512_fmadd_ps(ai, bvv, *r);
                }
            }
            // SAFETY: at most one past the end of the A panel after the last step.
            pa = unsafe { pa.add(R) };
            pb = pb.wrapping_add(ldb);
        }
        let av = _mm512_set1_ps(alpha);
        for (i, row) in acc.iter().enumerate() {
            for (v, &r) in row.iter().enumerate() {
                let mask = masks[v];
                // SAFETY: caller's contract: the masked-on columns of row i, vector v are valid
                // C elements and the vector's first column is in bounds; masked-off lanes are
                // neither read nor written.
                unsafe {
                    let p = c.add(i * ldc + 16 * v);
                    let out = if load_c {
                        _mm512_fmadd_ps(r, av, _mm512_maskz_loadu_ps(mask, p))
                    } else {
                        _mm512_mul_ps(r, av)
                    };
                    _mm512_mask_storeu_ps(p, mask, out);
                }
            }
        }
    }

    /// A C pointer shared by tasks that write disjoint column stripes.
    #[derive(Clone, Copy)]
    struct StripePtr(*mut f32);
    // SAFETY: the tasks holding copies write disjoint elements of C (distinct column ranges,
    // and ldc ≥ n keeps rows apart), and the owning `&mut` borrow outlives them all.
    unsafe impl Send for StripePtr {}
    // SAFETY: as for `Send`: only disjoint elements are accessed through copies.
    unsafe impl Sync for StripePtr {}

    impl StripePtr {
        fn at(self, j0: usize) -> *mut f32 {
            self.0.wrapping_add(j0)
        }
    }

    /// See [`super::gemm`]; AVX-512F has been detected.
    pub(super) fn gemm_par(
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: MatRef<'_>,
        b: MatRef<'_>,
        accumulate: bool,
        c: &mut [f32],
        ldc: usize,
        threads: usize,
    ) {
        if threads <= 1 {
            gemm(m, n, k, alpha, ASrc::Strided(a), b, accumulate, c, ldc);
            return;
        }
        let stripes = 2 * threads;
        // Column stripes each pack all of A, row stripes all of B; A's packing (a transpose) costs
        // about twice B's per float.
        if m < MR * stripes || 2 * m <= n {
            let w = n.div_ceil(stripes).next_multiple_of(NR);
            assert!(c.len() > (m - 1) * ldc + n - 1, "microkernel: C too short");
            let cp = StripePtr(c.as_mut_ptr());
            (0..n.div_ceil(w)).into_par_iter().for_each(|t| {
                let j0 = t * w;
                let nn = w.min(n - j0);
                let bs = MatRef { data: &b.data[j0 * b.cs..], rs: b.rs, cs: b.cs };
                // SAFETY: AVX-512F was detected. C holds every (i < m, j < n) element (assert
                // above), so the stripe's columns j0 .. j0 + nn are valid from `cp.at(j0)`; the
                // stripes are disjoint, and C (a unique borrow) aliases neither A nor B.
                unsafe { gemm_raw(m, nn, k, alpha, ASrc::Strided(a), bs, accumulate, cp.at(j0), ldc) };
            });
        } else {
            let h = m.div_ceil(stripes).next_multiple_of(MR);
            c.par_chunks_mut(h * ldc).enumerate().for_each(|(t, cs)| {
                let i0 = t * h;
                if i0 >= m {
                    return;
                }
                let as_ = MatRef { data: &a.data[i0 * a.rs..], rs: a.rs, cs: a.cs };
                gemm(h.min(m - i0), n, k, alpha, ASrc::Strided(as_), b, accumulate, cs, ldc);
            });
        }
    }

    /// Single-threaded driver over a C slice.
    pub(super) fn gemm(
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: ASrc<'_>,
        b: MatRef<'_>,
        accumulate: bool,
        c: &mut [f32],
        ldc: usize,
    ) {
        assert!(c.len() > (m - 1) * ldc + n - 1, "microkernel: C too short");
        // SAFETY: AVX-512F was detected by the caller; C is a unique borrow holding every
        // (i < m, j < n) element (assert above).
        unsafe { gemm_raw(m, n, k, alpha, a, b, accumulate, c.as_mut_ptr(), ldc) }
    }

    /// The single-threaded driver.
    ///
    /// # Safety
    /// AVX-512F must be available; `c + i·ldc + j` must be valid, writable f32 for every
    /// `i < m`, `j < n` (`ldc ≥ n`), not accessed by anything else during the call.
    unsafe fn gemm_raw(
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: ASrc<'_>,
        b: MatRef<'_>,
        accumulate: bool,
        c: *mut f32,
        ldc: usize,
    ) {
        debug_assert!(m > 0 && n > 0 && k > 0 && ldc >= n);
        if let (ASrc::Strided(a), true) = (a, m > MC_MAX) {
            for i0 in (0..m).step_by(MC_MAX) {
                let rows = MatRef { data: &a.data[i0 * a.rs..], rs: a.rs, cs: a.cs };
                // SAFETY: rows i0 .. i0 + mb of C are part of the caller's valid, exclusive C.
                unsafe {
                    let c = c.add(i0 * ldc);
                    gemm_raw(MC_MAX.min(m - i0), n, k, alpha, ASrc::Strided(rows), b, accumulate, c, ldc);
                }
            }
            return;
        }
        let kc_blk = kc_for(k);
        let nc_blk = ((B_BLOCK_FLOATS / kc_blk) / NR * NR).max(NR);
        WORK.with(|w| {
            let mut w = w.borrow_mut();
            let (apack, bpack) = &mut *w;
            let a_need = if matches!(a, ASrc::Strided(_)) { m * kc_blk } else { 0 };
            let b_need = n.min(nc_blk).div_ceil(NR) * NR * kc_blk;
            if apack.len() < a_need {
                apack.resize(a_need, 0.0);
            }
            if bpack.len() < b_need {
                bpack.resize(b_need, 0.0);
            }
            let cp = c;
            let mut p0 = 0;
            while p0 < k {
                let kc = kc_blk.min(k - p0);
                let ablock: &[f32] = match a {
                    ASrc::Strided(a) => {
                        for (ir, i0) in (0..m).step_by(MR).enumerate() {
                            // SAFETY: AVX-512F is available (contract).
                            unsafe { pack_a(a, i0, MR.min(m - i0), p0, kc, &mut apack[ir * MR * kc..]) };
                        }
                        &apack[..m * kc]
                    }
                    ASrc::Packed(pa) => pa.block(p0, kc),
                };
                let load_c = accumulate || p0 > 0;
                let mut j0 = 0;
                while j0 < n {
                    let nc = nc_blk.min(n - j0);
                    // Pack B block: panels of NR (the last one 16 wide if it has ≤ 16 columns).
                    // (Reading B in place instead, with its row stride, measured slower; so did
                    // packing the whole block row by row.)
                    for (jr, jj) in (0..nc).step_by(NR).enumerate() {
                        let nv = NR.min(nc - jj);
                        let width = if nv <= 16 { 16 } else { NR };
                        // SAFETY: AVX-512F is available (contract).
                        unsafe { pack_b(b, j0 + jj, nv, width, p0, kc, &mut bpack[jr * NR * kc..]) };
                    }
                    for (ir, i0) in (0..m).step_by(MR).enumerate() {
                        let mr = MR.min(m - i0);
                        let ap = ablock[ir * MR * kc..].as_ptr();
                        for (jr, jj) in (0..nc).step_by(NR).enumerate() {
                            let nv = NR.min(nc - jj);
                            let vecs = if nv <= 16 { 1 } else { 2 };
                            let bp = bpack[jr * NR * kc..].as_ptr();
                            let (m0, m1) = (lanes(nv), lanes(nv.saturating_sub(16)));
                            let kern = KERNELS[mr - 1][vecs - 1];
                            // SAFETY: AVX-512F is available (contract). The A panel holds kc·mr
                            // floats and the B panel kc rows of 16·vecs floats (both inside the
                            // buffers sized above). Rows i0 .. i0 + mr < m and columns j0 + jj + j for set
                            // mask bits (j < nv, so < n) are elements of C, valid and exclusive to
                            // this call (contract); vector 2 is used only when nv > 16, so its
                            // first column is an element too.
                            unsafe {
                                kern(
                                    kc,
                                    ap,
                                    bp,
                                    16 * vecs,
                                    cp.add(i0 * ldc + j0 + jj),
                                    ldc,
                                    alpha,
                                    load_c,
                                    m0,
                                    m1,
                                );
                            }
                        }
                    }
                    j0 += nc;
                }
                p0 += kc;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `gemm_packed` against a plain f64 product at every level the CPU runs: the micro-kernel
    /// and the portable panel-by-panel fallback.
    #[test]
    fn packed_a_matches_reference_at_every_level() {
        let mut s = 1u32;
        let mut rnd = move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        };
        for &(m, n, k) in &[(1, 1, 1), (15, 33, 7), (29, 17, 600), (64, 80, 64), (3, 40, 1100)] {
            let (lda, ldb, ldc) = (k + 3, n + 1, n + 2);
            let a: Vec<f32> = (0..m * lda).map(|_| rnd()).collect();
            let b: Vec<f32> = (0..k * ldb).map(|_| rnd()).collect();
            let c0: Vec<f32> = (0..m * ldc).map(|_| rnd()).collect();
            let pa = PackedA::new(m, k, MatRef { data: &a, rs: lda, cs: 1 });
            let bm = MatRef { data: &b, rs: ldb, cs: 1 };
            for level in crate::simd::supported_simd_levels() {
                for accumulate in [false, true] {
                    let mut c = c0.clone();
                    crate::simd::with_simd_level(level, || {
                        gemm_packed(&pa, n, 0.5, bm, accumulate, &mut c, ldc)
                    });
                    for i in 0..m {
                        for j in 0..ldc {
                            let got = c[i * ldc + j];
                            if j >= n {
                                assert_eq!(got.to_bits(), c0[i * ldc + j].to_bits());
                                continue;
                            }
                            let dot: f64 =
                                (0..k).map(|p| f64::from(a[i * lda + p]) * f64::from(b[p * ldb + j])).sum();
                            let want = 0.5 * dot + if accumulate { f64::from(c0[i * ldc + j]) } else { 0.0 };
                            let tol = 1e-5 * (k as f64).sqrt().max(1.0);
                            assert!(
                                (f64::from(got) - want).abs() <= tol,
                                "m={m} n={n} k={k} level={level:?} acc={accumulate} ({i},{j}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
