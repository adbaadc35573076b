//! Finished tiles on disk: one safetensors file per tile in a folder (beside a checkpoint, or a tile
//! job's folder), written atomically so that a tile file is either whole or absent, and checked on
//! reading against the run (fingerprint, scale, rectangle) it belongs to.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};

use super::plan::Rect;
use crate::error::{Error, Result};

const FORMAT: &str = "impasto-tile-1";

/// A folder of finished tiles of one scale of one run.
#[derive(Debug, Clone)]
pub struct TileStore {
    dir: PathBuf,
    fingerprint: u64,
    scale: usize,
}

fn err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Checkpoint { path: path.to_path_buf(), reason: reason.into() }
}

/// Writes one f32 tensor `x` with `meta` to `path` atomically (a temporary file, then a rename).
pub(crate) fn write_tensor(path: &Path, meta: HashMap<String, String>, x: &[f32]) -> Result<()> {
    let bytes: &[u8] = bytemuck::cast_slice(x);
    let view = TensorView::new(Dtype::F32, vec![x.len()], bytes).map_err(|e| err(path, e.to_string()))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let done = safetensors::serialize_to_file(vec![("x", view)], Some(meta), &tmp)
        .map_err(|e| e.to_string())
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| e.to_string()));
    done.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(path, format!("cannot write: {e}"))
    })
}

/// Reads a file of [`write_tensor`]: its metadata and tensor.
pub(crate) fn read_tensor(path: &Path) -> Result<(HashMap<String, String>, Vec<f32>)> {
    let bytes = std::fs::read(path).map_err(|e| err(path, format!("cannot read: {e}")))?;
    parse_tensor(path, &bytes)
}

fn parse_tensor(path: &Path, bytes: &[u8]) -> Result<(HashMap<String, String>, Vec<f32>)> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| err(path, format!("not an impasto file: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| err(path, e.to_string()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let t = st.tensor("x").map_err(|_| err(path, "missing tensor `x`"))?;
    if t.dtype() != Dtype::F32 {
        return Err(err(path, "tensor `x` is not F32"));
    }
    let x = t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    Ok((meta, x))
}

impl TileStore {
    /// The tiles of scale `scale` (0-based) of the run with `fingerprint`, in `dir`.
    pub fn new(dir: impl Into<PathBuf>, fingerprint: u64, scale: usize) -> TileStore {
        TileStore { dir: dir.into(), fingerprint, scale }
    }

    /// The folder of finished tiles that goes with a checkpoint file: `run.ckpt` → `run.ckpt.tiles`.
    pub fn beside(checkpoint: &Path) -> PathBuf {
        let mut name = checkpoint.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".tiles");
        checkpoint.with_file_name(name)
    }

    /// The file of tile `index`.
    pub fn path(&self, index: usize) -> PathBuf {
        self.dir.join(format!("tile-{index:05}.safetensors"))
    }

    /// Whether tile `index` is stored (for this run and scale).
    pub fn has(&self, index: usize, rect: Rect) -> bool {
        matches!(self.read(index, rect), Ok(Some(_)))
    }

    /// Stores tile `index` (planar RGB of `rect`), atomically.
    pub fn write(&self, index: usize, rect: Rect, pixels: &[f32]) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| err(&self.dir, format!("cannot create: {e}")))?;
        let meta = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("fingerprint".to_string(), format!("{:016x}", self.fingerprint)),
            ("scale".to_string(), self.scale.to_string()),
            ("index".to_string(), index.to_string()),
            ("rect".to_string(), format!("{},{},{},{}", rect.x, rect.y, rect.width, rect.height)),
        ]);
        write_tensor(&self.path(index), meta, pixels)
    }

    /// Tile `index` if it is stored: `Ok(None)` when there is no file, an error when the file belongs
    /// to another run, scale or rectangle, or cannot be read.
    pub fn read(&self, index: usize, rect: Rect) -> Result<Option<Vec<f32>>> {
        let path = self.path(index);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(&path, format!("cannot read: {e}"))),
        };
        let (meta, x) = parse_tensor(&path, &bytes)?;
        let get = |k: &str| meta.get(k).map(String::as_str).unwrap_or("");
        if get("format") != FORMAT {
            return Err(err(&path, "not an impasto tile"));
        }
        let want = format!("{},{},{},{}", rect.x, rect.y, rect.width, rect.height);
        if get("fingerprint") != format!("{:016x}", self.fingerprint)
            || get("scale") != self.scale.to_string()
            || get("rect") != want
        {
            return Err(err(&path, "it belongs to another run (other settings, images or tile plan)"));
        }
        if x.len() != 3 * rect.pixels() as usize {
            return Err(err(&path, "tile size does not match"));
        }
        Ok(Some(x))
    }
}
