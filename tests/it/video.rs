//! `impasto video` end to end with Debian's ffmpeg: an 8-frame 64 px clip with audio keeps its frame
//! count, frame rate and audio; a folder of frames in and out; an interrupted clip continues with
//! `--resume` without redoing finished frames; later passes (`--passes`) revisit every frame and a
//! stopped pass continues where it stopped; corrupt, truncated and unreadable inputs and a missing
//! ffmpeg are refused on one line.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{Sandbox, signal};

/// ffmpeg must be there (`.ci/run` installs Debian's); a missing one fails the test rather than skipping.
fn ffmpeg(sb: &Sandbox, args: &[&str]) {
    let out = Command::new("ffmpeg")
        .current_dir(sb.root())
        .args(["-v", "error", "-nostdin", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg on PATH (apt-get install ffmpeg)");
    assert!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// (codec type, frames, frame rate) of each stream, from ffprobe.
fn streams(sb: &Sandbox, file: &str) -> Vec<(String, String, String)> {
    let out = Command::new("ffprobe")
        .current_dir(sb.root())
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_type,nb_read_frames,r_frame_rate",
        ])
        .args(["-of", "csv=p=0", file])
        .output()
        .expect("ffprobe");
    assert!(out.status.success(), "ffprobe: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f.get(2).unwrap_or(&"").to_string(), f[1].to_string())
        })
        .collect()
}

/// An 8-frame 64×64 test pattern at 8 fps, with a sine tone unless `audio` is false.
fn clip(sb: &Sandbox, name: &str, audio: bool) -> String {
    let mut args = vec!["-f", "lavfi", "-i", "testsrc=size=64x64:rate=8"];
    if audio {
        args.extend([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100",
            "-c:a",
            "aac",
            "-shortest",
        ]);
    }
    args.extend(["-frames:v", "8", "-c:v", "libx264", "-pix_fmt", "yuv420p", name]);
    ffmpeg(sb, &args);
    name.to_string()
}

const FAST: [&str; 8] = ["--weights", "builtin", "--size", "64", "-n", "4", "--frame-iterations", "2"];

#[test]
fn a_clip_keeps_its_frames_rate_and_audio() {
    let sb = Sandbox::new();
    let input = clip(&sb, "in.mp4", true);
    let style = sb.png("style.png", 48, 48);
    let mut args = vec!["video", &input, &style, "-o", "out.mp4"];
    args.extend(FAST);
    let run = sb.run(&args);
    run.assert_ok();
    assert!(run.stderr.contains("wrote out.mp4 (8 frames at 8 fps)"), "{}", run.stderr);
    let s = streams(&sb, "out.mp4");
    assert_eq!(s[0], ("video".into(), "8".into(), "8/1".into()), "{s:?}");
    assert!(s.iter().any(|(t, ..)| t == "audio"), "audio kept: {s:?}");
    assert!(!sb.path("out.frames").exists(), "the frames folder is removed once the video is written");

    // Without audio in, none out; a folder of frames out.
    let silent = clip(&sb, "silent.mp4", false);
    let mut args = vec!["video", &silent, &style, "-o", "frames_out"];
    args.extend(FAST);
    sb.run(&args).assert_ok();
    let files = impasto_video_files(&sb, "frames_out");
    assert_eq!(files, (1..=8).map(|i| format!("{i:06}.png")).collect::<Vec<_>>());
    let first = image::open(sb.path("frames_out/000001.png")).unwrap();
    assert_eq!((first.width(), first.height()), (64, 64));

    // Without --frame-iterations the frames after the first get 3/4 of --iterations; the measured
    // temporal weight.
    let args =
        ["video", &silent, &style, "-o", "defaults_out", "--weights", "builtin", "--size", "64", "-n", "4"];
    sb.run(&args).assert_ok();
    let settings = std::fs::read_to_string(sb.path("defaults_out/impasto-video.txt")).unwrap();
    assert!(settings.contains("\nframe iterations 3\n"), "{settings}");
    assert!(settings.contains("\ntemporal weight 150000000\n"), "{settings}");

    // A folder of frames in, .mp4 out at --fps.
    let mut args = vec!["video", "frames_out", &style, "-o", "from_folder.mp4", "--fps", "12"];
    args.extend(FAST);
    sb.run(&args).assert_ok();
    let s = streams(&sb, "from_folder.mp4");
    assert_eq!(s, vec![("video".into(), "8".into(), "12/1".into())]);
}

fn impasto_video_files(sb: &Sandbox, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(sb.path(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".png"))
        .collect();
    names.sort();
    names
}

