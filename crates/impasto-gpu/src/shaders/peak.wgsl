// What an adapter reaches through this toolchain (WGSL, naga, the driver) with the simplest kernels
// of each kind (`peak.rs`), appended to the plain GEMM's source so that `peak_inner` runs the GEMM's
// own inner step (`acc8_fma` over `a_quads`/`b_quads`) and all of them use its bindings: `a` read,
// `c` written, `p` the parameters (`p.k` rounds, `p.alpha` and `p.n` below).

// `peak_fma`: each invocation's fma steps, 8 independent vec4 chains a step (no memory in the loop).
const PEAK_STEPS = 512u;

// Invocation i (of 256 a workgroup, along x) runs v ← v·alpha + a[256] on 8 vec4s that start from
// a[i % 256] + 0, 1, …, 31, PEAK_STEPS times, and writes their sum to c[i].
@compute @workgroup_size(256)
fn peak_fma(@builtin(global_invocation_id) gid: vec3<u32>) {
    let x = a[gid.x & 255u];
    let m = vec4<f32>(p.alpha);
    let s = vec4<f32>(a[256]);
    var v0 = vec4<f32>(x, x + 1.0, x + 2.0, x + 3.0);
    var v1 = v0 + 4.0;
    var v2 = v0 + 8.0;
    var v3 = v0 + 12.0;
    var v4 = v0 + 16.0;
    var v5 = v0 + 20.0;
    var v6 = v0 + 24.0;
    var v7 = v0 + 28.0;
    for (var r = 0u; r < PEAK_STEPS; r++) {
        v0 = fma(v0, m, s);
        v1 = fma(v1, m, s);
        v2 = fma(v2, m, s);
        v3 = fma(v3, m, s);
        v4 = fma(v4, m, s);
        v5 = fma(v5, m, s);
        v6 = fma(v6, m, s);
        v7 = fma(v7, m, s);
    }
    let v = v0 + v1 + v2 + v3 + v4 + v5 + v6 + v7;
    c[gid.x] = v.x + v.y + v.z + v.w;
}

// `tile8`'s inner step without its staging: a workgroup of 64 stages one block of BK × 16 quads of A
// (from a[0..]) and of B (the same values halved) once, then runs `p.k` rounds of BK steps of
// `acc8_fma` over it, a barrier after each round as `tile8` has, and invocation li writes the sum of
// its 64 outputs to c[64·workgroup + li].
@compute @workgroup_size(64)
fn peak_inner(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    for (var e = li; e < STAGE; e += 64u) {
        let v = vec4<f32>(a[4u * e], a[4u * e + 1u], a[4u * e + 2u], a[4u * e + 3u]);
        a_quads[e] = v;
        b_quads[e] = 0.5 * v;
    }
    workgroupBarrier();
    let tx = li & 7u;
    let ty = li >> 3u;
    var acc: Acc8;
    for (var r = 0u; r < p.k; r++) {
        for (var kk = 0u; kk < BK; kk++) {
            let q = kk * 17u;
            acc8_fma(&acc, a_quads[q + ty], a_quads[q + 8u + ty], b_quads[q + tx], b_quads[q + 8u + tx]);
        }
        workgroupBarrier();
    }
    let s = acc.c00 + acc.c01 + acc.c10 + acc.c11 + acc.c20 + acc.c21 + acc.c30 + acc.c31
        + acc.c40 + acc.c41 + acc.c50 + acc.c51 + acc.c60 + acc.c61 + acc.c70 + acc.c71;
    c[wid.x * 64u + li] = s.x + s.y + s.z + s.w;
}

// c[i] = a[i] + (i mod 1024) for the first p.n values, one per invocation (the index, so that the
// copy's result shows it ran), over a grid of workgroups of 256 that is p.xn workgroups wide.
@compute @workgroup_size(256)
fn peak_copy(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * p.xn * 256u + gid.x;
    if i < p.n {
        c[i] = a[i] + f32(i & 1023u);
    }
}
