//! The tile plan of one scale: which overlapping rectangles of the image are optimised one by one.
//! Deterministic (the same numbers give the same plan on every machine) and serialisable, so that
//! other processes can take tiles of it.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Tile origins are multiples of this (the stride of VGG's fourth pooling, the last one before the
/// deepest style layer), so every tile's pooling grids are the whole image's.
pub const TILE_ALIGN: u32 = 16;

/// A rectangle of an image, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rect {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

impl Rect {
    /// The whole of a `width`×`height` image.
    pub fn whole(width: u32, height: u32) -> Rect {
        Rect { x: 0, y: 0, width, height }
    }

    /// Pixels in the rectangle.
    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }
}

/// One axis of a plan: the `[start, end)` span of each tile along it, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Axis {
    /// The tiles' spans.
    pub spans: Vec<(u32, u32)>,
}

impl Axis {
    /// The fewest spans of at most `tile` pixels (the last one up to 15 pixels longer, to end at
    /// `size`; all of them, where the aligned starts leave no other way) whose starts are multiples of [`TILE_ALIGN`], each overlapping the next by at least
    /// `overlap`, no pixel in more than two: as short as that allows, so that overlaps stay near
    /// `overlap` (wide overlaps cost time, and blending two tiles over a wide band averages their
    /// textures away).
    fn new(size: u32, tile: u32, overlap: u32) -> Option<Axis> {
        if size <= tile {
            return Some(Axis { spans: vec![(0, size)] });
        }
        let align = |v: u32| v / TILE_ALIGN * TILE_ALIGN;
        // Spans of at most `tile` first; only where none fit (the aligned starts leave too little
        // overlap), spans up to 15 pixels longer, as the last one may be.
        let passes = (0..2).flat_map(|pass| (2..=(size / TILE_ALIGN + 2)).map(move |n| (pass, n)));
        for (pass, n) in passes {
            // The shortest span that n spans overlapping by `overlap` need, plus the alignment's slack.
            let least = (size + (n - 1) * overlap).div_ceil(n).div_ceil(TILE_ALIGN) * TILE_ALIGN;
            let lens: Vec<u32> = match pass {
                0 => (least..=tile).step_by(TILE_ALIGN as usize).chain(std::iter::once(tile)).collect(),
                _ => (tile + 1..tile + TILE_ALIGN).collect(),
            };
            for len in lens {
                let span = size.saturating_sub(len);
                let starts: Vec<u32> = (0..n)
                    .map(|i| align((u64::from(span) * u64::from(i) / u64::from(n - 1)) as u32))
                    .collect();
                let spans: Vec<(u32, u32)> = starts
                    .iter()
                    .enumerate()
                    .map(|(i, &s)| (s, if i + 1 == n as usize { size } else { (s + len).min(size) }))
                    .collect();
                let overlaps = spans.windows(2).all(|p| p[0].0 < p[1].0 && p[0].1 >= p[1].0 + overlap);
                let two_at_most = spans.windows(3).all(|p| p[2].0 >= p[0].1);
                if overlaps && two_at_most && spans.iter().all(|&(s, e)| e - s < tile + TILE_ALIGN) {
                    return Some(Axis { spans });
                }
            }
        }
        None
    }

    /// The blend weight of tile `i` at coordinate `p` (inside its span): 1, falling to 0 across each
    /// overlap with a neighbour along a raised cosine, so that the weights of the (at most two) tiles
    /// covering a pixel sum to 1.
    pub fn weight(&self, i: usize, p: u32) -> f32 {
        let ramp = |from: u32, to: u32| {
            let t = (f64::from(p - from) + 0.5) / f64::from(to - from);
            0.5 - 0.5 * (std::f64::consts::PI * t).cos()
        };
        let (s, e) = self.spans[i];
        debug_assert!(s <= p && p < e);
        let mut w = 1.0;
        if i > 0 && p < self.spans[i - 1].1 {
            w = ramp(s, self.spans[i - 1].1);
        }
        if i + 1 < self.spans.len() && p >= self.spans[i + 1].0 {
            w = 1.0 - ramp(self.spans[i + 1].0, e);
        }
        w as f32
    }
}

/// How one scale's image is cut into overlapping tiles. Tiles are numbered row by row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TilePlan {
    /// Image width.
    pub width: u32,
    /// Image height.
    pub height: u32,
    /// The tiles' side (the last tile of a row or column may be up to 15 pixels longer).
    pub tile: u32,
    /// The least overlap between neighbouring tiles.
    pub overlap: u32,
    /// Columns.
    pub xs: Axis,
    /// Rows.
    pub ys: Axis,
}