#[test]
fn an_interrupted_clip_continues_with_resume() {
    let sb = Sandbox::new();
    let input = clip(&sb, "in.mp4", false);
    let style = sb.png("style.png", 48, 48);
    let args = ["video", &input, &style, "-o", "out", "--weights", "builtin", "--size", "64", "-n", "40"];
    let mut args = args.to_vec();
    args.extend(["--frame-iterations", "40", "--passes", "1"]);
    let mut child = sb.cmd().args(&args).spawn().unwrap();
    let start = Instant::now();
    while !sb.path("out/000002.png").exists() {
        assert!(start.elapsed() < Duration::from_secs(120), "no second frame");
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&child, "INT");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "interrupted status");
    let kept = impasto_video_files(&sb, "out");
    assert!((2..8).contains(&kept.len()), "finished frames kept: {kept:?}");
    let first_written = std::fs::metadata(sb.path("out/000001.png")).unwrap().modified().unwrap();

    // The same command again refuses to overwrite them; with --resume it finishes the clip, also
    // with another thread count (or device: what runs the frames is not part of their settings).
    let again = sb.run(&args);
    let line = again.error_line(1);
    assert!(line.contains("already holds frames of an earlier run: continue it with --resume"), "{line}");
    let mut resumed = args.clone();
    resumed.extend(["--resume", "--threads", "1"]);
    let run = sb.run(&resumed);
    run.assert_ok();
    assert_eq!(impasto_video_files(&sb, "out").len(), 8);
    let after = std::fs::metadata(sb.path("out/000001.png")).unwrap().modified().unwrap();
    assert_eq!(first_written, after, "finished frames are not redone");

    // Other settings cannot resume these frames.
    let mut other = resumed.clone();
    other.extend(["--style-weight", "7"]);
    let line = sb.run(&other).error_line(1).to_string();
    assert!(line.contains("cannot --resume: the frames in out were made with other settings"), "{line}");
}

#[test]
fn corrupt_truncated_and_missing_inputs_are_refused_on_one_line() {
    let sb = Sandbox::new();
    let style = sb.png("style.png", 48, 48);
    let good = clip(&sb, "in.mp4", true);
    let bytes = std::fs::read(sb.path(&good)).unwrap();
    sb.file("truncated.mp4", &bytes[..bytes.len() / 2]);
    sb.file("corrupt.mp4", &[0x5a; 4000]);
    for (input, expect) in [
        ("truncated.mp4", "impasto: error: cannot read video truncated.mp4: "),
        ("corrupt.mp4", "impasto: error: cannot read video corrupt.mp4: "),
        ("missing.mp4", "impasto: error: input video missing.mp4: no such file"),
    ] {
        let mut args = vec!["video", input, &style, "-o", "out.mp4"];
        args.extend(FAST);
        let run = sb.run(&args);
        let line = run.error_line(1);
        assert!(line.starts_with(expect), "{input}: {line}");
        assert!(!sb.path("out.mp4").exists() && !sb.path("out.frames").exists());
    }
    let mut args = vec!["video", &good, &style, "-o", "out.mp4", "--ffmpeg", "/nonexistent/ffmpeg"];
    args.extend(FAST);
    let line = sb.run(&args).error_line(1).to_string();
    assert!(line.starts_with("impasto: error: cannot run ffmpeg `/nonexistent/ffmpeg`"), "{line}");
    assert!(line.contains("apt-get install ffmpeg"), "{line}");
    let mut args = vec!["video", &good, &style, "-o", "out.gif"];
    args.extend(FAST);
    let line = sb.run(&args).error_line(1).to_string();
    assert!(line.contains("give a .mp4 file or a folder"), "{line}");
}

