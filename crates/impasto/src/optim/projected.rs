//! The passes of a projected L-BFGS step over the pixels, each one parallel sweep of fixed chunks:
//! the free gradient, the direction masked to the free set with gᵀd and max |d|, the trial point
//! with s, gᵀs and whether the step is negligible, and the new pair's y with yᵀs.
//!
//! A step used to make some fifteen passes over freshly allocated image-sized vectors (3 MB at
//! 512 px), most of them serial; on a GPU run the host does them every iteration. The sums here are
//! [`super::dot`]'s, chunk by chunk with [`dot_chunk`] and the chunks' sums added in order, so they
//! give its bits whatever the thread count, and the step gives the bits it gave as separate passes.

use rayon::prelude::*;

use super::vector::{CHUNK, dot_chunk};

/// Whether a value `x` in `lo..=hi` with gradient `g` sits at a bound that `g` pushes it past (the
/// active set: such values stay where they are).
#[inline]
fn active(x: f32, g: f32, lo: f32, hi: f32) -> bool {
    // `&` and `|`, not `&&` and `||`: no branches, so that the passes vectorise.
    (x <= lo) & (g > 0.0) | (x >= hi) & (g < 0.0)
}

/// Lanes of the passes' running maxima (independent, so that they vectorise).
const LANES: usize = 8;

/// The largest |v| over `v`, NaN ignored (as `f64::max` does), with whether any was NaN.
fn largest_abs(v: &[f32]) -> (f32, bool) {
    let (mut m, mut nan) = ([0.0f32; LANES], false);
    let body = v.chunks_exact(LANES);
    for &a in body.remainder() {
        m[0] = if a.abs() > m[0] { a.abs() } else { m[0] };
        nan |= a.is_nan();
    }
    for c in body {
        for l in 0..LANES {
            let a = c[l].abs();
            m[l] = if a > m[l] { a } else { m[l] };
            nan |= a.is_nan();
        }
    }
    (m.iter().fold(0.0f32, |a, &b| if b > a { b } else { a }), nan)
}

/// `out` = `g` with the active values zeroed, or its negation (`negate`).
pub(super) fn free_gradient(x: &[f32], g: &[f32], lo: f32, hi: f32, negate: bool, out: &mut Vec<f32>) {
    assert_eq!(x.len(), g.len(), "free gradient of vectors of different lengths");
    out.resize(x.len(), 0.0); // the pass overwrites every value
    let sign = if negate { -1.0 } else { 1.0 };
    out.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).zip(g.par_chunks(CHUNK)).for_each(
        move |((o, x), g)| {
            for ((o, &x), &g) in o.iter_mut().zip(x).zip(g) {
                *o = if active(x, g, lo, hi) { 0.0 } else { sign * g };
            }
        },
    );
}

/// Zeroes `d` at the active values; returns gᵀd and the largest |d|.
pub(super) fn mask_direction(x: &[f32], g: &[f32], lo: f32, hi: f32, d: &mut [f32]) -> (f64, f64) {
    assert!(x.len() == g.len() && g.len() == d.len(), "masking a direction of another length");
    let parts: Vec<(f64, f64)> = d
        .par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .zip(g.par_chunks(CHUNK))
        .map(move |((d, x), g)| {
            for ((d, &x), &g) in d.iter_mut().zip(x).zip(g) {
                *d = if active(x, g, lo, hi) { 0.0 } else { *d };
            }
            // |d| as f64 is exact and keeps the order, so the f32 maximum is the f64 one.
            (dot_chunk(g, d), largest_abs(d).0 as f64)
        })
        .collect();
    (parts.iter().map(|p| p.0).sum(), parts.iter().fold(0.0, |m, p| m.max(p.1)))
}

/// What a trial point's pass found.
pub(super) struct Trial {
    /// gᵀs.
    pub(super) gs: f64,
    /// Whether every |sᵢ| is below the given step (the point is the current one, to the eye).
    pub(super) negligible: bool,
}

/// The trial point `x_new` = clamp(x + t·d) and `s` = `x_new` − `x`, with gᵀs and whether every
/// |sᵢ| < `min_step`.
pub(super) fn trial(
    (x, g, d): (&[f32], &[f32], &[f32]),
    t: f32,
    (lo, hi): (f32, f32),
    min_step: f64,
    x_new: &mut Vec<f32>,
    s: &mut Vec<f32>,
) -> Trial {
    assert!(x.len() == g.len() && g.len() == d.len(), "a trial point from vectors of different lengths");
    x_new.resize(x.len(), 0.0); // the pass overwrites every value of both
    s.resize(x.len(), 0.0);
    let parts: Vec<(f64, bool)> = x_new
        .par_chunks_mut(CHUNK)
        .zip(s.par_chunks_mut(CHUNK))
        .zip(x.par_chunks(CHUNK).zip(d.par_chunks(CHUNK)).zip(g.par_chunks(CHUNK)))
        .map(move |((xn, s), ((x, d), g))| {
            for (((xn, s), &x), &d) in xn.iter_mut().zip(s.iter_mut()).zip(x).zip(d) {
                // `f32::clamp`'s own steps, without its per-call check that lo ≤ hi.
                let v = x + t * d;
                let v = if v < lo { lo } else { v };
                *xn = if v > hi { hi } else { v };
                *s = *xn - x;
            }
            // Every |sᵢ| < min_step: none NaN and the largest below it.
            let (largest, nan) = largest_abs(s);
            (dot_chunk(g, s), !nan && (largest as f64) < min_step)
        })
        .collect();
    Trial { gs: parts.iter().map(|p| p.0).sum(), negligible: parts.iter().all(|p| p.1) }
}

