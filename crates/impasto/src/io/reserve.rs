//! Disk space set aside for a run's output image before the long work, so that a disk that fills
//! up during the run (other programs, or the run's own checkpoints and scratch files) cannot make
//! the final write fail and lose the result.

use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use image::Rgb32FImage;

use super::encode_err;
use super::save::{Format, SaveOptions, TempFile, format_of, save_through};
use crate::error::Result;
use crate::tiles::fmt_bytes;

/// The space set aside for one output image by [`reserve_output`]: a hidden temporary file beside the
/// output, as long as the largest file the image can encode to, whose blocks the file system has
/// allocated. [`OutputReservation::save`] writes the image into it, cuts off what it did not use and
/// renames it to the output; dropping the reservation unused removes the file.
#[derive(Debug)]
pub struct OutputReservation {
    path: PathBuf,
    bytes: u64,
    /// `None` where the file system cannot allocate ahead (the free space was checked instead), and
    /// after the first save.
    file: Option<TempFile>,
}

impl OutputReservation {
    /// The output the space is for.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bytes set aside: the most the image can take in its format.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether the file system allocated the space (false where it cannot allocate ahead, e.g. some
    /// network file systems: then only the free space was checked, and the final write may still
    /// find the disk full).
    pub fn is_allocated(&self) -> bool {
        self.file.is_some()
    }

    /// Writes `img` to the output as [`super::save_image_with`] does, into the space set aside the
    /// first time (later calls write as `save_image_with` does).
    pub fn save(&mut self, img: &Rgb32FImage, options: &SaveOptions) -> Result<()> {
        save_through(img, &self.path, options, self.file.take())
    }
}

/// Sets aside, in the folder of `path`, the disk space for a `width` × `height` output written with
/// `options` (its format from the extension, its bit depth and alpha plane): the raw samples plus
/// 1/16, 16 KiB and the metadata, the most any of the formats takes. Call it once the output size is
/// known and before the long work: a disk without that much free space is then one clear error (`not
/// enough free space …`) before anything is computed, and the final write later cannot fail for lack
/// of space.
pub fn reserve_output(
    path: &Path,
    width: u32,
    height: u32,
    options: &SaveOptions,
) -> Result<OutputReservation> {
    options.check(path)?;
    let format = format_of(path)?;
    let bytes = encoded_size_bound(format, width, height, options);
    let describe = || {
        let alpha = if has_alpha(format, options) { " RGBA" } else { "" };
        format!("the {width}x{height} {}-bit{alpha} {}", options.depth, format.name())
    };
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let short = |free: Option<u64>| {
        let free = free.map_or_else(String::new, |f| format!(", {} free", fmt_bytes(f)));
        encode_err(
            path,
            format!(
                "not enough free space in {}: {} needs up to {} there{free}",
                folder.display(),
                describe(),
                fmt_bytes(bytes)
            ),
        )
    };
    let tmp = TempFile::beside(path);
    let file = File::create(&tmp.0).map_err(|e| encode_err(path, e))?;
    match fs4::FileExt::allocate(&file, bytes) {
        Ok(()) => Ok(OutputReservation { path: path.to_path_buf(), bytes, file: Some(tmp) }),
        Err(e) if out_of_space(&e) => Err(short(fs4::available_space(&folder).ok())),
        // The file system cannot allocate ahead: check the free space instead.
        Err(_) => {
            drop(file);
            drop(tmp);
            match fs4::available_space(&folder) {
                Ok(free) if free < bytes => Err(short(Some(free))),
                _ => Ok(OutputReservation { path: path.to_path_buf(), bytes, file: None }),
            }
        }
    }
}

/// Whether an allocation failed for want of space (a full disk, a quota, a file size limit).
fn out_of_space(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge)
}

fn has_alpha(format: Format, options: &SaveOptions) -> bool {
    options.alpha.is_some() && format != Format::Jpeg
}

