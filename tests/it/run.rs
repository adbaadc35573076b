//! Runs that work: a tiny end-to-end run with the real weights (or the built-in model on a fresh clone), and quick runs with tiny weights for the
//! output size, `--save-every`, the plain log, `--quiet`, the weights search, and Ctrl-C (with and
//! without `--checkpoint`), and a full disk (a small tmpfs).

#[cfg(unix)]
use std::io::{BufRead, BufReader};
#[cfg(unix)]
use std::process::Stdio;
#[cfg(unix)]
use std::time::Duration;

use crate::common::{
    Run, Sandbox, TINY_LAYERS, Tmpfs, png_text_value, run_tiny, run_weights, shared_image_or_png, tiny,
};
#[cfg(unix)]
use crate::common::{signal, wait_with_timeout};

fn dims(path: &std::path::Path) -> (u32, u32) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display()));
    (img.width(), img.height())
}

/// A real run end to end: the real weights when `IMPASTO_WEIGHTS` names them, else the built-in model.
#[test]
fn end_to_end_with_the_real_or_the_built_in_weights() {
    let weights = run_weights();
    let sb = Sandbox::new();
    let content = shared_image_or_png(&sb, "astronaut.png", 64);
    let style = shared_image_or_png(&sb, "starry_night.jpg", 64);
    let out: Run = sb
        .cmd()
        .arg(&content)
        .arg(&style)
        .args(["-o", "out.png", "--size", "48", "-n", "3", "--save-every", "2", "--print-every", "1"])
        .args(["--weights", &weights])
        .output()
        .unwrap()
        .into();
    out.assert_ok();
    assert_eq!(dims(&sb.path("out.png")), (48, 48));
    assert_eq!(dims(&sb.path("out_0002.png")), (48, 48));
    assert!(!sb.path("out_0001.png").exists() && !sb.path("out_0003.png").exists());
    assert!(out.stderr.contains("\niter 1/3  content "), "{}", out.stderr);
    assert!(out.stderr.contains("\nwrote out.png (48x48, 3 iterations, content "), "{}", out.stderr);
}

#[test]
fn output_keeps_the_aspect_ratio() {
    let sb = tiny();
    run_tiny(&sb, &[]).assert_ok();
    assert_eq!(dims(&sb.path("out.png")), (32, 16));
}

#[test]
fn output_formats_follow_the_extension() {
    let sb = tiny();
    for name in ["out.jpg", "out.tif", "out.webp", "out.bmp"] {
        run_tiny(&sb, &["-o", name, "-q"]).assert_ok();
        assert_eq!(dims(&sb.path(name)), (32, 16), "{name}");
    }
}

#[test]
fn save_every_writes_numbered_files() {
    let sb = tiny();
    run_tiny(&sb, &["-n", "5", "--save-every", "2", "--optimizer", "adam"]).assert_ok();
    let mut names: Vec<String> = std::fs::read_dir(sb.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("out"))
        .collect();
    names.sort();
    assert_eq!(names, ["out.png", "out_0002.png", "out_0004.png"]);
    assert_eq!(dims(&sb.path("out_0004.png")), (32, 16));
}

#[test]
fn save_every_failure_stops_the_run_but_writes_the_image() {
    let sb = tiny();
    std::fs::create_dir(sb.path("out_0002.png")).unwrap(); // a folder where the snapshot should go
    let out = run_tiny(&sb, &["-n", "5", "--save-every", "2", "--optimizer", "adam", "-q"]);
    let line = out.error_line(1);
    assert!(line.starts_with("impasto: error: cannot write ") && line.contains("out_0002.png"), "{line}");
    assert!(line.ends_with("; stopped at iteration 2 and wrote the current image to out.png"), "{line}");
    assert_eq!(dims(&sb.path("out.png")), (32, 16));
}

