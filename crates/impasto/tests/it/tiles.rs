//! Tiled refinement: the tiled style Grams equal the whole image's, one tile is the untiled run, a
//! tiled run's whole-image losses are close to the untiled run's (closer with L-BFGS pairs carried
//! across the rounds), a resumed tiled run skips its finished tiles and ends with the same bits (the
//! carried pairs kept beside the checkpoint), masks and two styles work in tiles, tile jobs run in
//! parts and rounds and stitched give the in-process pixels, a failed final write keeps the
//! checkpoint, and a checkpoint that cannot be written stops the run with the whole image.

use std::ops::ControlFlow;

use impasto::image::Rgb32FImage;
use impasto::tiles::{self, JobProgress, TileJob};
use impasto::{AlphaPlane, NoObserver, Observer, Pooling, Step, StyleConfig};

use crate::common::{run_net, shared_image_or_pattern};

pub(crate) fn inputs() -> (Rgb32FImage, Vec<Rgb32FImage>) {
    let content = impasto::resize(&shared_image_or_pattern("chelsea.png", 96), 96, 96);
    let styles =
        vec![shared_image_or_pattern("starry_night.jpg", 96), shared_image_or_pattern("the_scream.jpg", 96)];
    (content, styles)
}

fn config(style_layers: &[String]) -> StyleConfig {
    StyleConfig {
        size: 96,
        min_size: 48,
        iterations: 12,
        scale_iterations: Some(12),
        style_layers: style_layers.to_vec(),
        threads: 2,
        tile_overlap: 8,
        ..StyleConfig::default()
    }
}

pub(crate) fn bits(img: &Rgb32FImage) -> Vec<u32> {
    img.as_raw().iter().map(|v| v.to_bits()).collect()
}

/// Counts tiles optimised and skipped; optionally cancels at the first step of tile `stop_in`.
#[derive(Default)]
struct Tiles {
    optimised: usize,
    skipped: usize,
    stop_in: Option<usize>,
}

