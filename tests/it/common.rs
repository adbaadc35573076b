//! Shared helpers: a sandboxed command for the built binary (own temp folder as the working directory, own
//! cache folder, no `IMPASTO_WEIGHTS`), small test images, hand-written safetensors files and the real weights.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The real VGG-16 weights, found like the CLI finds them (`IMPASTO_WEIGHTS`), without a note.
fn find_real_weights() -> Option<PathBuf> {
    let p = PathBuf::from(std::env::var_os("IMPASTO_WEIGHTS").filter(|v| !v.is_empty())?);
    // CI gives the path relative to the repository root; cargo runs tests from the package root too.
    let p = if p.is_relative() { Path::new(env!("CARGO_MANIFEST_DIR")).join(p) } else { p };
    p.is_file().then_some(p)
}

/// Whether this is CI (`CI=true`), where missing real weights are a failure, never a skip or a fallback.
fn under_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// The real VGG-16 weights, for the tests that need the full file (packing, fixtures). `None` (with a
/// note) when they are not there, except under CI, where their absence is a failure.
#[allow(clippy::print_stderr)] // the note on why a test did nothing
pub fn real_weights() -> Option<PathBuf> {
    if let Some(p) = find_real_weights() {
        return Some(p);
    }
    assert!(!under_ci(), "IMPASTO_WEIGHTS missing under CI");
    eprintln!(
        "note: IMPASTO_WEIGHTS is not set to an existing file; skipping a test that needs the real weights"
    );
    None
}

/// The `--weights` value for end-to-end runs: the real VGG-16 weights when `IMPASTO_WEIGHTS` names them,
/// else (with a note; under CI a failure) `builtin`, the compact VGG-16 built into impasto, so that a
/// fresh clone without `../shared` still runs these tests.
#[allow(clippy::print_stderr)] // the note on which model ran
pub fn run_weights() -> String {
    if let Some(p) = find_real_weights() {
        return p.to_string_lossy().into_owned();
    }
    assert!(!under_ci(), "IMPASTO_WEIGHTS missing under CI");
    eprintln!("note: IMPASTO_WEIGHTS is not set to an existing file; running on the built-in compact model");
    "builtin".to_string()
}

/// A file of the shared test images (`../shared/images/NAME`, next to the repository).
pub fn shared_image(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/images").join(name)
}

/// [`shared_image`] when `../shared` is there, else a `size`×`size` test PNG written into the sandbox
/// (a fresh clone has no `../shared`; under CI its absence is a failure).
pub fn shared_image_or_png(sb: &Sandbox, name: &str, size: u32) -> PathBuf {
    let shared = shared_image(name);
    if shared.is_file() {
        return shared;
    }
    assert!(!under_ci(), "CI=true but {} is missing", shared.display());
    sb.path(&sb.png(&format!("{name}.png"), size, size))
}

/// What a finished command gave.
#[derive(Debug)]
pub struct Run {
    /// The exit status (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts the exit status and that stderr is exactly one `impasto: error:` line; returns that line.
    #[track_caller]
    pub fn error_line(&self, code: i32) -> &str {
        assert_eq!(self.code, Some(code), "exit status; stderr:\n{}", self.stderr);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one line on stderr, got:\n{}", self.stderr);
        assert!(lines[0].starts_with("impasto: error: "), "{}", lines[0]);
        assert!(self.stdout.is_empty(), "stdout: {}", self.stdout);
        lines[0]
    }

    /// Asserts success.
    #[track_caller]
    pub fn assert_ok(&self) {
        assert_eq!(self.code, Some(0), "exit status; stderr:\n{}", self.stderr);
    }
}