/// Run flags that mean nothing for a clip are refused on one line, before ffmpeg is run; `--depth 16`
/// only where the frames folder is the output.
#[test]
fn run_flags_that_do_not_apply_to_a_clip_are_refused() {
    let sb = Sandbox::new();
    let style = sb.png("style.png", 48, 48);
    let good = clip(&sb, "in.mp4", false);
    for (flags, expect) in [
        (
            &["--seed", "3"][..],
            "impasto: error: --seed does not apply to `impasto video` (it seeds --init noise)",
        ),
        (
            &["--quality", "80"][..],
            "impasto: error: --quality does not apply to `impasto video` (frames are PNG, an .mp4 is H.264)",
        ),
        (
            &["--checkpoint", "c.ckpt"][..],
            "impasto: error: --checkpoint does not apply to `impasto video` (frames start from the previous frame; use --resume)",
        ),
        (
            &["--depth", "16"][..],
            "impasto: error: --depth 16 needs a folder of frames as the output (an .mp4 is 8-bit H.264)",
        ),
    ] {
        let mut args = vec!["video", &good, &style, "-o", "out.mp4"];
        args.extend(FAST);
        args.extend(flags);
        let run = sb.run(&args);
        assert_eq!(run.code, Some(1), "{flags:?}: {}", run.stderr);
        assert_eq!(run.error_line(1), expect, "{flags:?}");
        assert!(!sb.path("out.mp4").exists() && !sb.path("out.frames").exists());
    }
    let mut args = vec!["video", &good, &style, "-o", "frames16", "--depth", "16"];
    args.extend(FAST);
    let run = sb.run(&args);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let frame = std::fs::read_dir(sb.path("frames16"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "png"))
        .expect("a PNG frame");
    let decoded = image::open(&frame).unwrap();
    assert_eq!(decoded.color(), image::ColorType::Rgb16, "{}", frame.display());
}

/// What can be checked before the first frame is: a folder of frames of two sizes, a bad `--fps`, an
/// `.mp4` output that is the input video, and a missing ffmpeg to encode a folder's frames. Each is one
/// line, and nothing is written.
#[test]
fn a_clip_that_cannot_work_is_refused_before_its_first_frame() {
    let sb = Sandbox::new();
    let style = sb.png("style.png", 48, 48);
    std::fs::create_dir(sb.path("mixed")).unwrap();
    sb.png("mixed/0001.png", 64, 48);
    sb.png("mixed/0002.png", 64, 48);
    sb.png("mixed/0003.png", 80, 30);
    std::fs::create_dir(sb.path("even")).unwrap();
    sb.png("even/0001.png", 64, 48);
    sb.png("even/0002.png", 64, 48);
    let good = clip(&sb, "in.mp4", false);
    let before = std::fs::read(sb.path(&good)).unwrap();
    for (input, output, flags, expect) in [
        (
            "mixed",
            "out",
            &[][..],
            "impasto: error: frame mixed/0003.png is 80x30 but mixed/0001.png is 64x48: every frame of a clip must have the same size",
        ),
        (
            "even",
            "out",
            &["--fps", "0"][..],
            "impasto: error: invalid --fps 0: give a frame rate above 0 and at most 1000 (25, 29.97 or 30000/1001)",
        ),
        ("even", "out", &["--fps", "1e9"][..], "impasto: error: invalid --fps 1e9: "),
        (
            good.as_str(),
            good.as_str(),
            &[][..],
            "impasto: error: invalid output in.mp4: it is the input video",
        ),
        ("even", "./even", &[][..], "impasto: error: invalid output ./even: it is the input folder"),
        (
            "even",
            "out.mp4",
            &["--ffmpeg", "/nonexistent/ffmpeg"][..],
            "impasto: error: cannot run ffmpeg `/nonexistent/ffmpeg`",
        ),
    ] {
        let mut args = vec!["video", input, &style, "-o", output];
        args.extend(FAST);
        args.extend(flags);
        let run = sb.run(&args);
        assert_eq!(run.code, Some(1), "{input} {flags:?}: {}", run.stderr);
        assert!(run.error_line(1).starts_with(expect), "{input} {flags:?}: {}", run.error_line(1));
        assert!(!run.stderr.contains("frame 1/"), "stylised a frame first: {}", run.stderr);
        assert!(
            !sb.path("out").exists() && !sb.path("out.frames").exists() && !sb.path("in.frames").exists()
        );
    }
    assert_eq!(std::fs::read(sb.path(&good)).unwrap(), before, "the input video was changed");
}

/// Mean |a − b| of two 8-bit RGB frames, 0..1.
fn frame_difference(a: &std::path::Path, b: &std::path::Path) -> f64 {
    let (a, b) = (image::open(a).unwrap().to_rgb8(), image::open(b).unwrap().to_rgb8());
    let sum: f64 = a.as_raw().iter().zip(b.as_raw()).map(|(&p, &q)| f64::from(p.abs_diff(q))).sum();
    sum / 255.0 / a.as_raw().len() as f64
}

