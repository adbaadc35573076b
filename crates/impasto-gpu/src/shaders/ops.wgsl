// Element-wise, pooling, preprocessing and loss kernels. 256 invocations per workgroup; a flat index
// runs over a 2-D grid of workgroups (x then y) so that large tensors stay within the per-dimension
// dispatch limit. Loss kernels leave one partial sum per workgroup (a fixed tree in workgroup memory);
// `reduce` adds the partials of one term in a fixed order: the same inputs give the same bits.
// A tensor split into channel groups runs as one dispatch per group: the loss kernels then write
// their partials from `u3` on, and the pooling kernels address the pooled side from channel `u0`
// (its group can hold more channels than the full-size side's).

// `struct P` (the parameters) is prepended from params.wgsl.

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read> aux: array<f32>;
@group(0) @binding(4) var<storage, read_write> partials: array<f32>;

var<workgroup> red: array<f32, 256>;

fn flat(wid: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + li;
}

// The sum of `v` over the workgroup's 256 invocations, in a fixed tree; every invocation gets it.
fn workgroup_sum(v: f32, li: u32) -> f32 {
    red[li] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if li < s {
            red[li] += red[li + s];
        }
        workgroupBarrier();
    }
    return red[0];
}

// Sums `v` over the workgroup into partials[u3 + workgroup], in a fixed tree.
fn partial_sum(v: f32, wid: vec3<u32>, nwg: vec3<u32>, li: u32) {
    let s = workgroup_sum(v, li);
    if li == 0u {
        partials[p.u3 + wid.y * nwg.x + wid.x] = s;
    }
}

// dst = max(src, 0).
@compute @workgroup_size(256)
fn relu_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let i = flat(wid, nwg, li);
    if i < p.n {
        dst[i] = max(src[i], 0.0);
    }
}

// dst (a gradient) = 0 where the ReLU output src is ≤ 0.
@compute @workgroup_size(256)
fn relu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let i = flat(wid, nwg, li);
    if i < p.n && !(src[i] > 0.0) {
        dst[i] = 0.0;
    }
}

// The window (ch, oi, oj) of pooling output i (of c×(h/2)×(w/2)).
fn output_window(i: u32) -> vec3<u32> {
    let oh = p.h / 2u;
    let ow = p.w / 2u;
    let ch = i / (oh * ow);
    let r = i - ch * oh * ow;
    let oi = r / ow;
    return vec3<u32>(ch, oi, r - oi * ow);
}

// The window (ch, oi, oj) that pooling input i (of c×h×w) falls in, and (w) its place in it
// (row-major 0..4); oi ≥ h/2 or oj ≥ w/2 on a dropped odd row or column.
fn input_window(i: u32) -> vec4<u32> {
    let ch = i / (p.h * p.w);
    let r = i - ch * p.h * p.w;
    let y = r / p.w;
    let x = r - y * p.w;
    return vec4<u32>(ch, y / 2u, x / 2u, (y & 1u) * 2u + (x & 1u));
}

// Whether input window v (from input_window) is one of the pooling's, not a dropped edge.
fn pooled(v: vec4<u32>) -> bool {
    return v.y < p.h / 2u && v.z < p.w / 2u;
}

// The index in aux (the output gradient, channels from p.u0) of window v.
fn output_index(v: vec4<u32>) -> u32 {
    return ((p.u0 + v.x) * (p.h / 2u) + v.y) * (p.w / 2u) + v.z;
}

// The first input index of window (ch, oi, oj).
fn window_base(ch: u32, oi: u32, oj: u32) -> u32 {
    return (ch * p.h + 2u * oi) * p.w + 2u * oj;
}

// Window (row-major 0..4) of the first maximum of output (ch, oi, oj), strict `>`.
fn window_argmax(ch: u32, oi: u32, oj: u32) -> u32 {
    let base = window_base(ch, oi, oj);
    var best = 0u;
    var bv = src[base];
    let offs = array<u32, 4>(0u, 1u, p.w, p.w + 1u);
    for (var t = 1u; t < 4u; t++) {
        let v = src[base + offs[t]];
        if v > bv {
            bv = v;
            best = t;
        }
    }
    return best;
}

