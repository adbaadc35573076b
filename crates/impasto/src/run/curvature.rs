//! Curvature carried across the rounds of a coupled tiled scale: each tile's L-BFGS pairs at the end
//! of one round start its next round. Between rounds a tile's objective changes only by its style
//! targets' shift, so its curvature still holds, and the round does not begin with the short
//! steepest-descent steps of a fresh L-BFGS (at 2048 px, 2 rounds: +5.8 % over the untiled loss
//! without the pairs, +1.3 % with them; BENCHMARKS.md). The pairs are kept on the host as far as
//! the memory budget leaves room, and with checkpoints also beside them (only there when the budget
//! leaves no room), so that a resumed run carries them as the uninterrupted one does.

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
    /// only on disk beside the checkpoint (`on_disk`: the run has one), else as many as fit.
    pub(super) fn carried(&self, ts: &TiledScale, on_disk: bool) -> Carried {
        let n = ts.plan.len();
        let Optimizer::Lbfgs { history } = self.config.optimizer else { return Carried::new(n, 0, 0, false) };
        if ts.rounds < 2 {
            return Carried::new(n, 0, history, false);
        }
        let most = (ts.per_tile - ts.round_iterations(ts.rounds - 1)).min(history);
        let Some(budget) = self.config.max_memory else { return Carried::new(n, most, history, false) };
        let s = self.scales[ts.k];
        let peak = estimate_tiled_peak(self.net, self.config, s.width, s.height, ts.plan.tile);
        // A pair of every tile: s and y, 3 channels of f32.
        let pair: u64 = ts.plan.rects().map(|r| 2 * 3 * 4 * r.pixels()).sum();
        let fit = usize::try_from(budget.saturating_sub(peak) / pair.max(1)).unwrap_or(usize::MAX);
        match (fit >= most, on_disk) {
            (true, _) => Carried::new(n, most, history, false),
            (false, true) => Carried::new(n, most, history, true),
            (false, false) => Carried::new(n, fit, history, false),
        }
    }
}

/// The optimisers the tiles of a tiled scale carry from one round into the next.
pub(super) struct Carried {
    slots: Vec<Option<OptState>>,
    /// Newest pairs kept of each (0: none carried).
    keep: usize,
    /// The run's L-BFGS history.
    history: usize,
    /// Kept only in their files beside the checkpoint (no room in memory), read back when used.
    on_disk: bool,
}

impl Carried {
    /// Nothing carried yet for `tiles` tiles, keeping `keep` pairs of each (of a run's `history`).
    fn new(tiles: usize, keep: usize, history: usize, on_disk: bool) -> Carried {
        Carried { slots: (0..tiles).map(|_| None).collect(), keep, history, on_disk }
    }

    /// Whether any pairs are carried.
    pub(super) fn on(&self) -> bool {
        self.keep > 0
    }

    /// Whether they are kept only on disk.
    pub(super) fn on_disk(&self) -> bool {
        self.on_disk
    }

    /// Tile `i`'s optimiser from its last round (taken: it starts the tile's next round once).
    pub(super) fn take(&mut self, i: usize) -> Option<OptState> {
        self.slots.get_mut(i)?.take()
    }

    /// Keeps the newest pairs of tile `i`'s optimiser at the end of a round; `None` when it has none.
    pub(super) fn put(&mut self, i: usize, opt: OptState) {
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
    pub(super) fn save(&mut self, i: usize, path: &Path, key: Key, rect: Rect, x: Vec<f32>) -> Result<()> {
        let Some(opt) = self.take(i) else { return Ok(()) };
        let state = key.state(rect, x, opt);
        let written = checkpoint::write(path, &state);
        if !self.on_disk {
            self.slots[i] = Some(state.opt);
        }
        written
    }

    /// Reads tile `i`'s carried optimiser back from `path` (written by [`Carried::save`]); a missing
    /// file leaves the tile to start its round afresh, as one from an older checkpoint does.
    pub(super) fn load(&mut self, i: usize, path: &Path, key: Key, rect: Rect) -> Result<()> {
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
            Err(Error::Checkpoint { reason, .. }) => return Err(bad(reason)),
            Err(e) => return Err(e),
        };
        if state.fingerprint != key.fingerprint
            || state.scale != key.scale
            || (state.width, state.height) != (rect.width, rect.height)
        {
            return Err(bad("it belongs to another run (other settings, images or tile plan)".into()));
        }
        self.slots[i] = Some(state.opt);
        Ok(())
    }
}

/// The run and scale a carried optimiser's file belongs to.
#[derive(Debug, Clone, Copy)]
pub(super) struct Key {
    pub(super) fingerprint: u64,
    pub(super) scale: usize,
}

impl Key {
    fn state(self, rect: Rect, x: Vec<f32>, opt: OptState) -> State {
        State {
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
pub(super) fn pairs_path(store: &TileStore, index: usize) -> PathBuf {
    let tile = store.path(index);
    tile.with_extension("pairs.safetensors")
}
