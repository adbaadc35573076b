//! Dense optical flow by pyramidal DIS (Kroeger, Timofte, Dai & Van Gool, "Fast Optical Flow using Dense
//! Inverse Search", ECCV 2016): coarse to fine, each level estimates one translation per overlapping
//! patch by inverse-compositional Gauss–Newton (the template's gradients and Hessian are computed once),
//! then densifies by averaging the patches that cover a pixel, each weighted by
//! `1 / max(1, |I₁(x + u) − I₀(x)|)` (intensities 0..255).

use rayon::prelude::*;

use crate::plane::Plane;

/// A dense displacement field: the pixel (x, y) of the first frame is at (x + u, y + v) in the second.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    /// Horizontal displacement in pixels.
    pub u: Plane,
    /// Vertical displacement in pixels.
    pub v: Plane,
}

impl Flow {
    /// No motion.
    pub fn zeros(width: usize, height: usize) -> Flow {
        Flow { u: Plane::zeros(width, height), v: Plane::zeros(width, height) }
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.u.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.u.height
    }

    /// The displacement interpolated at a sub-pixel position.
    pub fn sample(&self, x: f32, y: f32) -> (f32, f32) {
        (self.u.sample(x, y), self.v.sample(x, y))
    }

    /// This flow resampled to `width`×`height`, its vectors scaled with the size.
    pub fn resized(&self, width: usize, height: usize) -> Flow {
        let (sx, sy) = (width as f32 / self.width() as f32, height as f32 / self.height() as f32);
        let mut u = self.u.resized(width, height);
        let mut v = self.v.resized(width, height);
        u.data.iter_mut().for_each(|a| *a *= sx);
        v.data.iter_mut().for_each(|a| *a *= sy);
        Flow { u, v }
    }
}

/// The settings of [`dense_flow`]. `Default` gives the tested values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowParams {
    /// Side of the square patches (θ_ps).
    pub patch: usize,
    /// Distance between neighbouring patches (θ_ps·(1 − θ_ov)).
    pub stride: usize,
    /// Gauss–Newton iterations per patch (θ_it).
    pub iterations: usize,
    /// The coarsest pyramid level keeps at least this many pixels on its shorter side.
    pub coarsest_side: usize,
}

impl Default for FlowParams {
    fn default() -> Self {
        FlowParams { patch: 8, stride: 3, iterations: 16, coarsest_side: 16 }
    }
}

/// The flow from `from` to `to` (grey images of the same size, values 0..255): `from(p) ≈ to(p + w(p))`.
pub fn dense_flow(from: &Plane, to: &Plane, params: &FlowParams) -> Flow {
    assert_eq!((from.width, from.height), (to.width, to.height), "frames of different sizes");
    let mut pyr0 = vec![from.blur()];
    let mut pyr1 = vec![to.blur()];
    let min_side = params.coarsest_side.max(params.patch);
    while pyr0.len() < 12 {
        let last = &pyr0[pyr0.len() - 1];
        if last.width.min(last.height) / 2 < min_side {
            break;
        }
        let next0 = last.blur().half();
        let next1 = pyr1[pyr1.len() - 1].blur().half();
        pyr0.push(next0);
        pyr1.push(next1);
    }
    let mut flow: Option<Flow> = None;
    for (i0, i1) in pyr0.iter().zip(&pyr1).rev() {
        let init = match flow {
            None => Flow::zeros(i0.width, i0.height),
            Some(f) => f.resized(i0.width, i0.height),
        };
        flow = Some(level(i0, i1, init, params));
    }
    flow.unwrap_or_else(|| Flow::zeros(from.width, from.height))
}

/// Patch positions along one axis of length `n`: every `stride`, the last one flush with the end.
fn positions(n: usize, patch: usize, stride: usize) -> Vec<usize> {
    let last = n.saturating_sub(patch);
    let mut p: Vec<usize> = (0..=last).step_by(stride.max(1)).collect();
    if p.last() != Some(&last) {
        p.push(last);
    }
    p
}

