//! Checkpoints: the whole optimisation state (image, scale, iteration, L-BFGS history or Adam moments
//! and the image average) saved atomically as a safetensors file, and read back to resume a run so
//! that it ends with the same bits as an uninterrupted one.

use std::collections::HashMap;
use std::path::Path;

use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};

use crate::error::{Error, Result};
use crate::optim::{Adam, Ema, Lbfgs};

const FORMAT: &str = "impasto-checkpoint-1";

/// The optimiser's state between two iterations.
#[derive(Debug)]
pub(crate) enum OptState {
    /// L-BFGS and its correction pairs.
    Lbfgs(Lbfgs),
    /// Adam's moments and the running image average.
    Adam(Adam, Ema),
}

/// Everything a run needs to continue exactly where it stopped.
#[derive(Debug)]
pub(crate) struct State {
    /// Fingerprint of the config and inputs the state belongs to.
    pub(crate) fingerprint: u64,
    /// 0-based scale index.
    pub(crate) scale: usize,
    /// Iterations done within this scale.
    pub(crate) scale_done: usize,
    /// Iterations done over all scales.
    pub(crate) done: usize,
    /// Image size at this scale.
    pub(crate) width: u32,
    /// Image size at this scale.
    pub(crate) height: u32,
    /// The image (planar RGB 0..1).
    pub(crate) x: Vec<f32>,
    /// The optimiser.
    pub(crate) opt: OptState,
    /// On a tiled scale: which tile `x` is, and the image the tiles start from. The tiles finished
    /// before it are stored beside the checkpoint (see [`crate::tiles::TileStore`]).
    pub(crate) tile: Option<TileState>,
    /// What the run's tiles followed on its GPU besides its settings.
    pub(crate) gpu: GpuPlan,
}

/// What a run's plan followed on its GPU besides its settings: the memory its driver left the run
/// when the plan was made, and the budgets learned from allocations that failed (see
/// `run::refit`). A resumed run plans under the same, so that its tiles (part of the fingerprint)
/// are the same whatever else holds the card's memory by then.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GpuPlan {
    /// The driver's budget for the run ([`crate::tiles::GpuLimits::available`]).
    pub(crate) available: Option<u64>,
    /// From scale `.0` on, at most `.1` bytes, in the order they were learned.
    pub(crate) refits: Vec<(usize, u64)>,
}

impl State {
    /// The image the state's scale can start again from: the image itself, or on a tiled scale the
    /// image its tiles start from (before resizing to the scale).
    pub(crate) fn start_image(&self) -> image::Rgb32FImage {
        match &self.tile {
            Some(t) => crate::pixels::to_image(&t.base.2, t.base.0, t.base.1),
            None => crate::pixels::to_image(&self.x, self.width, self.height),
        }
    }
}

/// Where a checkpoint of a tiled scale is.
#[derive(Debug, Clone)]
pub(crate) struct TileState {
    /// The tile being optimised (0-based); the tiles before it are finished.
    pub(crate) index: usize,
    /// Tiles of the scale.
    pub(crate) count: usize,
    /// The tiles start from this image (the previous scale's result, or the initial image) resized
    /// to the scale: (width, height, planar RGB) before resizing.
    pub(crate) base: std::sync::Arc<(u32, u32, Vec<f32>)>,
}

/// FNV-1a, 64 bits: a stable fingerprint (not a security hash) of config text and image bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fingerprint(pub(crate) u64);

impl Fingerprint {
    pub(crate) fn new() -> Fingerprint {
        Fingerprint(0xcbf2_9ce4_8422_2325)
    }
    pub(crate) fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }
    pub(crate) fn add_f32s(&mut self, v: &[f32]) {
        for x in v {
            self.add(&x.to_le_bytes());
        }
    }
}

fn ckpt_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Checkpoint { path: path.to_path_buf(), reason: reason.into() }
}

/// `e`, a failure of [`write`] during a run, as the run's stop: [`Error::CheckpointWrite`] carrying
/// `image` (the run's image then) as its last good one.
pub(crate) fn unwritten(e: Error, image: impl FnOnce() -> image::Rgb32FImage) -> Error {
    match e {
        Error::Checkpoint { path, reason } => {
            Error::CheckpointWrite { path, reason, last_good: Box::new(image()) }
        }
        e => e,
    }
}

