//! The seam measure of a tiled result: the mean gradient magnitude of the image across the tile
//! borders of its plan against the mean everywhere else. A visible seam is a step at a border, so it
//! raises the ratio above 1; a seamless blend keeps it near 1.

use image::Rgb32FImage;

use super::plan::TilePlan;

/// Mean absolute neighbour differences across tile borders and elsewhere, and their ratio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seams {
    /// Mean |difference| (0..1 scale, over the colour channels) between the two pixels on either side
    /// of a tile border (where a tile starts or ends inside the image).
    pub border: f64,
    /// The same between every other pair of neighbouring pixels.
    pub inside: f64,
}

impl Seams {
    /// `border / inside` (1 = no seam; the criterion is ≤ 1.10).
    pub fn ratio(&self) -> f64 {
        self.border / self.inside
    }
}

/// The seam measure of `image` (the size of `plan`'s image) cut by `plan`.
pub fn seams(image: &Rgb32FImage, plan: &TilePlan) -> Seams {
    let (w, h) = image.dimensions();
    assert_eq!((w, h), (plan.width, plan.height), "seams: the image is not the plan's size");
    let (cols, rows) = plan.borders();
    let mut is_col = vec![false; w as usize];
    cols.iter().for_each(|&x| is_col[x as usize] = true);
    let mut is_row = vec![false; h as usize];
    rows.iter().for_each(|&y| is_row[y as usize] = true);
    // Sums and counts of |difference| per direction (0: across columns, 1: across rows), at borders
    // and elsewhere; the inside mean is taken with the borders' mix of directions, so that an image
    // smoother in one direction than the other is no seam.
    let (mut b, mut nb, mut i, mut ni) = ([0.0f64; 2], [0u64; 2], [0.0f64; 2], [0u64; 2]);
    let diff = |p: &image::Rgb<f32>, q: &image::Rgb<f32>| {
        (0..3).map(|c| f64::from((p[c] - q[c]).abs())).sum::<f64>() / 3.0
    };
    for y in 0..h {
        for x in 0..w {
            let p = image.get_pixel(x, y);
            for (dir, at_border, has) in [(0, is_col[x as usize], x > 0), (1, is_row[y as usize], y > 0)] {
                if !has {
                    continue;
                }
                let q = if dir == 0 { image.get_pixel(x - 1, y) } else { image.get_pixel(x, y - 1) };
                let d = diff(p, q);
                if at_border {
                    (b[dir], nb[dir]) = (b[dir] + d, nb[dir] + 1);
                } else {
                    (i[dir], ni[dir]) = (i[dir] + d, ni[dir] + 1);
                }
            }
        }
    }
    let n = (nb[0] + nb[1]).max(1) as f64;
    let inside_mean = |d: usize| i[d] / ni[d].max(1) as f64;
    let inside = (nb[0] as f64 * inside_mean(0) + nb[1] as f64 * inside_mean(1)) / n;
    Seams { border: (b[0] + b[1]) / n, inside }
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
        let step = Rgb32FImage::from_fn(200, 64, |x, y| {
            let s = if x >= cols[0] { 0.1 } else { 0.0 };
            image::Rgb([x as f32 / 400.0 + s, y as f32 / 128.0, 0.5])
        });
        assert!(seams(&step, &plan).ratio() > 2.0, "{:?}", seams(&step, &plan));
    }
}
