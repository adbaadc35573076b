//! `impasto video --passes N`: the passes after the first (the multi-pass algorithm of Ruder et al.,
//! [`impasto_video::pass_frames`] and [`impasto_video::revisit`]), and the files in the frames folder
//! they run from: each frame's content and optimised result as 16-bit PNGs, and where the passes
//! stand, so that memory does not grow with the clip and a stopped pass continues with `--resume`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use impasto::image::Rgb32FImage;
use impasto::{SaveOptions, StopReason};
use impasto_video::{Earlier, FlowParams, pass_frames, revisit};

use super::progress::ClipProgress;
use super::{Job, Start};
use crate::interrupt;

/// The folder inside the frames folder that later passes read from.
const STORE_DIR: &str = ".impasto-passes";

/// The file in [`STORE_DIR`] that says where the passes stand.
const STATE_FILE: &str = "state.txt";

/// A frame's content, at the output size.
pub(super) const CONTENT: &str = "content";

/// A frame's optimised (pre-colour) result from its latest pass.
pub(super) const RESULT: &str = "result";

/// Where the passes after the first stand: pass `pass` has finished the first `done` frames of its
/// order over the clip's `frames`; a `pass` above the clip's passes means all are done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PassState {
    pub pass: usize,
    pub done: usize,
    pub frames: usize,
}

impl PassState {
    fn parse(text: &str) -> Option<PassState> {
        let mut fields = text.lines().map(|l| l.split_once(' ').and_then(|(_, v)| v.parse().ok()));
        let (pass, done, frames) = (fields.next()??, fields.next()??, fields.next()??);
        (pass >= 2 && done <= frames).then_some(PassState { pass, done, frames })
    }
}

/// The frames' contents and results that later passes read, and the pass state.
pub(super) struct PassStore {
    dir: PathBuf,
}

impl PassStore {
    pub(super) fn new(frames_dir: &Path) -> PassStore {
        PassStore { dir: frames_dir.join(STORE_DIR) }
    }

    fn path(&self, what: &str, index: usize) -> PathBuf {
        self.dir.join(format!("{what}_{:06}.png", index + 1))
    }

    /// Writes `what` (content or result) of frame `index`, replacing the file at once, and returns
    /// the image as [`PassStore::load`] will read it back (rounded to 16 bits), so that a caller
    /// keeping it in memory holds the same bits as one that reads it after a `--resume`.
    pub(super) fn save(&self, what: &str, index: usize, img: &Rgb32FImage) -> Result<Rgb32FImage> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
        let depth = 16;
        impasto::save_image_with(
            img,
            &self.path(what, index),
            &SaveOptions { depth, ..SaveOptions::default() },
        )?;
        Ok(impasto::as_saved(img, depth))
    }

    pub(super) fn load(&self, what: &str, index: usize) -> Result<Rgb32FImage> {
        let path = self.path(what, index);
        impasto::load_image(&path)
            .with_context(|| format!("the {what} of frame {} for the next pass", index + 1))
    }

    /// The state of an earlier run's later passes: None while the first pass is not finished.
    pub(super) fn state(&self) -> Result<Option<PassState>> {
        let path = self.dir.join(STATE_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => match PassState::parse(&text) {
                Some(s) => Ok(Some(s)),
                None => bail!("cannot --resume: {} is damaged", path.display()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn set_state(&self, s: PassState) -> Result<()> {
        let (path, tmp) = (self.dir.join(STATE_FILE), self.dir.join("tmp_state.txt"));
        let text = format!("pass {}\ndone {}\nframes {}\n", s.pass, s.done, s.frames);
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }

    /// Removes the contents and results once every pass is done (the state stays, so that
    /// `--resume` knows the clip is finished).
    fn clear(&self) -> Result<()> {
        for entry in
            std::fs::read_dir(&self.dir).with_context(|| format!("reading {}", self.dir.display()))?
        {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "png") {
                std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            }
        }
        Ok(())
    }
}

impl Job<'_> {
    /// Runs the passes after the first from `state` on (the first pass finished, with `state.frames`
    /// frames); returns where Ctrl-C stopped them, if it did.
    pub(super) fn later_passes(
        &self,
        store: &PassStore,
        mut state: PassState,
        progress: &mut ClipProgress,
    ) -> Result<Option<PassState>> {
        let n = state.frames;
        if state.pass > self.passes {
            return Ok(None);
        }
        store.set_state(state)?;
        let styles = self.optimised_styles(&store.load(CONTENT, 0)?);
        let params = FlowParams::default();
        // The frame just optimised (index, content, result as stored): the next frame's neighbour,
        // so that only the first frame after a start or `--resume` reads its neighbour's files.
        let mut last: Option<(usize, Rgb32FImage, Rgb32FImage)> = None;
        while state.pass <= self.passes {
            progress.start_pass(state.pass, n);
            for (position, (t, neighbour)) in
                pass_frames(state.pass, n).into_iter().enumerate().skip(state.done)
            {
                if interrupt::requested() {
                    return Ok(Some(state));
                }
                let (content, own) = (store.load(CONTENT, t)?, store.load(RESULT, t)?);
                let start = match neighbour {
                    Some(j) => {
                        let (near, near_result) = match last.take() {
                            Some((i, near, near_result)) if i == j => (near, near_result),
                            _ => (store.load(CONTENT, j)?, store.load(RESULT, j)?),
                        };
                        let r = revisit(
                            &own,
                            &content,
                            Earlier { content: &near, result: &near_result },
                            &params,
                        );
                        Start { init: r.init, temporal: Some((r.target, r.mask)) }
                    }
                    None => Start { init: own, temporal: None },
                };
                progress.start_frame(t, position);
                let at = (state.pass, t);
                let out =
                    self.optimise(at, &content, &styles, self.pass_iterations, Some(start), progress)?;
                if out.stop == StopReason::Cancelled {
                    return Ok(Some(state));
                }
                // The result first, the state last: a stop in between redoes this frame from its new
                // result, which is as good a start as the old one (its checkpoint, if a stop came
                // before it was removed, no longer fits that start and is replaced).
                let result = store.save(RESULT, t, &out.image)?;
                self.write_frame(t, &out.image, &content)?;
                self.drop_partial(at)?;
                last = Some((t, content, result));
                progress.end_frame(&out.losses);
                state.done = position + 1;
                store.set_state(state)?;
            }
            state = PassState { pass: state.pass + 1, done: 0, frames: n };
            store.set_state(state)?;
        }
        store.clear()?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pass_state_reads_back_and_a_damaged_one_is_refused() {
        let s = PassState { pass: 3, done: 2, frames: 9 };
        let text = format!("pass {}\ndone {}\nframes {}\n", s.pass, s.done, s.frames);
        assert_eq!(PassState::parse(&text), Some(s));
        for bad in [
            "",
            "pass 3\ndone 2\n",
            "pass x\ndone 2\nframes 9\n",
            "pass 1\ndone 0\nframes 9\n",
            "pass 2\ndone 10\nframes 9\n",
        ] {
            assert_eq!(PassState::parse(bad), None, "{bad:?}");
        }
    }
}
