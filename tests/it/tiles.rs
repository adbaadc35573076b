//! Print sizes with tiny weights: `--tile` runs end to end, `impasto tiles plan|run|stitch` in
//! separate processes gives the pixels of the in-process tiled run, in two coupled rounds or one
//! (reruns skip finished tiles; a round waits for the one before), with `--style-loss w2` too, and
//! tiles or memory budgets too small are refused on one line before any work, shard counts beyond
//! the tiles give empty shards, and a job's tiles run on the device of the process that takes them.

use crate::common::{Run, Sandbox, TINY_LAYERS, tiny};
#[cfg(unix)]
use crate::common::{signal, wait_with_timeout};

/// The run's arguments: a 96x96 output in tiles of at most 80 px overlapping by at least 8 (4 tiles of
/// 64 px), 16-bit.
fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "c.png",
        "s.png",
        "--weights",
        "w.safetensors",
        "--size",
        "96",
        "--min-size",
        "48",
        "-n",
        "4",
        "--threads",
        "2",
        "--depth",
        "16",
        "--print-every",
        "0",
        "--style-weight",
        "1e4",
        "--tile",
        "80",
        "--tile-overlap",
        "8",
    ];
    v.extend(TINY_LAYERS);
    v.extend(extra);
    v
}

fn pixels(sb: &Sandbox, name: &str) -> Vec<u16> {
    image::open(sb.path(name)).unwrap_or_else(|e| panic!("{name}: {e}")).to_rgb16().into_raw()
}

/// The tiny sandbox with a 96x96 content image.
fn sandbox() -> Sandbox {
    let sb = tiny();
    sb.png("c.png", 96, 96);
    sb
}

fn ok(run: Run) -> Run {
    run.assert_ok();
    run
}

#[test]
fn tiled_runs_and_tile_jobs_in_separate_processes_give_the_same_pixels() {
    let sb = sandbox();
    // Two coupled rounds (the default), as the tile jobs take them.
    let run = ok(sb.run(&args(&["-o", "inproc.png"])));
    assert!(run.stderr.contains("wrote inproc.png (96x96"), "{}", run.stderr);
    let plan = ok(sb.run(&[&["tiles", "plan", "--job", "job"][..], &args(&["-o", "tiled.png"])].concat()));
    insta::assert_snapshot!(plan.stderr.trim_end(), @"planned 4 tiles of 80 px (96x96) in 2 rounds in job: run them with `impasto tiles run --job job` (--shard I/N to split them), then `impasto tiles stitch --job job`");
    let first = ok(sb.run(&["tiles", "run", "--job", "job", "--shard", "0/2"]));
    assert!(
        first.stderr.contains("tiles: 2 optimised here, round 1 of 2: 2 of 4 finished"),
        "{}",
        first.stderr
    );
    let early = sb.run(&["tiles", "stitch", "--job", "job"]);
    insta::assert_snapshot!(early.error_line(1), @"impasto: error: job job: 2 of 4 tiles of round 1 of 2 are not finished (the first is 1): run `impasto tiles run --job job` first");
    let ahead = sb.run(&["tiles", "run", "--job", "job", "--shard", "0/2", "--round", "2"]);
    insta::assert_snapshot!(ahead.error_line(1), @"impasto: error: invalid tile round: round 2 needs every tile of round 1 first: 2 of 4 are not finished (the first is 1)");
    // The other shard finishes round 1 and goes on with its tiles of round 2.
    let second = ok(sb.run(&["tiles", "run", "--job", "job", "--shard", "1/2"]));
    assert!(
        second.stderr.contains("tiles: 4 optimised here, round 2 of 2: 2 of 4 finished"),
        "{}",
        second.stderr
    );
    let last = ok(sb.run(&["tiles", "run", "--job", "job", "--shard", "0/2", "--round", "2"]));
    assert!(
        last.stderr.contains("tiles: 2 optimised here, all 2 rounds of 4 of 4 finished; stitch with"),
        "{}",
        last.stderr
    );
    let again = ok(sb.run(&["tiles", "run", "--job", "job"]));
    assert!(
        again.stderr.contains("tiles: 0 optimised here, all 2 rounds of 4 of 4 finished"),
        "{}",
        again.stderr
    );
    let beyond = sb.run(&["tiles", "run", "--job", "job", "--round", "3"]);
    insta::assert_snapshot!(beyond.error_line(1), @"impasto: error: invalid tile round: 3 (the job has 2 rounds)");
    let stitched = ok(sb.run(&["tiles", "stitch", "--job", "job"]));
    assert!(stitched.stderr.contains("tiled.png (96x96, 4 tiles)"), "{}", stitched.stderr);
    assert_eq!(pixels(&sb, "tiled.png"), pixels(&sb, "inproc.png"));
    let seams = ok(sb.run(&["tiles", "seams", "tiled.png", "--job", "job"]));
    assert!(seams.stdout.starts_with("seams: border "), "{}", seams.stdout);
    // One round, as jobs planned before the rounds took.
    let one = ok(sb.run(&args(&["-o", "one.png", "--tile-rounds", "1"])));
    assert!(one.stderr.contains("wrote one.png"), "{}", one.stderr);
    let plan = ok(sb.run(
        &[&["tiles", "plan", "--job", "job1"][..], &args(&["-o", "t1.png", "--tile-rounds", "1"])].concat(),
    ));
    assert!(plan.stderr.starts_with("planned 4 tiles of 80 px (96x96) in job1"), "{}", plan.stderr);
    let all = ok(sb.run(&["tiles", "run", "--job", "job1"]));
    assert!(all.stderr.contains("tiles: 4 optimised here, 4 of 4 finished; stitch with"), "{}", all.stderr);
    ok(sb.run(&["tiles", "stitch", "--job", "job1"]));
    assert_eq!(pixels(&sb, "t1.png"), pixels(&sb, "one.png"));
}