/// A temporary folder that is the working directory and the home of one CLI invocation or more.
#[derive(Debug)]
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox { dir: tempfile::tempdir().expect("temp dir") }
    }

    /// The sandbox folder.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the sandbox.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The folder the CLI uses as its user cache (`$XDG_CACHE_HOME/impasto`).
    pub fn cache_dir(&self) -> PathBuf {
        self.path("cache/impasto")
    }

    /// The built binary, run in the sandbox with a clean environment for what it reads. It is offline
    /// (`IMPASTO_OFFLINE=1`), and its download source is a closed loopback port besides, so that no test
    /// can reach the internet; [`Sandbox::online`] lets one download from a loopback server.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_impasto"));
        cmd.current_dir(self.root())
            .env_remove("IMPASTO_WEIGHTS")
            .env_remove("IMPASTO_CACHE_DIR")
            .env_remove("COLUMNS")
            .env("IMPASTO_OFFLINE", "1")
            .env("IMPASTO_MODEL_URL", "http://127.0.0.1:9/{file}")
            .env("HOME", self.path("home"))
            .env("XDG_CACHE_HOME", self.path("cache"));
        cmd
    }

    /// Like [`Sandbox::cmd`], but allowed to download, from `model_url` (a loopback server's URL).
    pub fn online(&self, model_url: &str) -> Command {
        assert!(model_url.starts_with("http://127.0.0.1:"), "tests download from loopback only");
        let mut cmd = self.cmd();
        cmd.env_remove("IMPASTO_OFFLINE").env("IMPASTO_MODEL_URL", model_url);
        cmd
    }

    /// Runs the binary with `args` and waits for it.
    pub fn run(&self, args: &[&str]) -> Run {
        self.cmd().args(args).output().expect("run impasto").into()
    }

    /// A regex matching the sandbox's path, for an insta filter that hides it.
    pub fn root_regex(&self) -> String {
        self.root()
            .to_string_lossy()
            .chars()
            .flat_map(|c| if c.is_ascii_alphanumeric() || c == '/' { vec![c] } else { vec!['\\', c] })
            .collect()
    }

    /// Writes a `w`×`h` PNG with a colour gradient and returns its name (relative to the sandbox).
    pub fn png(&self, name: &str, w: u32, h: u32) -> String {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 255 / w.max(1)) as u8, (y * 255 / h.max(1)) as u8, ((x + y) * 7 % 256) as u8])
        });
        img.save(self.path(name)).expect("write test png");
        name.to_string()
    }

    /// Writes raw bytes and returns the name.
    pub fn file(&self, name: &str, bytes: &[u8]) -> String {
        std::fs::write(self.path(name), bytes).expect("write test file");
        name.to_string()
    }

    /// Writes a tiny weights file with only conv1_1 (enough for runs that use `relu1_1` alone).
    pub fn tiny_weights(&self, name: &str) -> String {
        write_safetensors(&self.path(name), &conv1_1(), &[("input", "BGR 0..255 minus mean")]);
        name.to_string()
    }
}

/// Arguments that make a run use only conv1_1, so the tiny weights suffice and it takes milliseconds.
pub const TINY_LAYERS: [&str; 4] = ["--content-layers", "relu1_1", "--style-layers", "relu1_1"];

/// A tensor for [`write_safetensors`]: key, shape, values.
pub type Tensor = (&'static str, Vec<usize>, Vec<f32>);

/// Deterministic small values in [-0.1, 0.1).
pub fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
        })
        .collect()
}

/// The conv1_1 tensors of VGG (64 filters of 3×3×3 and their biases), torchvision key names.
pub fn conv1_1() -> Vec<Tensor> {
    vec![
        ("features.0.weight", vec![64, 3, 3, 3], pseudo_random(64 * 27, 1)),
        ("features.0.bias", vec![64], pseudo_random(64, 2)),
    ]
}