#[test]
fn plain_log_lines() {
    let sb = tiny();
    let out = run_tiny(&sb, &["-n", "5", "--print-every", "2", "--optimizer", "adam"]);
    out.assert_ok();
    let filters = vec![
        (r"\d\.\d{3}e-?\d+", "[L]"),
        (r"\d+\.\d+ s/it", "[T] s/it"),
        (r"eta \d+s", "eta [ETA]"),
        (r", \d+\.\d s\)", ", [T] s)"),
    ];
    insta::with_settings!({ filters => filters }, { insta::assert_snapshot!(out.stderr, @"
    start 32x16, 5 iterations  content [L]  style [L]  tv [L]  total [L]
    iter 2/5  content [L]  style [L]  tv [L]  total [L]  [T] s/it  eta [ETA]
    iter 4/5  content [L]  style [L]  tv [L]  total [L]  [T] s/it  eta [ETA]
    iter 5/5  content [L]  style [L]  tv [L]  total [L]  [T] s/it  eta [ETA]
    wrote out.png (32x16, 5 iterations, content [L], style [L], tv [L], [T] s)
    ") });
}

#[test]
fn print_every_zero_leaves_only_the_summary() {
    let out = run_tiny(&tiny(), &["--print-every", "0"]);
    out.assert_ok();
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.starts_with("wrote out.png (32x16, 3 iterations, "), "{}", out.stderr);
}

#[test]
fn quiet_prints_nothing() {
    let sb = tiny();
    let out = run_tiny(&sb, &["--quiet", "--save-every", "1"]);
    out.assert_ok();
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("", ""));
    assert!(sb.path("out.png").is_file() && sb.path("out_0003.png").is_file());
}

#[test]
fn every_init_keyword_and_an_init_file() {
    let sb = tiny();
    run_tiny(&sb, &["--init", "noise", "--seed", "7", "-q"]).assert_ok();
    sb.png("start.png", 10, 10); // any size: it is resized to the output
    run_tiny(&sb, &["--init", "start.png", "-o", "b.png", "-q"]).assert_ok();
    assert_eq!(dims(&sb.path("b.png")), (32, 16));
    for (i, start) in ["gray", "style-stats", "style"].into_iter().enumerate() {
        let out = format!("s{i}.png");
        run_tiny(&sb, &["--init", start, "--seed", "5", "-o", &out, "-q"]).assert_ok();
        let params = png_text_value(&sb.path(&out), "parameters").unwrap();
        let seed = if start == "style" { "" } else { "--seed 5 " };
        assert!(params.contains(&format!(" --init {start} {seed}")), "{params}");
    }
}

#[test]
fn other_model_options_run() {
    let sb = tiny();
    run_tiny(&sb, &["--model", "vgg19", "--pooling", "avg", "--preprocess", "torch", "--threads", "2", "-q"])
        .assert_ok();
    run_tiny(&sb, &["--style-layer-weights", "2", "--style-scale", "0.75", "--tv-weight", "0", "-q"])
        .assert_ok();
    run_tiny(&sb, &["--pooling", "l2", "-o", "l2.png", "-q"]).assert_ok();
    let params = png_text_value(&sb.path("l2.png"), "parameters").unwrap();
    assert!(params.contains(" --pooling l2 "), "{params}");
    run_tiny(&sb, &["--pooling", "average", "--style-size", "24", "-o", "avg.png", "-q"]).assert_ok();
    let params = png_text_value(&sb.path("avg.png"), "parameters").unwrap();
    assert!(params.contains(" --style-size 24 ") && params.contains(" --pooling avg "), "{params}");
    assert!(!params.contains("--style-scale"), "{params}");
    let both = run_tiny(&sb, &["--style-size", "24", "--style-scale", "2", "-o", "both.png"]);
    assert_eq!(both.code, Some(2), "{}", both.stderr);
    assert!(
        both.stderr.contains("'--style-size <PX>' cannot be used with '--style-scale <X>'"),
        "{}",
        both.stderr
    );
    run_tiny(&sb, &["--style-loss", "w2", "-o", "w2.png", "-q"]).assert_ok();
    let params = png_text_value(&sb.path("w2.png"), "parameters").unwrap();
    assert!(params.contains(" --style-loss w2 "), "{params}");
    // w2 runs on a GPU too (lavapipe in CI): the same kind of picture as on the CPU.
    run_tiny(&sb, &["--style-loss", "w2", "--device", "gpu:0", "-o", "w2g.png", "-q"]).assert_ok();
    let rgb = |name: &str| image::open(sb.path(name)).unwrap().to_rgb8();
    let (cpu, gpu) = (rgb("w2.png"), rgb("w2g.png"));
    assert_eq!(cpu.dimensions(), gpu.dimensions());
    let mean_diff =
        cpu.iter().zip(gpu.iter()).map(|(&a, &b)| f64::from(a.abs_diff(b))).sum::<f64>() / cpu.len() as f64;
    assert!(mean_diff < 2.0, "w2 on the GPU differs from the CPU by {mean_diff} levels on average");
    sb.png("s2.png", 30, 18);
    let mut args =
        vec!["c.png", "s.png", "s2.png", "-o", "blend.png", "--weights", "w.safetensors", "--size", "32"];
    args.extend(TINY_LAYERS);
    args.extend(["-n", "2", "--style-blend", "3,1", "-q"]);
    sb.run(&args).assert_ok();
}

#[test]
fn weights_from_the_environment_and_the_cache() {
    let sb = tiny();
    let mut args = vec!["c.png", "s.png", "-o", "out.png", "--size", "32", "-n", "1", "-q"];
    args.extend(TINY_LAYERS);
    let env_run: Run = sb.cmd().args(&args).env("IMPASTO_WEIGHTS", "w.safetensors").output().unwrap().into();
    env_run.assert_ok();

    std::fs::create_dir_all(sb.cache_dir()).unwrap();
    std::fs::copy(sb.path("w.safetensors"), sb.cache_dir().join("vgg16-conv-imagenet.safetensors")).unwrap();
    sb.run(&args).assert_ok();

    // --weights wins over an IMPASTO_WEIGHTS that names nothing.
    args.extend(["--weights", "w.safetensors"]);
    let flag_run: Run = sb.cmd().args(&args).env("IMPASTO_WEIGHTS", "missing").output().unwrap().into();
    flag_run.assert_ok();
}

/// Starts a long Adam run (to `out.png` unless `extra` has `-o`) and waits for its first log line;
/// returns the child and its stderr reader.
#[cfg(unix)]
fn start_long_run(
    sb: &Sandbox,
    extra: &[&str],
) -> (std::process::Child, std::thread::JoinHandle<String>, std::sync::mpsc::Receiver<()>) {
    let mut args = vec!["c.png", "s.png", "--weights", "w.safetensors", "--size", "32"];
    if !extra.contains(&"-o") {
        args.extend(["-o", "out.png"]);
    }
    args.extend(TINY_LAYERS);
    args.extend(["-n", "100000000", "--optimizer", "adam", "--print-every", "1"]);
    args.extend(extra);
    let mut child = sb.cmd().args(&args).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if line.starts_with("iter ") {
                let _ = started_tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    (child, reader, started_rx)
}

#[cfg(unix)]
fn sigint(child: &std::process::Child) {
    signal(child, "INT");
}

#[cfg(unix)]
#[test]
fn ctrl_c_writes_the_current_image_and_exits_130() {
    let sb = tiny();
    let (mut child, reader, started) = start_long_run(&sb, &[]);
    started.recv_timeout(Duration::from_secs(60)).expect("the run started");
    sigint(&child);
    let code = wait_with_timeout(&mut child, Duration::from_secs(30));
    let stderr = reader.join().unwrap();
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        stderr.contains("impasto: stopping after this iteration (press Ctrl-C again to quit at once)"),
        "{stderr}"
    );
    let last = stderr.lines().last().unwrap();
    assert!(last.starts_with("interrupted: wrote current image to out.png (iteration "), "{stderr}");
    assert_eq!(dims(&sb.path("out.png")), (32, 16));
}

#[cfg(unix)]
#[test]
fn ctrl_c_with_a_checkpoint_writes_both() {
    let sb = tiny();
    let (mut child, reader, started) = start_long_run(&sb, &["--checkpoint", "run.ckpt"]);
    started.recv_timeout(Duration::from_secs(60)).expect("the run started");
    sigint(&child);
    let code = wait_with_timeout(&mut child, Duration::from_secs(30));
    let stderr = reader.join().unwrap();
    assert_eq!(code, Some(130), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    let n = lines.len();
    assert!(lines[n - 2].starts_with("wrote checkpoint run.ckpt (iteration "), "{stderr}");
    assert!(lines[n - 1].starts_with("interrupted: wrote current image to out.png (iteration "), "{stderr}");
    assert!(
        lines[n - 1].ends_with(") and checkpoint run.ckpt (continue with --resume run.ckpt)"),
        "{stderr}"
    );
    assert!(sb.path("run.ckpt").is_file() && sb.path("out.png").is_file());
}

/// An output folder removed during the run (or unmounted, or made read-only) does not lose the image,
/// on Ctrl-C or at a checkpoint that cannot be written: it is written into the current folder under
/// a name that says so, and the run fails saying where.
#[cfg(unix)]
#[test]
fn an_output_folder_removed_during_the_run_sends_the_image_to_the_current_folder() {
    let sb = tiny();
    std::fs::create_dir_all(sb.path("od")).unwrap();
    let (mut child, reader, started) = start_long_run(&sb, &["-o", "od/out.png"]);
    started.recv_timeout(Duration::from_secs(60)).expect("the run started");
    std::fs::remove_dir_all(sb.path("od")).unwrap();
    sigint(&child);
    let code = wait_with_timeout(&mut child, Duration::from_secs(30));
    let stderr = reader.join().unwrap();
    assert_eq!(code, Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap().replace(&*sb.root().to_string_lossy(), "[SANDBOX]");
    insta::assert_snapshot!(last, @"impasto: error: cannot write image od/out.png: No such file or directory (os error 2); wrote the image to [SANDBOX]/out.rescued.png instead");
    assert_eq!(dims(&sb.path("out.rescued.png")), (32, 16));

    // With a checkpoint in that folder, the first checkpoint that cannot be written stops the run,
    // and its image goes the same way (next to the first rescue, which it does not overwrite).
    std::fs::create_dir_all(sb.path("od")).unwrap();
    let extra = ["-o", "od/out.png", "--checkpoint", "od/run.ckpt", "--checkpoint-every", "1"];
    let (mut child, reader, started) = start_long_run(&sb, &extra);
    started.recv_timeout(Duration::from_secs(60)).expect("the run started");
    // The run writes a checkpoint there at every iteration: a removal can race with one.
    while sb.path("od").exists() {
        let _ = std::fs::remove_dir_all(sb.path("od"));
    }
    let code = wait_with_timeout(&mut child, Duration::from_secs(30));
    let stderr = reader.join().unwrap();
    assert_eq!(code, Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap().replace(&*sb.root().to_string_lossy(), "[SANDBOX]");
    // The checkpoint's own reason depends on which step of its write met the removal.
    assert!(last.starts_with("impasto: error: checkpoint od/run.ckpt: cannot write: "), "{stderr}");
    assert!(
        last.ends_with(
            "; cannot write image od/out.png: No such file or directory (os error 2); wrote the last good image to [SANDBOX]/out.rescued-2.png instead"
        ),
        "{stderr}"
    );
    assert_eq!(dims(&sb.path("out.rescued-2.png")), (32, 16));
}

/// SIGTERM (Slurm's time limit, `kill`, Kubernetes) and SIGHUP (a closed terminal) take the Ctrl-C
/// path: the current image and the checkpoint are written and the status is 130, not death by signal.
#[cfg(unix)]
#[test]
fn sigterm_and_sighup_write_the_current_image_and_checkpoint_and_exit_130() {
    for name in ["TERM", "HUP"] {
        let sb = tiny();
        let (mut child, reader, started) = start_long_run(&sb, &["--checkpoint", "run.ckpt"]);
        started.recv_timeout(Duration::from_secs(60)).expect("the run started");
        signal(&child, name);
        let code = wait_with_timeout(&mut child, Duration::from_secs(30));
        let stderr = reader.join().unwrap();
        assert_eq!(code, Some(130), "SIG{name}: {stderr}");
        let last = stderr.lines().last().unwrap();
        assert!(
            last.starts_with("interrupted: wrote current image to out.png (iteration "),
            "SIG{name}: {stderr}"
        );
        assert!(last.ends_with("(continue with --resume run.ckpt)"), "SIG{name}: {stderr}");
        assert_eq!(dims(&sb.path("out.png")), (32, 16));
        assert!(sb.path("run.ckpt").is_file(), "SIG{name}");
    }
}

/// A Ctrl-C the instant the run announces itself (before its first iteration): the handler is in place
/// by then, so the run stops cleanly with 130, every time, instead of dying by the signal.
#[cfg(unix)]
#[test]
fn ctrl_c_before_the_first_iteration_stops_cleanly_every_time() {
    let sb = tiny();
    for round in 0..5 {
        let mut args = vec!["c.png", "s.png", "-o", "out.png", "--weights", "w.safetensors", "--size", "32"];
        args.extend(TINY_LAYERS);
        args.extend(["-n", "100000000", "--optimizer", "adam", "--print-every", "1"]);
        let mut child = sb.cmd().args(&args).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while !line.starts_with("start ") {
            line.clear();
            assert!(stderr.read_line(&mut line).unwrap() > 0, "round {round}: no start line");
        }
        sigint(&child);
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
        let code = wait_with_timeout(&mut child, Duration::from_secs(30));
        assert_eq!(code, Some(130), "round {round}: {rest}");
        assert!(
            rest.lines().last().unwrap_or_default().starts_with("interrupted: "),
            "round {round}: {rest}"
        );
    }
}

#[cfg(unix)]
#[test]
fn second_ctrl_c_exits_at_once() {
    let sb = tiny();
    let (mut child, reader, started) = start_long_run(&sb, &[]);
    started.recv_timeout(Duration::from_secs(60)).expect("the run started");
    sigint(&child);
    sigint(&child);
    let code = wait_with_timeout(&mut child, Duration::from_secs(30));
    let stderr = reader.join().unwrap();
    assert_eq!(code, Some(130), "{stderr}");
}

#[test]
fn early_convergence_is_reported() {
    // With every weight 0 the loss and its gradient are 0: L-BFGS stops before its first step.
    let out = run_tiny(&tiny(), &["--content-weight", "0", "--style-weight", "0", "--tv-weight", "0"]);
    out.assert_ok();
    let last = out.stderr.lines().last().unwrap();
    insta::with_settings!({ filters => vec![(r", \d+\.\d s\)", ", [T] s)")] }, { insta::assert_snapshot!(last, @"wrote out.png (32x16, 0 iterations, content 0.000e0, style 0.000e0, tv 0.000e0, [T] s); stopped early: converged") });
}

#[test]
fn a_full_disk_is_one_clear_error_before_the_run_and_cannot_lose_the_result() {
    let sb = tiny();
    let Some(disk) = Tmpfs::mount(sb.path("disk"), 64) else { return };
    let run = |extra: &[&str]| {
        let mut args =
            vec!["c.png", "s.png", "-o", "disk/out.tif", "--depth", "16", "--weights", "w.safetensors"];
        args.extend(["--size", "32", "--optimizer", "adam", "-q"]);
        args.extend(TINY_LAYERS);
        args.extend(extra);
        sb.run(&args)
    };
    let files = || {
        let mut names: Vec<String> = std::fs::read_dir(&disk.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    // Up front: a 32x16 16-bit TIFF and its metadata need up to about 20 KiB; the filler leaves 3
    // pages of the 16.
    std::fs::write(disk.0.join("filler"), vec![0u8; 50_000]).unwrap();
    let full = run(&["-n", "3"]);
    let line = full.error_line(1);
    assert!(
        line.starts_with(
            "impasto: error: cannot write image disk/out.tif: not enough free space in disk: the 32x16 16-bit TIFF \
             needs up to "
        ) && line.ends_with(" KiB there, 12.0 KiB free"),
        "{line}"
    );
    assert_eq!(files(), ["filler"], "nothing written, no temporary file left");

    // During the run: snapshots fill the disk; the run stops there, and the result still fits in the
    // space set aside for it before the run (before, its write failed too and the result was lost).
    std::fs::remove_file(disk.0.join("filler")).unwrap();
    let filled = run(&["-n", "40", "--save-every", "1"]);
    let line = filled.error_line(1);
    assert!(line.contains("No space left on device"), "{line}");
    assert!(line.ends_with("and wrote the current image to disk/out.tif"), "{line}");
    assert_eq!(dims(&disk.0.join("out.tif")), (32, 16));
    let names = files();
    assert!(names.iter().all(|n| !n.starts_with('.')), "no temporary file left: {names:?}");
    assert!(names.len() > 2 && names.len() < 40, "some snapshots fitted: {names:?}");
}
