//! Every user mistake ends with exit status 1 and one `impasto: error:` line on stderr naming the file,
//! value or layer involved, and is caught before any heavy work. Uses tiny images and weights only.

use crate::common::{Run, Sandbox, TINY_LAYERS, Tensor, conv1_1, run_weights, write_safetensors};

/// A sandbox with a 40×30 content image `c.png`, a 24×24 style image `s.png` and tiny weights `w.safetensors`.
fn setup() -> Sandbox {
    let sb = Sandbox::new();
    sb.png("c.png", 40, 30);
    sb.png("s.png", 24, 24);
    sb.tiny_weights("w.safetensors");
    sb
}

/// Runs `content style...` with a tiny valid configuration, then `extra` (later flags override earlier ones).
fn run(sb: &Sandbox, images: &[&str], extra: &[&str]) -> Run {
    let mut args: Vec<&str> = images.to_vec();
    args.extend(["-o", "out.png", "--weights", "w.safetensors", "--size", "32", "-n", "2"]);
    args.extend(TINY_LAYERS);
    args.extend(extra);
    sb.run(&args)
}

/// Bytes that start like a PNG file and then are garbage.
const CORRUPT_PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDRgarbage garbage garbage";

fn truncated_png(sb: &Sandbox, name: &str) -> String {
    sb.png("full.png", 64, 64);
    let bytes = std::fs::read(sb.path("full.png")).unwrap();
    sb.file(name, &bytes[..bytes.len() / 2])
}

// ---- images -------------------------------------------------------------------------------------

