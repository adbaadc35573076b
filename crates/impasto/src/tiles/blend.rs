//! Cutting tiles out of whole images and blending finished tiles back: the output starts as the
//! upscaled previous scale and each finished tile moves it towards itself by its smooth weights,
//! `out += w·(tile − out₀)`, so that after every tile the output is the last good image and after
//! all of them it is the weighted blend of the tiles (the weights sum to 1).

use image::Rgb32FImage;

use super::plan::{Rect, TilePlan};

/// The planar RGB (`3·w·h`, R plane first) crop `r` of an interleaved image.
pub fn crop_planar(img: &Rgb32FImage, r: Rect) -> Vec<f32> {
    let n = r.pixels() as usize;
    let mut out = vec![0.0f32; 3 * n];
    let (w, raw) = (img.width() as usize, img.as_raw());
    for y in 0..r.height as usize {
        let row = ((r.y as usize + y) * w + r.x as usize) * 3;
        for x in 0..r.width as usize {
            let k = y * r.width as usize + x;
            for c in 0..3 {
                out[c * n + k] = raw[row + 3 * x + c];
            }
        }
    }
    out
}

/// The crop `r` of a one-plane image stored row-major with width `width`.
pub(crate) fn crop_plane(plane: &[f32], width: u32, r: Rect) -> Vec<f32> {
    let w = width as usize;
    let mut out = Vec::with_capacity(r.pixels() as usize);
    for y in r.y as usize..(r.y + r.height) as usize {
        out.extend_from_slice(&plane[y * w + r.x as usize..y * w + (r.x + r.width) as usize]);
    }
    out
}

/// Blends finished tile `i` of `plan` (planar RGB of its rectangle, values clamped to 0..1) into
/// `out`, which started as `base` (the same image before any tile): `out += w·(tile − base)`
/// (`out = tile` where `w` is 1).
pub fn blend_tile(out: &mut Rgb32FImage, base: &Rgb32FImage, plan: &TilePlan, i: usize, tile: &[f32]) {
    let r = plan.rect(i);
    let weights = plan.weights(i);
    let n = r.pixels() as usize;
    assert_eq!(tile.len(), 3 * n, "tile {i}: {} values for a {}x{} tile", tile.len(), r.width, r.height);
    let w = out.width() as usize;
    let (raw, base) = (&mut **out, base.as_raw());
    for y in 0..r.height as usize {
        let row = ((r.y as usize + y) * w + r.x as usize) * 3;
        for x in 0..r.width as usize {
            let k = y * r.width as usize + x;
            let wk = weights[k];
            for c in 0..3 {
                let j = row + 3 * x + c;
                let t = tile[c * n + k].clamp(0.0, 1.0);
                // Where the tile alone counts, its very value (a single tile gives the untiled bits).
                if wk == 1.0 { raw[j] = t } else { raw[j] += wk * (t - base[j]) }
            }
        }
    }
}

/// The whole image from every tile of `plan` over `base` (the upscaled previous scale), tiles taken
/// in order from `tile(i)`: the same blend, bit for bit, as a tiled run's.
pub fn stitch<E>(
    plan: &TilePlan,
    base: &Rgb32FImage,
    tile: impl FnMut(usize) -> Result<Vec<f32>, E>,
) -> Result<Rgb32FImage, E> {
    let all: Vec<usize> = (0..plan.len()).collect();
    stitch_some(plan, base, &all, tile)
}

/// [`stitch`] with only the tiles `which` (in increasing order): the same bits as the whole stitch
/// wherever no other tile reaches, so within the tiles of [`reaching`] `which` is built for.
pub(crate) fn stitch_some<E>(
    plan: &TilePlan,
    base: &Rgb32FImage,
    which: &[usize],
    mut tile: impl FnMut(usize) -> Result<Vec<f32>, E>,
) -> Result<Rgb32FImage, E> {
    let mut out = base.clone();
    for &i in which {
        blend_tile(&mut out, base, plan, i, &tile(i)?);
    }
    finish(&mut out);
    Ok(out)
}

/// The tiles of `plan` that overlap any of the tiles `of`, in order (those among them included): a
/// pixel of `of`'s rectangles takes its blend from these alone.
pub(crate) fn reaching(plan: &TilePlan, of: &[usize]) -> Vec<usize> {
    let meets = |a: Rect, b: Rect| {
        a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height
    };
    (0..plan.len()).filter(|&j| of.iter().any(|&i| meets(plan.rect(i), plan.rect(j)))).collect()
}

/// Clamps a blended image to 0..1 (blending in f32 can leave it a rounding error outside).
pub(crate) fn finish(out: &mut Rgb32FImage) {
    for v in out.iter_mut() {
        *v = v.clamp(0.0, 1.0);
    }
}
