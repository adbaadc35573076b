//! What a video frame's temporal term holds it to, after Ruder, Dosovitskiy & Brox ("Artistic style
//! transfer for videos", 2016): the earlier stylised frames carried onto the current one along the
//! optical flow, and where each can be trusted — the previous frame (short-term consistency) and, for
//! long-term consistency, frames further back, each only on the pixels no nearer frame covers.
//!
//! The reliability mask of a flow (their consistencyChecker) is 0 where `p + w(p)` leaves the frame,
//! where the flows disagree, `|w + ŵ|² ≥ 0.01·(|w|² + |ŵ|²) + 0.5` with `ŵ` the other flow at
//! `p + w(p)` (disocclusions), and on a motion boundary, `|∇u|² + |∇v|² > 0.01·|w|² + 0.002` — except
//! where the content frame carried along the flow matches the current one within
//! [`BOUNDARY_MATCH_TOLERANCE`]: DIS flow is smooth across patches, so that gradient test alone flags a
//! band several pixels wide around every motion edge (and flow noise in smooth motion) whose warp is
//! right.

use image::Rgb32FImage;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::flow::{Flow, FlowParams, dense_flow};
use crate::plane::Plane;
use crate::warp::warp;

/// A pixel on a motion boundary stays reliable where `|earlier(p + w(p)) − frame(p)|` is at most this
/// (grey levels 0..255). Measured on the README's clips: the boundary pixels this keeps carry a warped
/// target within 0.02–0.03 (RGB 0..1) of the true one, against 0.07–0.13 error where they were left free.
pub const BOUNDARY_MATCH_TOLERANCE: f32 = 5.0;

/// The most frames back a long-term offset may reach (each one kept in memory).
pub const MAX_OFFSET: usize = 64;

/// The reliability of `flow` (frame t → t−j) given `other` (t−j → t), with `frame` and `earlier` the
/// grey frames t and t−j (0..255): 1 where the flow can be trusted, 0 at disocclusions, where the flow
/// points outside the frame, and on motion boundaries where the warped content does not match.
pub fn reliability(flow: &Flow, other: &Flow, frame: &Plane, earlier: &Plane) -> Plane {
    let (w, h) = (flow.width(), flow.height());
    let (ux, uy) = flow.u.gradients();
    let (vx, vy) = flow.v.gradients();
    let data = (0..w * h)
        .into_par_iter()
        .map(|i| {
            let (x, y) = ((i % w) as f32, (i / w) as f32);
            let (a, b) = (flow.u.data[i], flow.v.data[i]);
            let (tx, ty) = (x + a, y + b);
            if tx < 0.0 || ty < 0.0 || tx > (w - 1) as f32 || ty > (h - 1) as f32 {
                return 0.0;
            }
            let (c, d) = other.sample(tx, ty);
            let sum = (a + c).powi(2) + (b + d).powi(2);
            let mag = a * a + b * b + c * c + d * d;
            if sum >= 0.01 * mag + 0.5 {
                return 0.0;
            }
            let grad = ux.data[i].powi(2) + uy.data[i].powi(2) + vx.data[i].powi(2) + vy.data[i].powi(2);
            let boundary = grad > 0.01 * (a * a + b * b) + 0.002;
            if boundary && (earlier.sample(tx, ty) - frame.data[i]).abs() > BOUNDARY_MATCH_TOLERANCE {
                0.0
            } else {
                1.0
            }
        })
        .collect();
    Plane { width: w, height: h, data }
}