#[test]
fn long_term_offsets_resume_and_bad_ones_are_refused() {
    let sb = Sandbox::new();
    let input = clip(&sb, "in.mp4", false);
    let style = sb.png("style.png", 48, 48);
    let mut args = vec!["video", &input, &style, "-o", "out", "--long-term", "1,2,4", "--passes", "1"];
    args.extend(FAST);
    sb.run(&args).assert_ok();
    let settings = std::fs::read_to_string(sb.path("out/impasto-video.txt")).unwrap();
    assert!(settings.contains("\nlong term 1,2,4\n"), "{settings}");

    // A clip stopped after five frames: --resume reloads the finished frames the offsets reach
    // (frames 2–5 for the sixth), so the sixth matches an uninterrupted run's but for the rounding
    // of the reloaded 8-bit frames (measured: 0.004–0.006). The rounding then compounds over the
    // following frames (0.02–0.03 by the eighth), so only the sixth is compared.
    std::fs::create_dir(sb.path("whole")).unwrap();
    for i in 6..=8 {
        let name = format!("{i:06}.png");
        std::fs::rename(sb.path(&format!("out/{name}")), sb.path(&format!("whole/{name}"))).unwrap();
    }
    let mut resumed = args.clone();
    resumed.push("--resume");
    sb.run(&resumed).assert_ok();
    assert_eq!(impasto_video_files(&sb, "out").len(), 8);
    let d = frame_difference(&sb.path("out/000006.png"), &sb.path("whole/000006.png"));
    assert!(d < 0.015, "frame 6 after --resume differs by {d}");

    // Other offsets cannot resume these frames.
    let mut other = resumed.clone();
    other[6] = "1,2";
    let line = sb.run(&other).error_line(1).to_string();
    assert!(line.contains("cannot --resume: the frames in out were made with other settings"), "{line}");

    let out = sb.run(&["video", &input, &style, "-o", "bad", "--long-term", "1,4,2"]);
    assert_eq!(out.code, Some(2));
    insta::assert_snapshot!(out.stderr, @"impasto: error: invalid value '1,4,2' for '--long-term <OFFSETS>': invalid frame offsets `1,4,2`: the offsets must increase (try --help)");
}