/// Writes `state` to `path` atomically (a temporary file in the same folder, then a rename).
pub(crate) fn write(path: &Path, state: &State) -> Result<()> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>, Dtype)> = Vec::new();
    let mut f32s = |name: String, v: &[f32]| {
        tensors.push((name, vec![v.len()], bytemuck::cast_slice(v).to_vec(), Dtype::F32));
    };
    f32s("x".into(), &state.x);
    if let Some(t) = &state.tile {
        f32s("tile.base".into(), &t.base.2);
    }
    let mut meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("fingerprint".to_string(), format!("{:016x}", state.fingerprint)),
        ("scale".to_string(), state.scale.to_string()),
        ("scale_done".to_string(), state.scale_done.to_string()),
        ("done".to_string(), state.done.to_string()),
        ("width".to_string(), state.width.to_string()),
        ("height".to_string(), state.height.to_string()),
    ]);
    if let Some(a) = state.gpu.available {
        meta.insert("gpu.available".into(), a.to_string());
    }
    if !state.gpu.refits.is_empty() {
        let refits: Vec<String> = state.gpu.refits.iter().map(|(k, b)| format!("{k}:{b}")).collect();
        meta.insert("gpu.refits".into(), refits.join(","));
    }
    if let Some(t) = &state.tile {
        meta.insert("tile.index".into(), t.index.to_string());
        meta.insert("tile.count".into(), t.count.to_string());
        meta.insert("tile.base_width".into(), t.base.0.to_string());
        meta.insert("tile.base_height".into(), t.base.1.to_string());
    }
    match &state.opt {
        OptState::Lbfgs(l) => {
            meta.insert("optimizer".into(), "lbfgs".into());
            // On a GPU the pairs are read back (none if that fails: the image is still good).
            let pairs = l.saved_pairs();
            meta.insert("lbfgs.pairs".into(), pairs.len().to_string());
            meta.insert("lbfgs.sd_step".into(), format!("{:016x}", l.sd_step.to_bits()));
            for (i, (s, y, _)) in pairs.iter().enumerate() {
                f32s(format!("lbfgs.s.{i}"), s);
                f32s(format!("lbfgs.y.{i}"), y);
            }
            let rho: Vec<f64> = pairs.iter().map(|p| p.2).collect();
            if !rho.is_empty() {
                tensors.push((
                    "lbfgs.rho".into(),
                    vec![rho.len()],
                    bytemuck::cast_slice(&rho).to_vec(),
                    Dtype::F64,
                ));
            }
        }
        OptState::Adam(a, e) => {
            meta.insert("optimizer".into(), "adam".into());
            meta.insert("adam.t".into(), a.t.to_string());
            meta.insert("ema.weight".into(), format!("{:016x}", e.weight.to_bits()));
            f32s("adam.m".into(), &a.m);
            f32s("adam.v".into(), &a.v);
            f32s("ema.avg".into(), &e.avg);
        }
    }
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, shape, bytes, dt)| {
            Ok((
                n.clone(),
                TensorView::new(*dt, shape.clone(), bytes).map_err(|e| ckpt_err(path, e.to_string()))?,
            ))
        })
        .collect::<Result<_>>()?;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    safetensors::serialize_to_file(views, Some(meta), &tmp).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        ckpt_err(path, format!("cannot write: {e}"))
    })?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        ckpt_err(path, format!("cannot write: {e}"))
    })
}

