//! Finished tiles on disk: one safetensors file per tile in a folder (beside a checkpoint, or a tile
//! job's folder), written atomically so that a tile file is either whole or absent, and checked on
//! reading against the run (fingerprint, scale, rectangle) it belongs to.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, Metadata, TensorView};

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
    Error::TileFile { path: path.to_path_buf(), reason: reason.into() }
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

/// The metadata and value count of a file of [`write_tensor`] from its header alone (a few hundred
/// bytes, where the tensor of a large tile is megabytes): `Ok(None)` when there is no file; an error
/// when it is not such a file, or its length is not the header's (a file cut short).
fn read_header(path: &Path) -> Result<Option<(HashMap<String, String>, usize)>> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(path, format!("cannot read: {e}"))),
    };
    let cannot = |e: std::io::Error| err(path, format!("cannot read: {e}"));
    let len = file.metadata().map_err(cannot)?.len();
    let mut n = [0u8; 8];
    file.read_exact(&mut n).map_err(|_| err(path, "not an impasto file: too short"))?;
    let n = u64::from_le_bytes(n);
    // A header longer than the file, or than any of ours, is no header (and no allocation of that size).
    if n > len.saturating_sub(8) || n > 1 << 20 {
        return Err(err(path, "not an impasto file: its header is longer than the file"));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header).map_err(cannot)?;
    let header: Metadata =
        serde_json::from_slice(&header).map_err(|e| err(path, format!("not an impasto file: {e}")))?;
    let x = header.info("x").ok_or_else(|| err(path, "missing tensor `x`"))?;
    if x.dtype != Dtype::F32 {
        return Err(err(path, "tensor `x` is not F32"));
    }
    if 8 + n + header.data_len() as u64 != len {
        return Err(err(path, "it is cut short or has bytes after its tensors"));
    }
    let values = x.shape.iter().product();
    Ok(Some((header.metadata().clone().unwrap_or_default(), values)))
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

    /// The state of tile `index` as a tile job stopped it before it was finished (a checkpoint of
    /// that tile alone), from which the next process that takes the tile continues.
    pub fn partial(&self, index: usize) -> PathBuf {
        self.dir.join(format!("tile-{index:05}.partial.ckpt"))
    }

    /// Whether tile `index` is stored (for this run and scale), from the file's header and length,
    /// without reading its pixels: a file is whole or absent (it is written atomically), and a
    /// file that is not this tile's counts as not stored.
    pub fn has(&self, index: usize, rect: Rect) -> bool {
        let path = self.path(index);
        matches!(read_header(&path), Ok(Some((meta, values))) if self.check(&path, &meta, values, rect).is_ok())
    }

    /// Whether the metadata `meta` and value count `values` of file `path` are those of this store's
    /// tile of `rect`.
    fn check(&self, path: &Path, meta: &HashMap<String, String>, values: usize, rect: Rect) -> Result<()> {
        let get = |k: &str| meta.get(k).map(String::as_str).unwrap_or("");
        if get("format") != FORMAT {
            return Err(err(path, "not an impasto tile"));
        }
        let want = format!("{},{},{},{}", rect.x, rect.y, rect.width, rect.height);
        if get("fingerprint") != format!("{:016x}", self.fingerprint)
            || get("scale") != self.scale.to_string()
            || get("rect") != want
        {
            return Err(err(path, "it belongs to another run (other settings, images or tile plan)"));
        }
        if values != 3 * rect.pixels() as usize {
            return Err(err(path, "tile size does not match"));
        }
        Ok(())
    }

    /// Makes the store's folder (where tiles and stopped tiles' states go), if it is not there.
    pub fn create_dir(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| err(&self.dir, format!("cannot create: {e}")))
    }

    /// Stores tile `index` (planar RGB of `rect`), atomically.
    pub fn write(&self, index: usize, rect: Rect, pixels: &[f32]) -> Result<()> {
        self.create_dir()?;
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
        self.check(&path, &meta, x.len(), rect)?;
        Ok(Some(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tile_is_stored_when_its_header_and_length_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = TileStore::new(dir.path(), 0xab, 1);
        let rect = Rect { x: 16, y: 0, width: 5, height: 3 };
        assert!(!store.has(0, rect), "no file");
        let pixels: Vec<f32> = (0..45).map(|v| v as f32 / 45.0).collect();
        store.write(0, rect, &pixels).unwrap();
        assert!(store.has(0, rect));
        assert_eq!(store.read(0, rect).unwrap(), Some(pixels));
        // Another rectangle, scale or run: not this tile.
        assert!(!store.has(0, Rect { x: 0, ..rect }));
        assert!(!TileStore::new(dir.path(), 0xab, 2).has(0, rect));
        assert!(!TileStore::new(dir.path(), 0xac, 1).has(0, rect));
        // A file cut short, one with bytes after its tensor, and no safetensors file at all.
        let path = store.path(0);
        let good = std::fs::read(&path).unwrap();
        for (bytes, why) in [
            (good[..good.len() - 4].to_vec(), "cut short"),
            ([&good[..], &[0u8; 4]].concat(), "bytes after"),
            (b"short".to_vec(), "too short"),
            ([&u64::MAX.to_le_bytes()[..], b"{}"].concat(), "header is longer"),
        ] {
            std::fs::write(&path, bytes).unwrap();
            assert!(!store.has(0, rect), "{why}");
            let e = read_header(&path).unwrap_err().to_string();
            assert!(e.contains(why), "{why}: {e}");
        }
    }
}
