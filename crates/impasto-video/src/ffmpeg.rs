//! Frames in and out of videos through an `ffmpeg` program named by the caller (never looked up here):
//! [`probe`] reads size, frame rate, length and whether there is audio from ffmpeg's stream report;
//! [`FrameReader`] streams decoded frames through a pipe as raw 16-bit RGB (`rgb48le`), one frame in
//! memory at a time; [`encode`] writes H.264 `.mp4` from numbered PNG frames with the input's audio
//! copied. A folder of numbered frames is read and written without ffmpeg.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

use image::Rgb32FImage;

use crate::error::{Error, Result};

/// What [`probe`] learns about a video.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Frames per second as ffmpeg writes it (`25`, `29.97`, `30000/1001`).
    pub frame_rate: String,
    /// Frames per second as a number.
    pub fps: f64,
    /// Frame count estimated from the duration (None when ffmpeg gives no duration).
    pub frames: Option<usize>,
    /// Whether the file has an audio stream.
    pub has_audio: bool,
}

/// ffmpeg's rates written rounded, as exact fractions.
fn exact_rate(text: &str) -> String {
    match text {
        "23.98" | "23.976" => "24000/1001".into(),
        "29.97" => "30000/1001".into(),
        "59.94" => "60000/1001".into(),
        other => other.into(),
    }
}

fn spawn(ffmpeg: &Path, cmd: &mut Command) -> Result<Child> {
    cmd.spawn().map_err(|source| Error::Spawn { program: ffmpeg.to_path_buf(), source })
}

/// The most telling line of ffmpeg's error output: the last one that is not empty.
fn last_line(stderr: &str) -> String {
    stderr.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("ffmpeg failed without a message").into()
}

/// Reads the first video stream's size and frame rate, the duration and whether there is audio.
pub fn probe(ffmpeg: &Path, input: &Path) -> Result<VideoInfo> {
    let out = Command::new(ffmpeg)
        .args(["-hide_banner", "-nostdin", "-i"])
        .arg(input)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| Error::Spawn { program: ffmpeg.to_path_buf(), source })?;
    let text = String::from_utf8_lossy(&out.stderr);
    parse_probe(&text).ok_or_else(|| Error::Probe {
        path: input.to_path_buf(),
        reason: if text.contains("Stream #") { "it has no video stream".into() } else { last_line(&text) },
    })
}

/// Parses `ffmpeg -i`'s report.
pub(crate) fn parse_probe(text: &str) -> Option<VideoInfo> {
    let video = text.lines().find(|l| l.contains("Stream #") && l.contains("Video:"))?;
    let has_audio = text.lines().any(|l| l.contains("Stream #") && l.contains("Audio:"));
    let (mut width, mut height) = (0, 0);
    let (mut fps_text, mut tbr_text) = (None, None);
    for seg in video.split(',') {
        let mut words = seg.split_whitespace();
        let Some(first) = words.next() else { continue };
        if let Some((w, h)) = first.split_once('x')
            && let (Ok(w), Ok(h)) = (w.parse::<u32>(), h.parse::<u32>())
            && width == 0
            && w > 0
            && h > 0
        {
            (width, height) = (w, h);
        }
        match words.next() {
            Some("fps") => fps_text = Some(first.to_string()),
            Some("tbr") => tbr_text = Some(first.to_string()),
            _ => {}
        }
    }
    let rate = fps_text.or(tbr_text)?;
    let frame_rate = exact_rate(&rate);
    let fps = match frame_rate.split_once('/') {
        Some((n, d)) => n.parse::<f64>().ok()? / d.parse::<f64>().ok()?,
        None => frame_rate.parse::<f64>().ok()?,
    };
    if width == 0 || !(fps.is_finite() && fps > 0.0) {
        return None;
    }
    let frames = text.lines().find_map(|l| {
        let d = l.trim().strip_prefix("Duration: ")?.split(',').next()?;
        let mut parts = d.split(':').map(|p| p.parse::<f64>().ok());
        let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
        Some(((h * 3600.0 + m * 60.0 + s) * fps).round() as usize)
    });
    Some(VideoInfo { width, height, frame_rate, fps, frames, has_audio })
}

/// The frames of a video (decoded by ffmpeg, streamed through a pipe) or of a folder of images.
#[derive(Debug)]
pub enum FrameReader {
    /// An ffmpeg decoder.
    Video(Decoder),
    /// Image files, read in name order.
    Folder {
        /// The files left to read, in order.
        files: std::vec::IntoIter<PathBuf>,
    },
}

/// A running ffmpeg decoder writing `rgb48le` frames to its stdout.
#[derive(Debug)]
pub struct Decoder {
    input: PathBuf,
    child: Child,
    stdout: ChildStdout,
    stderr: Option<JoinHandle<String>>,
    width: u32,
    height: u32,
    buf: Vec<u8>,
}

