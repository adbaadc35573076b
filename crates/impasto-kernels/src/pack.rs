//! Packing of GEMM operands into the panel layouts of the AVX-512F micro-kernel
//! (`microkernel.rs`): strided scalar loops that work everywhere, and AVX-512F versions for the
//! two common cases — rows of unit stride (masked vector copies) and transposed operands, such
//! as `Fᵀ` in the Gram matrix (16×16 in-register transposes).
//!
//! Layouts: an A panel (`mr` rows × `kc` depths) is stored p-major, `mr` floats per depth; a B
//! panel (`kc` depths × `nv` columns) is stored p-major, `width` (16 or 32) floats per depth,
//! columns `nv ..` zero. Packing only moves values, so every variant gives the same bits.

use crate::sgemm::MatRef;

/// Packs rows `i0 .. i0 + mr` and depths `p0 .. p0 + kc` of A into `dst` (`kc × mr`, p-major).
#[inline(always)]
pub(crate) fn pack_a_panel(a: MatRef<'_>, i0: usize, mr: usize, p0: usize, kc: usize, dst: &mut [f32]) {
    let dst = &mut dst[..kc * mr];
    for i in 0..mr {
        let base = (i0 + i) * a.rs + p0 * a.cs;
        for p in 0..kc {
            dst[p * mr + i] = a.data[base + p * a.cs];
        }
    }
}

