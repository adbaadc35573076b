//! Masked tiles coupled like unmasked ones: the whole image's masked Grams computed in tiles equal
//! the ones of a single pass and of the masked features themselves (a content mask, two style masks,
//! a region empty in some tiles, a region empty everywhere), on the CPU and the GPU, masked tiled runs take the coupled
//! rounds in process and in tile jobs (stitched to the same pixels), score closer to the untiled
//! run than uncoupled tiles, and one tile is still the untiled run.

use impasto::image::{Luma, Rgb32FImage};
use impasto::tiles::{self, TileJob};
use impasto::{AlphaPlane, Arch, Device, NoObserver, Pooling, StyleConfig, Vgg};

use crate::common::{random_vgg, run_net, shared_image_or_pattern};
use crate::tiles::{bits, inputs, tiled};

fn plane(w: u32, h: u32, f: impl Fn(u32, u32) -> f32) -> AlphaPlane {
    AlphaPlane::from_fn(w, h, |x, y| Luma([f(x, y)]))
}

/// A plane averaged over 2×2 windows until it is `lw`×`lh` (a layer's grid).
pub(crate) fn pooled(m: &AlphaPlane, lw: usize, lh: usize) -> Vec<f32> {
    let (mut w, mut h, mut v) = (m.width() as usize, m.height() as usize, m.as_raw().clone());
    while (w, h) != (lw, lh) {
        let (w2, h2) = (w / 2, h / 2);
        v = (0..h2 * w2)
            .map(|i| {
                let (x, y) = (2 * (i % w2), 2 * (i / w2));
                (v[y * w + x] + v[y * w + x + 1] + v[(y + 1) * w + x] + v[(y + 1) * w + x + 1]) / 4.0
            })
            .collect();
        (w, h) = (w2, h2);
    }
    v
}

/// The masked Grams `(F∘m)(F∘m)ᵀ/(C·Σm)` straight from the features, region-major; `None` for an
/// empty region.
fn reference(net: &Vgg, img: &Rgb32FImage, layers: &[&str], masks: &[AlphaPlane]) -> Vec<Option<Vec<f32>>> {
    let px = impasto::to_planar(img);
    let feats = net.features(&px, img.width() as usize, img.height() as usize, layers).unwrap();
    masks
        .iter()
        .flat_map(|m| {
            feats.iter().map(move |(f, [c, lh, lw])| {
                let mp = pooled(m, *lw, *lh);
                let area: f64 = mp.iter().map(|&v| f64::from(v)).sum();
                (area > 1e-6).then(|| {
                    let n = lh * lw;
                    let fm: Vec<f32> =
                        f.chunks_exact(n).flat_map(|row| row.iter().zip(&mp).map(|(a, b)| a * b)).collect();
                    let g = impasto::gram_matrix(&fm, *c, n);
                    g.iter().map(|v| (f64::from(*v) * n as f64 / area) as f32).collect()
                })
            })
        })
        .collect()
}

/// The largest relative (Frobenius) difference over the terms; both must agree on empty regions.
fn worst(a: &[Option<Vec<f32>>], b: &[Option<Vec<f32>>]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| match (x, y) {
            (Some(x), Some(y)) => {
                assert!(x.iter().all(|v| v.is_finite()));
                let d: f64 = x.iter().zip(y).map(|(p, q)| f64::from(p - q).powi(2)).sum::<f64>().sqrt();
                d / y.iter().map(|q| f64::from(*q).powi(2)).sum::<f64>().sqrt().max(1e-30)
            }
            (None, None) => 0.0,
            _ => panic!(
                "one side has an empty region the other has not: {:?} vs {:?}",
                x.is_some(),
                y.is_some()
            ),
        })
        .fold(0.0, f64::max)
}