impl Observer for Tiles {
    fn on_step(&mut self, s: &Step<'_>) -> ControlFlow<()> {
        match (s.tile, self.stop_in) {
            (Some((i, _)), Some(stop)) if i == stop => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    }
    fn on_tile(&mut self, _index: usize, _count: usize, skipped: bool) {
        if skipped { self.skipped += 1 } else { self.optimised += 1 }
    }
}

#[test]
fn tiled_grams_equal_the_whole_image_grams_with_enough_halo() {
    let (net, layers) = run_net(Pooling::Max, "relu5_1");
    let img = impasto::resize(&inputs().1[0], 96, 80);
    let names: Vec<&str> = layers.iter().map(String::as_str).collect();
    let whole = tiles::style_grams(&net, &img, &names, 96, 0).unwrap();
    let rel = |halo: u32| {
        let tiled = tiles::style_grams(&net, &img, &names, 32, halo).unwrap();
        whole
            .iter()
            .zip(&tiled)
            .map(|(a, b)| {
                let d: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum::<f64>().sqrt();
                d / a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt()
            })
            .fold(0.0, f64::max)
    };
    for halo in [0, 16, 32, 48, 64, 80] {
        eprintln!("tiled Gram, 32 px tiles, halo {halo:>2} px: worst layer relative error {:.2e}", rel(halo));
    }
    assert!(rel(0) > 1e-3, "without a halo the tiles' borders must show");
    assert!(rel(tiles::GRAM_HALO) < 1e-5, "{}", rel(tiles::GRAM_HALO));
}

#[test]
fn one_tile_is_the_untiled_run() {
    let (net, layers) = run_net(Pooling::Max, "relu5_1");
    let (content, styles) = inputs();
    let untiled = config(&layers);
    let want = impasto::stylize(&net, &untiled, &content, &styles[..1], &mut NoObserver).unwrap();
    let tiled = StyleConfig { tile: Some(96), ..untiled };
    let dir = tempfile::tempdir().unwrap();
    let (job, base) = tiles::prepare_tiles(&net, &tiled, &content, &styles[..1], &mut NoObserver).unwrap();
    assert_eq!(job.plan.len(), 1);
    tiles::run_tiles(
        &net,
        &tiled,
        &content,
        &styles[..1],
        &job,
        &base,
        dir.path(),
        &[0],
        None,
        &mut NoObserver,
    )
    .unwrap();
    let got = tiles::stitch_tiles(&tiled, &content, &job, &base, dir.path()).unwrap();
    assert_eq!(bits(&got), bits(&want.image));
}

/// The tiled run's config: tiles of at most 80 px overlapping by at least 8 at the 96 px scale (2×2
/// tiles of 64 px overlapping by 32).
pub(crate) fn tiled(layers: &[String]) -> StyleConfig {
    StyleConfig { tile: Some(80), ..config(layers) }
}

#[test]
fn a_tiled_run_scores_close_to_the_untiled_run() {
    let (net, _) = run_net(Pooling::Max, "relu5_1");
    let (content, styles) = inputs();
    let style = &styles[..1];
    // Layers whose receptive fields (14 px for relu2_2) are small against 64 px tiles overlapping by
    // 32, as VGG-16's deepest (132 px for relu5_1) are against the default tiles at print sizes: at
    // 96 px those would be larger than the tiles themselves.
    let plain = StyleConfig {
        content_layers: vec!["relu2_2".into()],
        scale_iterations: Some(40),
        ..config(&["relu1_1".to_string(), "relu2_1".to_string()])
    };
    let untiled = impasto::stylize(&net, &plain, &content, style, &mut NoObserver).unwrap();
    let a = impasto::score(&net, &plain, &content, style, &untiled.image).unwrap();
    let start = impasto::score(&net, &plain, &content, style, &content).unwrap();
    eprintln!("untiled {a:?}\nstart   {start:?}");
    let (mut change, mut outputs) = (Vec::new(), Vec::new());
    // A memory budget with no room beyond the tiled scale's own peak carries no L-BFGS pairs from
    // one round into the next.
    let no_room = tiles::estimate_tiled_peak(&net, &plain, 96, 96, 80);
    for (rounds, budget) in [(0, None), (tiles::TILE_ROUNDS, Some(no_room)), (tiles::TILE_ROUNDS, None)] {
        let mut seen = Tiles::default();
        let tiled_config =
            StyleConfig { tile: Some(80), tile_rounds: rounds, max_memory: budget, ..plain.clone() };
        let tiled_out = impasto::stylize(&net, &tiled_config, &content, style, &mut seen).unwrap();
        outputs.push(bits(&tiled_out.image));
        assert_eq!(seen.optimised, 4 * rounds.max(1), "every tile in every round");
        let b = impasto::score(&net, &plain, &content, style, &tiled_out.image).unwrap();
        change.push((b.total() - a.total()) / a.total());
        eprintln!(
            "{rounds} rounds, budget {budget:?}: tiled {b:?}, total {:+.1} % of the untiled run's",
            100.0 * change.last().unwrap()
        );
        assert!(b.total() < 0.1 * start.total());
    }
    // Measured +72 % at this size with tiles each held to the style on its own (0 rounds): the Gram
    // matrix of part of a tiny tile is far from the tile's own (a 64 px crop of the untiled result
    // scores 12 times its whole-image style loss), so stitching the kept parts of tiles that each
    // match the style loses some of it. Coupled through the whole image's Grams, tiles lose less
    // (the comparison that counts is at print sizes: BENCHMARKS.md).
    assert!(change[0] < 1.0, "uncoupled tiles: {:+.3}", change[0]);
    assert!(change[1] < 0.5 * change[0], "coupled {:+.3} vs uncoupled {:+.3}", change[1], change[0]);
    // L-BFGS pairs carried across the rounds where the budget has room for them, not where it has
    // none. Measured at this size +12.3 % without them and +11.6 % with them (tiles of 64 px at 10
    // iterations a round say little; at 2048 px they took the loss from +5.8 % to +1.3 %:
    // BENCHMARKS.md).
    assert!(change[2] < 0.5 * change[0], "carried pairs {:+.3} vs uncoupled {:+.3}", change[2], change[0]);
    assert!(outputs[1] != outputs[2], "the budget decides whether pairs are carried");
    // With a checkpoint, a budget with no room keeps them on disk only: the same pixels.
    let dir = tempfile::tempdir().unwrap();
    let on_disk = StyleConfig {
        tile: Some(80),
        max_memory: Some(no_room),
        checkpoint: Some(dir.path().join("run.ckpt")),
        ..plain.clone()
    };
    let out = impasto::stylize(&net, &on_disk, &content, style, &mut NoObserver).unwrap();
    assert!(bits(&out.image) == outputs[2], "pairs carried on disk give the pixels of those in memory");
    // Without a checkpoint, in the run's scratch folder: the same pixels, and no file left there.
    let scratch = dir.path().join("scratch");
    let in_scratch = StyleConfig { checkpoint: None, scratch: Some(scratch.clone()), ..on_disk.clone() };
    let out = impasto::stylize(&net, &in_scratch, &content, style, &mut NoObserver).unwrap();
    assert!(bits(&out.image) == outputs[2], "pairs carried in the scratch folder give the same pixels");
    assert!(pair_files(&scratch).is_empty(), "{:?}", pair_files(&scratch));
    // A scratch folder that cannot be made (a file in its place) only drops the pairs.
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, b"a file").unwrap();
    let no_scratch = StyleConfig { scratch: Some(blocked), ..in_scratch };
    let out = impasto::stylize(&net, &no_scratch, &content, style, &mut NoObserver).unwrap();
    assert!(bits(&out.image) == outputs[1], "an unwritable scratch folder runs as without pairs");
}

