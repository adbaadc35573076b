//! The compact VGG-16 built into impasto: used offline (or when the download cannot reach the server)
//! with a notice, chosen with `--weights builtin`, refused past relu4_2 and for VGG-19, listed by
//! `impasto models list`, and reproduced byte for byte by `impasto models pack` from the full weights.

use std::path::Path;

use crate::common::{Run, Sandbox, TINY_LAYERS, png_text_value, real_weights};

/// A sandbox (offline, empty cache) with a content and a style image.
fn setup() -> Sandbox {
    let sb = Sandbox::new();
    sb.png("c.png", 40, 30);
    sb.png("s.png", 24, 24);
    sb
}

/// A 32 px, 2-iteration run of c.png + s.png without `--weights`, plus `extra`.
fn run(sb: &Sandbox, extra: &[&str]) -> Run {
    let mut args = vec!["c.png", "s.png", "-o", "out.png", "--size", "32", "-n", "2"];
    args.extend(extra);
    sb.run(&args)
}

#[test]
fn offline_without_weights_runs_the_built_in_model_and_says_so() {
    let sb = setup();
    let out = run(&sb, &[]);
    out.assert_ok();
    let first = out.stderr.lines().next().unwrap_or_default();
    insta::assert_snapshot!(first, @"offline mode (IMPASTO_OFFLINE is set) and no vgg16 weights found: using the built-in compact VGG-16 (8-bit, layers up to relu4_2; style layers relu1_1,relu2_1,relu3_1,relu4_1); for the full model run `impasto models download vgg16` or pass --weights FILE");
    assert!(
        out.stderr.lines().last().unwrap().starts_with("wrote out.png (32x24, 2 iterations"),
        "{}",
        out.stderr
    );
    // The written command reproduces the run: the built-in weights and the style layers it used.
    let params = png_text_value(&sb.path("out.png"), "parameters").unwrap();
    assert!(params.contains(" --style-layers relu1_1,relu2_1,relu3_1,relu4_1 "), "{params}");
    assert!(params.contains(" --weights builtin "), "{params}");
    assert!(params.ends_with(", weights builtin (impasto-vgg16-q8)"), "{params}");

    // Explicit style layers are kept (and not mentioned); quiet runs print nothing.
    let mut extra = vec!["--offline"];
    extra.extend(TINY_LAYERS);
    let out = run(&sb, &extra);
    out.assert_ok();
    insta::assert_snapshot!(out.stderr.lines().next().unwrap_or_default(), @"offline mode (--offline) and no vgg16 weights found: using the built-in compact VGG-16 (8-bit, layers up to relu4_2); for the full model run `impasto models download vgg16` or pass --weights FILE");
    let out = run(&sb, &["-q"]);
    out.assert_ok();
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

#[test]
fn an_unreachable_server_falls_back_to_the_built_in_model() {
    let sb = setup();
    // Nothing listens on the discard port of loopback: the connection is refused.
    let mut cmd = sb.online("http://127.0.0.1:9/{file}");
    let out: Run =
        cmd.args(["c.png", "s.png", "-o", "out.png", "--size", "32", "-n", "2"]).output().unwrap().into();
    out.assert_ok();
    let notice = out.stderr.lines().find(|l| l.starts_with("cannot download")).unwrap_or_default();
    assert!(
        notice.starts_with("cannot download the vgg16 weights (downloading http://127.0.0.1:9/vgg16-00b39a1b.pth: ")
            && notice.ends_with(
                "): using the built-in compact VGG-16 (8-bit, layers up to relu4_2; style layers \
                 relu1_1,relu2_1,relu3_1,relu4_1); for the full model run `impasto models download vgg16` or pass \
                 --weights FILE"
            ),
        "{}",
        out.stderr
    );
    assert!(sb.path("out.png").is_file());
}

#[test]
fn weights_builtin_chooses_it_and_checks_the_layers_first() {
    let sb = setup();
    let out = run(&sb, &["--weights", "builtin", "-q"]);
    out.assert_ok();
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    // Errors come before any image is read.
    let bad = ["nope.png", "nope2.png", "-o", "out.png", "--weights", "builtin"];
    let err = |extra: &[&str]| sb.run(&[&bad[..], extra].concat()).error_line(1).to_string();
    insta::assert_snapshot!(err(&["--style-layers", "relu1_1,relu5_1"]), @"impasto: error: the built-in compact VGG-16 stops at relu4_2; relu5_1 needs the full vgg16 weights: get them with `impasto models download vgg16` or pass --weights FILE");
    insta::assert_snapshot!(err(&["--content-layers", "conv4_3"]), @"impasto: error: the built-in compact VGG-16 stops at relu4_2; conv4_3 needs the full vgg16 weights: get them with `impasto models download vgg16` or pass --weights FILE");
    insta::assert_snapshot!(err(&["--model", "vgg19"]), @"impasto: error: invalid model: vgg19 needs vgg19 weights, and the built-in compact VGG-16 is a VGG-16 (pass --weights FILE)");
    insta::assert_snapshot!(err(&["--preprocess", "torch"]), @"impasto: error: --preprocess torch does not apply to the built-in compact VGG-16: it takes caffe input");
}

#[test]
fn pack_reproduces_the_built_in_model() {
    let sb = Sandbox::new();
    insta::assert_snapshot!(sb.run(&["models", "pack", "-o", "q8.safetensors"]).error_line(1), @"impasto: error: no VGG-16 weights to pack: pass --weights FILE, set IMPASTO_WEIGHTS, or get them with `impasto models download vgg16`");
    // The output may not be the file it packs (a copy: the test never touches the shared weights).
    sb.file("full.safetensors", b"weights");
    let same = sb.run(&["models", "pack", "--weights", "full.safetensors", "-o", "./full.safetensors"]);
    insta::assert_snapshot!(same.error_line(1), @"impasto: error: invalid -o `./full.safetensors`: it is the full weights file being packed, which it would overwrite");
    assert_eq!(std::fs::read(sb.path("full.safetensors")).unwrap(), b"weights");
    let Some(full) = real_weights() else { return };
    // As documented in the README: IMPASTO_WEIGHTS names the full weights.
    let out: Run = sb
        .cmd()
        .args(["models", "pack", "-o", "q8.safetensors"])
        .env("IMPASTO_WEIGHTS", &full)
        .output()
        .unwrap()
        .into();
    out.assert_ok();
    assert!(out.stderr.contains("into q8.safetensors (5.0 MiB): conv1_1..conv4_2"), "{}", out.stderr);
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/impasto/assets/vgg16-q8.safetensors");
    let (packed, committed) =
        (std::fs::read(sb.path("q8.safetensors")).unwrap(), std::fs::read(committed).unwrap());
    assert!(packed == committed, "the packed file differs from the committed asset: re-run the pack step");
    // A packed file is a weights file too.
    let mut args = vec!["c.png", "s.png", "-o", "out.png", "--size", "32", "-n", "2", "-q"];
    args.extend(["--weights", "q8.safetensors"]);
    args.extend(TINY_LAYERS);
    sb.png("c.png", 40, 30);
    sb.png("s.png", 24, 24);
    sb.run(&args).assert_ok();
}