impl FrameReader {
    /// Starts decoding `input` (of the size `info` gives) with `ffmpeg`.
    pub fn video(ffmpeg: &Path, input: &Path, info: &VideoInfo) -> Result<FrameReader> {
        let mut child = spawn(
            ffmpeg,
            Command::new(ffmpeg)
                .args(["-v", "error", "-nostdin", "-i"])
                .arg(input)
                .args(["-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "rgb48le", "-"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )?;
        let (Some(stdout), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
            unreachable!("both were piped")
        };
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let frame_bytes = info.width as usize * info.height as usize * 6;
        Ok(FrameReader::Video(Decoder {
            input: input.to_path_buf(),
            child,
            stdout,
            stderr: Some(stderr),
            width: info.width,
            height: info.height,
            buf: vec![0; frame_bytes],
        }))
    }

    /// The image files of `dir` (png, jpg, jpeg, tif, tiff, bmp, webp), in name order; refuses a folder
    /// without any.
    pub fn folder(dir: &Path) -> Result<FrameReader> {
        let files = image_files(dir)?;
        if files.is_empty() {
            return Err(Error::Frames {
                path: dir.to_path_buf(),
                reason: "no image files in this folder".into(),
            });
        }
        Ok(FrameReader::Folder { files: files.into_iter() })
    }

    /// The next frame, RGB 0..1, or None at the end.
    pub fn next_frame(&mut self) -> Result<Option<Rgb32FImage>> {
        match self {
            FrameReader::Folder { files } => {
                let Some(path) = files.next() else { return Ok(None) };
                let img = image::open(&path).map_err(|e| Error::Frames { path, reason: e.to_string() })?;
                Ok(Some(img.to_rgb32f()))
            }
            FrameReader::Video(d) => d.next_frame(),
        }
    }
}

impl Decoder {
    fn next_frame(&mut self) -> Result<Option<Rgb32FImage>> {
        let mut filled = 0;
        while filled < self.buf.len() {
            match self.stdout.read(&mut self.buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.fail(e.to_string())),
            }
        }
        if filled == self.buf.len() {
            let px: Vec<f32> =
                self.buf.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]) as f32 / 65535.0).collect();
            let img = Rgb32FImage::from_raw(self.width, self.height, px)
                .ok_or_else(|| self.fail("frame size mismatch".into()))?;
            return Ok(Some(img));
        }
        // The end: ffmpeg must have exited cleanly, on a frame boundary.
        let status = self.child.wait().map_err(|e| self.fail(e.to_string()))?;
        let stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        if !status.success() {
            return Err(self.fail(last_line(&stderr)));
        }
        if filled > 0 {
            return Err(self.fail("the stream ends in the middle of a frame".into()));
        }
        if stderr.lines().any(|l| !l.trim().is_empty()) {
            return Err(self.fail(last_line(&stderr)));
        }
        Ok(None)
    }

    fn fail(&self, reason: String) -> Error {
        Error::Decode { path: self.input.clone(), reason }
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // A reader dropped early (an error, Ctrl-C) stops its ffmpeg; after the end this is a no-op.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The image files of a folder, sorted by name.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let err = |e: std::io::Error| Error::Frames { path: dir.to_path_buf(), reason: e.to_string() };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let path = entry.map_err(err)?.path();
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        if path.is_file()
            && ext.is_some_and(|e| ["png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp"].contains(&e.as_str()))
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The file of the frame with 0-based `index` in a folder of numbered frames: `000001.png`, ...
pub fn frame_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("{:06}.png", index + 1))
}

/// How many numbered frames `000001.png`, `000002.png`, ... a folder holds without a gap.
pub fn finished_frames(dir: &Path) -> usize {
    (0..).take_while(|&i| frame_path(dir, i).is_file()).count()
}

/// Writes H.264 `output` (yuv420p, padded to even sides, CRF 18) from the numbered frames in `frames`
/// at `frame_rate`, with the audio streams of `audio_from` copied when it has any.
pub fn encode(
    ffmpeg: &Path,
    frames: &Path,
    frame_rate: &str,
    audio_from: Option<&Path>,
    output: &Path,
) -> Result<()> {
    let mut cmd = Command::new(ffmpeg);
    cmd.args(["-v", "error", "-nostdin", "-y", "-framerate", frame_rate, "-i"]).arg(frames.join("%06d.png"));
    if let Some(a) = audio_from {
        cmd.arg("-i").arg(a).args(["-map", "0:v", "-map", "1:a?", "-c:a", "copy"]);
    }
    cmd.args([
        "-vf",
        "pad=ceil(iw/2)*2:ceil(ih/2)*2",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-crf",
        "18",
        "-r",
        frame_rate,
        "-movflags",
        "+faststart",
    ])
    .arg(output)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let out = cmd.output().map_err(|source| Error::Spawn { program: ffmpeg.to_path_buf(), source })?;
    if !out.status.success() {
        return Err(Error::Encode {
            path: output.to_path_buf(),
            reason: last_line(&String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_report_is_parsed() {
        let text = "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 't.mp4':\n  Duration: 00:00:01.00, start: 0.000000, bitrate: 101 kb/s\n  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), 64x48 [SAR 1:1 DAR 4:3], 14 kb/s, 29.97 fps, 29.97 tbr, 16384 tbn (default)\n  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, mono, fltp, 70 kb/s (default)\n";
        let info = parse_probe(text).unwrap();
        assert_eq!((info.width, info.height), (64, 48));
        assert_eq!(info.frame_rate, "30000/1001");
        assert_eq!(info.frames, Some(30));
        assert!(info.has_audio);
        assert!(parse_probe("t.mp4: Invalid data found when processing input").is_none());
    }
}