/// Writes a safetensors file by hand: 8-byte little-endian header length, the JSON header (padded with
/// spaces to a multiple of 8), then the little-endian f32 data of every tensor in order.
pub fn write_safetensors(path: &Path, tensors: &[Tensor], metadata: &[(&str, &str)]) {
    let mut entries = Vec::new();
    let mut data = Vec::new();
    for (key, shape, values) in tensors {
        let start = data.len();
        for v in values {
            data.extend_from_slice(&v.to_le_bytes());
        }
        let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
        entries.push(format!(
            r#""{key}":{{"dtype":"F32","shape":[{}],"data_offsets":[{start},{}]}}"#,
            dims.join(","),
            data.len()
        ));
    }
    if !metadata.is_empty() {
        let meta: Vec<String> = metadata.iter().map(|(k, v)| format!(r#""{k}":"{v}""#)).collect();
        entries.push(format!(r#""__metadata__":{{{}}}"#, meta.join(",")));
    }
    let mut header = format!("{{{}}}", entries.join(","));
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&data);
    std::fs::write(path, bytes).expect("write safetensors");
}

/// The tEXt chunks of a PNG file as (key, value) pairs, read by hand (the `image` crate does not expose them).
pub fn png_text(path: &Path) -> Vec<(String, String)> {
    let bytes = std::fs::read(path).expect("read png");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", path.display());
    let mut out = Vec::new();
    let mut i = 8;
    while i + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
        let (kind, data) = (&bytes[i + 4..i + 8], &bytes[i + 8..i + 8 + len]);
        if kind == b"tEXt"
            && let Some(nul) = data.iter().position(|&b| b == 0)
        {
            let text = |b: &[u8]| b.iter().map(|&c| char::from(c)).collect::<String>();
            out.push((text(&data[..nul]), text(&data[nul + 1..])));
        }
        i += 12 + len;
    }
    out
}

/// The value of one tEXt key of a PNG file.
pub fn png_text_value(path: &Path, key: &str) -> Option<String> {
    png_text(path).into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Writes a `w`×`h` grey PNG of one level (0 = black, 255 = white) and returns its name.
pub fn grey_png(sb: &Sandbox, name: &str, w: u32, h: u32, level: u8) -> String {
    image::GrayImage::from_pixel(w, h, image::Luma([level])).save(sb.path(name)).expect("write grey png");
    name.to_string()
}

/// A sandbox with a 40×20 content image, a 24×24 style image and tiny weights.
pub fn tiny() -> Sandbox {
    let sb = Sandbox::new();
    sb.png("c.png", 40, 20);
    sb.png("s.png", 24, 24);
    sb.tiny_weights("w.safetensors");
    sb
}

/// Runs impasto on the `tiny()` sandbox at 32 px for 3 iterations with the tiny layers, plus `extra`.
pub fn run_tiny(sb: &Sandbox, extra: &[&str]) -> Run {
    let mut args =
        vec!["c.png", "s.png", "-o", "out.png", "--weights", "w.safetensors", "--size", "32", "-n", "3"];
    args.extend(TINY_LAYERS);
    args.extend(extra);
    sb.run(&args)
}

/// A small tmpfs mounted at `path` (a new folder), unmounted when dropped: a disk that fills up.
/// `None` (with a note) where this machine does not allow mounting (not root); under CI a failure.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    #[allow(clippy::print_stderr)] // the note on why a test did nothing
    pub fn mount(path: PathBuf, kib: u32) -> Option<Tmpfs> {
        std::fs::create_dir(&path).expect("create the mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            assert!(!under_ci(), "cannot mount a tmpfs for a full-disk test under CI");
            eprintln!("note: cannot mount a tmpfs here (needs root); skipping a full-disk test");
            return None;
        }
        Some(Tmpfs(path))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Sends `kill -NAME` (INT, TERM, HUP) to the child.
pub fn signal(child: &std::process::Child, name: &str) {
    let sent = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status();
    assert!(sent.is_ok_and(|s| s.success()), "kill -{name} failed");
}

/// The child's exit code once it ends; kills it and fails the test if that takes more than `limit`.
#[cfg(unix)]
pub fn wait_with_timeout(child: &mut std::process::Child, limit: std::time::Duration) -> Option<i32> {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("the child's status") {
            return status.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("impasto did not stop within {limit:?} of the signal");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