#[test]
fn a_frame_stopped_midway_continues_from_its_checkpoint() {
    let sb = Sandbox::new();
    let input = clip(&sb, "in.mp4", false);
    let style = sb.png("style.png", 48, 48);
    let run = |out: &'static str| {
        let mut args = vec!["video", input.as_str(), style.as_str(), "-o", out, "--weights", "builtin"];
        args.extend(["--size", "64", "-n", "30", "--frame-iterations", "30", "--passes", "1"]);
        args.extend(["--checkpoint-every", "1"]);
        args
    };
    sb.run(&run("whole")).assert_ok();
    let whole = frame_bytes(&sb, "whole");
    assert_eq!(whole.len(), 8);
    let left: Vec<_> = std::fs::read_dir(sb.path("whole")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(
        !left.iter().any(|n| n.to_string_lossy().ends_with(".ckpt")),
        "finished frames keep no checkpoint"
    );

    // Stopped in the third frame once it has a checkpoint: the finished frames and that frame's
    // progress are kept.
    let child = sb.cmd().args(run("out")).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let partial = sb.path("out/.impasto-frame-p1-000003.ckpt");
    let start = Instant::now();
    while !partial.exists() {
        assert!(start.elapsed() < Duration::from_secs(120), "the third frame wrote no checkpoint");
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(&child, "INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "interrupted status");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("impasto: frame 3/8: stopped at iteration ")
            && stderr.contains("its progress is kept in out/.impasto-frame-p1-000003.ckpt"),
        "{stderr}"
    );
    assert_eq!(impasto_video_files(&sb, "out").len(), 2);
    assert!(partial.is_file());

    // --resume continues that frame from its checkpoint, and the clip ends as if never stopped.
    let mut resumed = run("out");
    resumed.push("--resume");
    let again = sb.run(&resumed);
    again.assert_ok();
    assert!(again.stderr.contains("impasto: frame 3/8: continuing from its checkpoint"), "{}", again.stderr);
    assert!(frame_bytes(&sb, "out") == whole, "the resumed clip differs from the uninterrupted one");
    assert!(!partial.exists(), "the finished frame's checkpoint is removed");

    // A checkpoint that no longer fits its frame (here: junk) is replaced, and the frame starts over.
    std::fs::remove_file(sb.path("out/000003.png")).unwrap();
    for later in 4..=8 {
        std::fs::remove_file(sb.path(&format!("out/{later:06}.png"))).unwrap();
    }
    std::fs::write(&partial, b"not a checkpoint").unwrap();
    let again = sb.run(&resumed);
    again.assert_ok();
    assert!(
        again
            .stderr
            .contains("frame 3/8: its checkpoint out/.impasto-frame-p1-000003.ckpt cannot be continued ("),
        "{}",
        again.stderr
    );
    assert!(again.stderr.contains("); starting the frame again"), "{}", again.stderr);
    assert!(frame_bytes(&sb, "out") == whole, "the frame started over gives the same clip");
}

/// The bytes of the numbered frames in `dir`.
fn frame_bytes(sb: &Sandbox, dir: &str) -> Vec<Vec<u8>> {
    impasto_video_files(sb, dir)
        .iter()
        .map(|n| std::fs::read(sb.path(&format!("{dir}/{n}"))).unwrap())
        .collect()
}

#[test]
fn later_passes_revisit_every_frame_and_a_stopped_pass_continues_with_resume() {
    let sb = Sandbox::new();
    let input = clip(&sb, "in.mp4", false);
    let style = sb.png("style.png", 48, 48);
    let one = ["video", &input, &style, "-o", "one", "--passes", "1"];
    let mut one = one.to_vec();
    one.extend(FAST);
    sb.run(&one).assert_ok();
    let mut args = vec!["video", &input, &style, "-o", "whole", "--passes", "3", "--pass-iterations", "6"];
    args.extend(FAST);
    let run = sb.run(&args);
    run.assert_ok();
    assert!(
        run.stderr.contains("pass 2/3 · frame 8/8:") && run.stderr.contains("pass 3/3 · frame 8/8:"),
        "{}",
        run.stderr
    );
    let whole = frame_bytes(&sb, "whole");
    assert_eq!(whole.len(), 8);
    let single = frame_bytes(&sb, "one");
    assert!(whole.iter().zip(&single).all(|(a, b)| a != b), "later passes changed every frame");
    let settings = std::fs::read_to_string(sb.path("whole/impasto-video.txt")).unwrap();
    assert!(settings.ends_with("\npasses 3\npass iterations 6\n"), "{settings}");
    // Once every pass is done, only the state is left of what the passes read.
    let left: Vec<_> = std::fs::read_dir(sb.path("whole/.impasto-passes"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["state.txt"]);

    // Stopped in the middle of the second pass, the clip continues there and ends as if never stopped.
    args[4] = "out";
    let child = sb.cmd().args(&args).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    let state = sb.path("out/.impasto-passes/state.txt");
    while !std::fs::read_to_string(&state)
        .is_ok_and(|s| s.starts_with("pass 2\ndone ") && !s.starts_with("pass 2\ndone 0"))
    {
        assert!(start.elapsed() < Duration::from_secs(120), "the second pass did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(&child, "INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "interrupted status");
    let stopped = std::fs::read_to_string(&state).unwrap();
    assert!(stopped.starts_with("pass 2\n"), "stopped in the second pass: {stopped}");
    let done = stopped.lines().nth(1).unwrap().trim_start_matches("done ");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said = format!(
        "interrupted: the clip's 8 frames, {done} of them from pass 2 and the rest from pass 1, kept in out \
         (continue with the same command and --resume)"
    );
    assert_eq!(stderr.lines().last(), Some(said.as_str()), "{stderr}");
    let mut resumed = args.clone();
    resumed.push("--resume");
    let run = sb.run(&resumed);
    run.assert_ok();
    assert!(!run.stderr.contains("pass 1/3"), "the first pass is not redone: {}", run.stderr);
    assert!(frame_bytes(&sb, "out") == whole, "the resumed clip differs from the uninterrupted one");
    // A finished clip resumed again is left as it is.
    sb.run(&resumed).assert_ok();
    assert!(frame_bytes(&sb, "out") == whole);
    // Its frames cannot be made again once the passes' files are gone: a missing one is refused.
    std::fs::remove_file(sb.path("out/000008.png")).unwrap();
    let line = sb.run(&resumed).error_line(1).to_string();
    assert_eq!(
        line,
        "impasto: error: cannot --resume: out holds 7 of the clip's 8 frames; delete the folder to start again"
    );

    let line = sb
        .run(&["video", &input, &style, "-o", "bad", "--passes", "1", "--pass-iterations", "3"])
        .error_line(1)
        .to_string();
    assert_eq!(line, "impasto: error: --pass-iterations needs --passes 2 or more");
    let out = sb.run(&["video", &input, &style, "-o", "bad", "--passes", "0"]);
    assert_eq!(out.code, Some(2));
    insta::assert_snapshot!(out.stderr, @"impasto: error: invalid value '0' for '--passes <N>': must be a whole number from 1 to 100 (try --help)");
}