// The mean square of window (ch, oi, oj) of src, summed in the CPU kernel's order.
fn l2_window(ch: u32, oi: u32, oj: u32) -> f32 {
    let base = window_base(ch, oi, oj);
    let a = src[base];
    let b = src[base + 1u];
    let c = src[base + p.w];
    let d = src[base + p.w + 1u];
    return ((a * a + b * b) + (c * c + d * d)) * 0.25;
}

// 2×2 stride-2 max pool (floor size): src c×h×w → dst c×(h/2)×(w/2). p.n = outputs.
@compute @workgroup_size(256)
fn max_pool_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) li: u32) {
    let i = flat(wid, nwg, li);
    if i >= p.n {
        return;
    }
    let o = output_window(i);
    let t = window_argmax(o.x, o.y, o.z);
    dst[p.u0 * (p.h / 2u) * (p.w / 2u) + i] = src[window_base(o.x, o.y, o.z) + (t / 2u) * p.w + (t & 1u)];
}

// Max pool backward: src is the pool's input, aux the output gradient; dst (c×h×w) gets it at the
// first maximum of each window, 0 elsewhere. p.n = inputs.
@compute @workgroup_size(256)
fn max_pool_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) li: u32) {
    let i = flat(wid, nwg, li);
    if i >= p.n {
        return;
    }
    let v = input_window(i);
    var g = 0.0;
    if pooled(v) && window_argmax(v.x, v.y, v.z) == v.w {
        g = aux[output_index(v)];
    }
    dst[i] = g;
}

// 2×2 stride-2 average pool. p.n = outputs.
@compute @workgroup_size(256)
fn avg_pool_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) li: u32) {
    let i = flat(wid, nwg, li);
    if i >= p.n {
        return;
    }
    let o = output_window(i);
    let base = window_base(o.x, o.y, o.z);
    dst[p.u0 * (p.h / 2u) * (p.w / 2u) + i] =
        ((src[base] + src[base + 1u]) + (src[base + p.w] + src[base + p.w + 1u])) * 0.25;
}

// Average pool backward: src the output gradient, dst (c×h×w). p.n = inputs.
@compute @workgroup_size(256)
fn avg_pool_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) li: u32) {
    let i = flat(wid, nwg, li);
    if i >= p.n {
        return;
    }
    let v = input_window(i);
    var g = 0.0;
    if pooled(v) {
        g = src[output_index(v)] * 0.25;
    }
    dst[i] = g;
}

// 2×2 stride-2 L2 pool: the root mean square of each window. p.n = outputs.
@compute @workgroup_size(256)
fn l2_pool_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    let i = flat(wid, nwg, li);
    if i >= p.n {
        return;
    }
    let o = output_window(i);
    dst[p.u0 * (p.h / 2u) * (p.w / 2u) + i] = sqrt(l2_window(o.x, o.y, o.z));
}

// L2 pool backward: src is the pool's input, aux the output gradient; dst (c×h×w) gets
// dy · x / (4·y), 0 where the window's y is 0 and on a dropped odd row or column. p.n = inputs.
@compute @workgroup_size(256)
fn l2_pool_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) li: u32) {
    let i = flat(wid, nwg, li);
    if i >= p.n {
        return;
    }
    let v = input_window(i);
    var g = 0.0;
    if pooled(v) {
        let y = sqrt(l2_window(v.x, v.y, v.z));
        if y > 0.0 {
            g = src[i] * (aux[output_index(v)] * 0.25 / y);
        }
    }
    dst[i] = g;
}

// One plane of the network input or of its gradient: dst plane u1 = src plane u0 · f0 + f1 (the
// preprocessing's scale and offset per channel, its backward with offset 0). p.n = pixels per plane.
@compute @workgroup_size(256)
fn affine_plane(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let i = flat(wid, nwg, li);
    if i < p.n {
        dst[p.u1 * p.n + i] = src[p.u0 * p.n + i] * p.f0 + p.f1;
    }
}

// dst += src (a gradient computed in a scratch buffer, added to a channel group).
@compute @workgroup_size(256)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) li: u32) {
    let i = flat(wid, nwg, li);
    if i < p.n {
        dst[i] += src[i];
    }
}

// dst = src ∘ aux, aux one plane of p.w values repeated over the planes of src. p.n = all values.
@compute @workgroup_size(256)
fn mul_planes(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let i = flat(wid, nwg, li);
    if i < p.n {
        dst[i] = src[i] * aux[i % p.w];
    }
}

