// Tiled, register-blocked matrix product C (+)= alpha·A·B with a fused epilogue, the one GEMM of the
// GPU backend. A is M×K row-major. B is K×N, read through `load_b`, which the host substitutes:
// a plain row-major matrix, the transpose of a row-major N×K matrix (Gram), the implicit im2col
// matrix of a 3×3, pad-1 convolution, or (cropped Gram) the transpose of the pixels of a rectangle of
// N planes, K the rectangle's pixels in row-major order, A indexed through the same rectangle. A
// workgroup computes a 64×64 tile of C over K in blocks staged in workgroup memory: `tile8` (the
// default) with 64 invocations of 8×8 outputs, blocks of BK (16; 18 for the convolution, whose
// block is then 2 input channels × 9 taps: TAPS), and `main` with 256 of 4×4, blocks of 16 (the
// other tile shapes are in matmul_shapes.wgsl, appended to this file when it is compiled). Each
// output is one invocation's sum in increasing k, so results do not depend on scheduling (nor on the
// form: the zeros that pad the last block leave a sum unchanged). Workgroups along z split K (`chunk`
// values each, a multiple of the block) into separate slices of C (flag SPLIT) that a later pass sums
// in order. A may be a sub-block of a larger row-major matrix (row stride `lda`, first element
// `a_off`) and C one of a larger one (`ldc`, `c_off`; slice z of a SPLIT at `c_off + z·c_slice`), so
// that a product over tensors split into channel groups is a sequence of these: with ACC_INIT the
// accumulators start from C (the raw sums a previous group of K left there), so each output is still
// one sum in increasing k.

struct P {
    m: u32, n: u32, k: u32, n_tiles: u32,
    m_tiles: u32, xn: u32, chunk: u32, flags: u32,
    h: u32, w: u32, lda: u32, a_off: u32,
    alpha: f32, ldc: u32, c_off: u32, c_slice: u32,
    bias_off: u32, crop_x: u32, crop_y: u32, pad0: u32,
}

const RELU: u32 = 1u;
const BIAS: u32 = 2u;
const ACCUMULATE: u32 = 4u;
const COLMASK: u32 = 8u;
const SPLIT: u32 = 16u;
const ACC_INIT: u32 = 32u;

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
// Bias (per row of C) with BIAS, or a multiplier per column of C with COLMASK; else unused.
@group(0) @binding(3) var<storage, read> extra: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

// [16 k][64 rows], k rows padded to 65 so that the 16 k values a warp stores per row hit distinct banks.
var<workgroup> a_tile: array<f32, 1040>;
var<workgroup> b_tile: array<f32, 1040>; // [16 k][64 cols], padded like a_tile (the Gram loads k fastest)

//LOAD_B

// The tile of C a workgroup computes: its first row and column, and its K range [k_begin, k_end).
struct Tile {
    row0: u32,
    col0: u32,
    k_begin: u32,
    k_end: u32,
}

// With BATCHED (substituted by the host) the workgroups along z compute the products of a batch
// (the Winograd convolution's 36), each over the whole of K: this is the product's index, which the
// batch's loaders offset A and B by (C's slice is z, as with SPLIT).
var<private> batch: u32;

// Workgroup `wid`'s tile of `rows`×`cols` outputs (when `live`).
fn tile_of(wid: vec3<u32>, rows: u32, cols: u32) -> Tile {
    let m_tile = wid.y % p.m_tiles;
    let n_tile = wid.x + p.xn * (wid.y / p.m_tiles);
    if BATCHED {
        batch = wid.z;
        return Tile(m_tile * rows, n_tile * cols, 0u, p.k);
    }
    let k_begin = wid.z * p.chunk;
    return Tile(m_tile * rows, n_tile * cols, k_begin, min(p.k, k_begin + p.chunk));
}

// Whether workgroup `wid` has a tile: false past the last one (the whole workgroup then returns).
fn live(wid: vec3<u32>) -> bool {
    return wid.x + p.xn * (wid.y / p.m_tiles) < p.n_tiles;
}

