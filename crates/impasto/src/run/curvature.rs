//! Curvature carried across the rounds of a coupled tiled scale: each tile's L-BFGS pairs at the end
//! of one round start its next round. Between rounds a tile's objective changes only by its style
//! targets' shift, so its curvature still holds, and the round does not begin with the short
//! steepest-descent steps of a fresh L-BFGS (at 2048 px, 2 rounds: +5.8 % over the untiled loss
//! without the pairs, +1.3 % with them; BENCHMARKS.md). The pairs are kept on the host as far as
//! the memory budget leaves room, and with checkpoints also beside them (only there when the budget
//! leaves no room), so that a resumed run carries them as the uninterrupted one does. Without a
//! checkpoint and without room, in the run's scratch folder if it has one, as many as its disk holds
//! with room to spare (a failed write there only drops the pairs).

use std::path::{Path, PathBuf};

use super::Plan;
use super::tiled::TiledScale;
use crate::checkpoint::{self, OptState, State};
use crate::config::{Optimizer, lbfgs_history_for};
use crate::error::{Error, Result};
use crate::tiles::{Rect, TileStore, estimate_tiled_peak};

impl Plan<'_> {
    /// What the tiles of `ts` carry from one round into the next: their pairs of every round but
    /// the last (at most the history); nothing with one round or with Adam. They are kept in memory
    /// where the budget (`max_memory`) has room for them beyond the tiled scale's own peak, else
    /// only on disk beside the checkpoint (`store`: the run has one), else only in `config.scratch`,
    /// else as many as fit.
    pub(super) fn carried(&self, ts: &TiledScale, store: Option<TileStore>, fingerprint: u64) -> Carried {
        let key = Key { fingerprint, scale: ts.k };
        let new = |keep, history, on_disk| Carried {
            slots: (0..ts.plan.len()).map(|_| None).collect(),
            rounds: ts.rounds,
            keep,
            history,
            on_disk,
            store: store.clone(),
            scratch: false,
            key,
        };
        let Optimizer::Lbfgs { history } = self.config.optimizer else { return new(0, 0, false) };
        if ts.rounds < 2 {
            return new(0, history, false);
        }
        let most = (ts.per_tile - ts.round_iterations(ts.rounds - 1)).min(history);
        let Some(budget) = self.config.max_memory else { return new(most, history, false) };
        let s = self.scales[ts.k];
        let peak = estimate_tiled_peak(self.net, self.config, s.width, s.height, ts.plan.tile);
        // A pair of every tile: s and y, 3 channels of f32.
        let pair: u64 = ts.plan.rects().map(|r| 2 * 3 * 4 * r.pixels()).sum();
        let fit = usize::try_from(budget.saturating_sub(peak) / pair.max(1)).unwrap_or(usize::MAX);
        match (fit >= most, store.is_some(), &self.config.scratch) {
            (true, ..) => new(most, history, false),
            (false, true, _) => new(most, history, true),
            (false, false, Some(dir)) => {
                let free = dir.parent().and_then(|folder| fs4::available_space(folder).ok());
                Carried {
                    store: Some(TileStore::new(dir, fingerprint, ts.k)),
                    scratch: true,
                    ..new(scratch_pairs(most, free, pair), history, true)
                }
            }
            (false, false, None) => new(fit, history, false),
        }
    }
}

/// Space left free on the scratch folder's disk: a tenth of what is free, at least this much.
const SCRATCH_SPARE: u64 = 256 << 20;

/// How many of their `most` newest pairs the tiles carry in the scratch folder, whose disk has `free`
/// bytes (`None`: unknown): as many as fit in that space less a tenth of it (at least 256 MiB, for
/// snapshots, other programs and the output, whose space is set aside before the run) and less the
/// tiles' results stored with them (half a `pair`, the bytes of one pair of every tile). The pairs
/// help this run only; a disk they filled would fail the run's other writes.
fn scratch_pairs(most: usize, free: Option<u64>, pair: u64) -> usize {
    let Some(free) = free else { return most };
    let room = free.saturating_sub((free / 10).max(SCRATCH_SPARE)).saturating_sub(pair / 2);
    most.min(usize::try_from(room / pair.max(1)).unwrap_or(usize::MAX))
}