#[test]
fn tiles_take_no_more_rounds_than_iterations() {
    let (net, layers) = run_net(Pooling::Max, "relu5_1");
    let (content, styles) = inputs();
    // One iteration a tile: a second round would have none, so there is one.
    let config = StyleConfig { iterations: 1, scale_iterations: Some(1), ..tiled(&layers) };
    assert_eq!(config.tile_rounds, 2);
    let mut seen = Tiles::default();
    impasto::stylize(&net, &config, &content, &styles[..1], &mut seen).unwrap();
    assert_eq!(seen.optimised, 4, "4 tiles in one round");
    let (job, _) = tiles::prepare_tiles(&net, &config, &content, &styles[..1], &mut NoObserver).unwrap();
    assert_eq!((job.plan.len(), job.rounds), (4, 1));
}

/// A run whose first scale is tiled announces that scale's whole image, not its first tile.
#[test]
fn a_run_that_starts_in_tiles_announces_the_whole_image() {
    struct Start(Option<(u32, u32)>);
    impl Observer for Start {
        fn on_start(&mut self, info: &impasto::RunInfo) {
            self.0 = Some((info.width, info.height));
        }
    }
    let (net, layers) = run_net(Pooling::Max, "relu5_1");
    let (content, styles) = inputs();
    let config = StyleConfig { min_size: 96, iterations: 1, ..tiled(&layers) };
    let mut seen = Start(None);
    let out = impasto::stylize(&net, &config, &content, &styles[..1], &mut seen).unwrap();
    assert_eq!(out.image.dimensions(), (96, 96));
    assert_eq!(seen.0, Some((96, 96)));
}