// A at row `row` of the tile, k0 + kk; zero outside A or the tile's K range.
fn a_block(t: Tile, k0: u32, kk: u32, row: u32) -> f32 {
    let gk = k0 + kk;
    let grow = t.row0 + row;
    if grow < p.m && gk < t.k_end {
        return a[a_index(grow, gk)];
    }
    return 0.0;
}

// Where element e (0..1023) of a 16×64 block of B goes: (k, column) of the block, k fastest with
// B_KFAST (the Gram reads rows of F), else the column (so an invocation keeps its column for every
// k, the one `b_column` indexed once).
fn b_place(e: u32) -> vec2<u32> {
    if B_KFAST {
        return vec2<u32>(e & 15u, e >> 4u);
    }
    return vec2<u32>(e >> 6u, e & 63u);
}

// The value of B at `kc` = (k, column) of the block at k0; zero outside B or the tile's K range.
fn b_block(t: Tile, k0: u32, kc: vec2<u32>, b_ij: vec4<u32>) -> f32 {
    let gbk = k0 + kc.x;
    let gcol = t.col0 + kc.y;
    if gbk < t.k_end && gcol < p.n {
        return load_b(gbk, gcol, b_ij);
    }
    return 0.0;
}

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    if !live(wid) {
        return;
    }
    let t = tile_of(wid, 64u, 64u);
    let row0 = t.row0;
    let col0 = t.col0;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    if (p.flags & ACC_INIT) != 0u {
        var init = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
        for (var i = 0u; i < 4u; i++) {
            let row = row0 + lid.y + 16u * i;
            for (var j = 0u; j < 4u; j++) {
                let col = col0 + lid.x + 16u * j;
                if row < p.m && col < p.n {
                    init[i][j] = c[p.c_off + row * p.ldc + col];
                }
            }
        }
        acc0 = init[0];
        acc1 = init[1];
        acc2 = init[2];
        acc3 = init[3];
    }
    // Without B_KFAST each invocation loads the same column of B for every k: index it once.
    let b_ij = b_column(col0 + (li & 63u));
    for (var k0 = t.k_begin; k0 < t.k_end; k0 += 16u) {
        for (var r = 0u; r < 4u; r++) {
            let e = li + 256u * r;
            a_tile[(e & 15u) * 65u + (e >> 4u)] = a_block(t, k0, e & 15u, e >> 4u);
            let kc = b_place(e);
            b_tile[kc.x * 65u + kc.y] = b_block(t, k0, kc, b_ij);
        }
        workgroupBarrier();
        // Four vec4 accumulators (row i, columns j) instead of an indexed array: nothing for the
        // driver to keep in local memory, and the same fma per output in the same k order.
        for (var kk = 0u; kk < 16u; kk++) {
            let ab = kk * 65u + lid.y;
            let bb = kk * 65u + lid.x;
            let b4 = vec4<f32>(b_tile[bb], b_tile[bb + 16u], b_tile[bb + 32u], b_tile[bb + 48u]);
            acc0 = fma(vec4<f32>(a_tile[ab]), b4, acc0);
            acc1 = fma(vec4<f32>(a_tile[ab + 16u]), b4, acc1);
            acc2 = fma(vec4<f32>(a_tile[ab + 32u]), b4, acc2);
            acc3 = fma(vec4<f32>(a_tile[ab + 48u]), b4, acc3);
        }
        workgroupBarrier();
    }
    var accs = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            store(row, col0 + lid.x + 16u * j, wid.z, accs[i][j]);
        }
    }
}