/// One pyramid level: inverse search on every patch, then densification.
fn level(i0: &Plane, i1: &Plane, init: Flow, params: &FlowParams) -> Flow {
    let (w, h) = (i0.width, i0.height);
    let ps = params.patch.min(w).min(h);
    let (gx, gy) = i0.gradients();
    let xs = positions(w, ps, params.stride);
    let ys = positions(h, ps, params.stride);
    let grid: Vec<(usize, usize)> = ys.iter().flat_map(|&y| xs.iter().map(move |&x| (x, y))).collect();
    let estimates: Vec<(f32, f32)> = grid
        .par_iter()
        .map(|&(px, py)| {
            let c = (px as f32 + (ps - 1) as f32 / 2.0, py as f32 + (ps - 1) as f32 / 2.0);
            let start = init.sample(c.0, c.1);
            inverse_search(i0, i1, &gx, &gy, px, py, ps, start, params.iterations)
        })
        .collect();
    // Densify: each pixel the weighted mean of the patches that cover it.
    let rows: Vec<Vec<(f32, f32)>> = (0..h)
        .into_par_iter()
        .map(|y| {
            let mut acc = vec![(0.0f32, 0.0f32, 0.0f32); w];
            for (&(px, py), &(u, v)) in grid.iter().zip(&estimates) {
                if y < py || y >= py + ps {
                    continue;
                }
                for (x, a) in acc.iter_mut().enumerate().skip(px).take(ps) {
                    let d = (i1.sample(x as f32 + u, y as f32 + v) - i0.at(x, y)).abs();
                    let lambda = 1.0 / d.max(1.0);
                    a.0 += lambda;
                    a.1 += lambda * u;
                    a.2 += lambda * v;
                }
            }
            acc.iter()
                .enumerate()
                .map(
                    |(x, &(s, su, sv))| {
                        if s > 0.0 { (su / s, sv / s) } else { (init.u.at(x, y), init.v.at(x, y)) }
                    },
                )
                .collect()
        })
        .collect();
    let mut out = Flow::zeros(w, h);
    for (y, row) in rows.into_iter().enumerate() {
        for (x, (u, v)) in row.into_iter().enumerate() {
            out.u.data[y * w + x] = u;
            out.v.data[y * w + x] = v;
        }
    }
    out
}

/// Inverse-compositional Gauss–Newton for the translation of the `ps`×`ps` patch of `i0` at (px, py)
/// into `i1`, from `start`. A patch without texture, or one that runs further than its own size from
/// where it started, keeps `start`.
fn inverse_search(
    i0: &Plane,
    i1: &Plane,
    gx: &Plane,
    gy: &Plane,
    px: usize,
    py: usize,
    ps: usize,
    start: (f32, f32),
    iterations: usize,
) -> (f32, f32) {
    let (mut hxx, mut hxy, mut hyy) = (0.0f32, 0.0f32, 0.0f32);
    for y in py..py + ps {
        for x in px..px + ps {
            let (a, b) = (gx.at(x, y), gy.at(x, y));
            hxx += a * a;
            hxy += a * b;
            hyy += b * b;
        }
    }
    let det = hxx * hyy - hxy * hxy;
    if det <= 1e-3 * (hxx + hyy).max(1e-6) {
        return start;
    }
    let (mut u, mut v) = start;
    for _ in 0..iterations {
        let (mut bx, mut by) = (0.0f32, 0.0f32);
        for y in py..py + ps {
            for x in px..px + ps {
                let r = i1.sample(x as f32 + u, y as f32 + v) - i0.at(x, y);
                bx += gx.at(x, y) * r;
                by += gy.at(x, y) * r;
            }
        }
        let du = (hyy * bx - hxy * by) / det;
        let dv = (hxx * by - hxy * bx) / det;
        u -= du;
        v -= dv;
        if du * du + dv * dv < 1e-4 {
            break;
        }
    }
    let moved = ((u - start.0).powi(2) + (v - start.1).powi(2)).sqrt();
    if !u.is_finite() || !v.is_finite() || moved > ps as f32 { start } else { (u, v) }
}