// Content term: d = src − aux (features − target); dst (gradient) += f0·d; partial sums of d².
@compute @workgroup_size(256)
fn content(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let i = flat(wid, nwg, li);
    var s = 0.0;
    if i < p.n {
        let d = src[i] - aux[i];
        dst[i] += p.f0 * d;
        s = d * d;
    }
    partial_sum(s, wid, nwg, li);
}

// Style term on a C×C Gram (p.c = C): src = G, aux = target A. dst = f0·((G−A) + (G−A)ᵀ), the
// symmetrised Gram gradient; partial sums of (G−A)². p.n = C².
@compute @workgroup_size(256)
fn style(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
    let i = flat(wid, nwg, li);
    var s = 0.0;
    if i < p.n {
        let r = i / p.c;
        let col = i - r * p.c;
        let t = col * p.c + r;
        let d = src[i] - aux[i];
        dst[i] = p.f0 * d + p.f0 * (src[t] - aux[t]);
        s = d * d;
    }
    partial_sum(s, wid, nwg, li);
}

// Total variation of planar src (p.c planes of p.h×p.w): dst (gradient) += f0·∂/∂x of the squared
// differences to the right and lower neighbours; partial sums of those squares. p.n = all values.
@compute @workgroup_size(256)
fn tv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
      @builtin(local_invocation_index) li: u32) {
    let i = flat(wid, nwg, li);
    var s = 0.0;
    if i < p.n {
        let r = i % (p.h * p.w);
        let y = r / p.w;
        let x = r - y * p.w;
        let v = src[i];
        var g = 0.0;
        if x + 1u < p.w {
            let d = src[i + 1u] - v;
            s += d * d;
            g -= d;
        }
        if y + 1u < p.h {
            let d = src[i + p.w] - v;
            s += d * d;
            g -= d;
        }
        if x > 0u {
            g += v - src[i - 1u];
        }
        if y > 0u {
            g += v - src[i - p.w];
        }
        dst[i] += p.f0 * g;
    }
    partial_sum(s, wid, nwg, li);
}

// One workgroup: dst[u0] = the sum of src[0..n] (a term's partials), in a fixed order.
@compute @workgroup_size(256)
fn reduce_sum(@builtin(local_invocation_index) li: u32) {
    var s = 0.0;
    for (var i = li; i < p.n; i += 256u) {
        s += src[i];
    }
    let total = workgroup_sum(s, li);
    if li == 0u {
        dst[p.u0] = total;
    }
}

// dst[e] = f0 · Σ_s src[s·n + e] over p.c slices in order (split-K Gram slices). p.n = C².
@compute @workgroup_size(256)
fn sum_slices(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let i = flat(wid, nwg, li);
    if i >= p.n {
        return;
    }
    var s = 0.0;
    for (var k = 0u; k < p.c; k++) {
        s += src[k * p.n + i];
    }
    dst[i] = p.f0 * s;
}

// dst[u0 + r] = Σ_j src[r·w + j] (times aux[j] where u1 = 1) for each of the p.c rows of p.w values,
// one workgroup per row, in a fixed order: each channel's sum (with aux a region mask and src the
// masked features, the sum of F·m²). Dispatched over (p.c, 1, 1) workgroups.
@compute @workgroup_size(256)
fn row_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let r = wid.x;
    let base = r * p.w;
    var s = 0.0;
    for (var j = li; j < p.w; j += 256u) {
        if p.u1 == 1u {
            s += src[base + j] * aux[j];
        } else {
            s += src[base + j];
        }
    }
    let total = workgroup_sum(s, li);
    if li == 0u && r < p.c {
        dst[p.u0 + r] = total;
    }
}

// dst (rows of p.w values, a gradient) += src[u0 + row] (times aux[j]² where u1 = 1, aux a region
// mask): a channel mean's gradient spread over the channel's positions. p.n = all values.
@compute @workgroup_size(256)
fn shift_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let i = flat(wid, nwg, li);
    if i < p.n {
        let r = i / p.w;
        var s = src[p.u0 + r];
        if p.u1 == 1u {
            let m = aux[i - r * p.w];
            s *= m * m;
        }
        dst[i] += s;
    }
}
