//! `impasto devices` and `--device`: the adapter list with its limits, what `auto` picks, and a missing
//! adapter as a one-line error with exit status 1.

use crate::common::Sandbox;

#[test]
fn devices_lists_adapters_and_what_auto_picks() {
    let out = Sandbox::new().run(&["devices"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let last = lines.last().expect("at least the auto line");
    assert!(last.starts_with("--device auto uses "), "{}", out.stdout);
    for l in &lines[..lines.len() - 1] {
        assert!(l.starts_with("gpu:") && l.contains("max storage binding"), "{l}");
    }
    let json = Sandbox::new().run(&["devices", "--json"]);
    assert_eq!(json.code, Some(0));
    for l in json.stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["max_buffer_size"].as_u64().is_some() && v["device"].as_str().unwrap().starts_with("gpu:"));
    }
}

#[test]
fn a_missing_adapter_is_one_line_and_exit_1() {
    let out = Sandbox::new()
        .run(&["bench", "--sizes", "32", "--model", "vgg16", "--reps", "1", "--device", "gpu:99"]);
    assert_eq!(out.code, Some(1));
    assert_eq!(out.stderr.lines().filter(|l| l.starts_with("impasto: error:")).count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("there is no GPU adapter gpu:99"), "{}", out.stderr);
    let bad = Sandbox::new().run(&["bench", "--device", "tpu"]);
    assert_eq!(bad.code, Some(2));
    assert!(bad.stderr.contains("`tpu` is not auto, cpu, gpu or gpu:N"), "{}", bad.stderr);
}
