//! [`Plane`]: one channel of f32 values (a grey image, a flow component, a mask) with bilinear sampling,
//! central-difference gradients and the 2× reductions of an image pyramid.

/// A `width`×`height` row-major grid of f32 values.
#[derive(Debug, Clone, PartialEq)]
pub struct Plane {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `width·height` values, row by row.
    pub data: Vec<f32>,
}

impl Plane {
    /// A plane of zeros.
    pub fn zeros(width: usize, height: usize) -> Plane {
        Plane { width, height, data: vec![0.0; width * height] }
    }

    /// A plane whose value at (x, y) is `f(x, y)`.
    pub fn from_fn(width: usize, height: usize, mut f: impl FnMut(usize, usize) -> f32) -> Plane {
        let mut data = Vec::with_capacity(width * height);
        for y in 0..height {
            for x in 0..width {
                data.push(f(x, y));
            }
        }
        Plane { width, height, data }
    }

    /// The grey value (BT.601 luma, scaled to 0..255) of an RGB 0..1 image.
    pub fn luma(img: &image::Rgb32FImage) -> Plane {
        Plane::from_fn(img.width() as usize, img.height() as usize, |x, y| {
            let [r, g, b] = img.get_pixel(x as u32, y as u32).0;
            255.0 * (0.299 * r + 0.587 * g + 0.114 * b)
        })
    }

    /// The value at integer (x, y).
    #[inline]
    pub fn at(&self, x: usize, y: usize) -> f32 {
        self.data[y * self.width + x]
    }

    /// Bilinear interpolation at (x, y); positions outside are clamped to the border.
    #[inline]
    pub fn sample(&self, x: f32, y: f32) -> f32 {
        let xm = (self.width - 1) as f32;
        let ym = (self.height - 1) as f32;
        let x = x.clamp(0.0, xm);
        let y = y.clamp(0.0, ym);
        let x0 = x.floor() as usize;
        let y0 = y.floor() as usize;
        let x1 = (x0 + 1).min(self.width - 1);
        let y1 = (y0 + 1).min(self.height - 1);
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let top = self.at(x0, y0) * (1.0 - fx) + self.at(x1, y0) * fx;
        let bottom = self.at(x0, y1) * (1.0 - fx) + self.at(x1, y1) * fx;
        top * (1.0 - fy) + bottom * fy
    }

    /// Central-difference gradients (one-sided at the border): (∂/∂x, ∂/∂y).
    pub fn gradients(&self) -> (Plane, Plane) {
        let (w, h) = (self.width, self.height);
        let gx = Plane::from_fn(w, h, |x, y| {
            let (a, b) = (x.saturating_sub(1), (x + 1).min(w - 1));
            if b == a { 0.0 } else { (self.at(b, y) - self.at(a, y)) / (b - a) as f32 }
        });
        let gy = Plane::from_fn(w, h, |x, y| {
            let (a, b) = (y.saturating_sub(1), (y + 1).min(h - 1));
            if b == a { 0.0 } else { (self.at(x, b) - self.at(x, a)) / (b - a) as f32 }
        });
        (gx, gy)
    }

    /// Half the size (rounded down, at least 1): each value the mean of a 2×2 block.
    pub fn half(&self) -> Plane {
        let (w, h) = ((self.width / 2).max(1), (self.height / 2).max(1));
        Plane::from_fn(w, h, |x, y| {
            let (x0, y0) = ((2 * x).min(self.width - 1), (2 * y).min(self.height - 1));
            let (x1, y1) = ((2 * x + 1).min(self.width - 1), (2 * y + 1).min(self.height - 1));
            0.25 * (self.at(x0, y0) + self.at(x1, y0) + self.at(x0, y1) + self.at(x1, y1))
        })
    }

    /// A separable binomial [1 4 6 4 1]/16 blur (border replicated): a cheap Gaussian of σ ≈ 1.
    pub fn blur(&self) -> Plane {
        const K: [f32; 5] = [1.0 / 16.0, 4.0 / 16.0, 6.0 / 16.0, 4.0 / 16.0, 1.0 / 16.0];
        let (w, h) = (self.width, self.height);
        let clamp = |v: isize, n: usize| v.clamp(0, n as isize - 1) as usize;
        let rows = Plane::from_fn(w, h, |x, y| {
            K.iter().enumerate().map(|(k, c)| c * self.at(clamp(x as isize + k as isize - 2, w), y)).sum()
        });
        Plane::from_fn(w, h, |x, y| {
            K.iter().enumerate().map(|(k, c)| c * rows.at(x, clamp(y as isize + k as isize - 2, h))).sum()
        })
    }

    /// Resampled to `width`×`height` by bilinear interpolation (pixel centres aligned).
    pub fn resized(&self, width: usize, height: usize) -> Plane {
        let sx = self.width as f32 / width as f32;
        let sy = self.height as f32 / height as f32;
        Plane::from_fn(width, height, |x, y| {
            self.sample((x as f32 + 0.5) * sx - 0.5, (y as f32 + 0.5) * sy - 0.5)
        })
    }
}
