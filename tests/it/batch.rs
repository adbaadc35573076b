//! `impasto batch`: a command-line grid and a plan file run with the built-in model, reruns that do
//! only what is missing, failures logged without stopping the others, bad input refused in one line
//! before any job starts, shards that are disjoint and complete (from `--shard`, Slurm's or
//! Kubernetes' variables), the contact sheet and HTML index, and (ignored unless asked for: it needs
//! root and Debian's slurm-wlm) a real single-node Slurm running a job array.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

#[cfg(unix)]
use crate::common::signal;
use crate::common::{Run, Sandbox, png_text_value};

/// The shard and scheduler variables a test must not inherit (CI could itself run under Slurm).
const SHARD_VARS: [&str; 5] = [
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_COUNT",
    "JOB_COMPLETION_INDEX",
    "IMPASTO_SHARD_COUNT",
];

fn batch(sb: &Sandbox, args: &[&str], vars: &[(&str, &str)]) -> Run {
    let mut cmd = sb.cmd();
    for v in SHARD_VARS {
        cmd.env_remove(v);
    }
    cmd.envs(vars.iter().copied());
    cmd.arg("batch").args(args).output().expect("run impasto batch").into()
}

/// Two contents in a folder and two styles (one of them not an image, for the failure test).
fn setup() -> Sandbox {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.path("photos")).unwrap();
    sb.png("photos/a.png", 40, 30);
    sb.png("photos/b.png", 30, 40);
    sb.png("s.png", 24, 24);
    sb.png("t.png", 20, 24);
    sb
}

/// A 2 × 2 grid (contents × style weights) at 32 px, 2 iterations, built-in model.
const GRID: [&str; 14] = [
    "--content",
    "photos",
    "--style",
    "s.png",
    "--grid",
    "style-weight=10,1000",
    "--set",
    "size=32",
    "--set",
    "iterations=2",
    "--set",
    "weights=builtin",
    "-o",
    "out",
];

/// The results in `dir`: `*.png` but the contact sheet.
fn results(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".png") && n != "index.png")
        .collect()
}

/// The statuses of every log record, in order.
fn statuses(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut files: Vec<_> =
        std::fs::read_dir(dir.join("batch-log")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in files {
        for line in std::fs::read_to_string(f).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            out.push(v["status"].as_str().unwrap().to_string());
        }
    }
    out
}

/// How many log records continue from a checkpoint.
fn continued(dir: &Path) -> usize {
    let logs = std::fs::read_dir(dir.join("batch-log")).unwrap();
    let lines: Vec<String> = logs
        .flat_map(|f| {
            std::fs::read_to_string(f.unwrap().path()).unwrap().lines().map(String::from).collect::<Vec<_>>()
        })
        .collect();
    lines.iter().filter(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["resumed"] == true).count()
}

