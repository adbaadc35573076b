//! `impasto models` (list, path, import, download) and the first run's download, all offline: downloads
//! come from a loopback HTTP server serving hand-written checkpoints (`pth.rs`).

use std::path::{Path, PathBuf};

use crate::common::{Run, Sandbox, TINY_LAYERS, Tensor, write_safetensors};
use crate::http_server::{Reply, Server};
use crate::pth::{VGG16_CONVS, legacy_pth, safetensors_keys, tiny_vgg16};

/// The tiny VGG-16 checkpoint's bytes and its torch-hub style file name (`vgg16-<sha256 prefix>.pth`).
fn tiny_checkpoint(sb: &Sandbox) -> (Vec<u8>, String) {
    let bytes = legacy_pth(&tiny_vgg16(""));
    let tmp = sb.path("hash.tmp");
    std::fs::write(&tmp, &bytes).unwrap();
    let hash = impasto_weights::sha256_file(&tmp).unwrap();
    std::fs::remove_file(tmp).unwrap();
    (bytes, format!("vgg16-{}.pth", &hash[..8]))
}

/// A committed tiny checkpoint of impasto-weights' tests (3 convolutions, not a VGG).
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/impasto-weights/tests/data").join(name)
}

/// Filters that hide the sandbox path and the server's port.
fn filters(sb: &Sandbox) -> Vec<(String, &'static str)> {
    vec![(sb.root_regex(), "[SANDBOX]"), (r"127\.0\.0\.1:\d+".to_string(), "[SERVER]")]
}

/// stderr without the download's percentage lines (how many there are depends on the reads).
fn stderr_lines(out: &Run) -> String {
    out.stderr.lines().filter(|l| !l.contains('%')).collect::<Vec<_>>().join("\n")
}

fn run_cmd(cmd: &mut std::process::Command, args: &[&str]) -> Run {
    cmd.args(args).output().expect("run impasto").into()
}

/// The files under the cache's downloads folder (the lock files aside).
fn downloads(sb: &Sandbox) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(sb.cache_dir().join("downloads")) else { return Vec::new() };
    let mut names: Vec<String> = dir.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.retain(|n| !n.ends_with(".lock"));
    names.sort();
    names
}

