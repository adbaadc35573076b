//! The time left in a run, one rule for every client (the CLI's bar and log lines, the web UI's page):
//! the rate measured over the current scale, per pixel and iteration, times the work left, where an
//! iteration's work is its scale's pixel count.

use std::time::Duration;

use crate::tiles::TilePlan;
use crate::{Replan, RunInfo, Scale};

/// Estimates the time left of one run; feed it every iteration with [`Eta::update`].
///
/// The first iteration of each scale also computes that scale's content and style targets, so the rate
/// is measured from the end of it: until one more iteration is done, the rate of the previous scale
/// (per pixel) stands in, and at the very start there is no estimate.
#[derive(Debug, Clone)]
pub struct Eta {
    /// Pixels and iterations of each scale.
    scales: Vec<(f64, usize)>,
    /// Where the current scale's measurement starts: (scale, seconds, iteration).
    mark: Option<(usize, f64, usize)>,
    /// The latest rate, in seconds per pixel-iteration.
    rate: Option<f64>,
}

impl Eta {
    /// An estimator for the run `info` describes.
    pub fn new(info: &RunInfo) -> Eta {
        let mut eta = Eta::of_schedule(&info.scales, &info.tiles);
        if eta.scales.is_empty() {
            eta.scales.push((f64::from(info.width) * f64::from(info.height), info.iterations));
        }
        eta
    }

    /// An estimator for the rest of a run that changed its plan ([`crate::Observer::on_replan`]):
    /// the scales' work is the new plan's, the rate measured so far is kept (per pixel, it holds for
    /// tiles as for the whole image).
    pub fn replanned(&self, replan: &Replan) -> Eta {
        Eta { rate: self.rate, ..Eta::of_schedule(&replan.scales, &replan.tiles) }
    }

    fn of_schedule(scales: &[Scale], tiles: &[Option<TilePlan>]) -> Eta {
        // On a tiled scale each iteration works on one tile: about the scale's pixels over the tiles.
        let tiles = |k: usize| tiles.get(k).and_then(Option::as_ref).map_or(1, TilePlan::len) as f64;
        let scales =
            scales.iter().enumerate().map(|(k, s)| (s.pixels() as f64 / tiles(k), s.iterations)).collect();
        Eta { scales, mark: None, rate: None }
    }

    /// The time left after `iteration` (1-based, counted across scales) of scale `scale` (0-based),
    /// `elapsed` after the optimisation started (the caller leaves pauses out). `None` until a rate is
    /// known.
    pub fn update(&mut self, scale: usize, iteration: usize, elapsed: Duration) -> Option<Duration> {
        let now = elapsed.as_secs_f64();
        let pixels = self.scales.get(scale).map_or(1.0, |s| s.0);
        match self.mark {
            Some((s, t0, i0)) if s == scale && iteration > i0 => {
                let rate = (now - t0).max(0.0) / ((iteration - i0) as f64 * pixels);
                self.rate = Some(rate);
            }
            Some((s, ..)) if s == scale => {}
            _ => self.mark = Some((scale, now, iteration)),
        }
        let rate = self.rate?;
        Some(Duration::from_secs_f64(rate * self.work_after(iteration)))
    }

    /// Pixel-iterations left after `iteration`.
    fn work_after(&self, iteration: usize) -> f64 {
        let mut start = 0;
        let mut work = 0.0;
        for &(pixels, n) in &self.scales {
            let end = start + n;
            work += pixels * end.saturating_sub(iteration.max(start)) as f64;
            start = end;
        }
        work
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(scales: Vec<(u32, u32, usize)>) -> RunInfo {
        let (width, height, _) = *scales.last().unwrap();
        RunInfo {
            width,
            height,
            iterations: scales.iter().map(|s| s.2).sum(),
            scales: scales
                .into_iter()
                .map(|(width, height, iterations)| crate::Scale { width, height, iterations })
                .collect(),
            tiles: Vec::new(),
            initial: crate::Losses::default(),
        }
    }

    fn secs(d: Option<Duration>) -> Option<f64> {
        d.map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0)
    }