/// `--style-loss w2` runs on tiles too, in process and as a job in two processes (its rounds'
/// shift files carry the whole picture's means and second moments): the same pixels.
#[test]
fn w2_tiles_in_process_and_as_jobs_give_the_same_pixels() {
    let sb = sandbox();
    let run = ok(sb.run(&args(&["-o", "inproc.png", "--style-loss", "w2"])));
    assert!(run.stderr.contains("wrote inproc.png (96x96"), "{}", run.stderr);
    ok(sb.run(
        &[&["tiles", "plan", "--job", "job"][..], &args(&["-o", "tiled.png", "--style-loss", "w2"])].concat(),
    ));
    ok(sb.run(&["tiles", "run", "--job", "job", "--shard", "0/2"]));
    ok(sb.run(&["tiles", "run", "--job", "job", "--shard", "1/2"]));
    let last = ok(sb.run(&["tiles", "run", "--job", "job", "--shard", "0/2"]));
    assert!(last.stderr.contains("all 2 rounds of 4 of 4 finished"), "{}", last.stderr);
    ok(sb.run(&["tiles", "stitch", "--job", "job"]));
    assert_eq!(pixels(&sb, "tiled.png"), pixels(&sb, "inproc.png"));
    // The Gram loss's pixels are others.
    ok(sb.run(&args(&["-o", "gram.png"])));
    assert_ne!(pixels(&sb, "gram.png"), pixels(&sb, "inproc.png"));
}

/// A job planned on the CPU takes its tiles on a GPU where `tiles run --device` says so (the device
/// is not part of a job's result): the stitched image is the CPU run's to within the two engines'
/// rounding, not its bits; an adapter that does not exist is one line.
#[test]
fn tile_jobs_take_the_device_of_the_process_that_runs_them() {
    let sb = sandbox();
    ok(sb.run(&args(&["-o", "cpu.png", "--tile-rounds", "1"])));
    ok(sb.run(
        &[&["tiles", "plan", "--job", "job"][..], &args(&["-o", "gpu.png", "--tile-rounds", "1"])].concat(),
    ));
    // Vulkan's loader wants a runtime folder.
    let on = |device: &str| {
        let mut cmd = sb.cmd();
        cmd.args(["tiles", "run", "--job", "job", "--device", device]).env("XDG_RUNTIME_DIR", sb.root());
        Run::from(cmd.output().expect("run impasto"))
    };
    let missing = on("gpu:99");
    assert_eq!(missing.code, Some(1), "{}", missing.stderr);
    assert!(missing.error_line(1).contains("there is no GPU adapter gpu:99"), "{}", missing.stderr);
    let run = ok(on("gpu:0"));
    assert!(run.stderr.contains("tiles: 4 optimised here, 4 of 4 finished"), "{}", run.stderr);
    ok(sb.run(&["tiles", "stitch", "--job", "job"]));
    let (gpu, cpu) = (pixels(&sb, "gpu.png"), pixels(&sb, "cpu.png"));
    assert_ne!(gpu, cpu, "the tiles ran on the CPU");
    let worst = gpu.iter().zip(&cpu).map(|(&a, &b)| a.abs_diff(b)).max().unwrap_or(0);
    assert!(worst <= 8, "the GPU's tiles differ from the CPU's by {worst} of 65535");
}