#[test]
fn a_resumed_tiled_run_skips_finished_tiles_and_ends_with_the_same_bits() {
    let (net, layers) = run_net(Pooling::Max, "relu5_1");
    let (content, styles) = inputs();
    let style = &styles[..1];
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("run.ckpt");
    let whole = impasto::stylize(&net, &tiled(&layers), &content, style, &mut NoObserver).unwrap();
    let first = StyleConfig { checkpoint: Some(ckpt.clone()), ..tiled(&layers) };
    // Tiles count on over the rounds (4 tiles a round): stopped in the second round's third tile.
    let count = 4 * tiles::TILE_ROUNDS;
    let mut stop = Tiles { stop_in: Some(6), ..Tiles::default() };
    let out = impasto::stylize(&net, &first, &content, style, &mut stop).unwrap();
    assert_eq!(out.stop, impasto::StopReason::Cancelled);
    assert_eq!(stop.optimised, 6);
    // Tiles 0 and 1 of the first round carried their L-BFGS pairs into the second (used: removed);
    // tiles 2 and 3 still will (tile 3's after the resume), so theirs are kept beside the checkpoint.
    let stored = tiles::TileStore::beside(&ckpt);
    let pairs = |g: usize| stored.join(format!("tile-{g:05}.pairs.safetensors")).exists();
    assert_eq!((0..4).map(pairs).collect::<Vec<_>>(), [false, false, true, true]);
    // A damaged pairs file stops the resume on one line that names it and says what to do.
    let file = stored.join("tile-00003.pairs.safetensors");
    let good = std::fs::read(&file).unwrap();
    std::fs::write(&file, &good[..100]).unwrap();
    let resumed = StyleConfig { resume: Some(ckpt.clone()), ..first.clone() };
    let err = impasto::stylize(&net, &resumed, &content, style, &mut NoObserver).unwrap_err().to_string();
    assert!(err.contains("tile-00003.pairs.safetensors") && err.contains("delete it"), "{err}");
    std::fs::write(&file, &good).unwrap();
    let mut seen = Tiles::default();
    let out = impasto::stylize(&net, &resumed, &content, style, &mut seen).unwrap();
    assert_eq!((seen.skipped, seen.optimised), (6, count - 6));
    assert_eq!(bits(&out.image), bits(&whole.image));
    assert!(!(0..count).any(pairs), "a finished run leaves no pairs behind");

    // The final checkpoint holds every tile: a run whose image could not be written (a folder in
    // the way) is resumed into the very same image without optimising.
    let blocked = dir.path().join("out.png");
    std::fs::create_dir(&blocked).unwrap();
    assert!(impasto::save_image(&out.image, &blocked).is_err());
    let mut again = Tiles::default();
    let out2 = impasto::stylize(&net, &resumed, &content, style, &mut again).unwrap();
    assert_eq!((again.skipped, again.optimised), (count, 0));
    assert_eq!(bits(&out2.image), bits(&whole.image));
}

/// A checkpoint that cannot be written (its folder is gone) stops a tiled run with the whole image
/// as its last good one, not the tile it was optimising.
#[test]
fn a_checkpoint_that_cannot_be_written_stops_a_tiled_run_with_the_whole_image() {
    let (net, layers) = run_net(Pooling::Max, "relu5_1");
    let (content, styles) = inputs();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("gone").join("run.ckpt");
    let config =
        StyleConfig { min_size: 96, checkpoint: Some(ckpt.clone()), checkpoint_every: 1, ..tiled(&layers) };
    let err = impasto::stylize(&net, &config, &content, &styles[..1], &mut NoObserver).unwrap_err();
    let impasto::Error::CheckpointWrite { path, last_good, .. } = &err else { panic!("{err}") };
    assert_eq!(path, &ckpt);
    assert_eq!(last_good.dimensions(), (96, 96));
    assert!(err.to_string().starts_with(&format!("checkpoint {}: cannot write", ckpt.display())), "{err}");
}

fn half(left: bool) -> AlphaPlane {
    AlphaPlane::from_fn(12, 8, |x, _| impasto::image::Luma([if (x < 6) == left { 1.0 } else { 0.0 }]))
}

#[test]
fn masks_and_two_styles_work_in_tiles() {
    let (net, layers) = run_net(Pooling::Max, "relu5_1");
    let (content, styles) = inputs();
    let config = StyleConfig {
        style_masks: Some(vec![half(true), half(false)]),
        mask: Some(AlphaPlane::from_fn(8, 8, |_, y| impasto::image::Luma([if y < 4 { 1.0 } else { 0.0 }]))),
        ..tiled(&layers)
    };
    let mut seen = Tiles::default();
    let out = impasto::stylize(&net, &config, &content, &styles, &mut seen).unwrap();
    assert_eq!(seen.optimised, 4 * tiles::TILE_ROUNDS, "coupled like unmasked tiles");
    let reference = &content;
    let (mut kept, mut changed) = (0.0f32, 0.0f32);
    for (x, y, p) in out.image.enumerate_pixels() {
        let q = reference.get_pixel(x, y);
        let d = (0..3).map(|c| (p[c] - q[c]).abs()).fold(0.0, f32::max);
        if y >= 56 {
            kept = kept.max(d);
        } else if y < 40 {
            changed = changed.max(d);
        }
    }
    assert!(kept < 1e-5, "masked-out rows changed by {kept}");
    assert!(changed > 0.05, "masked-in rows barely changed ({changed})");
}