// `main` with 8×8 outputs per invocation: 64 invocations compute the same 64×64 tile of C, each the
// rows 4·ty..4·ty+3 and 32+4·ty..32+4·ty+3 and the columns 4·tx.., 32+4·tx.. (ty, tx = its index / 8,
// mod 8). The tiles hold vec4s of 4 consecutive rows (columns), so each k step reads 4 vec4s from
// workgroup memory for 64 fma where `main` reads 8 floats for 16. Each output is the same fma chain
// in increasing k as `main`'s: the same bits.
// [BK k][16 quads of rows], k rows padded to 17 quads against bank conflicts on the transposed stores
// (STAGE quads). With PIPELINED (substituted by the host) two such buffers: block k0 + BK is staged
// into one while block k0 is read from the other, one barrier a block instead of two. With PREFETCH,
// block k0 + BK is read into registers before block k0's fma and stored after them (`fetch8`).
//TILE8
const STAGE = BK * 17u;
const QUADS = STAGE * select(1u, 2u, PIPELINED);
var<workgroup> a_quads: array<vec4<f32>, QUADS>;
var<workgroup> b_quads: array<vec4<f32>, QUADS>;

@compute @workgroup_size(64)
fn tile8(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    if !live(wid) {
        return;
    }
    let t = tile_of(wid, 64u, 64u);
    let row0 = t.row0;
    let col0 = t.col0;
    let tx = li & 7u;
    let ty = li >> 3u;
    let ra = row0 + 4u * ty;
    let rb = ra + 32u;
    let ca = col0 + 4u * tx;
    let cb = ca + 32u;
    var acc: Acc8;
    if (p.flags & ACC_INIT) != 0u {
        acc = acc8_load(ra, rb, ca, cb);
    }
    // Without B_KFAST invocation li loads column li of the tile for every k: index it once.
    let b_ij = b_column(col0 + li);
    let col_ok = col0 + li < p.n;
    var buf = 0u;
    if PIPELINED {
        if t.k_begin < t.k_end {
            stage8(t, t.k_begin, li, b_ij, col_ok, 0u);
        }
        workgroupBarrier();
    }
    var next: Fetched;
    if PREFETCH && t.k_begin < t.k_end {
        next = fetch8(t, t.k_begin, li, b_ij, col_ok);
    }
    for (var k0 = t.k_begin; k0 < t.k_end; k0 += BK) {
        if PIPELINED {
            if k0 + BK < t.k_end {
                stage8(t, k0 + BK, li, b_ij, col_ok, STAGE - buf);
            }
        } else if PREFETCH {
            store8(next, li, 0u);
            workgroupBarrier();
            if k0 + BK < t.k_end {
                next = fetch8(t, k0 + BK, li, b_ij, col_ok);
            }
        } else {
            stage8(t, k0, li, b_ij, col_ok, 0u);
            workgroupBarrier();
        }
        for (var kk = 0u; kk < BK; kk++) {
            let q = buf + kk * 17u;
            let a0 = a_quads[q + ty];
            let a1 = a_quads[q + 8u + ty];
            let b0 = b_quads[q + tx];
            let b1 = b_quads[q + 8u + tx];
            acc8_fma(&acc, a0, a1, b0, b1);
        }
        if PIPELINED {
            buf = STAGE - buf;
        }
        workgroupBarrier();
    }
    acc8_store(acc, ra, rb, ca, cb, wid.z);
}

// Stages block k0 of A and B into the quads from `at` (0, or STAGE for PIPELINED's second buffer):
// invocation li stores BK values of each. A is read k fastest (its rows are contiguous in k). Of B
// invocation li reads its column (`b_ij`, inside C when `col_ok`) for every k of the block, through
// `load_b_block` with TAPS: the block's row r is tap r % 9 of channel k0 / 9 + r / 9, constants but
// for k0 once the loop is unrolled, so one addition and one bit test a value.
// Each value goes straight from its read to its store, with no array between them that a driver
// which does not unroll the loops would keep in local memory (`fetch8` has one).
fn stage8(t: Tile, k0: u32, li: u32, b_ij: vec4<u32>, col_ok: bool, at: u32) {
    for (var r = 0u; r < BK; r++) {
        let e = li + 64u * r;
        let rr = e / BK;
        a_quads[at + (e % BK) * 17u + (rr >> 2u)][rr & 3u] = a_block(t, k0, e % BK, rr);
    }
    for (var r = 0u; r < BK; r++) {
        if TAPS {
            var v = 0.0;
            if col_ok && k0 + r < t.k_end {
                v = load_b_block(k0, r, b_ij);
            }
            b_quads[at + r * 17u + (li >> 2u)][li & 3u] = v;
        } else {
            let kc = b_place(li + 64u * r);
            b_quads[at + kc.x * 17u + (kc.y >> 2u)][kc.y & 3u] = b_block(t, k0, kc, b_ij);
        }
    }
}

