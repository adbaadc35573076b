// The parameters of every `ops.wgsl` and `history.wgsl` kernel (`OpParams` in program.rs), prepended
// to both sources: eight u32 then eight f32, each kernel documenting what it reads from them.

struct P {
    n: u32, c: u32, h: u32, w: u32,
    u0: u32, u1: u32, u2: u32, u3: u32,
    f0: f32, f1: f32, f2: f32, f3: f32,
    f4: f32, f5: f32, f6: f32, f7: f32,
}
