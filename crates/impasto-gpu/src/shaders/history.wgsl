// L-BFGS two-loop recursion over a history kept on the device, two dispatches per pair and loop. A
// vector longer than one storage binding is split into segments, each dispatched on its own. A dot
// product leaves one partial sum per workgroup (a fixed tree) in its slot's region of `partials`; a
// one-workgroup finish (`lbfgs_alpha`, `lbfgs_beta`) adds the region's partials in a fixed order
// into the slot's coefficient; the update of q with it (`lbfgs_first`, `lbfgs_second`) also leaves
// the partial sums of the next dot product, of the updated q with the next pair's vector, in that
// pair's region. Sums are double-f32 (hi + lo, error-free two-sum additions), so a dot product of a
// million values keeps about 40 bits, like the host's f64. No read-back between the steps.
//
// scal layout (m = ring capacity, c in the parameters): [0, m) ρ of each slot, [m, 2m) α,
// [2m, 3m) α − β, 3m: γ = sᵀy / yᵀy of the newest pair (written with each push).

// `struct P` (the parameters) is prepended from params.wgsl.
// Every kernel: n = segment length (a finish: unused), c = m, h = partial pairs of a region (all
// segments); u0 = first pair this dispatch writes (its region and segment); u1 = first pair of the
// region a finish reads; u2 = the slot.

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> q: array<f32>;
@group(0) @binding(4) var<storage, read_write> partials: array<f32>;
@group(0) @binding(5) var<storage, read_write> scal: array<f32>;

// Values each invocation of lbfgs_dot adds (strided by 256 within its workgroup's block).
const PER: u32 = 16u;

var<workgroup> red_hi: array<f32, 256>;
var<workgroup> red_lo: array<f32, 256>;

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

// Adds the workgroup's 256 double-f32 values in a fixed tree; the result is in slot 0.
fn tree(v: vec2<f32>, li: u32) -> vec2<f32> {
    red_hi[li] = v.x;
    red_lo[li] = v.y;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if li < s {
            let r = df_add(vec2<f32>(red_hi[li], red_lo[li]), vec2<f32>(red_hi[li + s], red_lo[li + s]));
            red_hi[li] = r.x;
            red_lo[li] = r.y;
        }
        workgroupBarrier();
    }
    return vec2<f32>(red_hi[0], red_lo[0]);
}

// Adds the invocations' sums `acc` of the workgroup (a fixed tree) into partials at u0 + workgroup.
fn leave_partial(acc: vec2<f32>, wid: vec3<u32>, nwg: vec3<u32>, li: u32) {
    let r = tree(acc, li);
    if li == 0u {
        let g = wid.y * nwg.x + wid.x;
        partials[2u * (p.u0 + g)] = r.x;
        partials[2u * (p.u0 + g) + 1u] = r.y;
    }
}

// The workgroup's block: values base + e·256 + li, e < PER.
fn block_base(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u * PER;
}

// The sum of the region of partials at u1 (h pairs), in a fixed order (one workgroup).
fn region_total(li: u32) -> f32 {
    var acc = vec2<f32>(0.0, 0.0);
    for (var i = li; i < p.h; i += 256u) {
        acc = df_add(acc, vec2<f32>(partials[2u * (p.u1 + i)], partials[2u * (p.u1 + i) + 1u]));
    }
    let r = tree(acc, li);
    return r.x + r.y;
}

// α = ρ·sᵀq of slot u2.
@compute @workgroup_size(256)
fn lbfgs_alpha(@builtin(local_invocation_index) li: u32) {
    let t = region_total(li);
    if li == 0u {
        scal[p.c + p.u2] = scal[p.u2] * t;
    }
}

// β = ρ·yᵀq of slot u2; the second loop adds (α − β)·s.
@compute @workgroup_size(256)
fn lbfgs_beta(@builtin(local_invocation_index) li: u32) {
    let t = region_total(li);
    if li == 0u {
        scal[2u * p.c + p.u2] = scal[p.c + p.u2] - scal[p.u2] * t;
    }
}

// partials[u0 + workgroup] = Σ a·q over the workgroup's block (the newest pair's sᵀq, before the
// first loop).
@compute @workgroup_size(256)
fn lbfgs_dot(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
    let base = block_base(wid, nwg);
    var acc = vec2<f32>(0.0, 0.0);
    for (var e = 0u; e < PER; e++) {
        let i = base + e * 256u + li;
        if i < p.n {
            acc = df_add(acc, vec2<f32>(a[i] * q[i], 0.0));
        }
    }
    leave_partial(acc, wid, nwg, li);
}

// First loop, slot u2 (a = its y, b = the next older pair's s): q −= α·y, then the partials of b·q.
@compute @workgroup_size(256)
fn lbfgs_first(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let alpha = scal[p.c + p.u2];
    let base = block_base(wid, nwg);
    var acc = vec2<f32>(0.0, 0.0);
    for (var e = 0u; e < PER; e++) {
        let i = base + e * 256u + li;
        if i < p.n {
            let v = q[i] + -alpha * a[i];
            q[i] = v;
            acc = df_add(acc, vec2<f32>(b[i] * v, 0.0));
        }
    }
    leave_partial(acc, wid, nwg, li);
}

// Between the loops (b = the oldest pair's y): q *= γ, then the partials of b·q.
@compute @workgroup_size(256)
fn lbfgs_gamma(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let gamma = scal[3u * p.c];
    let base = block_base(wid, nwg);
    var acc = vec2<f32>(0.0, 0.0);
    for (var e = 0u; e < PER; e++) {
        let i = base + e * 256u + li;
        if i < p.n {
            let v = q[i] * gamma;
            q[i] = v;
            acc = df_add(acc, vec2<f32>(b[i] * v, 0.0));
        }
    }
    leave_partial(acc, wid, nwg, li);
}

// Second loop, slot u2 (a = its s, b = the next newer pair's y): q += (α − β)·s, then the partials
// of b·q.
@compute @workgroup_size(256)
fn lbfgs_second(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let coef = scal[2u * p.c + p.u2];
    let base = block_base(wid, nwg);
    var acc = vec2<f32>(0.0, 0.0);
    for (var e = 0u; e < PER; e++) {
        let i = base + e * 256u + li;
        if i < p.n {
            let v = q[i] + coef * a[i];
            q[i] = v;
            acc = df_add(acc, vec2<f32>(b[i] * v, 0.0));
        }
    }
    leave_partial(acc, wid, nwg, li);
}