/// The most bytes a `width` × `height` image written with `options` in `format` takes: the raw
/// samples (3 or 4 channels of 1 or 2 bytes), plus 1/16 of them and 16 KiB for what each format adds
/// (PNG row filters and stored deflate blocks, TIFF strips, BMP row padding, a JPEG of pure noise at
/// quality 100), plus the metadata text. Tested against noise images, the least compressible.
pub(super) fn encoded_size_bound(format: Format, width: u32, height: u32, options: &SaveOptions) -> u64 {
    let channels = if has_alpha(format, options) { 4 } else { 3 };
    let raw = u64::from(width) * u64::from(height) * channels * u64::from(options.depth / 8);
    let text: u64 = options.metadata.iter().map(|(k, v)| (k.len() + v.len()) as u64 * 2).sum();
    raw + raw / 16 + (16 << 10) + text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{AlphaPlane, load_image};
    use rand::{RngExt, SeedableRng};

    fn noise(w: u32, h: u32) -> Rgb32FImage {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        Rgb32FImage::from_fn(w, h, |_, _| image::Rgb([rng.random(), rng.random(), rng.random()]))
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn noise_in_every_format_fits_in_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let alpha = AlphaPlane::from_fn(61, 37, |x, _| image::Luma([x as f32 / 60.0]));
        for (ext, depth, quality, alpha) in [
            ("png", 8, 95, None),
            ("png", 16, 95, Some(alpha.clone())),
            ("tif", 16, 95, None),
            ("tif", 8, 95, Some(alpha.clone())),
            ("bmp", 8, 95, Some(alpha.clone())),
            ("webp", 8, 95, None),
            ("jpg", 8, 100, None),
            ("jpg", 8, 95, Some(alpha)),
        ] {
            let path = dir.path().join(format!("n{depth}{}.{ext}", alpha.is_some()));
            let options =
                SaveOptions { depth, quality, alpha, metadata: vec![("parameters".into(), "x".repeat(300))] };
            super::super::save_image_with(&noise(61, 37), &path, &options).unwrap();
            let len = std::fs::metadata(&path).unwrap().len();
            let bound = encoded_size_bound(format_of(&path).unwrap(), 61, 37, &options);
            assert!(len <= bound, "{}: {len} bytes, bound {bound}", path.display());
        }
    }

    #[test]
    fn a_reserved_output_is_written_as_an_unreserved_one_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let img = noise(45, 23);
        for ext in ["png", "tif", "jpg", "webp", "bmp"] {
            let options = SaveOptions { depth: if ext == "tif" { 16 } else { 8 }, ..SaveOptions::default() };
            let plain = dir.path().join(format!("plain.{ext}"));
            let out = dir.path().join(format!("out.{ext}"));
            super::super::save_image_with(&img, &plain, &options).unwrap();
            let mut r = reserve_output(&out, 45, 23, &options).unwrap();
            assert!(r.is_allocated(), "tmp folders allocate ahead");
            assert_eq!(r.path(), out);
            let tmp = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&format!(".out.{ext}.")));
            let tmp = tmp.expect("the reserved file is beside the output");
            assert_eq!(std::fs::metadata(&tmp).unwrap().len(), r.bytes());
            r.save(&img, &options).unwrap();
            assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&plain).unwrap(), "{ext}");
            assert!(!tmp.exists());
            // A second save writes as save_image_with does.
            r.save(&img, &options).unwrap();
            assert_eq!(load_image(&out).unwrap().dimensions(), (45, 23));
        }
        let names = files_in(dir.path());
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    }

    #[test]
    fn an_unused_reservation_removes_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let r = reserve_output(&dir.path().join("out.png"), 64, 64, &SaveOptions::default()).unwrap();
        assert_eq!(files_in(dir.path()).len(), 1);
        drop(r);
        assert!(files_in(dir.path()).is_empty());
    }

    #[test]
    fn more_than_the_disk_holds_is_one_clear_error_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("poster.tif");
        let options = SaveOptions { depth: 16, ..SaveOptions::default() };
        // 1,000,000² 16-bit RGB: 6 TB, more than any test machine's disk (or than ext4 allows a file).
        let e = reserve_output(&out, 1_000_000, 1_000_000, &options).unwrap_err().to_string();
        let bound = 6_000_000_000_000 + 375_000_000_000 + 16_384;
        let want = format!(
            "cannot write image {}: not enough free space in {}: the 1000000x1000000 16-bit TIFF needs up to {} there, ",
            out.display(),
            dir.path().display(),
            fmt_bytes(bound)
        );
        assert!(e.starts_with(&want) && e.ends_with(" free"), "{e}");
        assert!(files_in(dir.path()).is_empty());
    }
}