/// Packs columns `j0 .. j0 + nv` (`nv ≤ width`) and depths `p0 .. p0 + kc` of B into `dst`
/// (`kc × width`, p-major, columns `nv ..` zero).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn pack_b_panel(
    b: MatRef<'_>,
    j0: usize,
    nv: usize,
    width: usize,
    p0: usize,
    kc: usize,
    dst: &mut [f32],
) {
    let dst = &mut dst[..kc * width];
    for (p, d) in dst.chunks_exact_mut(width).enumerate() {
        for (j, x) in d.iter_mut().enumerate() {
            *x = if j < nv { b.data[(p0 + p) * b.rs + (j0 + j) * b.cs] } else { 0.0 };
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::{
        __m512, _mm512_castpd_ps, _mm512_castps_pd, _mm512_loadu_ps, _mm512_mask_storeu_ps,
        _mm512_maskz_loadu_ps, _mm512_setzero_ps, _mm512_shuffle_f32x4, _mm512_storeu_ps, _mm512_unpackhi_pd,
        _mm512_unpackhi_ps, _mm512_unpacklo_pd, _mm512_unpacklo_ps,
    };

    use super::{MatRef, pack_a_panel, pack_b_panel};

    /// Mask of the first `n` (≤ 16, saturating) lanes.
    pub(crate) fn lanes(n: usize) -> u16 {
        if n >= 16 { u16::MAX } else { (1u16 << n) - 1 }
    }

    /// [`pack_a_panel`], vectorised where A's rows have unit stride.
    #[target_feature(enable = "avx512f")]
    pub(crate) fn pack_a(a: MatRef<'_>, i0: usize, mr: usize, p0: usize, kc: usize, dst: &mut [f32]) {
        if a.cs != 1 || kc < 16 || mr > 16 {
            pack_a_panel(a, i0, mr, p0, kc, dst);
            return;
        }
        let dst = &mut dst[..kc * mr];
        let rows: [&[f32]; 16] =
            std::array::from_fn(|i| if i < mr { &a.data[(i0 + i) * a.rs + p0..][..kc] } else { &[] });
        let mask = lanes(mr);
        let full = kc / 16 * 16;
        for p in (0..full).step_by(16) {
            let mut r = [_mm512_setzero_ps(); 16];
            for (ri, row) in r.iter_mut().zip(&rows[..mr]) {
                let src = &row[p..p + 16];
                // SAFETY: `src` holds 16 floats.
                *ri = unsafe { _mm512_loadu_ps(src.as_ptr()) };
            }
            transpose16(&mut r);
            for (q, &col) in r.iter().enumerate() {
                let d = &mut dst[(p + q) * mr..(p + q + 1) * mr];
                // SAFETY: `d` holds mr floats and the mask enables lanes j < mr only.
                unsafe { _mm512_mask_storeu_ps(d.as_mut_ptr(), mask, col) };
            }
        }
        for p in full..kc {
            for (i, row) in rows[..mr].iter().enumerate() {
                dst[p * mr + i] = row[p];
            }
        }
    }

    /// [`pack_b_panel`], vectorised where B's rows (unit column stride) or columns (unit row
    /// stride: a transposed operand) are contiguous.
    #[target_feature(enable = "avx512f")]
    pub(crate) fn pack_b(
        b: MatRef<'_>,
        j0: usize,
        nv: usize,
        width: usize,
        p0: usize,
        kc: usize,
        dst: &mut [f32],
    ) {
        debug_assert!(nv <= width && (width == 16 || width == 32));
        if b.cs == 1 {
            pack_b_rows(b, j0, nv, width, p0, kc, dst);
        } else if b.rs == 1 && kc >= 16 {
            pack_b_cols(b, j0, nv, width, p0, kc, dst);
        } else {
            pack_b_panel(b, j0, nv, width, p0, kc, dst);
        }
    }

    /// [`pack_b_panel`] for unit column stride, with masked vector loads.
    #[target_feature(enable = "avx512f")]
    fn pack_b_rows(b: MatRef<'_>, j0: usize, nv: usize, width: usize, p0: usize, kc: usize, dst: &mut [f32]) {
        let dst = &mut dst[..kc * width];
        let (m0, m1) = (lanes(nv), lanes(nv.saturating_sub(16)));
        for (p, d) in dst.chunks_exact_mut(width).enumerate() {
            let base = (p0 + p) * b.rs + j0;
            let src = &b.data[base..base + nv];
            // SAFETY: `src` holds nv floats; the masks enable lanes j < nv only (masked-off lanes
            // are not accessed), and the second vector is read only when nv > 16, where
            // `src[16]` exists. `d` holds `width` floats: 16, or 32 for two vectors.
            unsafe {
                _mm512_storeu_ps(d.as_mut_ptr(), _mm512_maskz_loadu_ps(m0, src.as_ptr()));
                if width == 32 {
                    let v1 = if nv > 16 {
                        _mm512_maskz_loadu_ps(m1, src.as_ptr().add(16))
                    } else {
                        _mm512_setzero_ps()
                    };
                    _mm512_storeu_ps(d.as_mut_ptr().add(16), v1);
                }
            }
        }
    }

    /// [`pack_b_panel`] for unit row stride: each column of B is contiguous over the depth, so
    /// 16 columns × 16 depths are loaded as rows and transposed.
    #[target_feature(enable = "avx512f")]
    fn pack_b_cols(b: MatRef<'_>, j0: usize, nv: usize, width: usize, p0: usize, kc: usize, dst: &mut [f32]) {
        let dst = &mut dst[..kc * width];
        let full = kc / 16 * 16;
        for g in 0..width / 16 {
            let cols: [&[f32]; 16] = std::array::from_fn(|t| {
                let j = g * 16 + t;
                if j < nv { &b.data[(j0 + j) * b.cs + p0..][..kc] } else { &[] }
            });
            let valid = nv.saturating_sub(g * 16).min(16);
            for p in (0..full).step_by(16) {
                let mut r = [_mm512_setzero_ps(); 16];
                for (ri, col) in r.iter_mut().zip(&cols[..valid]) {
                    let src = &col[p..p + 16];
                    // SAFETY: `src` holds 16 floats.
                    *ri = unsafe { _mm512_loadu_ps(src.as_ptr()) };
                }
                transpose16(&mut r);
                for (q, &row) in r.iter().enumerate() {
                    let d = &mut dst[(p + q) * width + g * 16..][..16];
                    // SAFETY: `d` holds 16 floats.
                    unsafe { _mm512_storeu_ps(d.as_mut_ptr(), row) };
                }
            }
            for p in full..kc {
                for (t, d) in dst[p * width + g * 16..][..16].iter_mut().enumerate() {
                    *d = if t < valid { cols[t][p] } else { 0.0 };
                }
            }
        }
    }

    /// In-register transpose: on return `r[q]` lane `i` is the input `r[i]` lane `q`.
    #[target_feature(enable = "avx512f")]
    fn transpose16(r: &mut [__m512; 16]) {
        // 2×2 blocks of single floats, then of pairs, then of 128-bit quads (twice).
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        for i in 0..4 {
            let (a, b, c, d) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
            let (a, b, c, d) =
                (_mm512_castps_pd(a), _mm512_castps_pd(b), _mm512_castps_pd(c), _mm512_castps_pd(d));
            r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
            r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
            r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
            r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
        }
        // r[4i + s] now holds, in each 128-bit quad k, lane s of rows 4i .. 4i + 4 for column
        // 4k + s. Interleave the quads of the four row groups.
        for h in 0..2 {
            for s in 0..4 {
                let (x, y) = (r[8 * h + s], r[8 * h + 4 + s]);
                t[8 * h + s] = _mm512_shuffle_f32x4::<0x88>(x, y);
                t[8 * h + 4 + s] = _mm512_shuffle_f32x4::<0xdd>(x, y);
            }
        }
        for s in 0..8 {
            r[s] = _mm512_shuffle_f32x4::<0x88>(t[s], t[8 + s]);
            r[8 + s] = _mm512_shuffle_f32x4::<0xdd>(t[s], t[8 + s]);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn data(n: usize) -> Vec<f32> {
            (0..n).map(|i| i as f32 * 0.5 - 7.0).collect()
        }

        #[test]
        fn vector_packers_match_scalar_ones() {
            if !std::arch::is_x86_feature_detected!("avx512f") {
                return;
            }
            let v = data(64 * 80);
            for kc in [1, 15, 16, 17, 40, 64] {
                for mr in [1, 3, 13, 14, 16] {
                    // A row-major (unit column stride) and strided.
                    for a in [MatRef { data: &v, rs: 70, cs: 1 }, MatRef { data: &v, rs: 1, cs: 70 }] {
                        let (mut want, mut got) = (vec![-1.0; kc * mr], vec![-1.0; kc * mr]);
                        pack_a_panel(a, 2, mr, 3, kc, &mut want);
                        // SAFETY: AVX-512F was detected above.
                        unsafe { pack_a(a, 2, mr, 3, kc, &mut got) };
                        assert_eq!(got, want, "A kc={kc} mr={mr} rs={}", a.rs);
                    }
                }
                for (nv, width) in [(1, 16), (7, 16), (16, 16), (17, 32), (30, 32), (32, 32)] {
                    for b in [MatRef { data: &v, rs: 70, cs: 1 }, MatRef { data: &v, rs: 1, cs: 70 }] {
                        let (mut want, mut got) = (vec![-1.0; kc * width], vec![-1.0; kc * width]);
                        pack_b_panel(b, 3, nv, width, 2, kc, &mut want);
                        // SAFETY: AVX-512F was detected above.
                        unsafe { pack_b(b, 3, nv, width, 2, kc, &mut got) };
                        assert_eq!(got, want, "B kc={kc} nv={nv} width={width} rs={}", b.rs);
                    }
                }
            }
        }
    }
}