#[test]
fn tiles_and_budgets_too_small_are_refused_up_front() {
    let sb = sandbox();
    let small = sb.run(&args(&["-o", "o.png", "--tile", "40"]));
    insta::assert_snapshot!(small.error_line(1), @"impasto: error: invalid tile size: 40 px is too small: tiles overlapping by 8 px must be at least 80 px");
    let budget = sb.run(&args(&["-o", "o.png", "--max-memory", "1M"]));
    insta::assert_snapshot!(budget.error_line(1), @"impasto: error: invalid memory budget: 1 MiB is less than tiles of 80 px need at 96x96 (about 191 MiB): give a smaller tile or more memory");
    let bad = sb.run(&args(&["-o", "o.png", "--max-memory", "lots"]));
    insta::assert_snapshot!(bad.error_line(1), @"impasto: error: invalid --max-memory `lots`: expected a size such as 3G, 1.5GiB or 800M");
    assert!(!sb.path("o.png").exists());
    // A plan writes no checkpoint: its job folder is what a rerun goes on from.
    let plan = sb.run(
        &[&["tiles", "plan", "--job", "j"][..], &args(&["-o", "o.png", "--checkpoint", "c.ckpt"])].concat(),
    );
    insta::assert_snapshot!(plan.error_line(1), @"impasto: error: --checkpoint does not apply to `impasto tiles plan` (the job folder keeps every finished tile and the state of a tile stopped early: `tiles run` skips the first and continues the second)");
    assert!(!sb.path("j").exists());
}

/// More shards than tiles, even absurdly many, leave the extra shards empty (nothing is allocated per
/// shard); a zero shard count, a damaged base image and a damaged `job.json` are refused on one line.
#[test]
fn shards_beyond_the_tiles_are_empty_and_a_zero_count_is_refused() {
    let sb = sandbox();
    ok(sb.run(
        &[&["tiles", "plan", "--job", "job"][..], &args(&["-o", "t.png", "--tile-rounds", "1"])].concat(),
    ));
    let run = |shard: &[&str]| sb.run(&[&["tiles", "run", "--job", "job"][..], shard].concat());
    let empty = ok(run(&["--shard", "99999999998/99999999999"]));
    assert!(empty.stderr.contains("tiles: 0 optimised here, 0 of 4 finished"), "{}", empty.stderr);
    let first = ok(run(&["--shard", "0/99999999999"]));
    assert!(first.stderr.contains("tiles: 1 optimised here, 1 of 4 finished"), "{}", first.stderr);
    let zero = run(&["--shard-count", "0"]);
    insta::assert_snapshot!(zero.error_line(1), @"impasto: error: invalid --shard-count 0: the shard count must be at least 1");
    // A damaged job file is named as what it is, not as a checkpoint.
    let hide = |run: Run| run.error_line(1).replace(&*sb.root().to_string_lossy(), "[SANDBOX]");
    std::fs::write(sb.path("job/base.safetensors"), b"damaged").unwrap();
    insta::assert_snapshot!(hide(run(&[])), @"impasto: error: [SANDBOX]/job/base.safetensors: not an impasto file: header too small");
    std::fs::write(sb.path("job/job.json"), b"{").unwrap();
    insta::assert_snapshot!(hide(run(&[])), @"impasto: error: [SANDBOX]/job/job.json: not a tile job: EOF while parsing an object at line 1 column 1");
}

/// Starts `impasto tiles run --job JOB`, sends SIGTERM once it has logged its first iteration, and
/// returns its exit code and what it printed after that line.
#[cfg(unix)]
fn term_after_first_iteration(sb: &Sandbox, job: &str) -> (Option<i32>, String) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let mut child = sb
        .cmd()
        .args(["tiles", "run", "--job", job])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("impasto tiles run starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
    let (mut seen, mut line) = (String::new(), String::new());
    while !line.starts_with("iter ") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "no iteration logged: {seen}");
        seen.push_str(&line);
    }
    signal(&child, "TERM");
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
    (wait_with_timeout(&mut child, std::time::Duration::from_secs(60)), rest)
}