/// Mask sets on a `w`×`h` image: a soft content mask (one region); two style masks each times a
/// content mask; a region only in the first 12 columns (empty in every tile interior to its right)
/// and one empty everywhere.
pub(crate) fn mask_sets(w: u32, h: u32) -> Vec<(&'static str, Vec<AlphaPlane>)> {
    let content = plane(w, h, |x, y| if y < h / 2 { 1.0 } else { 0.25 + 0.5 * (x as f32 / w as f32) });
    let times = |f: &dyn Fn(u32, u32) -> f32| plane(w, h, |x, y| f(x, y) * content.get_pixel(x, y)[0]);
    vec![
        ("content mask", vec![content.clone()]),
        (
            "two style masks",
            vec![
                times(&|x, _| if x < w / 2 { 1.0 } else { 0.0 }),
                times(&|x, _| if x < w / 2 { 0.0 } else { 1.0 }),
            ],
        ),
        (
            "regions empty in tiles and everywhere",
            vec![plane(w, h, |x, _| if x < 12 { 1.0 } else { 0.0 }), plane(w, h, |_, _| 0.0)],
        ),
    ]
}

#[test]
fn masked_tiled_grams_equal_the_whole_image_masked_grams() {
    let (net, layers) = run_net(Pooling::Max, "relu5_1");
    let names: Vec<&str> = layers.iter().map(String::as_str).collect();
    // Odd sizes: the layers' grids drop the last row or column of pixels.
    let img = impasto::resize(&shared_image_or_pattern("starry_night.jpg", 96), 93, 77);
    for (what, masks) in mask_sets(93, 77) {
        let want = reference(&net, &img, &names, &masks);
        let whole = impasto::masked_grams_on(&net, Device::Cpu, &img, &names, &masks, None).unwrap();
        let tiled = impasto::masked_grams_on(&net, Device::Cpu, &img, &names, &masks, Some(32)).unwrap();
        let (e_whole, e_tiled) = (worst(&whole, &want), worst(&tiled, &want));
        eprintln!("{what}: one pass {e_whole:.2e}, 32 px tiles with the halo {e_tiled:.2e} (worst term)");
        assert!(e_whole < 1e-5, "{what}: one pass {e_whole}");
        assert!(e_tiled < 1e-5, "{what}: tiled {e_tiled}");
    }
    // The last set's second region is empty at every layer, its first at none.
    let (_, masks) = &mask_sets(93, 77)[2];
    let got = impasto::masked_grams_on(&net, Device::Cpu, &img, &names, masks, Some(32)).unwrap();
    let n = names.len();
    assert!(got[..n].iter().all(Option::is_some) && got[n..].iter().all(Option::is_none));
    let wrong = plane(92, 77, |_, _| 1.0);
    let err = impasto::masked_grams_on(&net, Device::Cpu, &img, &names, &[wrong], None).unwrap_err();
    assert!(err.to_string().contains("a 92x77 mask for a 93x77 image"), "{err}");
}

/// On a GPU the masked Grams (the masked features into its cropped-Gram kernel) are the CPU's, in one
/// pass and in tiles with the halo, empty regions included; a small random network to relu3_1 (two
/// poolings) keeps it fast on a software adapter.
#[test]
fn masked_tiled_grams_on_the_gpu_match_the_cpu() {
    let gpu = crate::gpu::device();
    let net = random_vgg(Arch::Vgg16, Pooling::Max, 5, 13);
    let names = ["relu1_1", "relu2_1", "relu3_1"];
    let img = impasto::resize(&shared_image_or_pattern("the_scream.jpg", 96), 61, 45);
    for (what, masks) in mask_sets(61, 45) {
        for tile in [None, Some(32)] {
            let cpu = impasto::masked_grams_on(&net, Device::Cpu, &img, &names, &masks, tile).unwrap();
            let on_gpu = impasto::masked_grams_on(&net, gpu, &img, &names, &masks, tile).unwrap();
            let e = worst(&on_gpu, &cpu);
            eprintln!("{what}, tile {tile:?}: GPU against CPU {e:.2e} (worst term)");
            assert!(e < 1e-5, "{what}, tile {tile:?}: {e}");
        }
    }
}

