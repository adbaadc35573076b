//! Colour control: keeping the content's colours (luminance-only output or luminance-only optimisation,
//! Gatys et al. 2017) and matching the style images' colour statistics to the content's (linear
//! histogram matching by Cholesky or PCA, mean and covariance in RGB).

// 3×3 matrix code reads best with explicit indices.
#![allow(clippy::needless_range_loop)]

use image::{Rgb, Rgb32FImage};

use crate::pixels::resize;

/// Where the output's colours come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorMode {
    /// From the optimisation (the style's palette): plain Gatys et al.
    #[default]
    Style,
    /// The optimised image's luminance with the content's chroma (YCbCr), applied after the run.
    PreserveContent,
    /// Optimise luminance only (content and style as grey images, the style's luminance mean and
    /// spread matched to the content's), then put the content's chroma back.
    Luminance,
}

/// How style images are recoloured before the run so their colour statistics match the content's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorMatch {
    /// `A = L_c · L_s⁻¹` with Cholesky factors of the covariances.
    Cholesky,
    /// `A = Q_c Λ_c^½ Q_cᵀ · Q_s Λ_s^-½ Q_sᵀ` from eigen-decompositions of the covariances.
    Pca,
}

const KR: f32 = 0.299;
const KB: f32 = 0.114;
const KG: f32 = 1.0 - KR - KB;

/// BT.601 full-range luma of an RGB 0..1 pixel.
fn luma(p: &Rgb<f32>) -> f32 {
    KR * p[0] + KG * p[1] + KB * p[2]
}

fn to_ycbcr(p: &Rgb<f32>) -> [f32; 3] {
    let y = luma(p);
    [y, (p[2] - y) / (2.0 * (1.0 - KB)), (p[0] - y) / (2.0 * (1.0 - KR))]
}

fn from_ycbcr([y, cb, cr]: [f32; 3]) -> Rgb<f32> {
    let r = y + 2.0 * (1.0 - KR) * cr;
    let b = y + 2.0 * (1.0 - KB) * cb;
    let g = (y - KR * r - KB * b) / KG;
    Rgb([r, g, b].map(|v| v.clamp(0.0, 1.0)))
}

/// The luminance of `result` with the chroma of `content` (resized to `result`'s size).
pub fn preserve_colors(result: &Rgb32FImage, content: &Rgb32FImage) -> Rgb32FImage {
    let content = resize(content, result.width(), result.height());
    Rgb32FImage::from_fn(result.width(), result.height(), |x, y| {
        let [l, _, _] = to_ycbcr(result.get_pixel(x, y));
        let [_, cb, cr] = to_ycbcr(content.get_pixel(x, y));
        from_ycbcr([l, cb, cr])
    })
}

/// A grey (Y replicated into R, G, B) copy of `img`.
pub fn luminance(img: &Rgb32FImage) -> Rgb32FImage {
    Rgb32FImage::from_fn(img.width(), img.height(), |x, y| Rgb([luma(img.get_pixel(x, y)); 3]))
}

/// `img`'s luminance shifted and scaled to the mean and standard deviation of `reference`'s.
pub fn match_luminance(img: &Rgb32FImage, reference: &Rgb32FImage) -> Rgb32FImage {
    let stats = |im: &Rgb32FImage| {
        let n = (im.width() * im.height()).max(1) as f64;
        let (mut s, mut s2) = (0.0f64, 0.0f64);
        for p in im.pixels() {
            let l = luma(p) as f64;
            s += l;
            s2 += l * l;
        }
        let mean = s / n;
        (mean, (s2 / n - mean * mean).max(0.0).sqrt())
    };
    let (mi, si) = stats(img);
    let (mr, sr) = stats(reference);
    let k = if si > 1e-6 { sr / si } else { 1.0 };
    Rgb32FImage::from_fn(img.width(), img.height(), |x, y| {
        let l = ((luma(img.get_pixel(x, y)) as f64 - mi) * k + mr) as f32;
        Rgb([l.clamp(0.0, 1.0); 3])
    })
}

type M3 = [[f64; 3]; 3];

fn mean_cov(img: &Rgb32FImage) -> ([f64; 3], M3) {
    let n = (img.width() * img.height()).max(1) as f64;
    let mut mu = [0.0; 3];
    for p in img.pixels() {
        for c in 0..3 {
            mu[c] += p[c] as f64 / n;
        }
    }
    let mut cov = [[0.0; 3]; 3];
    for p in img.pixels() {
        let d = [0, 1, 2].map(|c| p[c] as f64 - mu[c]);
        for i in 0..3 {
            for j in 0..3 {
                cov[i][j] += d[i] * d[j] / n;
            }
        }
    }
    for (i, row) in cov.iter_mut().enumerate() {
        row[i] += 1e-5; // keeps flat images invertible
    }
    (mu, cov)
}

fn mul(a: &M3, b: &M3) -> M3 {
    let mut c = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            c[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    c
}

fn transpose(a: &M3) -> M3 {
    [0, 1, 2].map(|i| [0, 1, 2].map(|j| a[j][i]))
}

/// Lower-triangular L with L·Lᵀ = a (a symmetric positive definite).
fn cholesky(a: &M3) -> M3 {
    let mut l = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            l[i][j] = if i == j { (a[i][i] - s).max(1e-12).sqrt() } else { (a[i][j] - s) / l[j][j] };
        }
    }
    l
}

