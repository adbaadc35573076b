// L-BFGS two-loop recursion over a history kept on the device. A vector longer than one storage
// binding is split into segments: a dot product runs once per segment, each workgroup leaving one
// partial sum (a fixed tree), and a one-workgroup `lbfgs_*` finish adds every partial in a fixed
// order and turns the sum into the next coefficient. Sums are double-f32 (hi + lo, error-free
// two-sum additions), so a dot product of a million values keeps about 40 bits, like the host's f64.
// The coefficients stay in `scal`, read by the axpy kernels: no read-back between the steps.
//
// scal layout (m = ring capacity): [0, m) ρ of each slot, [m, 2m) α, [2m, 3m) −α (first loop's
// axpy), [3m, 4m) α − β (second loop's), 4m: sᵀy of the newest pair, 4m + 1: γ = sᵀy / yᵀy.

// `struct P` (the parameters) is prepended from params.wgsl.
// lbfgs_dot: n = segment length, u0 = first partial (pairs) of this segment.
// finish: n = partials (pairs) to add, u0 = slot, u1 = m.
// axpy / scale: n = segment length, u0 = index of the coefficient in scal.

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

// partials[u0 + workgroup] = Σ a·b over the workgroup's block of 256·PER values.
@compute @workgroup_size(256)
fn lbfgs_dot(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
    let g = wid.y * nwg.x + wid.x;
    let base = g * 256u * PER;
    var acc = vec2<f32>(0.0, 0.0);
    for (var e = 0u; e < PER; e++) {
        let i = base + e * 256u + li;
        if i < p.n {
            acc = df_add(acc, vec2<f32>(a[i] * b[i], 0.0));
        }
    }
    let r = tree(acc, li);
    if li == 0u {
        partials[2u * (p.u0 + g)] = r.x;
        partials[2u * (p.u0 + g) + 1u] = r.y;
    }
}

// The sum of the first n partials, in a fixed order (valid in invocation 0).
fn total(li: u32) -> f32 {
    var acc = vec2<f32>(0.0, 0.0);
    for (var i = li; i < p.n; i += 256u) {
        acc = df_add(acc, vec2<f32>(partials[2u * i], partials[2u * i + 1u]));
    }
    let r = tree(acc, li);
    return r.x + r.y;
}

// α = ρ·sᵀq of slot u0.
@compute @workgroup_size(256)
fn lbfgs_alpha(@builtin(local_invocation_index) li: u32) {
    let t = total(li);
    if li == 0u {
        let alpha = scal[p.u0] * t;
        scal[p.u1 + p.u0] = alpha;
        scal[2u * p.u1 + p.u0] = -alpha;
    }
}

// β = ρ·yᵀq of slot u0; the second loop adds (α − β)·s.
@compute @workgroup_size(256)
fn lbfgs_beta(@builtin(local_invocation_index) li: u32) {
    let t = total(li);
    if li == 0u {
        scal[3u * p.u1 + p.u0] = scal[p.u1 + p.u0] - scal[p.u0] * t;
    }
}

// sᵀy of the newest pair.
@compute @workgroup_size(256)
fn lbfgs_sy(@builtin(local_invocation_index) li: u32) {
    let t = total(li);
    if li == 0u {
        scal[4u * p.u1] = t;
    }
}

// γ = sᵀy / yᵀy of the newest pair.
@compute @workgroup_size(256)
fn lbfgs_gamma(@builtin(local_invocation_index) li: u32) {
    let t = total(li);
    if li == 0u {
        scal[4u * p.u1 + 1u] = scal[4u * p.u1] / t;
    }
}

// q += scal[u0]·a.
@compute @workgroup_size(256)
fn lbfgs_axpy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + li;
    if i < p.n {
        q[i] += scal[p.u0] * a[i];
    }
}

// q *= scal[u0].
@compute @workgroup_size(256)
fn lbfgs_scale(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + li;
    if i < p.n {
        q[i] *= scal[p.u0];
    }
}
