//! Never losing work, with tiny weights: `--time-limit` writes the image and says so, `--checkpoint`
//! files are written and logged, and `--resume` from a run stopped by its time limit ends with exactly
//! the pixels of an uninterrupted run; a checkpoint of other settings is refused on one line.

use crate::common::{Run, Sandbox, TINY_LAYERS, tiny};

/// A 6-iteration run on 2 threads, 16-bit output (so that equal files mean equal optimiser bits).
fn run6(sb: &Sandbox, output: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "c.png",
        "s.png",
        "-o",
        output,
        "--weights",
        "w.safetensors",
        "--size",
        "32",
        "-n",
        "6",
        "--threads",
        "2",
        "--depth",
        "16",
        "--print-every",
        "0",
        "--style-weight",
        "1e4",
    ];
    args.extend(TINY_LAYERS);
    args.extend(extra);
    sb.run(&args)
}

fn pixels(sb: &Sandbox, name: &str) -> image::ImageBuffer<image::Rgb<u16>, Vec<u16>> {
    image::open(sb.path(name)).unwrap_or_else(|e| panic!("{name}: {e}")).to_rgb16()
}

fn resume_gives_the_uninterrupted_result(optimizer: &'static str, multi_scale: &[&'static str]) {
    let sb = tiny();
    let mut base = vec!["--optimizer", optimizer];
    base.extend(multi_scale);
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut v = base.clone();
        v.extend(extra);
        v
    };
    // A time limit of 0 stops after the first iteration, writing the image and the checkpoint.
    let stopped = run6(&sb, "stopped.png", &with(&["--checkpoint", "run.ckpt", "--time-limit", "0s"]));
    stopped.assert_ok();
    let lines: Vec<&str> = stopped.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", stopped.stderr);
    assert_eq!(lines[0], "wrote checkpoint run.ckpt (iteration 1)");
    assert!(lines[1].starts_with("wrote stopped.png (32x16, 1 iterations, "), "{}", lines[1]);
    assert!(
        lines[1].ends_with("; stopped early: time limit (continue with --resume run.ckpt)"),
        "{}",
        lines[1]
    );
    assert!(sb.path("stopped.png").is_file() && sb.path("run.ckpt").is_file());

    let resumed = run6(&sb, "resumed.png", &with(&["--checkpoint", "run.ckpt", "--resume", "run.ckpt"]));
    resumed.assert_ok();
    let lines: Vec<&str> = resumed.stderr.lines().collect();
    assert!(lines[0].starts_with("wrote checkpoint run.ckpt (iteration "), "{}", resumed.stderr);
    assert!(lines[1].starts_with("wrote resumed.png (32x16, "), "{}", resumed.stderr);
    run6(&sb, "whole.png", &base).assert_ok();
    assert!(pixels(&sb, "resumed.png") == pixels(&sb, "whole.png"), "resumed run differs ({optimizer})");
    assert!(pixels(&sb, "stopped.png") != pixels(&sb, "whole.png"));
}

#[test]
fn lbfgs_resume_is_exact() {
    resume_gives_the_uninterrupted_result("lbfgs", &[]);
}

#[test]
fn adam_resume_is_exact() {
    resume_gives_the_uninterrupted_result("adam", &[]);
}

#[test]
fn multi_scale_resume_is_exact() {
    resume_gives_the_uninterrupted_result("adam", &["--min-size", "16", "--scale-iterations", "3"]);
}

#[test]
fn checkpoint_every_is_logged_unless_quiet() {
    let sb = tiny();
    let out = run6(&sb, "out.png", &["--checkpoint", "ck.bin", "--checkpoint-every", "3"]);
    out.assert_ok();
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines[..2],
        ["wrote checkpoint ck.bin (iteration 3)", "wrote checkpoint ck.bin (iteration 6)"],
        "{}",
        out.stderr
    );
    assert!(sb.path("ck.bin").is_file());
    let quiet = run6(&sb, "out.png", &["--checkpoint", "ck2.bin", "--checkpoint-every", "3", "-q"]);
    quiet.assert_ok();
    assert_eq!(quiet.stderr, "");
    assert!(sb.path("ck2.bin").is_file());
}

