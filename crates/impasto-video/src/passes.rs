//! The multi-pass algorithm of Ruder, Dosovitskiy & Brox (2016, §4.3 of the journal version): after
//! the first pass over a clip, further passes go over it again in alternating directions; each frame
//! starts from its own last result blended with the neighbour just revisited (carried along the flow,
//! where that is reliable) and is held to that neighbour by the temporal term. A single forward pass
//! lets the style drift from frame to frame (the frames can only follow their past); passes backward
//! let every frame also follow its future.

use image::Rgb32FImage;

use crate::flow::FlowParams;
use crate::plane::Plane;
use crate::temporal::{Earlier, carry_over};
use crate::warp::blend;

/// The weight of the carried neighbour against the frame's own last result where the flow is
/// reliable (Ruder et al.'s `blendWeight`): 1 starts such a pixel halfway between the two.
pub const BLEND_WEIGHT: f32 = 1.0;

/// The frames of pass `pass` (1 = the first, forward) over a clip of `frames` frames, in the order
/// they are processed, each with the neighbour it is held to: the frame processed just before it
/// (`None` for the pass's first frame). Odd passes run forward, even ones backward.
pub fn pass_frames(pass: usize, frames: usize) -> Vec<(usize, Option<usize>)> {
    if pass % 2 == 1 {
        (0..frames).map(|t| (t, t.checked_sub(1))).collect()
    } else {
        (0..frames).rev().map(|t| (t, (t + 1 < frames).then_some(t + 1))).collect()
    }
}

/// What a frame of a later pass starts from and is held to.
#[derive(Debug, Clone)]
pub struct Revisit {
    /// The start of the optimisation: the frame's own last result, blended with `target` where the
    /// flow is reliable (`(own + b·c·target) / (1 + b·c)`, `b` = [`BLEND_WEIGHT`], `c` = `mask`).
    pub init: Rgb32FImage,
    /// The neighbour's result carried along the flow onto the frame.
    pub target: Rgb32FImage,
    /// Where that carry can be trusted (1) or not (0): the temporal term's weight per pixel.
    pub mask: Plane,
}

/// A frame revisited in a later pass: `own` is its result from the last pass, `content` its content
/// frame, and `neighbour` the frame it is held to, with that frame's result from this pass.
pub fn revisit(
    own: &Rgb32FImage,
    content: &Rgb32FImage,
    neighbour: Earlier<'_>,
    params: &FlowParams,
) -> Revisit {
    let (target, mask) = carry_over(&[neighbour], content, params);
    let share = Plane {
        width: mask.width,
        height: mask.height,
        data: mask.data.iter().map(|&c| BLEND_WEIGHT * c / (1.0 + BLEND_WEIGHT * c)).collect(),
    };
    let init = blend(&target, own, &share);
    Revisit { init, target, mask }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_alternate_and_each_frame_follows_the_one_before_it() {
        assert_eq!(pass_frames(1, 3), vec![(0, None), (1, Some(0)), (2, Some(1))]);
        assert_eq!(pass_frames(2, 3), vec![(2, None), (1, Some(2)), (0, Some(1))]);
        assert_eq!(pass_frames(3, 2), vec![(0, None), (1, Some(0))]);
        assert_eq!(pass_frames(4, 1), vec![(0, None)]);
        assert!(pass_frames(2, 0).is_empty());
    }
}