// The values of A and B invocation li stages for block k0 (as `stage8` does), read from global
// memory into registers: PREFETCH (substituted by the host) reads the next block before the fma of
// this one, so that the reads' latency overlaps them, and stores them (`store8`) after.
struct Fetched {
    a: array<f32, BK>,
    b: array<f32, BK>,
}

fn fetch8(t: Tile, k0: u32, li: u32, b_ij: vec4<u32>, col_ok: bool) -> Fetched {
    var f: Fetched;
    for (var r = 0u; r < BK; r++) {
        let e = li + 64u * r;
        f.a[r] = a_block(t, k0, e % BK, e / BK);
    }
    for (var r = 0u; r < BK; r++) {
        if TAPS {
            var v = 0.0;
            if col_ok && k0 + r < t.k_end {
                v = load_b_block(k0, r, b_ij);
            }
            f.b[r] = v;
        } else {
            f.b[r] = b_block(t, k0, b_place(li + 64u * r), b_ij);
        }
    }
    return f;
}

// Stores what `fetch8` read into the quads from `at`.
fn store8(f: Fetched, li: u32, at: u32) {
    for (var r = 0u; r < BK; r++) {
        let e = li + 64u * r;
        let rr = e / BK;
        a_quads[at + (e % BK) * 17u + (rr >> 2u)][rr & 3u] = f.a[r];
    }
    for (var r = 0u; r < BK; r++) {
        if TAPS {
            b_quads[at + r * 17u + (li >> 2u)][li & 3u] = f.b[r];
        } else {
            let kc = b_place(li + 64u * r);
            b_quads[at + kc.x * 17u + (kc.y >> 2u)][kc.y & 3u] = f.b[r];
        }
    }
}

// The 8×8 outputs of one invocation of `tile8` or `tile8w`: row i of the first four rows (from ra)
// is `ci0` at columns ca..ca+3 and `ci1` at cb..cb+3, row i of the next four (from rb) `c(4+i)0`
// and `c(4+i)1`. Named vectors, not an array, so that nothing is left for a driver to keep in
// local memory.
struct Acc8 {
    c00: vec4<f32>, c01: vec4<f32>, c10: vec4<f32>, c11: vec4<f32>,
    c20: vec4<f32>, c21: vec4<f32>, c30: vec4<f32>, c31: vec4<f32>,
    c40: vec4<f32>, c41: vec4<f32>, c50: vec4<f32>, c51: vec4<f32>,
    c60: vec4<f32>, c61: vec4<f32>, c70: vec4<f32>, c71: vec4<f32>,
}

// ACC_INIT's starting sums of those outputs.
fn acc8_load(ra: u32, rb: u32, ca: u32, cb: u32) -> Acc8 {
    return Acc8(
        load4(ra, ca), load4(ra, cb), load4(ra + 1u, ca), load4(ra + 1u, cb),
        load4(ra + 2u, ca), load4(ra + 2u, cb), load4(ra + 3u, ca), load4(ra + 3u, cb),
        load4(rb, ca), load4(rb, cb), load4(rb + 1u, ca), load4(rb + 1u, cb),
        load4(rb + 2u, ca), load4(rb + 2u, cb), load4(rb + 3u, ca), load4(rb + 3u, cb),
    );
}