impl TilePlan {
    /// The plan of a `width`×`height` image in tiles of side `tile` overlapping by at least `overlap`.
    /// The tile must be at least [`min_tile`](super::min_tile)`(overlap)`.
    pub fn new(width: u32, height: u32, tile: u32, overlap: u32) -> Result<TilePlan> {
        let bad = |reason: String| Error::Config { what: "tile size", reason };
        if tile < super::min_tile(overlap) {
            return Err(bad(format!(
                "{tile} px is too small: tiles overlapping by {overlap} px must be at least {} px",
                super::min_tile(overlap)
            )));
        }
        let axis = |size| {
            Axis::new(size, tile, overlap).ok_or_else(|| bad(format!("{tile} px does not fit {size} px")))
        };
        Ok(TilePlan { width, height, tile, overlap, xs: axis(width)?, ys: axis(height)? })
    }

    /// How many tiles.
    pub fn len(&self) -> usize {
        self.xs.spans.len() * self.ys.spans.len()
    }

    /// Whether the plan has no tile (never: every plan has at least one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tile `i`'s rectangle.
    pub fn rect(&self, i: usize) -> Rect {
        let n = self.xs.spans.len();
        let ((x0, x1), (y0, y1)) = (self.xs.spans[i % n], self.ys.spans[i / n]);
        Rect { x: x0, y: y0, width: x1 - x0, height: y1 - y0 }
    }

    /// Every tile's rectangle, in order.
    pub fn rects(&self) -> impl Iterator<Item = Rect> + '_ {
        (0..self.len()).map(|i| self.rect(i))
    }

    /// The blend weights of tile `i`, one per pixel of its rectangle (row-major).
    pub fn weights(&self, i: usize) -> Vec<f32> {
        let n = self.xs.spans.len();
        let (ix, iy) = (i % n, i / n);
        let r = self.rect(i);
        let wx: Vec<f32> = (r.x..r.x + r.width).map(|p| self.xs.weight(ix, p)).collect();
        let mut out = Vec::with_capacity(r.pixels() as usize);
        for py in r.y..r.y + r.height {
            let wy = self.ys.weight(iy, py);
            out.extend(wx.iter().map(|&w| w * wy));
        }
        out
    }

    /// The tile borders inside the image: the columns and rows where a tile starts or ends, other than
    /// the image's own edges (for the seam measure).
    pub fn borders(&self) -> (Vec<u32>, Vec<u32>) {
        let inner = |a: &Axis, size: u32| {
            let mut v: Vec<u32> =
                a.spans.iter().flat_map(|&(s, e)| [s, e]).filter(|&p| p > 0 && p < size).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        (inner(&self.xs, self.width), inner(&self.ys, self.height))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn where_aligned_starts_leave_too_little_overlap_tiles_are_slightly_longer() {
        // Found by the property test below: 317 px in tiles of 180 overlapping by 58 has no plan of
        // spans of at most 180 px with starts on the 16 px grid; two spans of 186 and 189 px fit.
        let plan = TilePlan::new(1, 317, 180, 58).unwrap();
        assert_eq!(plan.ys.spans, [(0, 186), (128, 317)]);
    }

    proptest! {
        #[test]
        fn plans_cover_the_image_with_weights_summing_to_one(
            width in 1u32..700, height in 1u32..700, tile in 48u32..300, overlap in 0u32..64,
        ) {
            prop_assume!(tile >= super::super::min_tile(overlap));
            let plan = TilePlan::new(width, height, tile, overlap).unwrap();
            let mut sum = vec![0.0f64; (width * height) as usize];
            for (i, r) in plan.rects().enumerate() {
                prop_assert!(r.x % TILE_ALIGN == 0 && r.y % TILE_ALIGN == 0);
                prop_assert!(r.x + r.width <= width && r.y + r.height <= height);
                prop_assert!(r.width <= tile + TILE_ALIGN && r.height <= tile + TILE_ALIGN);
                for (k, w) in plan.weights(i).into_iter().enumerate() {
                    let (x, y) = (r.x + k as u32 % r.width, r.y + k as u32 / r.width);
                    prop_assert!((0.0..=1.0).contains(&w));
                    sum[(y * width + x) as usize] += f64::from(w);
                }
            }
            for s in sum {
                prop_assert!((s - 1.0).abs() < 1e-5, "weights sum to {s}");
            }
            for a in [&plan.xs, &plan.ys] {
                for p in a.spans.windows(2) {
                    prop_assert!(p[0].1 >= p[1].0 + overlap, "overlap {:?}", p);
                }
            }
            // Serialisable: another process gets the same plan.
            let text = serde_json::to_string(&plan).unwrap();
            prop_assert_eq!(serde_json::from_str::<TilePlan>(&text).unwrap(), plan);
        }
    }

    #[test]
    fn one_tile_covers_a_small_image() {
        let plan = TilePlan::new(96, 64, 128, 32).unwrap();
        assert_eq!(plan.len(), 1);
        assert_eq!(plan.rect(0), Rect::whole(96, 64));
        assert!(plan.weights(0).iter().all(|&w| w == 1.0));
    }

    #[test]
    fn too_small_tiles_are_refused() {
        let e = TilePlan::new(512, 512, 64, 32).unwrap_err().to_string();
        assert!(e.contains("at least 128 px"), "{e}");
    }
}
