//! Synthetic frames with known motion, made here: a smooth multi-frequency texture moved by a
//! translation, a zoom, a rotation, or a textured square moving over a static background.

use impasto_video::{Flow, Plane};

pub const SIZE: usize = 96;

/// Sum of sinusoids (wavelengths 7–41 px, several directions) around mid-grey, values 0..255.
fn texture(x: f32, y: f32, waves: &[(f32, f32, f32, f32)]) -> f32 {
    let mut v = 127.5;
    for &(lambda, angle, phase, amp) in waves {
        let (c, s) = (angle.cos(), angle.sin());
        v += amp * (std::f32::consts::TAU * (c * x + s * y) / lambda + phase).sin();
    }
    v
}

const BACKGROUND: [(f32, f32, f32, f32); 6] = [
    (41.0, 0.3, 0.1, 30.0),
    (29.0, 1.9, 1.3, 25.0),
    (17.0, 0.9, 2.1, 20.0),
    (11.0, 2.6, 0.7, 18.0),
    (7.3, 0.2, 1.7, 14.0),
    (13.0, 1.3, 0.4, 15.0),
];
const OBJECT: [(f32, f32, f32, f32); 4] =
    [(9.0, 0.7, 0.3, 40.0), (14.0, 2.2, 1.1, 35.0), (6.5, 1.4, 2.5, 25.0), (23.0, 0.1, 0.9, 20.0)];

pub fn background(x: f32, y: f32) -> f32 {
    texture(x, y, &BACKGROUND)
}

/// A global motion: frame B is frame A with each point p moved to `m(p)`; `inv` is m⁻¹.
pub struct Global {
    pub a: Plane,
    pub b: Plane,
    /// Ground-truth flow A → B.
    pub truth: Flow,
}

pub fn global(m: impl Fn(f32, f32) -> (f32, f32), inv: impl Fn(f32, f32) -> (f32, f32)) -> Global {
    let a = Plane::from_fn(SIZE, SIZE, |x, y| background(x as f32, y as f32));
    let b = Plane::from_fn(SIZE, SIZE, |x, y| {
        let (sx, sy) = inv(x as f32, y as f32);
        background(sx, sy)
    });
    let u = Plane::from_fn(SIZE, SIZE, |x, y| m(x as f32, y as f32).0 - x as f32);
    let v = Plane::from_fn(SIZE, SIZE, |x, y| m(x as f32, y as f32).1 - y as f32);
    Global { a, b, truth: Flow { u, v } }
}

/// A 28 px textured square at `from` in frame A and `to` in frame B over the static background.
pub struct Object {
    pub from: (usize, usize),
    pub to: (usize, usize),
}

pub const SIDE: usize = 28;

impl Object {
    pub fn inside(at: (usize, usize), x: usize, y: usize) -> bool {
        (at.0..at.0 + SIDE).contains(&x) && (at.1..at.1 + SIDE).contains(&y)
    }

    pub fn frame(&self, at: (usize, usize)) -> Plane {
        Plane::from_fn(SIZE, SIZE, |x, y| {
            if Object::inside(at, x, y) {
                texture((x - at.0) as f32, (y - at.1) as f32, &OBJECT)
            } else {
                background(x as f32, y as f32)
            }
        })
    }

    /// Ground-truth flow from the frame with the object at `p` to the one with it at `q`.
    pub fn truth(&self, p: (usize, usize), q: (usize, usize)) -> Flow {
        let (dx, dy) = (q.0 as f32 - p.0 as f32, q.1 as f32 - p.1 as f32);
        let u = Plane::from_fn(SIZE, SIZE, |x, y| if Object::inside(p, x, y) { dx } else { 0.0 });
        let v = Plane::from_fn(SIZE, SIZE, |x, y| if Object::inside(p, x, y) { dy } else { 0.0 });
        Flow { u, v }
    }
}

/// Mean endpoint error over the pixels where `keep` is true.
pub fn epe(flow: &Flow, truth: &Flow, keep: impl Fn(usize, usize) -> bool) -> f32 {
    let (mut sum, mut n) = (0.0f32, 0usize);
    for y in 0..SIZE {
        for x in 0..SIZE {
            if keep(x, y) {
                let du = flow.u.at(x, y) - truth.u.at(x, y);
                let dv = flow.v.at(x, y) - truth.v.at(x, y);
                sum += (du * du + dv * dv).sqrt();
                n += 1;
            }
        }
    }
    sum / n.max(1) as f32
}

/// Whether p + truth(p) stays `margin` pixels inside the frame (the motion is visible there).
pub fn stays_inside(truth: &Flow, x: usize, y: usize, margin: f32) -> bool {
    let (tx, ty) = (x as f32 + truth.u.at(x, y), y as f32 + truth.v.at(x, y));
    let hi = SIZE as f32 - 1.0 - margin;
    tx >= margin && ty >= margin && tx <= hi && ty <= hi
}
