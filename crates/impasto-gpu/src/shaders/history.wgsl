// L-BFGS over a history kept on the device, in three kernels whatever the history's length (the
// two-loop recursion itself runs on the host over the dot products of the vectors: "vector-free"
// L-BFGS, Chen et al., NeurIPS 2014). The ring's vectors (s then y of each slot: vector 2·slot and
// 2·slot + 1) live in pages, each a buffer of several whole vectors, or of one segment of each where
// a vector is longer than a storage binding. `lbfgs_dots` takes the dot products of every held
// vector of a page with three vectors at once (the gradient and the newest pair's s and y) and
// leaves per-workgroup partial sums; `lbfgs_finish` adds each dot product's partial sums in a fixed
// order; the host reads those back, runs the recursion on them in f64 and writes the coefficients
// of the direction; `lbfgs_combine` sums coefficient · vector over the pages. An invocation's
// values are f32 fma chains (as the two-loop recursion's own updates were); the sums across
// invocations and workgroups are double-f32 (hi + lo, error-free additions), so a dot product of a
// million values keeps the accuracy of its 16-value chains, and every sum has a fixed order: the
// same device gives the same bits run after run.

// `struct P` (the parameters) is prepended from params.wgsl.

@group(0) @binding(0) var<uniform> p: P;
// The vectors of one page: vector i of it at i·n (n = the segment's length).
@group(0) @binding(1) var<storage, read> page: array<f32>;
// The gradient's segment (`lbfgs_dots`; `lbfgs_combine` finds it in q, which it overwrites).
@group(0) @binding(2) var<storage, read> g: array<f32>;
// The pages holding the newest pair's s (at u1) and y (at u2).
@group(0) @binding(3) var<storage, read> xs: array<f32>;
@group(0) @binding(4) var<storage, read> xy: array<f32>;
// 1 for each vector of the ring that holds a pair, else 0.
@group(0) @binding(5) var<storage, read> held: array<u32>;
// Partial sums (hi, lo) of dot product (x, v) at ((x·c + v)·h + block) · 2; then the dot products.
@group(0) @binding(6) var<storage, read_write> partials: array<f32>;
@group(0) @binding(7) var<storage, read_write> dots: array<f32>;
// The direction's coefficient of each vector of the ring, then of the gradient (at c).
@group(0) @binding(8) var<storage, read> coef: array<f32>;
@group(0) @binding(9) var<storage, read_write> q: array<f32>;

// Values each invocation of lbfgs_dots adds (strided by 256 within its workgroup's block).
const PER: u32 = 64u;

var<workgroup> red: array<vec2<f32>, 768>;

// (s, e) with s + e = x + y exactly.
fn two_sum(x: f32, y: f32) -> vec2<f32> {
    let s = x + y;
    let bb = s - x;
    return vec2<f32>(s, (x - (s - bb)) + (y - bb));
}

// Double-f32 addition (hi, lo) + (hi, lo), renormalised.
fn df_add(x: vec2<f32>, y: vec2<f32>) -> vec2<f32> {
    let s = two_sum(x.x, y.x);
    let e = s.y + (x.y + y.y);
    let hi = s.x + e;
    return vec2<f32>(hi, e - (hi - s.x));
}

// Adds the workgroup's 256 values of each of `k` (1 or 3) double-f32 sums in a fixed tree; sum j is
// then in red[256·j].
fn tree(k: u32, li: u32) {
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if li < s {
            for (var j = 0u; j < k; j++) {
                red[256u * j + li] = df_add(red[256u * j + li], red[256u * j + li + s]);
            }
        }
        workgroupBarrier();
    }
}

// Partial sums of page vector wid.x (global vector u0 + wid.x) with the gradient and the newest
// pair's s and y over one block of PER·256 values (block wid.y + wid.z·num_workgroups.y of this
// segment, u3 the segment's first block among the h of a dot product). n = segment length,
// c = vectors of the ring.
@compute @workgroup_size(256)
fn lbfgs_dots(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let v = p.u0 + wid.x;
    let blk = wid.y + wid.z * nwg.y;
    if held[v] == 0u || blk * 256u * PER >= p.n {
        return;
    }
    let at = wid.x * p.n;
    // Each invocation's PER values in one f32 fma chain, as the two-loop recursion updated its
    // vector in f32; double-f32 from the workgroup's tree on.
    var ag = 0.0;
    var asum = 0.0;
    var ay = 0.0;
    for (var e = 0u; e < PER; e++) {
        let i = (blk * PER + e) * 256u + li;
        if i < p.n {
            let b = page[at + i];
            ag = fma(b, g[i], ag);
            asum = fma(b, xs[p.u1 + i], asum);
            ay = fma(b, xy[p.u2 + i], ay);
        }
    }
    red[li] = vec2<f32>(ag, 0.0);
    red[256u + li] = vec2<f32>(asum, 0.0);
    red[512u + li] = vec2<f32>(ay, 0.0);
    tree(3u, li);
    if li < 3u {
        let o = 2u * ((li * p.c + v) * p.h + p.u3 + blk);
        partials[o] = red[256u * li].x;
        partials[o + 1u] = red[256u * li].y;
    }
}

// Dot product (x = wid.y, v = wid.x): its h partial sums added in a fixed order, into dots at
// 2·(x·c + v).
@compute @workgroup_size(256)
fn lbfgs_finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let v = wid.x;
    if held[v] == 0u {
        return;
    }
    let base = (wid.y * p.c + v) * p.h;
    var acc = vec2<f32>(0.0);
    for (var i = li; i < p.h; i += 256u) {
        acc = df_add(acc, vec2<f32>(partials[2u * (base + i)], partials[2u * (base + i) + 1u]));
    }
    red[li] = acc;
    tree(1u, li);
    if li == 0u {
        dots[2u * (wid.y * p.c + v)] = red[0].x;
        dots[2u * (wid.y * p.c + v) + 1u] = red[0].y;
    }
}

// q = Σ coefficient · vector over the w vectors u0.. of the ring, which this page holds from its
// vector u2, added in that order (one f32 fma chain, as the two-loop recursion updated its vector)
// after the gradient's term (u1 = 1: the first chunk, q holds the gradient) or after the sum
// so far. A direction's chunks take the vectors from the oldest pair's s to the newest pair's y, so
// the sum has one order whatever slots the pairs occupy. n = segment length, c = vectors of the
// ring. A vector whose coefficient is zero (not held) is not read.
@compute @workgroup_size(256)
fn lbfgs_combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + li;
    if i >= p.n {
        return;
    }
    var acc = q[i];
    if p.u1 == 1u {
        acc = coef[p.c] * acc;
    }
    for (var j = 0u; j < p.w; j++) {
        let c = coef[p.u0 + j];
        if c != 0.0 {
            acc = fma(c, page[(p.u2 + j) * p.n + i], acc);
        }
    }
    q[i] = acc;
}