// One k step: the rows' values a0 (ra..ra+3), a1 (rb..) times the columns' b0 (ca..), b1 (cb..).
fn acc8_fma(acc: ptr<function, Acc8>, a0: vec4<f32>, a1: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>) {
    (*acc).c00 = fma(vec4<f32>(a0.x), b0, (*acc).c00);
    (*acc).c01 = fma(vec4<f32>(a0.x), b1, (*acc).c01);
    (*acc).c10 = fma(vec4<f32>(a0.y), b0, (*acc).c10);
    (*acc).c11 = fma(vec4<f32>(a0.y), b1, (*acc).c11);
    (*acc).c20 = fma(vec4<f32>(a0.z), b0, (*acc).c20);
    (*acc).c21 = fma(vec4<f32>(a0.z), b1, (*acc).c21);
    (*acc).c30 = fma(vec4<f32>(a0.w), b0, (*acc).c30);
    (*acc).c31 = fma(vec4<f32>(a0.w), b1, (*acc).c31);
    (*acc).c40 = fma(vec4<f32>(a1.x), b0, (*acc).c40);
    (*acc).c41 = fma(vec4<f32>(a1.x), b1, (*acc).c41);
    (*acc).c50 = fma(vec4<f32>(a1.y), b0, (*acc).c50);
    (*acc).c51 = fma(vec4<f32>(a1.y), b1, (*acc).c51);
    (*acc).c60 = fma(vec4<f32>(a1.z), b0, (*acc).c60);
    (*acc).c61 = fma(vec4<f32>(a1.z), b1, (*acc).c61);
    (*acc).c70 = fma(vec4<f32>(a1.w), b0, (*acc).c70);
    (*acc).c71 = fma(vec4<f32>(a1.w), b1, (*acc).c71);
}

// The outputs through the epilogue (`store`), K slice z.
fn acc8_store(acc: Acc8, ra: u32, rb: u32, ca: u32, cb: u32, z: u32) {
    store4(ra, ca, z, acc.c00);
    store4(ra, cb, z, acc.c01);
    store4(ra + 1u, ca, z, acc.c10);
    store4(ra + 1u, cb, z, acc.c11);
    store4(ra + 2u, ca, z, acc.c20);
    store4(ra + 2u, cb, z, acc.c21);
    store4(ra + 3u, ca, z, acc.c30);
    store4(ra + 3u, cb, z, acc.c31);
    store4(rb, ca, z, acc.c40);
    store4(rb, cb, z, acc.c41);
    store4(rb + 1u, ca, z, acc.c50);
    store4(rb + 1u, cb, z, acc.c51);
    store4(rb + 2u, ca, z, acc.c60);
    store4(rb + 2u, cb, z, acc.c61);
    store4(rb + 3u, ca, z, acc.c70);
    store4(rb + 3u, cb, z, acc.c71);
}

// The 4 values of C at (row, col..col+3) that exist, zeros elsewhere (ACC_INIT's starting sums).
fn load4(row: u32, col: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if row < p.m {
        for (var j = 0u; j < 4u; j++) {
            if col + j < p.n {
                v[j] = c[p.c_off + row * p.ldc + col + j];
            }
        }
    }
    return v;
}

// `store` of 4 consecutive columns.
fn store4(row: u32, col: u32, z: u32, v: vec4<f32>) {
    store(row, col, z, v.x);
    store(row, col + 1u, z, v.y);
    store(row, col + 2u, z, v.z);
    store(row, col + 3u, z, v.w);
}

// The raw sum at (row, col) of K slice z, through the epilogue the flags ask for; outside C, nothing.
fn store(row: u32, col: u32, z: u32, sum: f32) {
    if row >= p.m || col >= p.n {
        return;
    }
    var v = p.alpha * sum;
    if (p.flags & SPLIT) != 0u {
        c[p.c_off + z * p.c_slice + row * p.ldc + col] = v;
        return;
    }
    if (p.flags & BIAS) != 0u {
        v += extra[p.bias_off + row];
    }
    if (p.flags & RELU) != 0u {
        v = max(v, 0.0);
    }
    if (p.flags & COLMASK) != 0u {
        v *= extra[col];
    }
    let idx = p.c_off + row * p.ldc + col;
    if (p.flags & ACCUMULATE) != 0u {
        v += c[idx];
    }
    c[idx] = v;
}
