// The tiled GEMM of matmul.wgsl (appended to it) in its other tile shapes: 32×32 tiles of 4×4
// outputs for products with few 64×64 tiles, 128×128 and 64×128 tiles of 8×8 outputs, and one
// column per invocation for products of at most 4 rows. Each output is the same fma chain in
// increasing k as in `tile8`: every shape gives the same bits.

// A 32×32 tile of C with 64 invocations of 4×4 outputs (rows 4·ty.., columns 4·tx..), for products
// with too few 64×64 tiles to fill a GPU (the deepest layers: conv5_1 at 512² has 128): four times
// the workgroups, 2 vec4 reads of workgroup memory per 16 fma. Each output is the same fma chain in
// increasing k as in `tile8`: the same bits. [BK k][8 quads], k rows padded to 9 quads.
const SMALL = BK * 9u;
var<workgroup> a_small: array<vec4<f32>, SMALL>;
var<workgroup> b_small: array<vec4<f32>, SMALL>;

@compute @workgroup_size(64)
fn tile4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    if !live(wid) {
        return;
    }
    let t = tile_of(wid, 32u, 32u);
    let tx = li & 7u;
    let ty = li >> 3u;
    let r0 = t.row0 + 4u * ty;
    let c0 = t.col0 + 4u * tx;
    var c0v = vec4<f32>(0.0);
    var c1v = vec4<f32>(0.0);
    var c2v = vec4<f32>(0.0);
    var c3v = vec4<f32>(0.0);
    if (p.flags & ACC_INIT) != 0u {
        c0v = load4(r0, c0);
        c1v = load4(r0 + 1u, c0);
        c2v = load4(r0 + 2u, c0);
        c3v = load4(r0 + 3u, c0);
    }
    // Without B_KFAST invocation li stages column li % 32 of the tile, rows half·BK/2.. of each
    // block (half = li / 32): with TAPS, 9 rows of one channel, row r its tap r.
    let half = li >> 5u;
    let b_ij = b_column(t.col0 + (li & 31u));
    let col_ok = t.col0 + (li & 31u) < p.n;
    for (var k0 = t.k_begin; k0 < t.k_end; k0 += BK) {
        for (var r = 0u; r < BK / 2u; r++) {
            let e = li + 64u * r;
            let rr = e / BK;
            a_small[(e % BK) * 9u + (rr >> 2u)][rr & 3u] = a_block(t, k0, e % BK, rr);
            if B_KFAST {
                let kc = b_place(e);
                b_small[kc.x * 9u + (kc.y >> 2u)][kc.y & 3u] = b_block(t, k0, kc, b_ij);
            } else {
                let kc = vec2<u32>(half * (BK / 2u) + r, li & 31u);
                var v = 0.0;
                if TAPS {
                    if col_ok && k0 + kc.x < t.k_end {
                        v = load_b_block(k0 + 9u * half, r, b_ij);
                    }
                } else {
                    v = b_block(t, k0, kc, b_ij);
                }
                b_small[kc.x * 9u + (kc.y >> 2u)][kc.y & 3u] = v;
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let a4 = a_small[kk * 9u + ty];
            let b4 = b_small[kk * 9u + tx];
            c0v = fma(vec4<f32>(a4.x), b4, c0v);
            c1v = fma(vec4<f32>(a4.y), b4, c1v);
            c2v = fma(vec4<f32>(a4.z), b4, c2v);
            c3v = fma(vec4<f32>(a4.w), b4, c3v);
        }
        workgroupBarrier();
    }
    store4(r0, c0, wid.z, c0v);
    store4(r0 + 1u, c0, wid.z, c1v);
    store4(r0 + 2u, c0, wid.z, c2v);
    store4(r0 + 3u, c0, wid.z, c3v);
}

// `tile8` on tiles of 128 columns: 128×128 (`tile8w`, 256 invocations) or 64×128 (`tile8m`, 128
// invocations, for products of 64 rows such as the first block's convolutions) of 8×8 outputs each,
// the rows 4·ty.. and rows/2+4·ty.., the columns 4·tx.. and 64+4·tx.. (ty, tx = index / 16, mod 16).
// Each value staged in workgroup memory feeds up to twice the fma of `tile8`'s, and each barrier is
// shared by up to four times the work: for products with many tiles, where a GPU is limited by its
// memory traffic or its barriers more than by the occupancy that 64×64 tiles leave it. Invocation li
// stages column li % 128 of B, its rows half·BK/halves.. of each block (half = li / 128 of `halves`;
// with TAPS, each half's taps of whole channels). Each output is the same fma chain in increasing k
// as `tile8`'s: the same bits. [BK k][32 quads], k rows padded to 33 quads.
const WIDE = BK * 33u;
var<workgroup> a_wide: array<vec4<f32>, WIDE>;
var<workgroup> b_wide: array<vec4<f32>, WIDE>;