/// The optimisers the tiles of a tiled scale carry from one round into the next, and their files
/// beside the checkpoint. Tiles are counted over the rounds (`g = round · tiles + i`).
pub(super) struct Carried {
    slots: Vec<Option<OptState>>,
    rounds: usize,
    /// Newest pairs kept of each (0: none carried).
    keep: usize,
    /// The run's L-BFGS history.
    history: usize,
    /// Kept only in their files beside the checkpoint (no room in memory), read back when used.
    on_disk: bool,
    /// The checkpoint's folder of finished tiles, where the pairs' files go too (or the scratch
    /// folder).
    store: Option<TileStore>,
    /// `store` is the run's scratch folder: the pairs' files help this run only, so one that cannot
    /// be written or read back is dropped (the tile starts its next round afresh), not an error.
    scratch: bool,
    key: Key,
}

impl Carried {
    /// Tile `g` of a resumed run, finished before it stopped at tile `first`, read back from `from`
    /// (the resumed checkpoint's folder; its result `x` in `rect`): the pairs it carries into its
    /// next round, if a tile after `first` starts with them (copied into this run's folder when it
    /// is another).
    pub(super) fn replayed(
        &mut self,
        from: &TileStore,
        g: usize,
        first: usize,
        rect: Rect,
        x: Vec<f32>,
    ) -> Result<()> {
        let (n, i) = (self.slots.len(), g % self.slots.len());
        if self.keep == 0 || g + n < first || g / n + 1 >= self.rounds {
            return Ok(());
        }
        let (at, to) = (pairs_path(from, g), self.store.as_ref().map(|s| pairs_path(s, g)));
        let to = to.filter(|to| *to != at);
        if !self.on_disk {
            self.load(i, &at, rect)?;
            return match to {
                Some(to) => self.save(i, &to, rect, x),
                None => Ok(()),
            };
        }
        match to {
            Some(to) if at.exists() => std::fs::copy(&at, &to)
                .map(|_| ())
                .map_err(|e| Error::Checkpoint { path: to.clone(), reason: format!("cannot write: {e}") }),
            _ => Ok(()),
        }
    }

    /// The optimiser tile `g` (in `rect`) starts with: its own from the round before, if carried
    /// (read back when kept on disk); `None` for a fresh one or when the tile is `resumed`.
    pub(super) fn starting(&mut self, g: usize, rect: Rect, resumed: bool) -> Result<Option<OptState>> {
        let (n, i) = (self.slots.len(), g % self.slots.len());
        if let Some(s) = self.store.as_ref().filter(|_| self.on_disk && g >= n && !resumed) {
            self.load(i, &pairs_path(s, g - n), rect)?;
        }
        Ok(self.take(i))
    }

    /// Tile `g` (in `rect`) is finished with optimiser `opt` and result `x`: keeps its pairs for its
    /// next round (and writes them beside the checkpoint). Called before the tile itself is stored,
    /// so that a stored tile always has its pairs on disk.
    pub(super) fn finished(&mut self, g: usize, rect: Rect, opt: OptState, x: Vec<f32>) -> Result<()> {
        let (n, i) = (self.slots.len(), g % self.slots.len());
        if g / n + 1 >= self.rounds {
            return Ok(());
        }
        self.put(i, opt);
        match self.store.as_ref().map(|s| pairs_path(s, g)) {
            Some(path) => self.save(i, &path, rect, x),
            None => Ok(()),
        }
    }

    /// Tile `g` is stored: deletes the file of the pairs it started with, which a resume (or a tile
    /// job run again) from here on no longer needs. Until then a rerun of the tile finds them.
    pub(super) fn stored(&self, g: usize) {
        let n = self.slots.len();
        if let (Some(s), true) = (&self.store, g >= n) {
            let _ = std::fs::remove_file(pairs_path(s, g - n));
        }
    }

    /// Keeps the pairs only in their files, whatever room memory has: tile jobs, whose tiles of the
    /// next round another process may take.
    pub(super) fn only_on_disk(mut self) -> Carried {
        self.on_disk = self.store.is_some();
        self
    }

    /// Tile `i`'s optimiser from its last round (taken: it starts the tile's next round once).
    fn take(&mut self, i: usize) -> Option<OptState> {
        self.slots.get_mut(i)?.take()
    }