/// The carried L-BFGS pairs' files in a job's (or checkpoint's) tile folder.
fn pair_files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.retain(|n| n.ends_with(".pairs.safetensors"));
    v.sort();
    v
}

#[test]
fn tile_jobs_in_parts_stitch_to_the_in_process_pixels() {
    let (net, layers) = run_net(Pooling::Max, "relu5_1");
    let (content, styles) = inputs();
    for rounds in [1, 2] {
        let config = StyleConfig { tile_rounds: rounds, ..tiled(&layers) };
        let want = impasto::stylize(&net, &config, &content, &styles, &mut NoObserver).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (job, base) = tiles::prepare_tiles(&net, &config, &content, &styles, &mut NoObserver).unwrap();
        assert_eq!(job.rounds, rounds);
        job.write(dir.path(), &base).unwrap();
        // The first round's whole-image style shift is computed once, by the plan.
        let shift = |round: usize| dir.path().join(format!("round-{round}.shift.safetensors")).exists();
        assert!(shift(1));
        let run = |indices: &[usize], round: Option<usize>| {
            let (job, base) = TileJob::read(dir.path()).unwrap();
            let mut seen = Tiles::default();
            tiles::run_tiles(
                &net,
                &config,
                &content,
                &styles,
                &job,
                &base,
                dir.path(),
                indices,
                round,
                &mut seen,
            )
            .map(|_| (seen.optimised, seen.skipped))
        };
        let progress = |round, missing: &[usize]| JobProgress { round, missing: missing.to_vec() };
        // One process takes tiles 0 and 3 and stops where round 1 waits for the others' tiles.
        assert_eq!(run(&[0, 3], None).unwrap(), (2, 0));
        assert_eq!(job.progress(dir.path()).unwrap(), progress(0, &[1, 2]));
        if rounds == 1 {
            assert_eq!(job.missing(dir.path()).unwrap(), vec![1, 2]);
            assert_eq!(run(&[1, 2, 3], None).unwrap(), (2, 1));
        } else {
            let early = run(&[0], Some(1)).unwrap_err().to_string();
            assert!(
                early.ends_with(
                    "round 2 needs every tile of round 1 first: 2 of 4 are not finished (the first is 1)"
                ),
                "{early}"
            );
            assert!(!shift(2));
            // The other finishes round 1, writes round 2's shift and goes on with its tiles of round 2.
            assert_eq!(run(&[1, 2], None).unwrap(), (4, 0));
            assert!(shift(2));
            assert_eq!(job.progress(dir.path()).unwrap(), progress(1, &[0, 3]));
            // The pairs tiles 0 and 3 carry into round 2 wait beside them; those of 1 and 2 are used.
            let folder = dir.path().join("tiles");
            assert_eq!(pair_files(&folder), ["tile-00000.pairs.safetensors", "tile-00003.pairs.safetensors"]);
            // A damaged shift file stops the round's processes on one line that says what to do.
            let file = dir.path().join("round-2.shift.safetensors");
            let good = std::fs::read(&file).unwrap();
            std::fs::write(&file, b"not a shift").unwrap();
            let err = run(&[0], Some(1)).unwrap_err().to_string();
            assert!(err.contains("round-2.shift.safetensors") && err.contains("delete it"), "{err}");
            std::fs::write(&file, good).unwrap();
            assert_eq!(run(&[0, 1, 2, 3], Some(1)).unwrap(), (2, 2));
            assert_eq!(pair_files(&folder), Vec::<String>::new());
        }
        assert_eq!(job.progress(dir.path()).unwrap(), progress(rounds, &[]));
        let (job, base) = TileJob::read(dir.path()).unwrap();
        let got = tiles::stitch_tiles(&config, &content, &job, &base, dir.path()).unwrap();
        assert!(
            bits(&got) == bits(&want.image),
            "{rounds} round(s): the stitched pixels differ from the in-process run's"
        );
        let seams = tiles::seams(&got, &job.plan);
        eprintln!("{rounds} round(s): seams at 96 px in 64 px tiles: {seams:?}, ratio {:.3}", seams.ratio());
    }
}