#[test]
fn resume_with_other_settings_is_refused() {
    let sb = tiny();
    run6(&sb, "a.png", &["--checkpoint", "run.ckpt", "--time-limit", "0", "-q"]).assert_ok();
    let out = run6(&sb, "b.png", &["--resume", "run.ckpt", "--style-weight", "5"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: checkpoint run.ckpt: it was made with other settings or images (the same images, model and flags are needed; --iterations, --time-limit, --threads, --device, the checkpoint and output flags may change)");
    let out = run6(&sb, "b.png", &["--resume", "run.ckpt", "--optimizer", "adam"]);
    assert!(out.error_line(1).contains("it was made with other settings or images"));
    sb.png("other.png", 44, 22);
    let mut args = vec!["other.png", "s.png", "-o", "b.png", "--weights", "w.safetensors", "--size", "32"];
    args.extend(["-n", "6", "--style-weight", "1e4", "--resume", "run.ckpt"]);
    args.extend(TINY_LAYERS);
    let out = sb.run(&args);
    assert!(out.error_line(1).contains("it was made with other settings or images"));
    assert!(!sb.path("b.png").exists());
}

#[test]
fn resume_of_a_file_that_is_no_checkpoint() {
    let sb = tiny();
    let out = run6(&sb, "b.png", &["--resume", "c.png"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: checkpoint c.png: not a checkpoint: header too large");
    let out = run6(&sb, "b.png", &["--resume", "missing.ckpt"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid --resume `missing.ckpt`: no such file");
    // A checkpoint whose image was damaged into NaN is refused, not resumed into a blank picture.
    run6(&sb, "a.png", &["--checkpoint", "run.ckpt", "-q"]).assert_ok();
    let mut bytes = std::fs::read(sb.path("run.ckpt")).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    let at = |i: usize| 8 + len + header["x"]["data_offsets"][i].as_u64().unwrap() as usize;
    let (start, end) = (at(0), at(1));
    for v in bytes[start..end].chunks_exact_mut(4) {
        v.copy_from_slice(&f32::NAN.to_le_bytes());
    }
    std::fs::write(sb.path("run.ckpt"), &bytes).unwrap();
    let out = run6(&sb, "b.png", &["--resume", "run.ckpt"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: checkpoint run.ckpt: its image holds NaN or infinite values: the file is damaged");
    assert!(!sb.path("b.png").exists());
}

/// `--iterations`, `--time-limit`, the output and logging flags may change on resume: a run stopped by
/// its time limit, or one that finished, resumed with a larger `-n` has the pixels of a run of that
/// length from the start (the embedded command lines differ, so pixels are compared).
#[test]
fn resume_for_more_iterations_equals_a_longer_run() {
    let sb = tiny();
    let more = ["-n", "9"];
    run6(&sb, "whole.png", &more).assert_ok();
    for first in [&["--time-limit", "0s", "-q"][..], &["-q"][..]] {
        let mut args = vec!["--checkpoint", "run.ckpt"];
        args.extend(first);
        run6(&sb, "first.png", &args).assert_ok();
        let out = run6(
            &sb,
            "more.png",
            &[
                "-n",
                "9",
                "--resume",
                "run.ckpt",
                "--time-limit",
                "1h",
                "--save-every",
                "4",
                "--print-every",
                "2",
            ],
        );
        out.assert_ok();
        assert!(
            out.stderr.lines().last().unwrap().starts_with("wrote more.png (32x16, 9 iterations, "),
            "{}",
            out.stderr
        );
        assert!(sb.path("more_0004.png").is_file());
        assert!(pixels(&sb, "more.png") == pixels(&sb, "whole.png"), "resumed after {first:?} differs");
        assert!(pixels(&sb, "first.png") != pixels(&sb, "whole.png"));
    }
}

/// A finished run with `--checkpoint` writes it at its end, so that it can be continued.
#[test]
fn a_finished_run_writes_its_checkpoint() {
    let sb = tiny();
    let out = run6(&sb, "out.png", &["--checkpoint", "end.ckpt"]);
    out.assert_ok();
    assert_eq!(out.stderr.lines().next(), Some("wrote checkpoint end.ckpt (iteration 6)"), "{}", out.stderr);
    assert!(sb.path("end.ckpt").is_file());
}