/// Ruder et al.'s long-term weights: `masks[j]` the reliability of the warp from the j-th earlier frame
/// (nearest first), each returned as `max(masks[j] − Σ_{k<j} masks[k], 0)`, so that a pixel is held
/// to the nearest earlier frame that reliably covers it and to no other.
pub fn long_term_masks(masks: &[Plane]) -> Vec<Plane> {
    let mut covered: Option<Plane> = None;
    let mut out = Vec::with_capacity(masks.len());
    for m in masks {
        let c = match &covered {
            None => m.clone(),
            Some(cov) => Plane {
                width: m.width,
                height: m.height,
                data: m.data.iter().zip(&cov.data).map(|(a, b)| (a - b).max(0.0)).collect(),
            },
        };
        match &mut covered {
            None => covered = Some(m.clone()),
            Some(cov) => cov.data.iter_mut().zip(&m.data).for_each(|(a, b)| *a += b),
        }
        out.push(c);
    }
    out
}

/// An earlier frame of the clip: its content and its stylised result (same size as the current frame).
#[derive(Debug, Clone, Copy)]
pub struct Earlier<'a> {
    /// The content frame.
    pub content: &'a Rgb32FImage,
    /// The stylised result.
    pub result: &'a Rgb32FImage,
}

/// The earlier results carried onto `content`, and where that can be trusted, as one target and one
/// mask: `earlier` lists the frames the temporal term looks back to, nearest first (for short-term
/// consistency, just the previous frame). Each gets the flows t → t−j and t−j → t between the content
/// frames, its result warped along the first and the [`reliability`] of that warp; the
/// [`long_term_masks`] `c_j` then combine them into the mask `Σ c_j` and the target `Σ c_j·w_j / Σ c_j`,
/// which gives the temporal loss `Σ_j c_j·(x − w_j)²` of Ruder et al. the same gradient.
pub fn carry_over(
    earlier: &[Earlier<'_>],
    content: &Rgb32FImage,
    params: &FlowParams,
) -> (Rgb32FImage, Plane) {
    let frame = Plane::luma(content);
    let carried: Vec<(Rgb32FImage, Plane)> = earlier
        .par_iter()
        .map(|e| {
            let prev = Plane::luma(e.content);
            let (back, fwd) =
                rayon::join(|| dense_flow(&frame, &prev, params), || dense_flow(&prev, &frame, params));
            (warp(e.result, &back), reliability(&back, &fwd, &frame, &prev))
        })
        .collect();
    let (w, h) = (content.width(), content.height());
    let masks: Vec<Plane> = carried.iter().map(|(_, m)| m.clone()).collect();
    let weights = long_term_masks(&masks);
    let mut mask = Plane::zeros(w as usize, h as usize);
    let mut acc = vec![[0.0f32; 3]; (w * h) as usize];
    for ((target, _), c) in carried.iter().zip(&weights) {
        for (i, (p, a)) in target.pixels().zip(acc.iter_mut()).enumerate() {
            let m = c.data[i];
            mask.data[i] += m;
            for (acc, v) in a.iter_mut().zip(p.0) {
                *acc += m * v;
            }
        }
    }
    let target = Rgb32FImage::from_fn(w, h, |x, y| {
        let i = (y * w + x) as usize;
        let m = mask.data[i];
        image::Rgb(if m > 0.0 { acc[i].map(|v| v / m) } else { [0.0; 3] })
    });
    mask.data.iter_mut().for_each(|m| *m = m.min(1.0));
    (target, mask)
}

/// Parses a list of long-term frame offsets such as `1,2,4`: increasing whole numbers from 1 (the
/// previous frame) up to [`MAX_OFFSET`].
pub fn parse_offsets(text: &str) -> Result<Vec<usize>> {
    let bad = |reason: String| Error::Offsets { given: text.to_string(), reason };
    let mut out: Vec<usize> = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let j: usize = part.parse().map_err(|_| bad(format!("`{part}` is not a whole number of frames")))?;
        if j == 0 || j > MAX_OFFSET {
            return Err(bad(format!("{j} is not between 1 and {MAX_OFFSET}")));
        }
        if out.last().is_some_and(|&l| j <= l) {
            return Err(bad("the offsets must increase".to_string()));
        }
        out.push(j);
    }
    if out.first() != Some(&1) {
        return Err(bad("the list must start with 1 (the previous frame)".to_string()));
    }
    Ok(out)
}
