//! A result kept when its output cannot take it: written instead into another folder, under a name
//! that says so and overwrites nothing, so that a folder removed, unmounted or made read-only during
//! a long run does not lose the run's image.

use std::path::{Path, PathBuf};

use image::Rgb32FImage;

use super::reserve::OutputReservation;
use super::save::{SaveOptions, save_image_with};
use crate::error::{Error, Result};

/// Where [`OutputReservation::save_or_rescue`] wrote the image.
#[derive(Debug)]
pub enum Saved {
    /// To the output, as asked.
    Output,
    /// Not to the output, which failed with `error`, but to `path`.
    Rescued {
        /// The file written instead.
        path: PathBuf,
        /// Why the output could not be written.
        error: Error,
    },
}

impl OutputReservation {
    /// Writes `img` as [`OutputReservation::save`] does; where that fails, writes it instead into the
    /// first of `folders` that takes it as `NAME.rescued.EXT` (`NAME.rescued-2.EXT`, … next to a file
    /// of that name: nothing is overwritten), in the output's format and options. The output's error
    /// is returned when no folder takes it either.
    pub fn save_or_rescue(
        &mut self,
        img: &Rgb32FImage,
        options: &SaveOptions,
        folders: &[PathBuf],
    ) -> Result<Saved> {
        let error = match self.save(img, options) {
            Ok(()) => return Ok(Saved::Output),
            Err(e) => e,
        };
        for folder in folders {
            let Some(path) = free_name(self.path(), folder) else { continue };
            if save_image_with(img, &path, options).is_ok() {
                return Ok(Saved::Rescued { path, error });
            }
        }
        Err(error)
    }
}

/// `folder/NAME.rescued.EXT` for output `NAME.EXT`, or the first of `NAME.rescued-2.EXT` …
/// `NAME.rescued-99.EXT` that does not exist.
fn free_name(output: &Path, folder: &Path) -> Option<PathBuf> {
    let stem = output.file_stem().map_or("impasto".into(), |s| s.to_string_lossy().into_owned());
    let ext = output.extension().map_or("png".into(), |e| e.to_string_lossy().into_owned());
    (1..100)
        .map(|n| match n {
            1 => folder.join(format!("{stem}.rescued.{ext}")),
            n => folder.join(format!("{stem}.rescued-{n}.{ext}")),
        })
        .find(|p| !p.exists() && p.parent().is_some_and(Path::is_dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{load_image, reserve_output};

    fn grey(v: f32) -> Rgb32FImage {
        Rgb32FImage::from_pixel(5, 3, image::Rgb([v, v, v]))
    }

    #[test]
    fn a_removed_output_folder_sends_the_image_to_the_first_folder_that_takes_it() {
        let dir = tempfile::tempdir().unwrap();
        let out_dir = dir.path().join("out");
        let spare = dir.path().join("spare");
        std::fs::create_dir_all(&out_dir).unwrap();
        std::fs::create_dir_all(&spare).unwrap();
        std::fs::write(spare.join("x.rescued.png"), b"an older rescue").unwrap();
        let options = SaveOptions::default();
        let mut reserved = reserve_output(&out_dir.join("x.png"), 5, 3, &options).unwrap();
        std::fs::remove_dir_all(&out_dir).unwrap();
        let folders = [dir.path().join("gone"), spare.clone()];
        let saved = reserved.save_or_rescue(&grey(0.5), &options, &folders).unwrap();
        let Saved::Rescued { path, error } = saved else { panic!("written to the removed folder") };
        assert_eq!(path, spare.join("x.rescued-2.png"));
        assert!(error.to_string().starts_with("cannot write"), "{error}");
        assert_eq!(load_image(&path).unwrap().get_pixel(1, 1).0[0], 128.0 / 255.0);
        assert_eq!(std::fs::read(spare.join("x.rescued.png")).unwrap(), b"an older rescue");
    }

    #[test]
    fn a_writable_output_is_written_and_no_folder_at_all_returns_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let options = SaveOptions::default();
        let mut reserved = reserve_output(&dir.path().join("x.png"), 5, 3, &options).unwrap();
        assert!(matches!(reserved.save_or_rescue(&grey(0.2), &options, &[]).unwrap(), Saved::Output));
        let out_dir = dir.path().join("out");
        std::fs::create_dir_all(&out_dir).unwrap();
        let mut reserved = reserve_output(&out_dir.join("y.png"), 5, 3, &options).unwrap();
        std::fs::remove_dir_all(&out_dir).unwrap();
        assert!(reserved.save_or_rescue(&grey(0.2), &options, &[dir.path().join("gone")]).is_err());
    }
}