#[test]
fn a_grid_runs_once_and_a_rerun_does_only_what_is_missing() {
    let sb = setup();
    let out = batch(&sb, &GRID, &[]);
    out.assert_ok();
    let names = results(&sb.path("out"));
    assert_eq!(names.len(), 4, "{names:?}");
    let first = names.iter().find(|n| n.starts_with("a_s_style-weight=10_")).expect("a named result");
    // Each result carries the run's parameters and the job's fingerprint.
    let params = png_text_value(&sb.path("out").join(first), "parameters").unwrap();
    assert!(params.contains(" --style-weight 10 ") && params.contains(" --weights builtin "), "{params}");
    assert_eq!(png_text_value(&sb.path("out").join(first), "impasto-batch").unwrap().len(), 64);
    // The index: a sheet of 2 rows (contents) × 2 columns (weights) and a page naming every result.
    let sheet = image::open(sb.path("out/index.png")).unwrap();
    assert!(sheet.width() > 2 * 128 && sheet.height() > 2 * 128, "{:?}", (sheet.width(), sheet.height()));
    let page = std::fs::read_to_string(sb.path("out/index.html")).unwrap();
    assert!(page.contains("<h1>impasto batch: 4 of 4 done</h1>"));
    assert!(names.iter().all(|n| page.contains(&format!("src=\"{n}\""))));
    assert!(page.contains("style-weight=1000") && page.contains("total "), "losses are shown");
    assert_eq!(statuses(&sb.path("out")), ["done"; 4]);
    assert!(out.stderr.contains("shard 0/1: 4 done, 0 already done, 0 failed"), "{}", out.stderr);

    // A rerun finds everything done; after one result is removed, it runs that one alone.
    batch(&sb, &GRID, &[]).assert_ok();
    std::fs::remove_file(sb.path("out").join(first)).unwrap();
    let out = batch(&sb, &GRID, &[]);
    out.assert_ok();
    assert!(out.stderr.contains("shard 0/1: 1 done, 3 already done"), "{}", out.stderr);
    assert_eq!(results(&sb.path("out")), names);
    assert_eq!(
        statuses(&sb.path("out"))[4..],
        ["skipped", "skipped", "skipped", "skipped", "done", "skipped", "skipped", "skipped"]
    );
    // No claim, probe or temporary file is left.
    let left: Vec<String> = std::fs::read_dir(sb.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_failed_job_is_logged_and_the_others_run() {
    let sb = setup();
    sb.file("broken.png", b"not an image");
    let out = batch(
        &sb,
        &[
            "--content",
            "photos/a.png",
            "--style",
            "s.png",
            "--style",
            "broken.png",
            "--set",
            "size=32",
            "--set",
            "iterations=2",
            "--set",
            "weights=builtin",
            "-o",
            "out",
        ],
        &[],
    );
    let line = out.stderr.lines().last().unwrap();
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(line.starts_with("impasto: error: 1 of 2 jobs of shard 0/1 failed (reasons in "), "{line}");
    assert_eq!(results(&sb.path("out")).len(), 1);
    let log = std::fs::read_to_string(sb.path("out/batch-log/shard-0-of-1.jsonl")).unwrap();
    let failed: serde_json::Value =
        serde_json::from_str(log.lines().find(|l| l.contains("\"failed\"")).unwrap()).unwrap();
    assert!(failed["reason"].as_str().unwrap().starts_with("style image"), "{failed}");
    assert!(failed["time"].as_str().unwrap().ends_with('Z') && failed["seconds"].is_number());
    assert!(!sb.path("out/index.png").exists(), "no index while a job is missing");
}

#[test]
fn a_plan_file_reads_paths_from_its_folder() {
    let sb = setup();
    std::fs::write(
        sb.path("photos/plan.toml"),
        "output = 'results'\n[settings]\nsize = 32\niterations = 2\nweights = 'builtin'\n\
         [[job]]\nname = 'mine'\ncontent = 'a.png'\nstyle = ['../s.png', '../t.png']\nstyle-blend = [0.7, 0.3]\npreserve-colors = true\n",
    )
    .unwrap();
    let out = batch(&sb, &["photos/plan.toml"], &[]);
    out.assert_ok();
    let params = png_text_value(&sb.path("photos/results/mine.png"), "parameters").unwrap();
    assert!(params.contains(" --style-blend 0.7,0.3 ") && params.contains(" --preserve-colors "), "{params}");
    assert!(sb.path("photos/results/index.html").exists());
    // --index alone rewrites the summary and runs nothing.
    std::fs::remove_file(sb.path("photos/results/index.png")).unwrap();
    let out = batch(&sb, &["photos/plan.toml", "--index"], &[]);
    out.assert_ok();
    assert!(sb.path("photos/results/index.png").exists());
    assert_eq!(statuses(&sb.path("photos/results")), ["done"]);
}

#[test]
fn bad_input_is_one_line_before_any_job_starts() {
    let sb = setup();
    sb.file("afile", b"x");
    let grid = |extra: &[&str]| {
        let mut a = vec!["--content", "photos", "--style", "s.png", "--set", "weights=builtin", "-o", "out"];
        a.extend(extra);
        batch(&sb, &a, &[])
    };
    let cases: Vec<(Run, &str)> = vec![
        (
            grid(&["--set", "style-weigth=3"]),
            "impasto: error: [settings] style-weigth: unknown run flag `style-weigth` (see `impasto --help` for the flags)",
        ),
        (grid(&["--grid", "size=32,-4"]), "impasto: error: job a_s_size=-4_"),
        (
            grid(&["--shard", "3/2"]),
            "impasto: error: invalid shard `3/2`: index 3 is not below the count 2 (shards are numbered 0 to 1)",
        ),
        (
            grid(&["--shard", "0/0"]),
            "impasto: error: invalid shard `0/0`: the shard count must be at least 1",
        ),
        (
            batch(&sb, &["--content", "nope.png", "--style", "s.png", "-o", "out"], &[]),
            "impasto: error: [grid] content: cannot read nope.png: No such file or directory (os error 2)",
        ),
        (
            batch(&sb, &["--content", "photos", "--style", "s.png", "-o", "afile/out"], &[]),
            "impasto: error: results folder afile/out cannot be made: ",
        ),
        (
            batch(
                &sb,
                &["--content", "photos", "--style", "s.png", "-o", "out"],
                &[("JOB_COMPLETION_INDEX", "1")],
            ),
            "impasto: error: $JOB_COMPLETION_INDEX is set but not the shard count",
        ),
        (
            grid(&["--shard-count", "0"]),
            "impasto: error: invalid --shard-count 0: the shard count must be at least 1",
        ),
        (
            grid(&["--stale-after", "0"]),
            "impasto: error: invalid --stale-after `0`: it must be at least 1s, or the claims of running jobs would be taken over",
        ),
        (
            batch(&sb, &["--content", "photos", "--style", "s.png+", "-o", "out"], &[]),
            "impasto: error: --style `s.png+`: a blend A+B needs a file on each side of every `+`",
        ),
        (
            grid(&["--set", "checkpoint=c.ckpt"]),
            "impasto: error: [settings] checkpoint: `checkpoint` does not apply in a batch: the batch keeps each job's checkpoint itself, in OUT/batch-checkpoints, and the next run continues a job stopped early from it (set how often with `checkpoint-every`)",
        ),
        (
            grid(&["--set", "quiet=true"]),
            "impasto: error: [settings] quiet: `quiet` does not apply in a batch: every job runs quietly; `impasto batch --quiet` quiets the batch itself",
        ),
        (grid(&["--set", "mask=nomask.png"]), "impasto: error: job a_s_"),
        (grid(&["--set", "style-mask=nomask.png"]), "impasto: error: job a_s_"),
    ];
    for (out, want) in &cases {
        let line = out.error_line(1);
        assert!(line.starts_with(want), "{line}\nwanted: {want}");
    }
    assert!(
        cases[1].0.error_line(1).ends_with("invalid size: -4 (must be between 1 and 16384 pixels)"),
        "{}",
        cases[1].0.stderr
    );
    // A missing mask is found before any job starts, like a missing content, style or `--init` file.
    for (case, flag) in [(&cases[12], "--mask"), (&cases[13], "--style-mask")] {
        let line = case.0.error_line(1);
        assert!(line.contains(&format!(" ([grid]): {flag} image nomask.png: No such file")), "{line}");
    }
    std::fs::write(
        sb.path("dup.toml"),
        "output = 'out'\n[[job]]\nname = 'x'\ncontent = 's.png'\nstyle = 't.png'\n[[job]]\nname = 'x'\ncontent = 't.png'\nstyle = 's.png'\n",
    )
    .unwrap();
    let out = batch(&sb, &["dup.toml"], &[]);
    assert_eq!(
        out.error_line(1),
        "impasto: error: duplicate output name `x`: [[job]] 1 and [[job]] 2 (give one of them another `name` or setting)"
    );
    assert!(!sb.path("out").exists(), "nothing ran");
}

/// This shard's job names, from `--list`.
fn listed(sb: &Sandbox, extra: &[&str], vars: &[(&str, &str)]) -> Vec<String> {
    let mut args = GRID.to_vec();
    args.push("--list");
    args.extend(extra);
    let out = batch(sb, &args, vars);
    out.assert_ok();
    out.stdout.lines().map(|l| l.split('\t').next().unwrap().to_string()).collect()
}

#[test]
fn shards_are_disjoint_complete_and_read_from_slurm_or_kubernetes() {
    let sb = setup();
    let all: BTreeSet<String> = listed(&sb, &[], &[]).into_iter().collect();
    assert_eq!(all.len(), 4);
    let mut seen = BTreeSet::new();
    for i in 0..3 {
        let part = listed(&sb, &["--shard", &format!("{i}/3")], &[]);
        for name in &part {
            assert!(seen.insert(name.clone()), "{name} in two shards");
        }
        let slurm = listed(
            &sb,
            &[],
            &[
                ("SLURM_ARRAY_TASK_ID", &(i + 5).to_string()),
                ("SLURM_ARRAY_TASK_MIN", "5"),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
            ],
        );
        assert_eq!(slurm, part);
        let k8s = listed(&sb, &[], &[("JOB_COMPLETION_INDEX", &i.to_string()), ("IMPASTO_SHARD_COUNT", "3")]);
        assert_eq!(k8s, part);
    }
    assert_eq!(seen, all);
    // More shards than jobs, even absurdly many: the first shards get one job each, the rest none.
    let first = listed(&sb, &["--shard", "0/99999999999"], &[]);
    assert_eq!(first.len(), 1);
    assert!(listed(&sb, &["--shard", "99999999998/99999999999"], &[]).is_empty());
    let slurm = [("SLURM_ARRAY_TASK_ID", "0"), ("SLURM_ARRAY_TASK_COUNT", "99999999999")];
    assert_eq!(listed(&sb, &[], &slurm), first);

    // Kubernetes by hand: two pods' commands, each with its index; the second finds all done and
    // writes the index.
    for i in ["0", "1"] {
        batch(&sb, &GRID, &[("JOB_COMPLETION_INDEX", i), ("IMPASTO_SHARD_COUNT", "2")]).assert_ok();
    }
    assert_eq!(results(&sb.path("out")), all.iter().map(|n| format!("{n}.png")).collect());
    assert!(sb.path("out/index.html").exists());
    let logs: BTreeSet<String> = std::fs::read_dir(sb.path("out/batch-log"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(logs, BTreeSet::from(["shard-0-of-2.jsonl".to_string(), "shard-1-of-2.jsonl".to_string()]));
}

#[test]
fn a_claim_of_a_live_owner_is_left_and_a_dead_one_is_taken_over() {
    let sb = setup();
    let names = listed(&sb, &[], &[]);
    std::fs::create_dir_all(sb.path("out")).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    // This test's own process is alive; pid 0x7fff_fff0 is not.
    let marker = |pid: u32| format!("host={host}\npid={pid}\nshard=0/1\ntoken=t{pid}\n");
    std::fs::write(sb.path(&format!("out/.{}.png.lock", names[0])), marker(std::process::id())).unwrap();
    std::fs::write(sb.path(&format!("out/.{}.png.lock", names[1])), marker(0x7fff_fff0)).unwrap();
    let out = batch(&sb, &GRID, &[]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains(&format!("{}: claimed by {host} pid {}", names[0], std::process::id())),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stderr.lines().last(),
        Some("impasto: error: 1 of 4 jobs of shard 0/1 are held by other live processes")
    );
    assert_eq!(results(&sb.path("out")).len(), 3);
    assert!(sb.path(&format!("out/.{}.png.lock", names[0])).exists());
}

/// SIGTERM (Slurm's time limit, `scancel`, Kubernetes stopping a pod) stops the batch as Ctrl-C does:
/// the running job is logged `interrupted`, leaves no result and gives up its owner marker, so a rerun
/// takes it at once instead of after `--stale-after`; the status is 130.
#[cfg(unix)]
#[test]
fn sigterm_logs_the_running_job_interrupted_and_releases_its_claim() {
    let sb = setup();
    let mut cmd = sb.cmd();
    for v in SHARD_VARS {
        cmd.env_remove(v);
    }
    let args = [
        "--content",
        "photos/a.png",
        "--style",
        "s.png",
        "--set",
        "size=32",
        "--set",
        "iterations=100000000",
        "--set",
        "optimizer=adam",
        "--set",
        "weights=builtin",
        "-o",
        "out",
    ];
    let child = cmd
        .arg("batch")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("impasto batch starts");
    let started = std::time::Instant::now();
    let lock = || {
        std::fs::read_dir(sb.path("out"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".png.lock"))
    };
    while !lock() {
        assert!(started.elapsed().as_secs() < 60, "the job did not start within 60 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    signal(&child, "TERM");
    let out: Run = child.wait_with_output().expect("impasto batch ends").into();
    assert_eq!(out.code, Some(130), "{}", out.stderr);
    assert!(!lock(), "the owner marker is released");
    assert!(results(&sb.path("out")).is_empty());
    assert_eq!(statuses(&sb.path("out")), ["interrupted"]);
    let log = std::fs::read_to_string(sb.path("out/batch-log/shard-0-of-1.jsonl")).unwrap();
    assert!(log.contains(r#""reason":"interrupted (Ctrl-C or SIGTERM)"#), "{log}");
}

/// A job stopped by SIGTERM (Slurm's preemption or time limit) leaves its checkpoint in
/// `OUT/batch-checkpoints`; the next run of the batch continues the job from it, logs it `resumed`,
/// removes the checkpoint, and writes exactly the pixels of a job that was never stopped.
#[cfg(unix)]
#[test]
fn a_job_stopped_by_sigterm_continues_from_its_checkpoint_on_the_next_run() {
    let sb = setup();
    let args = |out: &'static str| {
        [
            "--content",
            "photos/a.png",
            "--style",
            "s.png",
            "--set",
            "size=64",
            "--set",
            "iterations=40",
            "--set",
            "depth=16",
            "--set",
            "checkpoint-every=1",
            "--set",
            "weights=builtin",
            "-o",
            out,
        ]
    };
    let checkpoints = || -> Vec<String> {
        std::fs::read_dir(sb.path("out/batch-checkpoints"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    let mut cmd = sb.cmd();
    for v in SHARD_VARS {
        cmd.env_remove(v);
    }
    let child = cmd
        .arg("batch")
        .args(args("out"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("impasto batch starts");
    let started = std::time::Instant::now();
    while checkpoints().is_empty() {
        assert!(started.elapsed().as_secs() < 120, "no checkpoint within 120 s");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    signal(&child, "TERM");
    let stopped: Run = child.wait_with_output().expect("impasto batch ends").into();
    assert_eq!(stopped.code, Some(130), "{}", stopped.stderr);
    assert!(results(&sb.path("out")).is_empty(), "a stopped job leaves no result");
    let kept = checkpoints();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let name = kept[0].strip_suffix(".ckpt").expect("NAME.ckpt").to_string();
    let log = std::fs::read_to_string(sb.path("out/batch-log/shard-0-of-1.jsonl")).unwrap();
    let continues = format!("; the next run continues it from out/batch-checkpoints/{name}.ckpt");
    assert!(log.contains(&continues), "{log}");

    let listed = batch(&sb, &[&args("out")[..], &["--list"]].concat(), &[]);
    assert!(listed.stdout.ends_with("\tstarted\n"), "{}", listed.stdout);
    let again = batch(&sb, &args("out"), &[]);
    again.assert_ok();
    assert!(again.stderr.contains(", continued from its checkpoint)"), "{}", again.stderr);
    assert_eq!(statuses(&sb.path("out")), ["interrupted", "done"]);
    let log = std::fs::read_to_string(sb.path("out/batch-log/shard-0-of-1.jsonl")).unwrap();
    let done: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(done["resumed"], true, "{log}");
    assert_eq!(done["iterations"], 40, "{log}");
    assert!(checkpoints().is_empty(), "the finished job's checkpoint is removed: {:?}", checkpoints());

    batch(&sb, &args("whole"), &[]).assert_ok();
    let pixels = |dir: &str| image::open(sb.path(&format!("{dir}/{name}.png"))).unwrap().to_rgb16();
    assert!(pixels("out") == pixels("whole"), "the continued job differs from an uninterrupted one");
    // The checkpoint is the batch's bookkeeping, not part of the job's parameters.
    let params = |dir: &str| png_text_value(&sb.path(&format!("{dir}/{name}.png")), "parameters").unwrap();
    assert_eq!(params("out").replace("out/", "whole/"), params("whole"));
    assert!(
        !params("out").contains("--checkpoint") && !params("out").contains("--resume"),
        "{}",
        params("out")
    );

    // A checkpoint that cannot be used fails the job once and is removed; the next run starts over.
    std::fs::create_dir_all(sb.path("broken/batch-checkpoints")).unwrap();
    sb.file(&format!("broken/batch-checkpoints/{name}.ckpt"), b"not a checkpoint");
    let failed = batch(&sb, &args("broken"), &[]);
    assert_eq!(failed.code, Some(1), "{}", failed.stderr);
    let line = failed.stderr.lines().find(|l| l.contains(": failed: ")).unwrap_or_default();
    assert!(line.ends_with("; the checkpoint was removed, so the next run starts the job over"), "{line}");
    assert!(!sb.path(&format!("broken/batch-checkpoints/{name}.ckpt")).exists());
    batch(&sb, &args("broken"), &[]).assert_ok();
    assert!(pixels("broken") == pixels("whole"), "the job started over gives the same image");
}

/// Runs a shell command, panicking with its output when it fails.
fn sh(script: &str) -> String {
    let out = Command::new("bash").arg("-c").arg(script).output().expect("run bash");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "`{script}` failed:\n{text}");
    text
}

#[test]
#[ignore = "slow: needs slurm (root, Debian's slurm-wlm and munge; .ci/run runs it)"]
fn batch_slurm_job_array_runs_every_job_once_and_a_rerun_finishes_a_cancelled_task() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Installs Slurm when missing and starts a single-node cluster; under CI a failure fails the test.
    sh(&format!("{}/.ci/slurm-up", repo.display()));
    let sb = setup();
    for n in ["c.png", "d.png"] {
        sb.png(&format!("photos/{n}"), 64, 48);
    }
    std::fs::write(
        sb.path("plan.toml"),
        "output = 'out'\n[settings]\nsize = 64\niterations = 20\nweights = 'builtin'\nthreads = 1\n\
         [grid]\ncontent = 'photos'\nstyle = 's.png'\nstyle-weight = [100, 1000]\n",
    )
    .unwrap();
    let script = repo.join("docs/batch/impasto-batch.sbatch");
    let submit = |extra: &str| {
        sh(&format!(
            "cd {} && IMPASTO_BIN={} IMPASTO_OFFLINE=1 sbatch --parsable --wait --array=0-3 {extra} --output=slurm-%A_%a.out {} plan.toml",
            sb.root().display(),
            env!("CARGO_BIN_EXE_impasto"),
            script.display()
        ))
    };
    submit("");
    let names = results(&sb.path("out"));
    assert_eq!(names.len(), 8, "{names:?}");
    assert!(sb.path("out/index.png").exists() && sb.path("out/index.html").exists());
    assert_eq!(
        statuses(&sb.path("out")).iter().filter(|s| *s == "done").count(),
        8,
        "every job ran exactly once"
    );

    // Kill one array task mid-run: longer runs into a second folder, with a checkpoint every iteration;
    // cancel task 1 once its claimed job has written one (so it has run an iteration).
    std::fs::write(
        sb.path("plan.toml"),
        std::fs::read_to_string(sb.path("plan.toml"))
            .unwrap()
            .replace("'out'", "'out2'")
            .replace("iterations = 20", "iterations = 50\ncheckpoint-every = 1"),
    )
    .unwrap();
    let job = sh(&format!(
        "cd {} && IMPASTO_BIN={} IMPASTO_OFFLINE=1 sbatch --parsable --array=0-3 --output=slurm2-%A_%a.out {} plan.toml",
        sb.root().display(),
        env!("CARGO_BIN_EXE_impasto"),
        script.display()
    ));
    let job = job.trim().to_string();
    sh(&format!(
        "cd {} && for i in $(seq 1 600); do for l in out2/.*.lock; do grep -qs 'shard=1/4' \"$l\" || continue; \
         n=$(basename \"$l\" .png.lock); [ -f \"out2/batch-checkpoints/${{n#.}}.ckpt\" ] && break 2; done; \
         sleep 0.2; done; scancel {job}_1",
        sb.root().display(),
    ));
    sh(&format!(
        "for i in $(seq 1 1200); do squeue -h -j {job} | grep -q . || exit 0; sleep 0.5; done; exit 1"
    ));
    let after_kill = results(&sb.path("out2"));
    assert!(after_kill.len() < 8, "the killed task left jobs undone: {after_kill:?}");
    // scancel's SIGTERM takes the Ctrl-C path: the running job is logged and its claim given up.
    assert!(statuses(&sb.path("out2")).iter().any(|s| s == "interrupted"), "the cancelled job is logged");
    let held: Vec<_> = std::fs::read_dir(sb.path("out2"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".lock"))
        .collect();
    assert!(held.is_empty(), "the cancelled task released its claim: {held:?}");
    // The cancelled job left its checkpoint, which the rerun continues from.
    let kept = std::fs::read_dir(sb.path("out2/batch-checkpoints")).map_or(0, |d| d.count());
    assert_eq!(kept, 1, "the cancelled job's checkpoint is kept");
    let done_before = statuses(&sb.path("out2")).iter().filter(|s| *s == "done").count();
    submit("");
    assert_eq!(continued(&sb.path("out2")), kept, "every kept checkpoint is continued from");
    let left = std::fs::read_dir(sb.path("out2/batch-checkpoints")).map_or(0, |d| d.count());
    assert_eq!(left, 0, "the finished jobs' checkpoints are removed");
    let statuses = statuses(&sb.path("out2"));
    let done_after = statuses.iter().filter(|s| *s == "done").count();
    assert_eq!(results(&sb.path("out2")).len(), 8);
    assert_eq!(done_after - done_before, 8 - after_kill.len(), "the rerun ran only the missing jobs");
    assert_eq!(statuses.iter().filter(|s| *s == "skipped").count(), after_kill.len());
    assert!(sb.path("out2/index.html").exists());
}