#[test]
fn help() {
    let out = Sandbox::new().run(&["models", "--help"]);
    out.assert_ok();
    insta::assert_snapshot!(out.stdout, @"
    List, download, locate or import the network weights (the user cache folder)

    Usage: impasto models <COMMAND>

    Commands:
      list      Show the known models, whether each is cached (input convention, size), and the cache
                folder
      download  Download a model into the cache and convert it (nothing to do if it is cached already)
      path      Print the cache folder, or the cached weights file of NAME (exit status 1 if it is not
                cached)
      import    Convert a VGG checkpoint you have (.pth, or .safetensors with torchvision key names)
                into the cache
      pack      Make the compact VGG-16 built into impasto from full VGG-16 weights: conv1_1..conv4_2,
                quantised to 8 bits per output channel

    Options:
      -h, --help  Print help

    The cache folder is ~/.cache/impasto on Linux ($XDG_CACHE_HOME/impasto; the platform's user cache
    folder elsewhere), or $IMPASTO_CACHE_DIR. A run without --weights and $IMPASTO_WEIGHTS uses
    <model>-conv-imagenet.safetensors there, and downloads it on first use unless offline. Offline (or
    without network), a vgg16 run uses the compact VGG-16 built into impasto (`builtin`: 8-bit, layers
    up to relu4_2), made by `impasto models pack`.

    Environment:
      IMPASTO_CACHE_DIR  use this folder as the cache
      IMPASTO_MODEL_URL  download from there instead: a mirror folder (ending in / or with {file}), or
                         a file NAME-HEX.pth, whose SHA-256 must then start with HEX
      IMPASTO_OFFLINE    1: never download

    Examples:
      impasto models list
      impasto models download vgg19
      impasto models import vgg16-00b39a1b.pth
      impasto models import vgg16-397923af.pth --preprocess torch
      impasto models path vgg16
      impasto models pack --weights vgg16-conv-imagenet.safetensors -o vgg16-q8.safetensors
    ");
}

#[test]
fn import_help() {
    let out = Sandbox::new().run(&["models", "import", "--help"]);
    out.assert_ok();
    insta::assert_snapshot!(out.stdout, @"
    Convert a VGG checkpoint you have (.pth, or .safetensors with torchvision key names) into the cache

    Usage: impasto models import [OPTIONS] <FILE>

    Arguments:
      <FILE>  The checkpoint: a PyTorch .pth (torch.save of a state dict) or a .safetensors file, with
              torchvision key names (features.N.weight|bias)

    Options:
          --model <vgg16|vgg19>       The network [default: from the number of convolutions: 13 = vgg16,
                                      16 = vgg19]
          --preprocess <caffe|torch>  Input convention of the weights: caffe (BGR 0..255 minus the mean)
                                      or torch (RGB 0..1, mean/std) [default: what a .safetensors file
                                      declares, else caffe for the known downloads' checkpoints and
                                      torch for torchvision's; required for any other file]
      -q, --quiet                     Print nothing but errors
      -h, --help                      Print help
    ");
}

#[test]
fn list_and_path_of_an_empty_cache() {
    let sb = Sandbox::new();
    let out = sb.run(&["models", "list"]);
    out.assert_ok();
    let f = filters(&sb);
    insta::with_settings!({ filters => f.iter().map(|(a, b)| (a.as_str(), *b)) }, {
        insta::assert_snapshot!(out.stdout, @"
        cache folder: [SANDBOX]/cache/impasto
        model    cached  input       size  file
        vgg16    no      -              -  (get it with: impasto models download vgg16)
        vgg19    no      -              -  (get it with: impasto models download vgg19)
        builtin  -       caffe    5.0 MiB  (in impasto: VGG-16 up to relu4_2, 8-bit; the offline fallback, or --weights builtin)
        note: IMPASTO_OFFLINE is set: nothing is downloaded
        note: IMPASTO_MODEL_URL=http://[SERVER]/{file} is set: downloads come from there
        ");
        let out = sb.run(&["models", "path"]);
        out.assert_ok();
        insta::assert_snapshot!(out.stdout, @"[SANDBOX]/cache/impasto");
        insta::assert_snapshot!(sb.run(&["models", "path", "vgg19"]).error_line(1), @"impasto: error: vgg19 is not cached (no [SANDBOX]/cache/impasto/vgg19-conv-imagenet.safetensors); get it with `impasto models download vgg19`, or `impasto models import FILE`");
    });
    let out: Run =
        sb.cmd().args(["models", "path"]).env("IMPASTO_CACHE_DIR", "elsewhere").output().unwrap().into();
    assert_eq!(out.stdout, "elsewhere\n");
}

#[test]
fn import_a_pth_then_run_from_the_cache() {
    let sb = Sandbox::new();
    std::fs::write(sb.path("mine.pth"), legacy_pth(&tiny_vgg16("state_dict."))).unwrap();
    let f = filters(&sb);
    insta::with_settings!({ filters => f.iter().map(|(a, b)| (a.as_str(), *b)) }, {
        insta::assert_snapshot!(sb.run(&["models", "import", "mine.pth"]).error_line(1), @"impasto: error: cannot import mine.pth: its input convention is unknown; pass --preprocess caffe (BGR 0..255 minus the mean: the original Caffe VGG weights, e.g. vgg16-00b39a1b.pth) or --preprocess torch (RGB 0..1, mean/std: torchvision's, e.g. vgg16-397923af.pth)");
        let out = sb.run(&["models", "import", "mine.pth", "--preprocess", "caffe"]);
        out.assert_ok();
        insta::assert_snapshot!(out.stderr, @"imported mine.pth as vgg16 (13 convolutions, caffe input: --preprocess): [SANDBOX]/cache/impasto/vgg16-conv-imagenet.safetensors (15.3 KiB)");
        let out = sb.run(&["models", "list"]);
        out.assert_ok();
        insta::assert_snapshot!(out.stdout, @"
        cache folder: [SANDBOX]/cache/impasto
        model    cached  input       size  file
        vgg16    yes     caffe   15.3 KiB  [SANDBOX]/cache/impasto/vgg16-conv-imagenet.safetensors
        vgg19    no      -              -  (get it with: impasto models download vgg19)
        builtin  -       caffe    5.0 MiB  (in impasto: VGG-16 up to relu4_2, 8-bit; the offline fallback, or --weights builtin)
        note: IMPASTO_OFFLINE is set: nothing is downloaded
        note: IMPASTO_MODEL_URL=http://[SERVER]/{file} is set: downloads come from there
        ");
    });
    let cached = sb.cache_dir().join("vgg16-conv-imagenet.safetensors");
    let (keys, meta) = safetensors_keys(&cached);
    let expected: Vec<String> = VGG16_CONVS
        .iter()
        .flat_map(|i| [format!("features.{i}.bias"), format!("features.{i}.weight")])
        .collect();
    assert_eq!(keys, expected);
    assert_eq!(meta["architecture"], "vgg16");
    assert_eq!(meta["preprocessing"], "caffe");
    assert_eq!(sb.run(&["models", "path", "vgg16"]).stdout, format!("{}\n", cached.display()));

    // A run without --weights now finds the cached file (and downloads nothing: the sandbox is offline).
    sb.png("c.png", 40, 30);
    sb.png("s.png", 24, 24);
    let mut args = vec!["c.png", "s.png", "-o", "out.png", "--size", "32", "-n", "2", "-q"];
    args.extend(TINY_LAYERS);
    let out = sb.run(&args);
    out.assert_ok();
    assert!(sb.path("out.png").is_file());
}

#[test]
fn import_a_safetensors_keeps_its_declaration() {
    let sb = Sandbox::new();
    let tensors: Vec<Tensor> = tiny_vgg16("module.")
        .into_iter()
        .map(|(k, shape, values)| (&*Box::leak(k.into_boxed_str()), shape, values))
        .collect();
    write_safetensors(&sb.path("tv.safetensors"), &tensors, &[("preprocessing", "torch")]);
    let out = sb.run(&["models", "import", "tv.safetensors", "-q"]);
    out.assert_ok();
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    let (keys, meta) = safetensors_keys(&sb.cache_dir().join("vgg16-conv-imagenet.safetensors"));
    assert_eq!(keys.len(), 26);
    assert!(keys.iter().all(|k| k.starts_with("features.")), "{keys:?}");
    assert_eq!(meta["preprocessing"], "torch");
    let list = sb.run(&["models", "list"]).stdout;
    assert!(list.lines().any(|l| l.starts_with("vgg16    yes     torch")), "{list}");
}

#[test]
fn import_refuses_what_is_not_the_model() {
    let sb = Sandbox::new();
    let fx = fixture("vgg_zip.pth");
    let fx = fx.to_str().unwrap();
    let f = [(regex_escape(env!("CARGO_MANIFEST_DIR")), "[REPO]")];
    insta::with_settings!({ filters => f.iter().map(|(a, b)| (a.as_str(), *b)) }, {
        insta::assert_snapshot!(sb.run(&["models", "import", fx]).error_line(1), @"impasto: error: cannot import [REPO]/crates/impasto-weights/tests/data/vgg_zip.pth: it has 3 convolutions (features.N.weight for N in [0, 2, 5]), neither vgg16 (13) nor vgg19 (16); is it a VGG checkpoint with torchvision key names?");
        insta::assert_snapshot!(sb.run(&["models", "import", fx, "--model", "vgg19", "--preprocess", "torch"]).error_line(1), @"impasto: error: cannot import [REPO]/crates/impasto-weights/tests/data/vgg_zip.pth as vgg19: it has 3 convolutions (features.N.weight for N in [0, 2, 5]); vgg19 has 16");
        insta::assert_snapshot!(sb.run(&["models", "import", &fixture("malicious_zip.pth").to_string_lossy()]).error_line(1), @"impasto: error: refusing to load `os.system` from PyTorch checkpoint [REPO]/crates/impasto-weights/tests/data/malicious_zip.pth: only state-dict globals are allowed (collections.OrderedDict, torch._utils._rebuild_tensor*, torch._utils._rebuild_parameter, torch.*Storage)");
    });
    insta::assert_snapshot!(sb.run(&["models", "import", "nope.pth"]).error_line(1), @"impasto: error: cannot import nope.pth: no such file");
    assert!(!sb.cache_dir().exists());
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| if c.is_ascii_alphanumeric() || c == '/' { vec![c] } else { vec!['\\', c] })
        .collect()
}

#[test]
fn download_then_nothing_to_do() {
    let sb = Sandbox::new();
    let (body, name) = tiny_checkpoint(&sb);
    let server = Server::start(body, vec![Reply::Full]);
    let url = server.url(&name);
    let out = run_cmd(&mut sb.online(&url), &["models", "download", "vgg16"]);
    out.assert_ok();
    assert!(out.stdout.is_empty());
    let f = filters(&sb);
    let name_filter = (regex_escape(&name), "vgg16-[HASH].pth");
    insta::with_settings!({ filters => f.iter().chain([&name_filter]).map(|(a, b)| (a.as_str(), *b)) }, {
        insta::assert_snapshot!(stderr_lines(&out), @"
        downloading http://[SERVER]/vgg16-[HASH].pth to [SANDBOX]/cache/impasto/downloads/vgg16-[HASH].pth
        converting to [SANDBOX]/cache/impasto/vgg16-conv-imagenet.safetensors
        cached the vgg16 weights: [SANDBOX]/cache/impasto/vgg16-conv-imagenet.safetensors (15.3 KiB)
        ");
        let again = run_cmd(&mut sb.online(&url), &["models", "download", "vgg16"]);
        again.assert_ok();
        insta::assert_snapshot!(again.stderr, @"vgg16 is already cached: [SANDBOX]/cache/impasto/vgg16-conv-imagenet.safetensors");
    });
    assert_eq!(server.seen(), [format!("/{name}")]);
    assert!(sb.cache_dir().join("vgg16-conv-imagenet.safetensors").is_file());
    assert_eq!(downloads(&sb), Vec::<String>::new(), "the checkpoint is deleted once converted");
}

#[test]
fn download_with_a_wrong_checksum_caches_nothing() {
    let sb = Sandbox::new();
    // A mirror folder: the file is asked for under the table's name, so its checksum is the table's.
    let server = Server::start(std::fs::read(fixture("vgg_zip.pth")).unwrap(), vec![Reply::Full]);
    let out = run_cmd(&mut sb.online(&format!("{}/", server.base)), &["models", "download", "vgg16", "-q"]);
    let f = filters(&sb);
    insta::with_settings!({ filters => f.iter().map(|(a, b)| (a.as_str(), *b)) }, {
        insta::assert_snapshot!(out.error_line(1), @"impasto: error: downloading http://[SERVER]/vgg16-00b39a1b.pth: SHA-256 88133c7e90df1317aafa6d3d441534f5fe9fbf1b7258e385776daf79a13883fd does not start with the expected 00b39a1b; the download was deleted and nothing was cached at [SANDBOX]/cache/impasto/downloads/vgg16-00b39a1b.pth");
    });
    assert_eq!(server.seen(), ["/vgg16-00b39a1b.pth"]);
    assert!(!sb.cache_dir().join("vgg16-conv-imagenet.safetensors").exists());
    assert_eq!(downloads(&sb), Vec::<String>::new());
}

#[test]
fn download_not_found() {
    let sb = Sandbox::new();
    let server = Server::start(Vec::new(), vec![Reply::Status(404)]);
    let out = run_cmd(&mut sb.online(&server.url("vgg19-d01eb7cb.pth")), &["models", "download", "vgg19"]);
    let f = filters(&sb);
    insta::with_settings!({ filters => f.iter().map(|(a, b)| (a.as_str(), *b)) }, {
        // Plain log lines first (stderr is not a terminal), then the error.
        let last = out.stderr.lines().last().unwrap_or_default().to_string();
        assert_eq!(out.code, Some(1));
        insta::assert_snapshot!(last, @"impasto: error: downloading http://[SERVER]/vgg19-d01eb7cb.pth: the server answered HTTP 404");
    });
}

#[test]
fn download_offline_is_refused() {
    let sb = Sandbox::new();
    insta::assert_snapshot!(sb.run(&["models", "download", "vgg16"]).error_line(1), @"impasto: error: IMPASTO_OFFLINE is set: not downloading vgg16 (unset it, or get the weights with `impasto models import FILE`)");
}

/// A sandbox with a content and a style image, and the arguments of a tiny run without `--weights`.
fn run_setup() -> (Sandbox, Vec<&'static str>) {
    let sb = Sandbox::new();
    sb.png("c.png", 40, 30);
    sb.png("s.png", 24, 24);
    let mut args = vec!["c.png", "s.png", "-o", "out.png", "--size", "32", "-n", "2"];
    args.extend(TINY_LAYERS);
    (sb, args)
}

#[test]
fn first_run_downloads_converts_and_runs() {
    let (sb, args) = run_setup();
    let (body, name) = tiny_checkpoint(&sb);
    let server = Server::start(body, vec![Reply::Full]);
    let url = server.url(&name);
    let out = run_cmd(&mut sb.online(&url), &args);
    out.assert_ok();
    assert!(sb.path("out.png").is_file());
    let f = filters(&sb);
    let name_filter = (regex_escape(&name), "vgg16-[HASH].pth");
    // The download's lines, up to the run's own.
    let head: String =
        stderr_lines(&out).lines().take_while(|l| !l.starts_with("start ")).collect::<Vec<_>>().join("\n");
    insta::with_settings!({ filters => f.iter().chain([&name_filter]).map(|(a, b)| (a.as_str(), *b)) }, {
        insta::assert_snapshot!(head, @"
        no vgg16 weights in [SANDBOX]/cache/impasto yet: downloading them once
        downloading http://[SERVER]/vgg16-[HASH].pth to [SANDBOX]/cache/impasto/downloads/vgg16-[HASH].pth
        converting to [SANDBOX]/cache/impasto/vgg16-conv-imagenet.safetensors
        cached the vgg16 weights: [SANDBOX]/cache/impasto/vgg16-conv-imagenet.safetensors (15.3 KiB)
        ");
    });
    assert_eq!(downloads(&sb), Vec::<String>::new());
    // The second run finds the cached weights: no request (the server would not answer one).
    let out = run_cmd(&mut sb.online(&url), &[&args[..], &["-q"]].concat());
    out.assert_ok();
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn first_run_checks_the_images_before_downloading() {
    let (sb, mut args) = run_setup();
    args[1] = "typo.png";
    let server = Server::start(Vec::new(), vec![Reply::Status(500)]);
    let out = run_cmd(&mut sb.online(&server.url("vgg16-00b39a1b.pth")), &args);
    insta::assert_snapshot!(out.error_line(1), @"impasto: error: style image: cannot decode image typo.png: no such file");
    assert!(server.seen().is_empty());
    // With the typo fixed, the download is tried (and fails here).
    args[1] = "s.png";
    let out = run_cmd(&mut sb.online(&server.url("vgg16-00b39a1b.pth")), &[&args[..], &["-q"]].concat());
    let port = (r"127\.0\.0\.1:\d+", "[SERVER]");
    insta::with_settings!({ filters => vec![port] }, {
        insta::assert_snapshot!(out.error_line(1), @"impasto: error: cannot get the vgg16 weights (retry, or run `impasto models import FILE` with a vgg16 checkpoint you have, or pass --weights FILE): downloading http://[SERVER]/vgg16-00b39a1b.pth: the server answered HTTP 500");
    });
    assert_eq!(server.seen().len(), 1);
    assert!(!sb.path("out.png").exists());
}

#[test]
fn first_run_offline_says_what_is_missing() {
    // VGG-16 runs fall back to the built-in model (`builtin.rs`); VGG-19 has none.
    let (sb, mut args) = run_setup();
    args.extend(["--model", "vgg19"]);
    let f = filters(&sb);
    insta::with_settings!({ filters => f.iter().map(|(a, b)| (a.as_str(), *b)) }, {
        insta::assert_snapshot!(sb.run(&args).error_line(1), @"impasto: error: no vgg19 weights found (looked in: --weights (not given), IMPASTO_WEIGHTS (not set), [SANDBOX]/cache/impasto/vgg19-conv-imagenet.safetensors) and offline mode (IMPASTO_OFFLINE is set) forbids downloading them (the built-in compact model is a VGG-16); get them with `impasto models download vgg19` while online, or `impasto models import FILE` from a vgg19 checkpoint you have, or pass --weights FILE");
        let out = run_cmd(&mut sb.online("http://127.0.0.1:9/{file}"), &[&args[..], &["--offline"]].concat());
        insta::assert_snapshot!(out.error_line(1), @"impasto: error: no vgg19 weights found (looked in: --weights (not given), IMPASTO_WEIGHTS (not set), [SANDBOX]/cache/impasto/vgg19-conv-imagenet.safetensors) and offline mode (--offline) forbids downloading them (the built-in compact model is a VGG-16); get them with `impasto models download vgg19` while online, or `impasto models import FILE` from a vgg19 checkpoint you have, or pass --weights FILE");
    });
}