#[test]
fn content_image_missing() {
    let sb = setup();
    let out = run(&sb, &["missing.png", "s.png"], &[]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: content image: cannot decode image missing.png: no such file");
    assert!(!sb.path("out.png").exists());
}

#[test]
fn content_image_corrupt() {
    let sb = setup();
    sb.file("corrupt.png", CORRUPT_PNG);
    let out = run(&sb, &["corrupt.png", "s.png"], &[]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: content image: cannot decode image corrupt.png: Format error decoding Png: CRC error: expected 0x67652067 have 0x402c2ece while decoding ChunkType { type: IHDR, critical: true, private: false, reserved: false, safecopy: false } chunk.");
}

#[test]
fn content_image_empty_file() {
    let sb = setup();
    sb.file("empty.jpg", b"");
    let out = run(&sb, &["empty.jpg", "s.png"], &[]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: content image: cannot decode image empty.jpg: Format error decoding Jpeg: I/O errors Not enough bytes, expected 2 but found 0");
}

#[test]
fn style_image_truncated() {
    let sb = setup();
    truncated_png(&sb, "half.png");
    let out = run(&sb, &["c.png", "half.png"], &[]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: style image: cannot decode image half.png: the file is truncated (unexpected end of file)");
}

#[test]
fn content_jpeg_cut_mid_scan_is_refused() {
    let sb = setup();
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 128]));
    img.save(sb.path("full.jpg")).unwrap();
    let bytes = std::fs::read(sb.path("full.jpg")).unwrap();
    // Cut in the scan data: the decoder would fill the rest with grey.
    sb.file("cut.jpg", &bytes[..bytes.len() * 2 / 3]);
    let out = run(&sb, &["cut.jpg", "s.png"], &[]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: content image: cannot decode image cut.jpg: the file is truncated (the JPEG data ends before its end-of-image marker)");
    assert!(!sb.path("out.png").exists());
}

#[test]
fn absurd_thread_count() {
    let sb = setup();
    let out = run(&sb, &["c.png", "s.png"], &["--threads", "100000"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid threads: 100000 (must be at most 1024; 0 = one per core)");
}

#[test]
fn style_image_unsupported_format() {
    let sb = setup();
    sb.file("notes.xyz", b"this is not an image at all");
    let out = run(&sb, &["c.png", "notes.xyz"], &[]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: style image: cannot decode image notes.xyz: unrecognised or unsupported image format");
}

#[test]
fn second_style_image_missing() {
    let sb = setup();
    let out = run(&sb, &["c.png", "s.png", "gone.jpg"], &[]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: style image: cannot decode image gone.jpg: no such file");
}

#[test]
fn init_file_corrupt() {
    let sb = setup();
    sb.file("corrupt.png", CORRUPT_PNG);
    let out = run(&sb, &["c.png", "s.png"], &["--init", "corrupt.png"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: --init image: cannot decode image corrupt.png: Format error decoding Png: CRC error: expected 0x67652067 have 0x402c2ece while decoding ChunkType { type: IHDR, critical: true, private: false, reserved: false, safecopy: false } chunk.");
}

#[test]
fn init_value_unknown() {
    let sb = setup();
    let out = run(&sb, &["c.png", "s.png"], &["--init", "nosie"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid --init `nosie`: expected content, noise, gray, style-stats, style or an image file (no such file)");
}

#[test]
fn init_value_is_a_folder() {
    let sb = setup();
    std::fs::create_dir(sb.path("start")).unwrap();
    let out = run(&sb, &["c.png", "s.png"], &["--init", "start"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid --init `start`: expected content, noise, gray, style-stats, style or an image file (it is a folder)");
}

// ---- weights ------------------------------------------------------------------------------------

/// Runs without `--weights`, so the CLI searches `IMPASTO_WEIGHTS` and the sandbox's cache folder.
fn run_without_weights_flag(sb: &Sandbox, extra: &[&str]) -> Run {
    let mut args = vec!["c.png", "s.png", "-o", "out.png", "--size", "32", "-n", "2"];
    args.extend(TINY_LAYERS);
    args.extend(extra);
    sb.run(&args)
}

#[test]
fn weights_found_nowhere_names_the_vgg19_file() {
    let sb = setup();
    let out = run_without_weights_flag(&sb, &["--model", "vgg19"]);
    let (line, root) = (out.error_line(1), sb.root_regex());
    insta::with_settings!({ filters => vec![(root.as_str(), "[SANDBOX]")] }, { insta::assert_snapshot!(line, @"impasto: error: no vgg19 weights found (looked in: --weights (not given), IMPASTO_WEIGHTS (not set), [SANDBOX]/cache/impasto/vgg19-conv-imagenet.safetensors) and offline mode (IMPASTO_OFFLINE is set) forbids downloading them (the built-in compact model is a VGG-16); get them with `impasto models download vgg19` while online, or `impasto models import FILE` from a vgg19 checkpoint you have, or pass --weights FILE") });
}

#[test]
fn weights_flag_names_a_missing_file() {
    let sb = setup();
    let out = run(&sb, &["c.png", "s.png"], &["--weights", "nope.safetensors"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: no vgg16 weights found (looked in: --weights nope.safetensors (no such file)); pass --weights FILE or set IMPASTO_WEIGHTS to a safetensors file with torchvision key names (features.N.weight|bias)");
    std::fs::create_dir(sb.path("models")).unwrap();
    let out = run(&sb, &["c.png", "s.png"], &["--weights", "models"]);
    assert!(out.error_line(1).contains("(looked in: --weights models (it is a folder))"), "{}", out.stderr);
}

#[test]
fn output_without_a_file_name() {
    let sb = setup();
    std::fs::create_dir(sb.path("results")).unwrap();
    let out = run(&sb, &["c.png", "s.png"], &["-o", "results"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: cannot write image results: it is a folder: give a file name (use one of: png, jpg, jpeg, webp, tif, tiff, bmp)");
}

#[test]
fn weights_env_names_a_missing_file() {
    let sb = setup();
    let mut args = vec!["c.png", "s.png", "-o", "out.png", "--size", "32"];
    args.extend(TINY_LAYERS);
    let out: Run = sb.cmd().args(&args).env("IMPASTO_WEIGHTS", "nope.safetensors").output().unwrap().into();
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: no vgg16 weights found (looked in: IMPASTO_WEIGHTS=nope.safetensors (no such file)); pass --weights FILE or set IMPASTO_WEIGHTS to a safetensors file with torchvision key names (features.N.weight|bias)");
}

fn run_with_weights(sb: &Sandbox, tensors: &[Tensor], extra: &[&str]) -> Run {
    write_safetensors(&sb.path("bad.safetensors"), tensors, &[]);
    let mut args = vec!["--weights", "bad.safetensors"];
    args.extend(extra);
    run(sb, &["c.png", "s.png"], &args)
}

#[test]
fn weights_missing_key() {
    let sb = setup();
    let mut tensors = conv1_1();
    tensors.retain(|t| t.0 != "features.0.bias");
    let out = run_with_weights(&sb, &tensors, &[]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: weights file bad.safetensors has no tensor `features.0.bias` (needed for layer conv1_1 of vgg16); is it a vgg16 checkpoint?");
}

#[test]
fn weights_missing_a_deeper_layer() {
    // The tiny file has conv1_1 only; the default layers need the network up to relu5_1 (relu1_1 is
    // among the tiny run's layers already: `--style-layers` given twice adds up).
    let sb = setup();
    let out = run_with_weights(
        &sb,
        &conv1_1(),
        &["--content-layers", "relu4_2", "--style-layers", "relu2_1,relu3_1,relu4_1,relu5_1"],
    );
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: weights file bad.safetensors has no tensor `features.2.weight` (needed for layer conv1_2 of vgg16); is it a vgg16 checkpoint?");
}

#[test]
fn weights_wrong_shape() {
    let sb = setup();
    let mut tensors = conv1_1();
    tensors[1] = ("features.0.bias", vec![32], vec![0.0; 32]);
    let out = run_with_weights(&sb, &tensors, &[]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: weights file bad.safetensors: tensor `features.0.bias` (layer conv1_1) has shape [32] F32, expected [64] F32");
}

#[test]
fn weights_not_safetensors() {
    let sb = setup();
    sb.file("junk.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!");
    let out = run(&sb, &["c.png", "s.png"], &["--weights", "junk.safetensors"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: weights file junk.safetensors is not a valid safetensors file: invalid JSON in header: expected ident at line 1 column 2");
}

#[test]
fn weights_truncated() {
    let sb = setup();
    write_safetensors(&sb.path("full.safetensors"), &conv1_1(), &[]);
    let bytes = std::fs::read(sb.path("full.safetensors")).unwrap();
    sb.file("cut.safetensors", &bytes[..bytes.len() - 100]);
    let out = run(&sb, &["c.png", "s.png"], &["--weights", "cut.safetensors"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: weights file cut.safetensors is not a valid safetensors file: incomplete metadata, file not fully covered");
}

/// A checkpoint of impasto-weights' fixtures (written by torch, tests/data/make_fixtures.py).
fn torch_fixture(name: &str) -> Vec<u8> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/impasto-weights/tests/data");
    std::fs::read(dir.join(name)).unwrap()
}

#[test]
fn cut_zip_checkpoint_says_its_cause_once() {
    let sb = setup();
    let bytes = torch_fixture("vgg_zip.pth");
    sb.file("cut.pth", &bytes[..bytes.len() / 2]);
    let import = sb.run(&["models", "import", "cut.pth"]);
    insta::assert_snapshot!(import.error_line(1), @"impasto: error: PyTorch checkpoint cut.pth: bad zip archive: invalid Zip archive: Could not find EOCD");
    let out = run(&sb, &["c.png", "s.png"], &["--weights", "cut.pth"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: PyTorch checkpoint cut.pth: bad zip archive: invalid Zip archive: Could not find EOCD");
}

#[test]
fn pth_weights_of_another_network_name_their_format() {
    let sb = setup();
    // A .pth under a .safetensors name: the bytes decide.
    sb.file("small.safetensors", &torch_fixture("vgg_zip.pth"));
    let out = run(&sb, &["c.png", "s.png"], &["--weights", "small.safetensors"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: PyTorch checkpoint (zip format) small.safetensors: the state dict has 3 convolutions (features.N.weight for N in [0, 2, 5]); vgg16 has 13");
    sb.file("legacy.pth", &torch_fixture("vgg_legacy.pth"));
    let out = run(&sb, &["c.png", "s.png"], &["--weights", "legacy.pth", "--model", "vgg19"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: PyTorch checkpoint (legacy format) legacy.pth: the state dict has 3 convolutions (features.N.weight for N in [0, 2, 5]); vgg19 has 16");
}

#[test]
fn pth_weights_with_a_foreign_global_are_refused() {
    let sb = setup();
    sb.file("evil.pth", &torch_fixture("malicious_zip.pth"));
    let out = run(&sb, &["c.png", "s.png"], &["--weights", "evil.pth"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: refusing to load `os.system` from PyTorch checkpoint evil.pth: only state-dict globals are allowed (collections.OrderedDict, torch._utils._rebuild_tensor*, torch._utils._rebuild_parameter, torch.*Storage)");
    let pack = sb.run(&["models", "pack", "--weights", "evil.pth", "-o", "q8.safetensors"]);
    insta::assert_snapshot!(pack.error_line(1), @"impasto: error: cannot pack evil.pth: refusing to load `os.system` from PyTorch checkpoint evil.pth: only state-dict globals are allowed (collections.OrderedDict, torch._utils._rebuild_tensor*, torch._utils._rebuild_parameter, torch.*Storage)");
}

// ---- layers -------------------------------------------------------------------------------------

#[test]
fn unknown_content_layer() {
    let sb = setup();
    let out = run(&sb, &["c.png", "s.png"], &["--content-layers", "relu4_2,relu9_1"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: unknown layer `relu9_1` for vgg16 (known: conv1_1, relu1_1, conv1_2, relu1_2, pool1, conv2_1, relu2_1, conv2_2, relu2_2, pool2, conv3_1, relu3_1, conv3_2, relu3_2, conv3_3, relu3_3, pool3, conv4_1, relu4_1, conv4_2, relu4_2, conv4_3, relu4_3, pool4, conv5_1, relu5_1, conv5_2, relu5_2, conv5_3, relu5_3, pool5)");
}

#[test]
fn unknown_style_layer() {
    let sb = setup();
    let out = run(&sb, &["c.png", "s.png"], &["--style-layers", "relu1_1,conv_1"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: unknown layer `conv_1` for vgg16 (known: conv1_1, relu1_1, conv1_2, relu1_2, pool1, conv2_1, relu2_1, conv2_2, relu2_2, pool2, conv3_1, relu3_1, conv3_2, relu3_2, conv3_3, relu3_3, pool3, conv4_1, relu4_1, conv4_2, relu4_2, conv4_3, relu4_3, pool4, conv5_1, relu5_1, conv5_2, relu5_2, conv5_3, relu5_3, pool5)");
}

#[test]
fn vgg19_layer_on_vgg16() {
    let sb = setup();
    let out = run(&sb, &["c.png", "s.png"], &["--style-layers", "relu5_4"]);
    assert!(
        out.error_line(1).starts_with("impasto: error: unknown layer `relu5_4` for vgg16 (known: conv1_1,")
    );
}

// ---- sizes --------------------------------------------------------------------------------------

#[test]
fn size_zero() {
    let out = run(&setup(), &["c.png", "s.png"], &["--size", "0"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid size: 0 (must be between 1 and 16384 pixels)");
}

#[test]
fn size_negative() {
    let out = run(&setup(), &["c.png", "s.png"], &["--size", "-5"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid size: -5 (must be between 1 and 16384 pixels)");
}

#[test]
fn size_absurd() {
    let out = run(&setup(), &["c.png", "s.png"], &["--size", "100000"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid size: 100000 (must be between 1 and 16384 pixels)");
    let out = run(&setup(), &["c.png", "s.png"], &["--size", "99999999999999"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid size: 99999999999999 (must be between 1 and 16384 pixels)");
}

#[test]
fn size_too_small_for_vgg() {
    let out = run(&setup(), &["c.png", "s.png"], &["--size", "8"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid size: 8 (VGG needs at least 16 pixels on the longest side)");
}

// ---- output -------------------------------------------------------------------------------------

#[test]
fn output_folder_missing() {
    let sb = setup();
    let out = run(&sb, &["c.png", "s.png"], &["-o", "no/such/folder/out.png"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: cannot write image no/such/folder/out.png: folder no/such/folder does not exist");
}

#[test]
fn output_parent_is_a_file() {
    let sb = setup();
    let out = run(&sb, &["c.png", "s.png"], &["-o", "c.png/out.png"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: cannot write image c.png/out.png: folder c.png does not exist");
}

#[cfg(target_os = "linux")]
#[test]
fn output_folder_not_writable() {
    // Tests may run as root, for whom permission bits do not stop a write; /proc refuses everyone.
    let out = run(&setup(), &["c.png", "s.png"], &["-o", "/proc/impasto-test-out.png"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: cannot write image /proc/impasto-test-out.png: folder /proc is not writable (No such file or directory (os error 2))");
}

#[test]
fn output_is_a_folder() {
    let sb = setup();
    std::fs::create_dir(sb.path("result.png")).unwrap();
    let out = run(&sb, &["c.png", "s.png"], &["-o", "result.png"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: cannot write image result.png: it is a directory");
}

#[test]
fn output_extension_unsupported() {
    let out = run(&setup(), &["c.png", "s.png"], &["-o", "out.gif"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: cannot write image out.gif: unsupported output extension `.gif` (use one of: png, jpg, jpeg, webp, tif, tiff, bmp)");
    let out = run(&setup(), &["c.png", "s.png"], &["-o", "out"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: cannot write image out: no file extension (use one of: png, jpg, jpeg, webp, tif, tiff, bmp)");
}

// ---- counts and values --------------------------------------------------------------------------

#[test]
fn style_blend_count_mismatch() {
    let out = run(&setup(), &["c.png", "s.png"], &["--style-blend", "0.5,0.5"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid style blend weights: 2 weights for 1 style images");
    let out = run(&setup(), &["c.png", "s.png", "s.png"], &["--style-blend", "1,2,3"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid style blend weights: 3 weights for 2 style images");
}

#[test]
fn style_layer_weights_count_mismatch() {
    let out = run(&setup(), &["c.png", "s.png"], &["--style-layer-weights", "1,2"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid style layer weights: 2 weights for 1 style layers");
}

#[test]
fn negative_and_bad_values() {
    let out = run(&setup(), &["c.png", "s.png"], &["--style-weight", "-1"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid style weight: -1 (must be a finite number ≥ 0)");
    let out = run(&setup(), &["c.png", "s.png"], &["--style-scale", "0"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid style scale: 0 (must be in (0, 8])");
    let out = run(&setup(), &["c.png", "s.png"], &["--optimizer", "adam", "--learning-rate", "0"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid learning rate: 0 (must be > 0)");
    let out = run(&setup(), &["c.png", "s.png"], &["--lbfgs-history", "0"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid L-BFGS history: 0 (must be 1..=10000)");
}

#[test]
fn multi_scale_and_ema_values() {
    let out = run(&setup(), &["c.png", "s.png"], &["--min-size", "0"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid min size: 0 (must be ≥ 1)");
    let out = run(&setup(), &["c.png", "s.png"], &["--scale-ratio", "1"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid scale ratio: 1 (must be in (1, 16])");
    let out = run(&setup(), &["c.png", "s.png"], &["--ema-decay", "1", "--optimizer", "adam"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid EMA decay: 1 (must be in [0, 1))");
}

#[test]
fn time_limit_malformed() {
    let out = run(&setup(), &["c.png", "s.png"], &["--time-limit", "5x"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid --time-limit `5x`: unknown unit `x` (use h, m, s or ms); expected a duration like 90s, 5m, 1h30m or plain seconds");
    let out = run(&setup(), &["c.png", "s.png"], &["--time-limit", "10m1h"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid --time-limit `10m1h`: units must go from larger to smaller, each once; expected a duration like 90s, 5m, 1h30m or plain seconds");
}

#[test]
fn depth_16_needs_png_or_tiff() {
    let out = run(&setup(), &["c.png", "s.png"], &["-o", "out.jpg", "--depth", "16"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: cannot write image out.jpg: 16-bit output needs a .png or .tif file (.jpg is 8-bit only)");
    let out = run(&setup(), &["c.png", "s.png"], &["-o", "out.webp", "--depth", "16"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: cannot write image out.webp: 16-bit output needs a .png or .tif file (.webp is 8-bit only)");
}

// ---- masks --------------------------------------------------------------------------------------

#[test]
fn style_mask_count_mismatch() {
    let sb = setup();
    sb.png("m.png", 8, 8);
    let out = run(&sb, &["c.png", "s.png", "s.png"], &["--style-mask", "m.png"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid --style-mask: 1 masks for 2 style images (give one per style image, in order)");
}

#[test]
fn mask_files_missing_or_corrupt() {
    let sb = setup();
    let out = run(&sb, &["c.png", "s.png"], &["--mask", "nomask.png"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: --mask image: cannot decode image nomask.png: no such file");
    sb.file("corrupt.png", CORRUPT_PNG);
    let out = run(&sb, &["c.png", "s.png"], &["--style-mask", "corrupt.png"]);
    assert!(
        out.error_line(1)
            .starts_with("impasto: error: --style-mask image: cannot decode image corrupt.png: ")
    );
}

// ---- checkpoints --------------------------------------------------------------------------------

#[test]
fn checkpoint_folder_missing_or_a_folder() {
    let sb = setup();
    let out = run(&sb, &["c.png", "s.png"], &["--checkpoint", "nodir/run.ckpt"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid --checkpoint `nodir/run.ckpt`: folder nodir does not exist");
    std::fs::create_dir(sb.path("ckdir")).unwrap();
    let out = run(&sb, &["c.png", "s.png"], &["--checkpoint", "ckdir"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid --checkpoint `ckdir`: it is a folder");
}

// ---- non-finite loss ----------------------------------------------------------------------------

#[test]
fn non_finite_loss_writes_the_last_good_image() {
    // conv1_1 weights 100 times too large make the weighted style loss overflow at once.
    let sb = setup();
    let strong: Vec<Tensor> =
        conv1_1().into_iter().map(|(k, s, v)| (k, s, v.iter().map(|x| x * 100.0).collect())).collect();
    let out = run_with_weights(&sb, &strong, &["--style-weight", "1e38"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: the loss became non-finite at iteration 0 (gradient); try lower weights or a smaller learning rate; wrote the last good image to out.png");
    let img = image::open(sb.path("out.png")).expect("the last good image was written");
    assert_eq!((img.width(), img.height()), (32, 24));
}

#[test]
fn non_finite_loss_with_the_real_or_the_built_in_weights() {
    let weights = run_weights();
    let sb = setup();
    let w = weights.as_str();
    let out = sb.run(&[
        "c.png",
        "s.png",
        "-o",
        "out.png",
        "--weights",
        w,
        "--size",
        "32",
        "--style-weight",
        "1e38",
    ]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: the loss became non-finite at iteration 0 (gradient); try lower weights or a smaller learning rate; wrote the last good image to out.png");
    assert!(sb.path("out.png").is_file());
}

// ---- what is checked first ----------------------------------------------------------------------

#[test]
fn config_is_checked_before_files() {
    // Missing images, missing weights and a bad output folder: the bad count is reported first.
    let sb = Sandbox::new();
    let out = sb.run(&["nope.png", "nope2.png", "-o", "nodir/out.png", "--style-blend", "1,2"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: invalid style blend weights: 2 weights for 1 style images");
}

#[test]
fn output_is_checked_before_images_and_weights() {
    let sb = Sandbox::new();
    let out = sb.run(&["nope.png", "nope2.png", "-o", "nodir/out.png"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: cannot write image nodir/out.png: folder nodir does not exist");
}

#[test]
fn output_options_are_checked_before_images_and_weights() {
    let sb = Sandbox::new();
    let out = sb.run(&["nope.png", "nope2.png", "-o", "out.jpg", "--depth", "16"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: cannot write image out.jpg: 16-bit output needs a .png or .tif file (.jpg is 8-bit only)");
}

#[test]
fn weights_are_located_before_images_are_read() {
    let sb = Sandbox::new();
    let out = sb.run(&["nope.png", "nope2.png", "-o", "out.png", "--weights", "none.safetensors"]);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: no vgg16 weights found (looked in: --weights none.safetensors (no such file)); pass --weights FILE or set IMPASTO_WEIGHTS to a safetensors file with torchvision key names (features.N.weight|bias)");
}

// ---- files the run would overwrite --------------------------------------------------------------

/// An `--output` or `--checkpoint` that is one of the run's inputs, or the two the same file: one line
/// before any work, and the input untouched. `--checkpoint` and `--resume` may be one file.
#[test]
fn an_output_or_checkpoint_that_is_an_input_is_refused() {
    let sb = setup();
    sb.png("m.png", 40, 30);
    let before = std::fs::read(sb.path("c.png")).unwrap();
    for (flags, expect) in [
        (
            &["-o", "c.png"][..],
            "invalid --output `c.png`: it is the content image, which the run would overwrite",
        ),
        (
            &["-o", "./s.png"][..],
            "invalid --output `./s.png`: it is a style image, which the run would overwrite",
        ),
        (&["-o", "m.png", "--mask", "m.png"][..], "invalid --output `m.png`: it is the --mask image"),
        (
            &["-o", "w.safetensors.png", "--weights", "w.safetensors.png"][..],
            "invalid --output `w.safetensors.png`: it is the --weights file",
        ),
        (&["--checkpoint", "c.png"][..], "invalid --checkpoint `c.png`: it is the content image"),
        (
            &["-o", "same.png", "--checkpoint", "same.png"][..],
            "invalid --checkpoint `same.png`: it is the --output image; give each its own file",
        ),
    ] {
        if flags.contains(&"w.safetensors.png") {
            std::fs::copy(sb.path("w.safetensors"), sb.path("w.safetensors.png")).unwrap();
        }
        let out = run(&sb, &["c.png", "s.png"], flags);
        assert_eq!(out.code, Some(1), "{flags:?}: {}", out.stderr);
        let line = out.error_line(1);
        assert!(line.starts_with(&format!("impasto: error: {expect}")), "{flags:?}: {line}");
        assert!(!sb.path("same.png").exists());
    }
    assert_eq!(std::fs::read(sb.path("c.png")).unwrap(), before);
}

/// Flags that would do nothing in this run, and layers or counts that mean nothing.
#[test]
fn flags_that_would_do_nothing_are_refused() {
    let sb = setup();
    for (flags, expect) in [
        (&["--learning-rate", "0.1"][..], "--learning-rate applies to Adam only (--optimizer adam)"),
        (&["--ema-decay", "0.5"][..], "--ema-decay applies to Adam only (--optimizer adam)"),
        (&["--optimizer", "adam", "--lbfgs-history", "5"][..], "--lbfgs-history applies to L-BFGS only"),
        (&["--quality", "50"][..], "--quality applies to JPEG output only (-o NAME.jpg)"),
        (
            &["--style-layers", "relu1_1,relu1_1"][..],
            "invalid style layers: relu1_1 is given twice (give a layer once, with a weight)",
        ),
        (
            &["--scale-iterations", "0"][..],
            "invalid scale iterations: 0 (must be ≥ 1; the first scale has --iterations)",
        ),
    ] {
        let out = run(&sb, &["c.png", "s.png"], flags);
        assert_eq!(out.code, Some(1), "{flags:?}: {}", out.stderr);
        assert_eq!(out.error_line(1), format!("impasto: error: {expect}"), "{flags:?}");
    }
    // The same values where they apply run.
    run(&sb, &["c.png", "s.png"], &["--optimizer", "adam", "--learning-rate", "0.1", "--ema-decay", "0.5"])
        .assert_ok();
    run(&sb, &["c.png", "s.png"], &["-o", "out.JPG", "--quality", "50"]).assert_ok();
}