/// Tiles of at most 80 px overlapping by at least 8 at 96 px (2×2 tiles of 64 px), with a content
/// mask (the top half) and two style masks: the first only in the leftmost 1/8 (empty in the right
/// tiles), the second only in the bottom 3/8 (empty everywhere the content mask leaves, once both
/// are resized to the scale).
pub(crate) fn masked(layers: &[String]) -> StyleConfig {
    StyleConfig {
        mask: Some(plane(8, 8, |_, y| if y < 4 { 1.0 } else { 0.0 })),
        style_masks: Some(vec![
            plane(8, 8, |x, _| if x < 1 { 1.0 } else { 0.0 }),
            plane(8, 8, |_, y| if y >= 5 { 1.0 } else { 0.0 }),
        ]),
        ..tiled(layers)
    }
}

#[derive(Default)]
pub(crate) struct Count(pub(crate) usize);

impl impasto::Observer for Count {
    fn on_tile(&mut self, _index: usize, _count: usize, skipped: bool) {
        self.0 += usize::from(!skipped);
    }
}

#[test]
fn masked_tiles_are_coupled_in_process_and_in_tile_jobs() {
    let (net, layers) = run_net(Pooling::Max, "relu5_1");
    let (content, styles) = inputs();
    let config = masked(&layers);
    let mut seen = Count::default();
    let want = impasto::stylize(&net, &config, &content, &styles, &mut seen).unwrap();
    assert_eq!(seen.0, 4 * tiles::TILE_ROUNDS, "every tile in every coupled round");
    assert!(want.losses.total().is_finite() && want.image.as_raw().iter().all(|v| v.is_finite()));
    // Below the content mask the content is kept.
    let kept = want
        .image
        .enumerate_pixels()
        .filter(|(_, y, _)| *y >= 56)
        .map(|(x, y, p)| (0..3).map(|c| (p[c] - content.get_pixel(x, y)[c]).abs()).fold(0.0, f32::max))
        .fold(0.0, f32::max);
    assert!(kept < 1e-5, "masked-out rows changed by {kept}");
    let uncoupled = StyleConfig { tile_rounds: 0, ..config.clone() };
    let once = impasto::stylize(&net, &uncoupled, &content, &styles, &mut NoObserver).unwrap();
    assert!(bits(&once.image) != bits(&want.image), "the coupled rounds change the result");

    // Tile jobs take the same rounds (the masked shifts written beside them) and stitch to the
    // same pixels.
    let dir = tempfile::tempdir().unwrap();
    let (job, base) = tiles::prepare_tiles(&net, &config, &content, &styles, &mut NoObserver).unwrap();
    assert_eq!((job.plan.len(), job.rounds), (4, tiles::TILE_ROUNDS));
    job.write(dir.path(), &base).unwrap();
    let (job, base) = TileJob::read(dir.path()).unwrap();
    let mut ran = Count::default();
    tiles::run_tiles(
        &net,
        &config,
        &content,
        &styles,
        &job,
        &base,
        dir.path(),
        &[0, 1, 2, 3],
        None,
        &mut ran,
    )
    .unwrap();
    assert_eq!(ran.0, 4 * tiles::TILE_ROUNDS);
    let got = tiles::stitch_tiles(&config, &content, &job, &base, dir.path()).unwrap();
    assert!(bits(&got) == bits(&want.image), "the stitched pixels differ from the in-process run's");
}