/// `y` = `g_new` − `g`; returns yᵀs.
pub(super) fn new_pair(g_new: &[f32], g: &[f32], s: &[f32], y: &mut Vec<f32>) -> f64 {
    assert!(g_new.len() == g.len() && g.len() == s.len(), "a pair from vectors of different lengths");
    y.resize(g.len(), 0.0); // the pass overwrites every value
    let parts: Vec<f64> = y
        .par_chunks_mut(CHUNK)
        .zip(g_new.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)).zip(s.par_chunks(CHUNK)))
        .map(|(y, ((gn, g), s))| {
            for ((y, &a), &b) in y.iter_mut().zip(gn).zip(g) {
                *y = a - b;
            }
            dot_chunk(y, s)
        })
        .collect();
    parts.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::super::dot;
    use super::*;

    fn values(n: usize, seed: u32, lo: f32, hi: f32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let u = ((i as u32).wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) % 10_007;
                lo + (hi - lo) * u as f32 / 10_006.0
            })
            .collect()
    }

    /// Pixels with some at each bound, gradients of both signs.
    fn point(n: usize) -> (Vec<f32>, Vec<f32>) {
        let x = values(n, 1, -0.2, 1.2).into_iter().map(|v| v.clamp(0.0, 1.0)).collect();
        (x, values(n, 2, -1.0, 1.0))
    }

    /// Each pass against the separate loops the step used to run, to the bit, on odd lengths and
    /// across chunks, and its buffers reused at another length.
    #[test]
    fn the_fused_passes_give_the_separate_passes_bits() {
        let (mut free, mut x_new, mut s, mut y) = (Vec::new(), vec![7.0; 5], Vec::new(), vec![1.0; 9]);
        for n in [1, 3, 5, 63, 65, CHUNK - 1, CHUNK + 5, 3 * CHUNK + 17, 70] {
            let (x, g) = point(n);
            let (lo, hi) = (0.0f32, 1.0f32);
            let act: Vec<bool> = x.iter().zip(&g).map(|(&x, &g)| active(x, g, lo, hi)).collect();
            assert!(n < 65 || act.iter().any(|&a| a) && act.iter().any(|&a| !a));
            let want_free: Vec<f32> = g.iter().zip(&act).map(|(&g, &a)| if a { 0.0 } else { g }).collect();
            free_gradient(&x, &g, lo, hi, false, &mut free);
            assert_eq!(free, want_free, "n {n}");
            free_gradient(&x, &g, lo, hi, true, &mut free);
            assert!(free.iter().zip(&want_free).all(|(a, b)| *a == -*b), "n {n}");

            let mut d = values(n, 3, -2.0, 2.0);
            let mut want_d = d.clone();
            want_d.iter_mut().zip(&act).filter(|(_, a)| **a).for_each(|(v, _)| *v = 0.0);
            let (gtd, dmax) = mask_direction(&x, &g, lo, hi, &mut d);
            assert_eq!(d, want_d, "n {n}");
            assert_eq!(gtd.to_bits(), dot(&g, &want_d).to_bits(), "n {n}");
            assert_eq!(dmax, want_d.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64)), "n {n}");

            let t = 0.37f32;
            let want_x: Vec<f32> = x.iter().zip(&d).map(|(&x, &d)| (x + t * d).clamp(lo, hi)).collect();
            let want_s: Vec<f32> = want_x.iter().zip(&x).map(|(a, b)| a - b).collect();
            let tr = trial((&x, &g, &d), t, (lo, hi), 1e-7, &mut x_new, &mut s);
            assert_eq!((&x_new, &s), (&want_x, &want_s), "n {n}");
            assert_eq!(tr.gs.to_bits(), dot(&g, &want_s).to_bits(), "n {n}");
            assert_eq!(tr.negligible, want_s.iter().all(|v| (v.abs() as f64) < 1e-7), "n {n}");
            let still = trial((&x, &g, &d), 0.0, (lo, hi), 1e-7, &mut x_new, &mut s);
            assert!(still.negligible && still.gs == 0.0, "n {n}");

            let g_new = values(n, 4, -1.0, 1.0);
            let want_y: Vec<f32> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
            let ys = new_pair(&g_new, &g, &want_s, &mut y);
            assert_eq!(y, want_y, "n {n}");
            assert_eq!(ys.to_bits(), dot(&want_y, &want_s).to_bits(), "n {n}");
        }
    }

    #[test]
    fn the_passes_give_the_same_bits_on_one_thread_and_on_four() {
        let n = 5 * CHUNK + 3;
        let (x, g) = point(n);
        let d0 = values(n, 5, -1.0, 1.0);
        let run = |threads| {
            rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| {
                let mut d = d0.clone();
                let (gtd, _) = mask_direction(&x, &g, 0.0, 1.0, &mut d);
                let (mut x_new, mut s, mut y) = (Vec::new(), Vec::new(), Vec::new());
                let tr = trial((&x, &g, &d), 0.5, (0.0, 1.0), 1e-7, &mut x_new, &mut s);
                let ys = new_pair(&d0, &g, &s, &mut y);
                [gtd.to_bits(), tr.gs.to_bits(), ys.to_bits()]
            })
        };
        assert_eq!(run(1), run(4));
    }
}
