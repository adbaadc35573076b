//! The seam measure of a tiled result: the mean gradient magnitude of the image across the tile
//! borders of its plan against the mean everywhere else, and against the mean on the lines just beside
//! the borders. A visible seam is a step at a border, so it raises the ratios above 1; a seamless blend
//! keeps them near 1. The nearby ratio compares each border with the lines 16, 32 and 48 px from it:
//! the same part of the picture, and the same phase of the network's 16 px pooling grid (tiles start
//! on it, and an optimised image carries a faint 16 px pattern: on untiled results the grid's lines
//! measure 1.2 against their neighbours), so neither raises it.

use image::Rgb32FImage;

use super::plan::{TILE_ALIGN, TilePlan};

/// Mean absolute neighbour differences across tile borders and elsewhere, and their ratio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seams {
    /// Mean |difference| (0..1 scale, over the colour channels) between the two pixels on either side
    /// of a tile border (where a tile starts or ends inside the image).
    pub border: f64,
    /// The same between every other pair of neighbouring pixels.
    pub inside: f64,
    /// The same on the lines 16, 32, … [`NEARBY`] pixels from a border (not on a border).
    pub nearby: f64,
}

/// How far from a border (pixels) the lines of [`Seams::nearby`] go, in steps of [`TILE_ALIGN`].
pub const NEARBY: u32 = 3 * TILE_ALIGN;

impl Seams {
    /// `border / inside` (1 = no seam; the criterion is ≤ 1.10).
    pub fn ratio(&self) -> f64 {
        self.border / self.inside
    }

    /// `border / nearby`: the borders against the lines beside them in the same pooling phase (1 = no
    /// seam).
    pub fn nearby_ratio(&self) -> f64 {
        self.border / self.nearby
    }
}

/// The seam measure of `image` (the size of `plan`'s image) cut by `plan`.
pub fn seams(image: &Rgb32FImage, plan: &TilePlan) -> Seams {
    let (w, h) = image.dimensions();
    assert_eq!((w, h), (plan.width, plan.height), "seams: the image is not the plan's size");
    let (cols, rows) = plan.borders();
    // Each line's distance to the nearest border line (0: a border).
    let distance = |lines: &[u32], size: u32| -> Vec<u32> {
        (0..size).map(|p| lines.iter().map(|&l| p.abs_diff(l)).min().unwrap_or(u32::MAX)).collect()
    };
    let (col_d, row_d) = (distance(&cols, w), distance(&rows, h));
    // Sums and counts of |difference| per direction (0: across columns, 1: across rows), at borders,
    // near them and elsewhere; the other means are taken with the borders' mix of directions, so that
    // an image smoother in one direction than the other is no seam.
    let (mut b, mut nb, mut i, mut ni) = ([0.0f64; 2], [0u64; 2], [0.0f64; 2], [0u64; 2]);
    let (mut near, mut n_near) = ([0.0f64; 2], [0u64; 2]);
    let diff = |p: &image::Rgb<f32>, q: &image::Rgb<f32>| {
        (0..3).map(|c| f64::from((p[c] - q[c]).abs())).sum::<f64>() / 3.0
    };
    for y in 0..h {
        for x in 0..w {
            let p = image.get_pixel(x, y);
            for (dir, dist, has) in [(0, col_d[x as usize], x > 0), (1, row_d[y as usize], y > 0)] {
                if !has {
                    continue;
                }
                let q = if dir == 0 { image.get_pixel(x - 1, y) } else { image.get_pixel(x, y - 1) };
                let d = diff(p, q);
                if dist == 0 {
                    (b[dir], nb[dir]) = (b[dir] + d, nb[dir] + 1);
                } else {
                    (i[dir], ni[dir]) = (i[dir] + d, ni[dir] + 1);
                    if dist <= NEARBY && dist.is_multiple_of(TILE_ALIGN) {
                        (near[dir], n_near[dir]) = (near[dir] + d, n_near[dir] + 1);
                    }
                }
            }
        }
    }
    let n = (nb[0] + nb[1]).max(1) as f64;
    let mixed = |sum: [f64; 2], count: [u64; 2]| {
        let mean = |d: usize| sum[d] / count[d].max(1) as f64;
        (nb[0] as f64 * mean(0) + nb[1] as f64 * mean(1)) / n
    };
    Seams { border: (b[0] + b[1]) / n, inside: mixed(i, ni), nearby: mixed(near, n_near) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_at_a_border_is_a_seam_and_a_smooth_image_is_not() {
        let plan = TilePlan::new(200, 64, 96, 16).unwrap();
        let (cols, _) = plan.borders();
        let smooth =
            Rgb32FImage::from_fn(200, 64, |x, y| image::Rgb([x as f32 / 400.0, y as f32 / 128.0, 0.5]));
        assert!((seams(&smooth, &plan).ratio() - 1.0).abs() < 0.01, "{:?}", seams(&smooth, &plan));
        assert!((seams(&smooth, &plan).nearby_ratio() - 1.0).abs() < 0.01, "{:?}", seams(&smooth, &plan));
        let step = Rgb32FImage::from_fn(200, 64, |x, y| {
            let s = if x >= cols[0] { 0.1 } else { 0.0 };
            image::Rgb([x as f32 / 400.0 + s, y as f32 / 128.0, 0.5])
        });
        assert!(seams(&step, &plan).ratio() > 2.0, "{:?}", seams(&step, &plan));
        assert!(seams(&step, &plan).nearby_ratio() > 2.0, "{:?}", seams(&step, &plan));
    }

    #[test]
    fn a_border_on_busy_content_is_no_seam_nearby() {
        // A fine checkerboard, ten times stronger within 60 px of the borders than elsewhere, plus a
        // step on every 16th column (the pooling grid's pattern): the borders cross the busiest parts
        // of the picture and lie on the grid, but nothing happens at them.
        let plan = TilePlan::new(400, 64, 160, 16).unwrap();
        let (cols, _) = plan.borders();
        assert!(cols.iter().all(|c| c % TILE_ALIGN == 0), "{cols:?}");
        let busy = Rgb32FImage::from_fn(400, 64, |x, y| {
            let a = if cols.iter().any(|&c| x.abs_diff(c) <= 60) { 0.2 } else { 0.02 };
            let grid = if (x / TILE_ALIGN).is_multiple_of(2) { 0.0 } else { 0.1 };
            image::Rgb([0.3 + a * ((x + y) % 2) as f32 + grid, 0.5, 0.5])
        });
        let m = seams(&busy, &plan);
        assert!(m.ratio() > 1.3, "{m:?}");
        assert!((m.nearby_ratio() - 1.0).abs() < 0.05, "{m:?}");
    }
}
