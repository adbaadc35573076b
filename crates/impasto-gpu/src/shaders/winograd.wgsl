// The transforms of the Winograd F(4×4, 3×3) convolution (Lavin & Gray 2016) around its 36 matrix
// products (`matmul.wgsl` batched): `Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A` per 4×4 output tile, `d` the
// tile's 6×6 input patch. The formulas are those of the CPU engine's (`bt`, `at` of
// impasto-kernels' winograd.rs), in the same order. A band of tile rows at a time: tiles
// `u2 · u0 ..` (`u0` tiles a row, `u1` tiles in the band), invocation i is channel i / u1, tile
// i % u1 of the band; the transformed values of point ξ of channel ch are at (ξ·c + ch)·u1 + tile.

// `struct P` (the parameters) is prepended from params.wgsl.

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
// The bias per output channel (`wino_output` with flag 1); else a placeholder.
@group(0) @binding(3) var<storage, read> aux: array<f32>;

const BIAS = 1u;
const RELU = 2u;

fn flat(wid: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + li;
}

// `Bᵀ d` for one column of six values.
fn bt(d0: f32, d1: f32, d2: f32, d3: f32, d4: f32, d5: f32) -> array<f32, 6> {
    return array<f32, 6>(
        4.0 * d0 - 5.0 * d2 + d4,
        -4.0 * d1 - 4.0 * d2 + d3 + d4,
        4.0 * d1 - 4.0 * d2 - d3 + d4,
        -2.0 * d1 - d2 + 2.0 * d3 + d4,
        2.0 * d1 - d2 - 2.0 * d3 + d4,
        4.0 * d1 - 5.0 * d3 + d5,
    );
}

// `Aᵀ v` for one column of six values.
fn at(v0: f32, v1: f32, v2: f32, v3: f32, v4: f32, v5: f32) -> vec4<f32> {
    let s12 = v1 + v2;
    let d12 = v1 - v2;
    let s34 = v3 + v4;
    let d34 = v3 - v4;
    return vec4<f32>(v0 + s12 + s34, d12 + 2.0 * d34, s12 + 4.0 * s34, d12 + 8.0 * d34 + v5);
}

// Invocation i's channel and its tile's row and column: channel i / u1, tile i % u1 of the band.
fn band_tile(i: u32) -> vec3<u32> {
    let ch = i / p.u1;
    let t = i - ch * p.u1;
    return vec3<u32>(ch, p.u2 + t / p.u0, t % p.u0);
}

// The input `src` (c planes of h×w) at row y − 1, column x − 1 of plane ch: zero outside (the padding).
fn pixel(ch: u32, y: u32, x: u32) -> f32 {
    if y >= 1u && y <= p.h && x >= 1u && x <= p.w {
        return src[(ch * p.h + y - 1u) * p.w + x - 1u];
    }
    return 0.0;
}

// dst (36 × c × u1) = `Bᵀ d B` of each channel's 6×6 patch of each tile of the band: first down the
// patch's columns, then along the rows of that (as the CPU engine does).
@compute @workgroup_size(256)
fn wino_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let i = flat(wid, nwg, li);
    if i >= p.n {
        return;
    }
    let tile = band_tile(i);
    let ch = tile.x;
    let y0 = 4u * tile.y;
    let x0 = 4u * tile.z;
    // q[6·ξy + j]: column j of the patch through Bᵀ.
    var q: array<f32, 36>;
    for (var j = 0u; j < 6u; j++) {
        let col = bt(
            pixel(ch, y0, x0 + j), pixel(ch, y0 + 1u, x0 + j), pixel(ch, y0 + 2u, x0 + j),
            pixel(ch, y0 + 3u, x0 + j), pixel(ch, y0 + 4u, x0 + j), pixel(ch, y0 + 5u, x0 + j),
        );
        for (var k = 0u; k < 6u; k++) {
            q[6u * k + j] = col[k];
        }
    }
    let plane = p.c * p.u1;
    for (var k = 0u; k < 6u; k++) {
        let r = 6u * k;
        let row = bt(q[r], q[r + 1u], q[r + 2u], q[r + 3u], q[r + 4u], q[r + 5u]);
        for (var x = 0u; x < 6u; x++) {
            dst[(r + x) * plane + i] = row[x];
        }
    }
}

// dst (c planes of h×w, here c the output channels) at the band's 4×4 tiles = `Aᵀ M A` of the 36
// products' values `src` (36 × c × u1), along the rows first, then down the columns (as the CPU
// engine does), with the bias (flag BIAS of u3) and the ReLU (RELU) after.
@compute @workgroup_size(256)
fn wino_output(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let i = flat(wid, nwg, li);
    if i >= p.n {
        return;
    }
    let tile = band_tile(i);
    let o = tile.x;
    let ty = tile.y;
    let tx = tile.z;
    let plane = p.c * p.u1;
    // s[ξy]: row ξy of M through Aᵀ (4 output columns).
    var s: array<vec4<f32>, 6>;
    for (var k = 0u; k < 6u; k++) {
        let r = 6u * k * plane + i;
        s[k] = at(src[r], src[r + plane], src[r + 2u * plane], src[r + 3u * plane], src[r + 4u * plane],
                  src[r + 5u * plane]);
    }
    var bias = 0.0;
    if (p.u3 & BIAS) != 0u {
        bias = aux[o];
    }
    for (var b = 0u; b < 4u; b++) {
        let x = 4u * tx + b;
        let v = at(s[0][b], s[1][b], s[2][b], s[3][b], s[4][b], s[5][b]);
        for (var a = 0u; a < 4u; a++) {
            let y = 4u * ty + a;
            if y < p.h && x < p.w {
                var r = v[a] + bias;
                if (p.u3 & RELU) != 0u {
                    r = max(r, 0.0);
                }
                dst[(o * p.h + y) * p.w + x] = r;
            }
        }
    }
}
