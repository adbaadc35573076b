//! The checkpoint of a frame in progress: written when the clip is stopped (and every
//! `--checkpoint-every` iterations), continued by `--resume`, removed once the frame is written, so
//! that a stopped clip loses no frame's work, finished or not.

use std::path::PathBuf;

use anyhow::{Context, Result};
use impasto::{StyleConfig, Stylized};

use super::Job;
use super::progress::ClipProgress;

/// Which frame of which pass: (pass from 1, frame index from 0).
pub(super) type At = (usize, usize);

impl Job<'_> {
    /// The checkpoint of frame `index` while pass `pass` optimises it, in the frames folder.
    pub(super) fn partial_path(&self, (pass, index): At) -> PathBuf {
        self.frames_dir.join(format!(".impasto-frame-p{pass}-{:06}.ckpt", index + 1))
    }

    /// Runs `optimise` on `cfg` with the frame's checkpoint, continuing it when an earlier run left
    /// one. One that does not belong to this frame any more (damaged, or made from other inputs) is
    /// removed, with a line saying so, and the frame starts over.
    pub(super) fn with_partial(
        &self,
        mut cfg: StyleConfig,
        at: At,
        progress: &mut ClipProgress,
        optimise: impl Fn(&StyleConfig, &mut ClipProgress) -> impasto::Result<Stylized>,
    ) -> Result<Stylized> {
        let path = self.partial_path(at);
        cfg.checkpoint = Some(path.clone());
        if !path.is_file() {
            return Ok(optimise(&cfg, progress)?);
        }
        cfg.resume = Some(path.clone());
        progress.say(&format!("{}: continuing from its checkpoint", progress.frame_label()));
        match optimise(&cfg, progress) {
            Err(ref e) if let Some(reason) = e.checkpoint_refusal(&path) => {
                progress.say(&format!(
                    "{}: its checkpoint {} cannot be continued ({reason}); starting the frame again",
                    progress.frame_label(),
                    path.display()
                ));
                std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
                cfg.resume = None;
                Ok(optimise(&cfg, progress)?)
            }
            other => Ok(other?),
        }
    }

    /// Removes the checkpoint of a finished frame, if it has one.
    pub(super) fn drop_partial(&self, at: At) -> Result<()> {
        let path = self.partial_path(at);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        }
    }
}