/// SIGTERM (a Slurm time limit or `scancel` on a tile job) stops `tiles run` as Ctrl-C does: after the
/// current iteration, with status 130 and its count of finished tiles, and no tile finished.
#[cfg(unix)]
#[test]
fn sigterm_stops_a_tile_job_cleanly() {
    let sb = sandbox();
    // 4 iterations at 48 px, then tiles that would take 10^8 each.
    let long =
        ["-o", "t.png", "--scale-iterations", "100000000", "--optimizer", "adam", "--print-every", "1"];
    let mut plan_args = args(&[&long[..], &["--tile-rounds", "1"]].concat());
    // `args` sets --print-every 0 before `long` sets 1: the later value wins, in `tiles plan` and in
    // the recorded command line `tiles run` reads (it used to refuse the job for the repeated flag).
    plan_args.splice(0..0, ["tiles", "plan", "--job", "job"]);
    ok(sb.run(&plan_args));
    let (code, rest) = term_after_first_iteration(&sb, "job");
    assert_eq!(code, Some(130), "{rest}");
    assert!(rest.contains("tiles: 0 optimised here, 0 of 4 finished"), "{rest}");
    let stitch = sb.run(&["tiles", "stitch", "--job", "job"]);
    assert!(stitch.error_line(1).contains("4 of 4 tiles"), "{}", stitch.stderr);
}

/// A tile that SIGTERM stops keeps its state in the job folder (`tiles/tile-NNNNN.partial.ckpt`); the
/// next `tiles run` continues the tile from it instead of starting it over, and the stitched image is
/// the in-process run's, pixel for pixel. A partial state that cannot be read starts the tile over.
#[cfg(unix)]
#[test]
fn a_tile_stopped_early_continues_where_it_stopped() {
    let sb = sandbox();
    // The built-in model (slower than the tiny one, so that a tile is still running when signalled).
    let run_args = |out: &'static str| {
        let mut v = args(&["-o", out, "--scale-iterations", "30", "--print-every", "1"]);
        let w = v.iter().position(|a| *a == "w.safetensors").expect("the weights flag");
        v[w] = "builtin";
        v.retain(|a| !TINY_LAYERS.contains(a));
        v
    };
    ok(sb.run(&run_args("inproc.png")));
    ok(sb.run(&[&["tiles", "plan", "--job", "job"][..], &run_args("tiled.png")].concat()));
    let (code, rest) = term_after_first_iteration(&sb, "job");
    assert_eq!(code, Some(130), "{rest}");
    let partial = sb.path("job/tiles/tile-00000.partial.ckpt");
    assert!(partial.is_file(), "the stopped tile's state is kept: {rest}");
    let at = |text: &str, after: &str| -> Option<usize> {
        let tail = &text[text.find(after)? + after.len()..];
        tail.trim_start().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    let stopped_at = at(&rest, "/job/tiles/tile-00000.partial.ckpt (iteration ").expect(&rest);
    // The first iteration logged by a run.
    let first = |run: &Run| at(&run.stderr, "\niter ").or_else(|| at(&run.stderr, "iter "));

    let resumed = ok(sb.run(&["tiles", "run", "--job", "job"]));
    assert_eq!(first(&resumed), Some(stopped_at + 1), "the tile goes on: {}", resumed.stderr);
    assert!(resumed.stderr.contains("tiles: 8 optimised here, all 2 rounds"), "{}", resumed.stderr);
    assert!(!partial.exists(), "the finished tile's state is removed");
    ok(sb.run(&["tiles", "stitch", "--job", "job"]));
    assert!(pixels(&sb, "tiled.png") == pixels(&sb, "inproc.png"), "the continued tile differs");

    // A damaged state: the tile starts over (same pixels: nothing of the stopped run is used).
    ok(sb.run(&[&["tiles", "plan", "--job", "job2"][..], &run_args("t2.png")].concat()));
    std::fs::create_dir_all(sb.path("job2/tiles")).unwrap();
    sb.file("job2/tiles/tile-00000.partial.ckpt", b"not a checkpoint");
    let over = ok(sb.run(&["tiles", "run", "--job", "job2"]));
    assert_eq!(first(&over), Some(1), "the tile starts over: {}", over.stderr);
    assert!(!sb.path("job2/tiles/tile-00000.partial.ckpt").exists());
    ok(sb.run(&["tiles", "stitch", "--job", "job2"]));
    assert!(pixels(&sb, "t2.png") == pixels(&sb, "inproc.png"));
}