@compute @workgroup_size(256)
fn tile8w(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    wide(wid, li, 128u);
}

@compute @workgroup_size(128)
fn tile8m(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    wide(wid, li, 64u);
}

// The body of `tile8w` and `tile8m`: tiles of `rows` (128 or 64) × 128, 2·rows invocations.
fn wide(wid: vec3<u32>, li: u32, rows: u32) {
    if !live(wid) {
        return;
    }
    let t = tile_of(wid, rows, 128u);
    let inv = 2u * rows;
    let tx = li & 15u;
    let ty = li >> 4u;
    let ra = t.row0 + 4u * ty;
    let rb = ra + rows / 2u;
    let ca = t.col0 + 4u * tx;
    let cb = ca + 64u;
    var acc: Acc8;
    if (p.flags & ACC_INIT) != 0u {
        acc = acc8_load(ra, rb, ca, cb);
    }
    let halves = inv / 128u;
    let per = BK / halves;
    let half = li >> 7u;
    let col = li & 127u;
    let b_ij = b_column(t.col0 + col);
    let col_ok = t.col0 + col < p.n;
    for (var k0 = t.k_begin; k0 < t.k_end; k0 += BK) {
        for (var r = 0u; r < BK / 2u; r++) {
            let e = li + inv * r;
            let rr = e / BK;
            a_wide[(e % BK) * 33u + (rr >> 2u)][rr & 3u] = a_block(t, k0, e % BK, rr);
        }
        if B_KFAST {
            for (var r = 0u; r < 128u * BK / inv; r++) {
                let kc = b_place(li + inv * r);
                b_wide[kc.x * 33u + (kc.y >> 2u)][kc.y & 3u] = b_block(t, k0, kc, b_ij);
            }
        } else {
            for (var r = 0u; r < per; r++) {
                let kc = vec2<u32>(half * per + r, col);
                var v = 0.0;
                if TAPS {
                    if col_ok && k0 + kc.x < t.k_end {
                        v = load_b_block(k0 + half * per, r, b_ij);
                    }
                } else {
                    v = b_block(t, k0, kc, b_ij);
                }
                b_wide[kc.x * 33u + (col >> 2u)][col & 3u] = v;
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let q = kk * 33u;
            let a0 = a_wide[q + ty];
            let a1 = a_wide[q + rows / 8u + ty];
            let b0 = b_wide[q + tx];
            let b1 = b_wide[q + 16u + tx];
            acc8_fma(&acc, a0, a1, b0, b1);
        }
        workgroupBarrier();
    }
    acc8_store(acc, ra, rb, ca, cb, wid.z);
}

// C with at most 4 rows (the backward of the first convolution to its 3 input channels), where a
// 64-row tile would leave most of its work unused: one invocation per column of C computes all of its
// rows, each row's output the same fma chain in increasing k as `main`'s, so both give the same bits.
// Workgroups of 256 columns, `xn` of them along x; z is the K slice.
@compute @workgroup_size(256)
fn narrow(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let col = (wid.x + p.xn * wid.y) * 256u + li;
    if col >= p.n {
        return;
    }
    let k_begin = wid.z * p.chunk;
    let k_end = min(p.k, k_begin + p.chunk);
    var acc = vec4<f32>(0.0);
    if (p.flags & ACC_INIT) != 0u {
        for (var i = 0u; i < p.m; i++) {
            acc[i] = c[p.c_off + i * p.ldc + col];
        }
    }
    let b_ij = b_column(col);
    for (var k = k_begin; k < k_end; k++) {
        let bv = load_b(k, col, b_ij);
        var av = vec4<f32>(0.0);
        for (var i = 0u; i < p.m; i++) {
            av[i] = a[a_index(i, k)];
        }
        acc = fma(av, vec4<f32>(bv), acc);
    }
    for (var i = 0u; i < p.m; i++) {
        store(i, col, wid.z, acc[i]);
    }
}