    /// Keeps the newest pairs of tile `i`'s optimiser at the end of a round; `None` when it has none.
    fn put(&mut self, i: usize, opt: OptState) {
        let kept = match opt {
            OptState::Lbfgs(l) if self.keep > 0 => l.carried(self.keep).map(OptState::Lbfgs),
            _ => None,
        };
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = kept;
        }
    }

    /// Writes tile `i`'s carried optimiser (if any) to `path` as a checkpoint file of the tile (its
    /// result `x` in `rect`), so that a resumed run carries it too; kept only there `on_disk`.
    fn save(&mut self, i: usize, path: &Path, rect: Rect, x: Vec<f32>) -> Result<()> {
        let Some(opt) = self.take(i) else { return Ok(()) };
        let state = self.key.state(rect, x, opt);
        // Written before the tile itself, maybe into a folder no tile has made yet.
        let folder = path.parent().map(std::fs::create_dir_all).transpose().map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            reason: format!("cannot create its folder: {e}"),
        });
        let written = folder.and_then(|_| checkpoint::write(path, &state));
        if !self.on_disk {
            self.slots[i] = Some(state.opt);
        }
        match written {
            Err(_) if self.scratch => {
                let _ = std::fs::remove_file(path);
                Ok(())
            }
            w => w,
        }
    }

    /// Reads tile `i`'s carried optimiser back from `path` (written by [`Carried::save`]); a missing
    /// file leaves the tile to start its round afresh, as one from an older checkpoint does.
    fn load(&mut self, i: usize, path: &Path, rect: Rect) -> Result<()> {
        if !path.exists() {
            return Ok(());
        }
        let values = 3 * rect.pixels() as usize;
        // The pairs only speed the tile's next round up: deleting a bad file loses no work.
        let bad = |reason: String| Error::Checkpoint {
            path: path.to_path_buf(),
            reason: format!("{reason} (delete it to start that tile's next round without its L-BFGS pairs)"),
        };
        let state = match checkpoint::read(path, lbfgs_history_for(self.history, values), 0.0, 0.0) {
            Ok(s) => s,
            Err(_) if self.scratch => return Ok(()),
            Err(Error::Checkpoint { reason, .. }) => return Err(bad(reason)),
            Err(e) => return Err(e),
        };
        if state.fingerprint != self.key.fingerprint
            || state.scale != self.key.scale
            || (state.width, state.height) != (rect.width, rect.height)
        {
            if self.scratch {
                return Ok(());
            }
            return Err(bad("it belongs to another run (other settings, images or tile plan)".into()));
        }
        self.slots[i] = Some(state.opt);
        Ok(())
    }
}

/// The run and scale a carried optimiser's file belongs to.
#[derive(Debug, Clone, Copy)]
struct Key {
    fingerprint: u64,
    scale: usize,
}

impl Key {
    fn state(self, rect: Rect, x: Vec<f32>, opt: OptState) -> State {
        State {
            gpu: Default::default(),
            fingerprint: self.fingerprint,
            scale: self.scale,
            scale_done: 0,
            done: 0,
            width: rect.width,
            height: rect.height,
            x,
            opt,
            tile: None,
        }
    }
}

/// The file of the pairs tile `index` (counted over the rounds) carries into its next round, beside
/// the tile's own file in `store`.
fn pairs_path(store: &TileStore, index: usize) -> PathBuf {
    let tile = store.path(index);
    tile.with_extension("pairs.safetensors")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scratch_folder_keeps_a_tenth_of_its_disk_free() {
        const GIB: u64 = 1 << 30;
        // A pair of every tile: 1 GiB; the tiles' results with them: 0.5 GiB.
        assert_eq!(scratch_pairs(5, None, GIB), 5, "unknown free space: as before");
        assert_eq!(scratch_pairs(5, Some(100 * GIB), GIB), 5, "room for all");
        // 10 GiB free: 1 GiB spare, 0.5 GiB of results, 8 pairs fit.
        assert_eq!(scratch_pairs(20, Some(10 * GIB), GIB), 8);
        // 2 GiB free: 256 MiB spare (more than a tenth), 0.5 GiB of results: 1 pair.
        assert_eq!(scratch_pairs(3, Some(2 * GIB), GIB), 1);
        assert_eq!(scratch_pairs(3, Some(GIB), GIB), 0, "none: each round starts afresh");
        assert_eq!(scratch_pairs(3, Some(0), GIB), 0);
        assert_eq!(scratch_pairs(0, Some(100 * GIB), GIB), 0);
    }
}