/// Reads a checkpoint written by [`write`]. `history`, `lr` and `ema_decay` come from the config.
pub(crate) fn read(path: &Path, history: usize, lr: f32, ema_decay: f32) -> Result<State> {
    let bytes = std::fs::read(path).map_err(|e| ckpt_err(path, format!("cannot read: {e}")))?;
    let st =
        SafeTensors::deserialize(&bytes).map_err(|e| ckpt_err(path, format!("not a checkpoint: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| ckpt_err(path, e.to_string()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let get = |k: &str| meta.get(k).ok_or_else(|| ckpt_err(path, format!("missing `{k}`")));
    if get("format")? != FORMAT {
        return Err(ckpt_err(path, "not an impasto checkpoint"));
    }
    let num = |k: &str| get(k)?.parse::<usize>().map_err(|_| ckpt_err(path, format!("bad `{k}`")));
    let hex = |k: &str| u64::from_str_radix(get(k)?, 16).map_err(|_| ckpt_err(path, format!("bad `{k}`")));
    let f32s = |k: &str| -> Result<Vec<f32>> {
        let t = st.tensor(k).map_err(|_| ckpt_err(path, format!("missing tensor `{k}`")))?;
        if t.dtype() != Dtype::F32 {
            return Err(ckpt_err(path, format!("tensor `{k}` is not F32")));
        }
        Ok(t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    };
    let x = f32s("x")?;
    if !x.iter().all(|v| v.is_finite()) {
        return Err(ckpt_err(path, "its image holds NaN or infinite values: the file is damaged"));
    }
    let opt = match get("optimizer")?.as_str() {
        "lbfgs" => {
            let pairs = num("lbfgs.pairs")?;
            let mut l = Lbfgs::new(history);
            l.sd_step = f64::from_bits(hex("lbfgs.sd_step")?);
            let mut rho = Vec::new();
            if pairs > 0 {
                let t = st.tensor("lbfgs.rho").map_err(|_| ckpt_err(path, "missing tensor `lbfgs.rho`"))?;
                rho = t
                    .data()
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                    .collect();
                if rho.len() != pairs {
                    return Err(ckpt_err(path, "inconsistent L-BFGS history"));
                }
            }
            // Read to the host (the run moves them to its GPU, if it has one); the oldest beyond
            // `history` are dropped.
            for (i, &r) in rho.iter().enumerate() {
                let (s, y) = (f32s(&format!("lbfgs.s.{i}"))?, f32s(&format!("lbfgs.y.{i}"))?);
                l.restore_pair(s, y, r).map_err(|e| ckpt_err(path, e.reason))?;
            }
            OptState::Lbfgs(l)
        }
        "adam" => {
            let mut a = Adam::new(x.len(), lr);
            a.t = num("adam.t")? as i32;
            a.m = f32s("adam.m")?;
            a.v = f32s("adam.v")?;
            let mut e = Ema::new(&x, ema_decay);
            e.avg = f32s("ema.avg")?;
            e.weight = f64::from_bits(hex("ema.weight")?);
            OptState::Adam(a, e)
        }
        other => return Err(ckpt_err(path, format!("unknown optimizer `{other}`"))),
    };
    let tile = match meta.get("tile.index") {
        None => None,
        Some(_) => {
            let (bw, bh) = (num("tile.base_width")? as u32, num("tile.base_height")? as u32);
            let base = f32s("tile.base")?;
            if base.len() != 3 * (bw as usize) * (bh as usize) {
                return Err(ckpt_err(path, "tile base image size does not match"));
            }
            Some(TileState {
                index: num("tile.index")?,
                count: num("tile.count")?,
                base: std::sync::Arc::new((bw, bh, base)),
            })
        }
    };
    let refits = match meta.get("gpu.refits") {
        None => Vec::new(),
        Some(v) => v
            .split(',')
            .map(|r| {
                let (k, b) = r.split_once(':')?;
                Some((k.parse().ok()?, b.parse().ok()?))
            })
            .collect::<Option<_>>()
            .ok_or_else(|| ckpt_err(path, "bad `gpu.refits`"))?,
    };
    let available = match meta.get("gpu.available") {
        None => None,
        Some(v) => Some(v.parse().map_err(|_| ckpt_err(path, "bad `gpu.available`"))?),
    };
    let state = State {
        tile,
        gpu: GpuPlan { available, refits },
        fingerprint: hex("fingerprint")?,
        scale: num("scale")?,
        scale_done: num("scale_done")?,
        done: num("done")?,
        width: num("width")? as u32,
        height: num("height")? as u32,
        x,
        opt,
    };
    if state.x.len() != 3 * (state.width * state.height) as usize {
        return Err(ckpt_err(path, "image size does not match"));
    }
    Ok(state)
}