/// Inverse of a lower-triangular matrix.
fn invert_lower(l: &M3) -> M3 {
    let mut inv = [[0.0; 3]; 3];
    for i in 0..3 {
        inv[i][i] = 1.0 / l[i][i];
        for j in 0..i {
            let s: f64 = (j..i).map(|k| l[i][k] * inv[k][j]).sum();
            inv[i][j] = -s / l[i][i];
        }
    }
    inv
}

/// Eigen-decomposition of a symmetric 3×3 matrix by Jacobi rotations: (eigenvalues, eigenvectors as columns).
fn eigh(a: &M3) -> ([f64; 3], M3) {
    let mut a = *a;
    let mut v = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for _ in 0..50 {
        let (mut p, mut q, mut big) = (0, 1, 0.0);
        for i in 0..3 {
            for j in i + 1..3 {
                if a[i][j].abs() > big {
                    (p, q, big) = (i, j, a[i][j].abs());
                }
            }
        }
        if big < 1e-15 {
            break;
        }
        let theta = 0.5 * (2.0 * a[p][q]).atan2(a[q][q] - a[p][p]);
        let (s, c) = theta.sin_cos();
        let mut r = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        r[p][p] = c;
        r[q][q] = c;
        r[p][q] = s;
        r[q][p] = -s;
        a = mul(&transpose(&r), &mul(&a, &r));
        v = mul(&v, &r);
    }
    ([a[0][0], a[1][1], a[2][2]], v)
}

/// `Q · diag(f(λ)) · Qᵀ`.
fn spectral(a: &M3, f: impl Fn(f64) -> f64) -> M3 {
    let (l, q) = eigh(a);
    let d = [0, 1, 2].map(|i| [0, 1, 2].map(|j| if i == j { f(l[i].max(1e-12)) } else { 0.0 }));
    mul(&q, &mul(&d, &transpose(&q)))
}

/// `style` recoloured so that its RGB mean and covariance equal `content`'s.
pub fn match_colors(style: &Rgb32FImage, content: &Rgb32FImage, method: ColorMatch) -> Rgb32FImage {
    let (mu_s, cov_s) = mean_cov(style);
    let (mu_c, cov_c) = mean_cov(content);
    let a = match method {
        ColorMatch::Cholesky => mul(&cholesky(&cov_c), &invert_lower(&cholesky(&cov_s))),
        ColorMatch::Pca => mul(&spectral(&cov_c, f64::sqrt), &spectral(&cov_s, |v| 1.0 / v.sqrt())),
    };
    Rgb32FImage::from_fn(style.width(), style.height(), |x, y| {
        let p = style.get_pixel(x, y);
        let d = [0, 1, 2].map(|c| p[c] as f64 - mu_s[c]);
        Rgb([0, 1, 2].map(|i| ((0..3).map(|k| a[i][k] * d[k]).sum::<f64>() + mu_c[i]).clamp(0.0, 1.0) as f32))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient_image(w: u32, h: u32, tint: [f32; 3]) -> Rgb32FImage {
        Rgb32FImage::from_fn(w, h, |x, y| {
            let (u, v) = (x as f32 / w as f32, y as f32 / h as f32);
            Rgb([0.2 + 0.5 * u * tint[0], 0.1 + 0.6 * v * tint[1], 0.3 + 0.3 * (u * v) * tint[2]])
        })
    }

    #[test]
    fn ycbcr_round_trips() {
        for p in gradient_image(7, 5, [1.0, 0.8, 0.6]).pixels() {
            let q = from_ycbcr(to_ycbcr(p));
            for c in 0..3 {
                assert!((p[c] - q[c]).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn matched_style_takes_the_content_statistics() {
        let content = gradient_image(40, 30, [1.0, 0.5, 0.9]);
        let style = gradient_image(33, 21, [0.3, 1.0, 0.4]);
        for method in [ColorMatch::Cholesky, ColorMatch::Pca] {
            let m = match_colors(&style, &content, method);
            let ((mu_m, cov_m), (mu_c, cov_c)) = (mean_cov(&m), mean_cov(&content));
            for i in 0..3 {
                assert!((mu_m[i] - mu_c[i]).abs() < 1e-3, "{method:?} mean");
                for j in 0..3 {
                    assert!((cov_m[i][j] - cov_c[i][j]).abs() < 2e-3, "{method:?} cov {i}{j}");
                }
            }
        }
    }

    #[test]
    fn preserved_colors_keep_result_luma_and_content_chroma() {
        let result = gradient_image(16, 16, [0.2, 1.0, 0.1]);
        let content = gradient_image(16, 16, [1.0, 0.3, 0.8]);
        let out = preserve_colors(&result, &content);
        let mut inside = 0;
        for ((o, r), c) in out.pixels().zip(result.pixels()).zip(content.pixels()) {
            if o.0.iter().any(|&v| v <= 0.0 || v >= 1.0) {
                continue; // out of the RGB gamut: clamped, so not exact
            }
            inside += 1;
            let (yo, yr, yc) = (to_ycbcr(o), to_ycbcr(r), to_ycbcr(c));
            assert!(
                (yo[0] - yr[0]).abs() < 1e-4 && (yo[1] - yc[1]).abs() < 1e-4 && (yo[2] - yc[2]).abs() < 1e-4
            );
        }
        assert!(inside > 16 * 16 / 2, "only {inside} pixels in gamut");
    }
}
