// Tiled, register-blocked matrix product C (+)= alpha·A·B with a fused epilogue, the one GEMM of the
// GPU backend. A is M×K row-major. B is K×N, read through `load_b`, which the host substitutes:
// a plain row-major matrix, the transpose of a row-major N×K matrix (Gram) or the implicit im2col
// matrix of a 3×3, pad-1 convolution. 16×16 invocations compute a 64×64 tile of C, 4×4 outputs each,
// over K in steps of 16 staged in workgroup memory. Each output is one invocation's sum in increasing
// k, so results do not depend on scheduling. Workgroups along z split K (`chunk` values each) into
// separate slices of C (flag SPLIT) that a later pass sums in order.

struct P {
    m: u32, n: u32, k: u32, n_tiles: u32,
    m_tiles: u32, xn: u32, chunk: u32, flags: u32,
    h: u32, w: u32, pad0: u32, pad1: u32,
    alpha: f32, pad2: f32, pad3: f32, pad4: f32,
}

const RELU: u32 = 1u;
const BIAS: u32 = 2u;
const ACCUMULATE: u32 = 4u;
const COLMASK: u32 = 8u;
const SPLIT: u32 = 16u;

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
// Bias (per row of C) with BIAS, or a multiplier per column of C with COLMASK; else unused.
@group(0) @binding(3) var<storage, read> extra: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

var<workgroup> a_tile: array<f32, 1024>; // [16 k][64 rows]
var<workgroup> b_tile: array<f32, 1024>; // [16 k][64 cols]

//LOAD_B

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let m_tile = wid.y % p.m_tiles;
    let n_tile = wid.x + p.xn * (wid.y / p.m_tiles);
    if n_tile >= p.n_tiles {
        return;
    }
    let row0 = m_tile * 64u;
    let col0 = n_tile * 64u;
    let k_begin = wid.z * p.chunk;
    let k_end = min(p.k, k_begin + p.chunk);
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }
    for (var k0 = k_begin; k0 < k_end; k0 += 16u) {
        for (var r = 0u; r < 4u; r++) {
            let e = li + 256u * r;
            // A: k fastest (rows of A are contiguous in k).
            let kk = e & 15u;
            let rr = e >> 4u;
            let gk = k0 + kk;
            let grow = row0 + rr;
            var av = 0.0;
            if grow < p.m && gk < k_end {
                av = a[grow * p.k + gk];
            }
            a_tile[kk * 64u + rr] = av;
            var bk: u32;
            var bc: u32;
            if B_KFAST {
                bk = e & 15u;
                bc = e >> 4u;
            } else {
                bc = e & 63u;
                bk = e >> 6u;
            }
            let gbk = k0 + bk;
            let gcol = col0 + bc;
            var bv = 0.0;
            if gbk < k_end && gcol < p.n {
                bv = load_b(gbk, gcol);
            }
            b_tile[bk * 64u + bc] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                av[i] = a_tile[kk * 64u + lid.y + 16u * i];
                bv[i] = b_tile[kk * 64u + lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(av[i], bv[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + lid.y + 16u * i;
        if row >= p.m {
            continue;
        }
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + lid.x + 16u * j;
            if col >= p.n {
                continue;
            }
            var v = p.alpha * acc[i * 4u + j];
            if (p.flags & SPLIT) != 0u {
                c[(wid.z * p.m + row) * p.n + col] = v;
                continue;
            }
            if (p.flags & BIAS) != 0u {
                v += extra[row];
            }
            if (p.flags & RELU) != 0u {
                v = max(v, 0.0);
            }
            if (p.flags & COLMASK) != 0u {
                v *= extra[col];
            }
            let idx = row * p.n + col;
            if (p.flags & ACCUMULATE) != 0u {
                v += c[idx];
            }
            c[idx] = v;
        }
    }
}
