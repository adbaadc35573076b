//! Where a clip's frames come from and where they go: the input video or folder of frames, the output
//! (`.mp4` or a folder) and ffmpeg, all checked before the first frame is stylised.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use impasto_video::VideoInfo;

const INSTALL_FFMPEG: &str = "install ffmpeg (Debian/Ubuntu: `apt-get install ffmpeg`, macOS: `brew install \
                              ffmpeg`, Windows: https://ffmpeg.org/download.html) or pass --ffmpeg PATH";

/// Frame rate of a folder of frames when `--fps` is not given.
const DEFAULT_FPS: &str = "25";

/// The highest `--fps` taken (H.264 levels end far below; more is a typo).
const MAX_FPS: f64 = 1000.0;

/// Where the frames come from.
pub(super) enum Input {
    Video {
        ffmpeg: PathBuf,
        info: VideoInfo,
    },
    /// A folder of `frames` frames, the first readable one of `size` pixels.
    Folder {
        frames: usize,
        size: Option<(u32, u32)>,
    },
}

impl Input {
    /// The frames' size, where it is known before the first frame is read.
    pub(super) fn frame_size(&self) -> Option<(u32, u32)> {
        match self {
            Input::Video { info, .. } => Some((info.width, info.height)),
            Input::Folder { size, .. } => *size,
        }
    }

    /// The frame rate of the output: the video's own, or a folder's `--fps` (default 25).
    pub(super) fn frame_rate(&self, fps: Option<&str>) -> String {
        match self {
            Input::Video { info, .. } => info.frame_rate.clone(),
            Input::Folder { .. } => fps.unwrap_or(DEFAULT_FPS).trim().to_string(),
        }
    }
}

/// Where they go.
pub(super) struct Output {
    /// Finished frames, numbered.
    pub(super) frames: PathBuf,
    /// The .mp4 to encode at the end and the ffmpeg that encodes it (None: the frames folder is the
    /// output).
    pub(super) mp4: Option<(PathBuf, PathBuf)>,
}

fn find_ffmpeg(given: Option<&Path>) -> Result<PathBuf> {
    let program = given.map_or_else(|| PathBuf::from("ffmpeg"), Path::to_path_buf);
    let ok = std::process::Command::new(&program)
        .arg("-version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match ok {
        Ok(status) if status.success() => Ok(program),
        Ok(status) => {
            bail!("ffmpeg `{}` does not work (`-version` gave {status}): {INSTALL_FFMPEG}", program.display())
        }
        Err(e) => bail!("cannot run ffmpeg `{}` ({e}): {INSTALL_FFMPEG}", program.display()),
    }
}

/// Refuses an output that is the input video or folder (before the run's own check, which would call
/// it the content image).
pub(super) fn refuse_input_as_output(input: Option<&Path>, out: Option<&Path>) -> Result<()> {
    if let (Some(input), Some(out)) = (input, out)
        && crate::settings::same_file(out, input)
    {
        let what = if input.is_dir() { "folder" } else { "video" };
        bail!("invalid output {}: it is the input {what}", out.display());
    }
    Ok(())
}

/// Opens the input: a folder of frames (every frame of one size) or a video ffmpeg can probe.
pub(super) fn open_input(path: &Path, ffmpeg: Option<&Path>, fps: Option<&str>) -> Result<Input> {
    if path.is_dir() {
        let files = impasto_video::image_files(path)?;
        if files.is_empty() {
            bail!("{}: no image files in this folder", path.display());
        }
        let size = check_frame_sizes(&files)?;
        if let Some(fps) = fps {
            check_fps(fps)?;
        }
        return Ok(Input::Folder { frames: files.len(), size });
    }
    if !path.exists() {
        bail!("input video {}: no such file", path.display());
    }
    if fps.is_some() {
        bail!("--fps applies to a folder of frames only (a video keeps its own frame rate)");
    }
    let ffmpeg = find_ffmpeg(ffmpeg)?;
    let info = impasto_video::probe(&ffmpeg, path)?;
    Ok(Input::Video { ffmpeg, info })
}

/// Every frame of a folder must have the first one's size (the optical flow compares frames pixel by
/// pixel). Only the files' headers are read; a frame that cannot be read is left to the reader, which
/// names it when it comes to it. Returns the frames' size (`None`: no frame could be read).
fn check_frame_sizes(files: &[PathBuf]) -> Result<Option<(u32, u32)>> {
    let mut first: Option<(&Path, (u32, u32))> = None;
    for file in files {
        let Ok(size) = impasto::image::image_dimensions(file) else { continue };
        match first {
            None => first = Some((file, size)),
            Some((name, want)) if want != size => bail!(
                "frame {} is {}x{} but {} is {}x{}: every frame of a clip must have the same size",
                file.display(),
                size.0,
                size.1,
                name.display(),
                want.0,
                want.1
            ),
            Some(_) => {}
        }
    }
    Ok(first.map(|f| f.1))
}

/// `--fps`: a number or a fraction as ffmpeg takes them (`25`, `29.97`, `30000/1001`), above 0 and at
/// most [`MAX_FPS`].
fn check_fps(text: &str) -> Result<()> {
    let number = |t: &str| t.trim().parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0);
    let rate = match text.split_once('/') {
        Some((n, d)) => number(n).zip(number(d)).map(|(n, d)| n / d),
        None => number(text),
    };
    match rate {
        Some(r) if r <= MAX_FPS => Ok(()),
        _ => bail!(
            "invalid --fps {text}: give a frame rate above 0 and at most {MAX_FPS} (25, 29.97 or 30000/1001)"
        ),
    }
}

/// Plans the output: a `.mp4` (the frames go into `OUT.frames/` first; ffmpeg to encode them is found
/// now) or a folder of frames ([`refuse_input_as_output`] has checked that it is not the input).
pub(super) fn plan_output(out: &Path, source: &Input, ffmpeg: Option<&Path>) -> Result<Output> {
    let ext = out.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("mp4") => {
            let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if !dir.is_dir() {
                bail!("invalid output {}: folder {} does not exist", out.display(), dir.display());
            }
            let encoder = match source {
                Input::Video { ffmpeg, .. } => ffmpeg.clone(),
                Input::Folder { .. } => find_ffmpeg(ffmpeg)?,
            };
            Ok(Output { frames: out.with_extension("frames"), mp4: Some((out.to_path_buf(), encoder)) })
        }
        None => Ok(Output { frames: out.to_path_buf(), mp4: None }),
        Some(other) => {
            bail!(
                "invalid output {}: .{other} is not supported (give a .mp4 file or a folder)",
                out.display()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_fps;

    #[test]
    fn fps_takes_numbers_and_fractions_above_0_up_to_1000() {
        for good in ["25", "29.97", "30000/1001", " 24 ", "1000", "0.5"] {
            assert!(check_fps(good).is_ok(), "{good}");
        }
        for bad in ["0", "-5", "abc", "nan", "inf", "1e9", "1001", "30/0", "/2", "25/", ""] {
            let err = check_fps(bad).unwrap_err().to_string();
            assert!(err.starts_with(&format!("invalid --fps {bad}: ")), "{bad}: {err}");
        }
    }
}