#[test]
fn one_masked_tile_is_the_untiled_masked_run() {
    let (net, layers) = run_net(Pooling::Max, "relu5_1");
    let (content, styles) = inputs();
    let untiled = StyleConfig { tile: None, ..masked(&layers) };
    let want = impasto::stylize(&net, &untiled, &content, &styles, &mut NoObserver).unwrap();
    let one = StyleConfig { tile: Some(96), ..untiled };
    let (job, base) = tiles::prepare_tiles(&net, &one, &content, &styles, &mut NoObserver).unwrap();
    assert_eq!((job.plan.len(), job.rounds), (1, 1));
    let dir = tempfile::tempdir().unwrap();
    tiles::run_tiles(&net, &one, &content, &styles, &job, &base, dir.path(), &[0], None, &mut NoObserver)
        .unwrap();
    let got = tiles::stitch_tiles(&one, &content, &job, &base, dir.path()).unwrap();
    assert_eq!(bits(&got), bits(&want.image));
    let tiled = impasto::stylize(&net, &one, &content, &styles, &mut NoObserver).unwrap();
    assert_eq!(bits(&tiled.image), bits(&want.image));
}

#[test]
fn coupled_masked_tiles_score_closer_to_the_untiled_run() {
    let (net, _) = run_net(Pooling::Max, "relu5_1");
    let (content, styles) = inputs();
    // Small receptive fields against the 64 px tiles (see `a_tiled_run_scores_close_to_the_untiled_run`),
    // two styles left and right.
    let half = |left: bool| plane(12, 8, move |x, _| if (x < 6) == left { 1.0 } else { 0.0 });
    let plain = StyleConfig {
        content_layers: vec!["relu2_2".into()],
        scale_iterations: Some(40),
        tile: None,
        mask: None,
        style_masks: Some(vec![half(true), half(false)]),
        ..masked(&["relu1_1".to_string(), "relu2_1".to_string()])
    };
    let untiled = impasto::stylize(&net, &plain, &content, &styles, &mut NoObserver).unwrap();
    let a = impasto::score(&net, &plain, &content, &styles, &untiled.image).unwrap();
    let mut change = Vec::new();
    for rounds in [0, tiles::TILE_ROUNDS] {
        let config = StyleConfig { tile: Some(80), tile_rounds: rounds, ..plain.clone() };
        let out = impasto::stylize(&net, &config, &content, &styles, &mut NoObserver).unwrap();
        let b = impasto::score(&net, &plain, &content, &styles, &out.image).unwrap();
        change.push((b.total() - a.total()) / a.total());
        eprintln!(
            "{rounds} rounds: {b:?}, total {:+.1} % of the untiled run's",
            100.0 * change.last().unwrap()
        );
    }
    assert!(change[1] < 0.5 * change[0], "coupled {:+.3} vs uncoupled {:+.3}", change[1], change[0]);
}

/// A masked tiled run on a GPU (a small random network) takes the coupled rounds and ends within
/// 1 % of the CPU's losses.
#[test]
fn masked_coupled_tiles_on_the_gpu_end_within_one_percent_of_the_cpu() {
    let gpu = crate::gpu::device();
    let net = random_vgg(Arch::Vgg16, Pooling::Max, 3, 17);
    let (content, styles) = inputs();
    let config = |device| StyleConfig {
        content_layers: vec!["relu2_1".into()],
        tv_weight: 1e3,
        iterations: 6,
        scale_iterations: Some(6),
        device,
        ..masked(&["relu1_1".to_string(), "relu1_2".to_string(), "relu2_1".to_string()])
    };
    let cpu = impasto::stylize(&net, &config(Device::Cpu), &content, &styles, &mut NoObserver).unwrap();
    let mut seen = Count::default();
    let on_gpu = impasto::stylize(&net, &config(gpu), &content, &styles, &mut seen).unwrap();
    assert_eq!(seen.0, 4 * tiles::TILE_ROUNDS);
    eprintln!("masked tiles: cpu {:?}\n              gpu {:?}", cpu.losses, on_gpu.losses);
    let (x, y) = (on_gpu.losses.total(), cpu.losses.total());
    assert!((x - y).abs() / y < 0.01, "gpu {x} vs cpu {y}");
}