    #[test]
    fn one_scale_is_a_plain_proportion_measured_after_the_first_iteration() {
        let mut eta = Eta::new(&info(vec![(10, 10, 40)]));
        // The first iteration also paid for the targets: no estimate yet, and it is not counted.
        assert_eq!(eta.update(0, 1, Duration::from_secs(30)), None);
        assert_eq!(secs(eta.update(0, 2, Duration::from_secs(31))), Some(38.0));
        assert_eq!(secs(eta.update(0, 11, Duration::from_secs(40))), Some(29.0));
        assert_eq!(secs(eta.update(0, 40, Duration::from_secs(69))), Some(0.0));
    }

    #[test]
    fn a_replanned_run_keeps_its_rate_for_the_new_schedule() {
        // 10 iterations at 100 px (1 s each), then 10 at 160×160 px; that scale starts again in 4
        // tiles of 6400 px with 10 iterations each (64 s each at the measured rate).
        let mut eta = Eta::new(&info(vec![(10, 10, 10), (160, 160, 10)]));
        eta.update(0, 1, Duration::from_secs(5));
        eta.update(0, 10, Duration::from_secs(14));
        let tiles = crate::tiles::TilePlan::new(160, 160, 80, 0).ok();
        assert_eq!(tiles.as_ref().map(crate::tiles::TilePlan::len), Some(4));
        let replan = Replan {
            scale: 1,
            reason: "out of GPU memory".into(),
            budget: 1 << 20,
            iterations: 50,
            scales: vec![
                Scale { width: 10, height: 10, iterations: 10 },
                Scale { width: 160, height: 160, iterations: 40 },
            ],
            tiles: vec![None, tiles],
        };
        let mut eta = eta.replanned(&replan);
        // Before the new scale's rate is measured, the old one stands in.
        assert_eq!(secs(eta.update(1, 10, Duration::from_secs(20))), Some(40.0 * 64.0));
    }

    #[test]
    fn later_scales_cost_in_proportion_to_their_pixels() {
        // 10 iterations at 100 px, then 10 at 400 px (4 times as long each).
        let mut eta = Eta::new(&info(vec![(10, 10, 10), (20, 20, 10)]));
        assert_eq!(eta.update(0, 1, Duration::from_secs(5)), None);
        // 1 s per small iteration: 9 small left and 10 large ones (4 s each).
        assert_eq!(secs(eta.update(0, 2, Duration::from_secs(6))), Some(48.0));
        assert_eq!(secs(eta.update(0, 10, Duration::from_secs(14))), Some(40.0));
        // The first iteration of the next scale (its targets): the last rate stands in.
        assert_eq!(secs(eta.update(1, 11, Duration::from_secs(30))), Some(36.0));
        // Then the new scale's own rate: 2 s per iteration, slower per pixel than estimated.
        assert_eq!(secs(eta.update(1, 12, Duration::from_secs(32))), Some(16.0));
        assert_eq!(secs(eta.update(1, 20, Duration::from_secs(48))), Some(0.0));
    }

    #[test]
    fn a_resumed_run_starts_measuring_where_it_resumes() {
        let mut eta = Eta::new(&info(vec![(10, 10, 100)]));
        assert_eq!(eta.update(0, 51, Duration::from_secs(3)), None);
        assert_eq!(secs(eta.update(0, 53, Duration::from_secs(4))), Some(23.5));
        // The same iteration reported twice changes nothing.
        assert_eq!(secs(eta.update(0, 53, Duration::from_secs(4))), Some(23.5));
    }

    #[test]
    fn no_schedule_means_one_scale_of_the_output_size() {
        let run = RunInfo { scales: Vec::new(), ..info(vec![(10, 10, 20)]) };
        let mut eta = Eta::new(&run);
        assert_eq!(eta.update(0, 1, Duration::ZERO), None);
        assert_eq!(secs(eta.update(0, 2, Duration::from_secs(1))), Some(18.0));
    }
}
