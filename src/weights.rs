//! The CLI side of finding the weights: the environment values that steer the search
//! (`IMPASTO_WEIGHTS`, `IMPASTO_CACHE_DIR`, `IMPASTO_OFFLINE`, `IMPASTO_MODEL_URL`) read into
//! `impasto_weights::WeightsOptions`, `--weights builtin`, the download's progress shown as a bar,
//! plain log lines or nothing, and the command-line advice added to the library's errors. The policy
//! itself (lookup, download, conversion, the built-in fallback) is `impasto_weights::locate` and
//! `Missing::get`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use impasto::Arch;
use impasto_weights::{Event, KnownModel, Resolved, WeightsOptions};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::{Display, note};

/// The `--weights` value that selects the compact VGG-16 built into impasto.
pub const BUILTIN: &str = "builtin";
/// The environment variable naming a weights file.
pub const WEIGHTS_ENV: &str = "IMPASTO_WEIGHTS";
/// The environment variable that replaces the user cache folder.
pub const CACHE_DIR_ENV: &str = "IMPASTO_CACHE_DIR";
/// The environment variable that forbids downloads (`1`, `true`, `yes`, `on`).
pub const OFFLINE_ENV: &str = "IMPASTO_OFFLINE";
/// The environment variable giving another download source (a URL, or a mirror folder ending in `/`
/// or containing `{file}`).
pub const MODEL_URL_ENV: &str = "IMPASTO_MODEL_URL";
/// How long a download may wait for the server to connect or to send more bytes.
pub const TIMEOUT: Duration = impasto_weights::DEFAULT_TIMEOUT;

/// The cache folder: `IMPASTO_CACHE_DIR` if set, else the platform's user cache folder for impasto
/// (`$XDG_CACHE_HOME/impasto` or `~/.cache/impasto` on Linux); `None` without a home folder.
pub fn cache_dir_from_env() -> Option<PathBuf> {
    match std::env::var_os(CACHE_DIR_ENV).filter(|v| !v.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir)),
        None => directories::ProjectDirs::from("", "", "impasto").map(|d| d.cache_dir().to_path_buf()),
    }
}

/// Whether an `IMPASTO_OFFLINE` value switches offline mode on (anything but empty, `0`, `false`,
/// `no` and `off`).
pub fn is_truthy(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    !matches!(v.as_str(), "" | "0" | "false" | "no" | "off")
}

/// The cached weights file of `arch` in `cache_dir`.
pub fn cached_file(cache_dir: &Path, arch: Arch) -> PathBuf {
    impasto_weights::cached_file(cache_dir, arch)
}

/// The places the weights file may be, in the order `impasto_weights::locate` tries them, and what to
/// do when it is nowhere.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WeightsSearch {
    /// `--weights` (a file).
    pub explicit: Option<PathBuf>,
    /// `--weights builtin`.
    pub builtin: bool,
    /// `IMPASTO_WEIGHTS`.
    pub env: Option<PathBuf>,
    /// The user cache folder.
    pub cache_dir: Option<PathBuf>,
    /// Why downloads are forbidden (`--offline`, or `IMPASTO_OFFLINE`), if they are.
    pub offline: Option<&'static str>,
    /// `IMPASTO_MODEL_URL`.
    pub model_url: Option<String>,
}

/// What the search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    /// The weights file.
    File(PathBuf),
    /// `--weights builtin`.
    Builtin,
    /// Nothing (no `--weights`, no `IMPASTO_WEIGHTS`, nothing cached): a known model to download.
    Missing(Missing),
}

/// Weights that are nowhere yet, and how to get them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing(impasto_weights::Missing);

impl WeightsSearch {
    /// The library's options for this search.
    fn options(&self) -> WeightsOptions {
        WeightsOptions {
            explicit: self.explicit.clone(),
            env: self.env.clone(),
            cache_dir: self.cache_dir.clone(),
            offline: self.offline.map(str::to_string),
            model_url: self.model_url.clone(),
            builtin_fallback: impasto::embedded_model().is_some(),
            timeout: TIMEOUT,
        }
    }

    /// Finds the weights file for `arch`. A `--weights` or `IMPASTO_WEIGHTS` that names no file is an
    /// error; an empty cache is [`Located::Missing`] (an error without a cache folder).
    pub fn locate(&self, arch: Arch) -> Result<Located> {
        if self.builtin {
            return Ok(Located::Builtin);
        }
        match impasto_weights::locate(arch, &self.options()) {
            Ok(impasto_weights::Located::File(p)) => Ok(Located::File(p)),
            Ok(impasto_weights::Located::Missing(m)) => Ok(Located::Missing(Missing(m))),
            Err(e) => Err(cli_error(e)),
        }
    }
}

/// Where a run's network comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A weights file.
    File(PathBuf),
    /// The compact VGG-16 built into impasto.
    Builtin,
}

/// The weights a run gets when none were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    /// The downloaded file.
    File(PathBuf),
    /// The built-in compact VGG-16, because of this (`offline mode (--offline) and no vgg16 weights
    /// found`, `cannot download the vgg16 weights (…)`).
    Builtin(String),
}

impl Missing {
    /// Downloads the weights into the cache and returns the cached file. Offline, or when the server
    /// cannot be reached, a VGG-16 run falls back to the built-in compact model; otherwise the error
    /// says what is missing and what to do.
    pub fn get(&self, display: Display) -> Result<Got> {
        let meter = Meter::new(display);
        let got = self.0.get(&mut |e| meter.event(e));
        meter.finish();
        match got.map_err(cli_error)? {
            Resolved::File(p) => Ok(Got::File(p)),
            Resolved::Builtin { reason } => Ok(Got::Builtin(reason.to_string())),
        }
    }
}

/// The library's weights error with the command line's advice: the flags and commands that fix it.
pub fn cli_error(e: impasto_weights::Error) -> anyhow::Error {
    use impasto_weights::{Error as E, Origin};
    let flag_hint = "pass --weights FILE or set IMPASTO_WEIGHTS to a safetensors file with torchvision key \
                     names (features.N.weight|bias)";
    match e {
        E::WeightsFileMissing { arch, origin, path } => {
            let place = match origin {
                Origin::Explicit => format!("--weights {}", path.display()),
                Origin::Environment => format!("{WEIGHTS_ENV}={}", path.display()),
            };
            let why = if path.is_dir() { "it is a folder" } else { "no such file" };
            anyhow::anyhow!("no {arch} weights found (looked in: {place} ({why})); {flag_hint}")
        }
        E::NoCacheFolder { arch } => anyhow::anyhow!(
            "no {arch} weights found and no user cache folder to download them into (no home folder): \
             pass --weights FILE, set {WEIGHTS_ENV}, or set {CACHE_DIR_ENV} to a folder"
        ),
        E::Offline { arch, cached, why } => anyhow::anyhow!(
            "no {arch} weights found (looked in: --weights (not given), {WEIGHTS_ENV} (not set), {}) \
             and offline mode ({why}) forbids downloading them (the built-in compact model is a VGG-16); \
             get them with `impasto models download {arch}` while online, or `impasto models import FILE` \
             from a {arch} checkpoint you have, or pass --weights FILE",
            cached.display()
        ),
        E::Download { arch, error } => anyhow::anyhow!(
            "cannot get the {arch} weights (retry, or run `impasto models import FILE` with a {arch} \
             checkpoint you have, or pass --weights FILE): {error}"
        ),
        e => e.into(),
    }
}

/// The command line's advice for a library error that a flag or command fixes, to follow its message.
pub fn cli_hint(e: &anyhow::Error) -> Option<String> {
    match e.downcast_ref::<impasto::Error>()? {
        impasto::Error::WeightsTooShallow { model, .. } => {
            Some(format!(": get them with `impasto models download {model}` or pass --weights FILE"))
        }
        impasto::Error::NotVgg16 { .. } => Some(" (pass --weights FILE)".into()),
        _ => None,
    }
}

/// Downloads known model `m` (from `IMPASTO_MODEL_URL` when `url_override` is given) into
/// `cache_dir`, converts it to `cache_dir/<arch>-conv-imagenet.safetensors` and deletes the
/// checkpoint (`impasto models download`).
pub fn download(
    m: &KnownModel,
    cache_dir: &Path,
    url_override: Option<&str>,
    display: Display,
) -> Result<PathBuf> {
    let meter = Meter::new(display);
    let got = impasto_weights::download_model(m, cache_dir, url_override, TIMEOUT, &mut |e| meter.event(e));
    meter.finish();
    Ok(got?)
}

/// `56.2 MiB`: the size of a file, or `?` when it cannot be read.
pub fn size_text(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(md) => mib(md.len()),
        Err(_) => "?".to_string(),
    }
}

/// Bytes with one decimal: `528.0 MiB`, or `7.1 KiB` below a MiB.
pub fn mib(bytes: u64) -> String {
    let b = bytes as f64;
    if bytes < 1 << 20 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    }
}

/// How a download's progress is shown: a bar on a terminal (from the transfer's start), a line every
/// 10 % otherwise (every 64 MiB when the size is unknown), nothing when quiet.
#[derive(Debug)]
struct Meter {
    display: Display,
    bar: std::cell::RefCell<Option<ProgressBar>>,
    /// The next step (a tenth, or a 64 MiB block) that gets a plain line.
    next: std::cell::Cell<u64>,
}

impl Meter {
    fn new(display: Display) -> Meter {
        Meter { display, bar: std::cell::RefCell::new(None), next: std::cell::Cell::new(1) }
    }

    /// Shows one of the library's progress events.
    fn event(&self, e: Event<'_>) {
        match e {
            Event::Missing { arch, cache_dir } => {
                self.line(&format!("no {arch} weights in {} yet: downloading them once", cache_dir.display()))
            }
            Event::Downloading { url, to } => {
                self.start_bar();
                self.line(&format!("downloading {url} to {}", to.display()));
            }
            Event::Bytes { done, total } => self.update(done, total),
            Event::Transferred => self.finish(),
            Event::Converting { to } => self.line(&format!("converting to {}", to.display())),
            Event::CannotDelete { path, error } => self.line(&format!(
                "warning: cannot delete the downloaded checkpoint {}: {error}",
                path.display()
            )),
            Event::Cached { arch, path } => {
                self.line(&format!("cached the {arch} weights: {} ({})", path.display(), size_text(path)))
            }
            _ => {}
        }
    }

    fn start_bar(&self) {
        if self.display != Display::Bar {
            return;
        }
        *self.bar.borrow_mut() = Some({
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let template = "{spinner} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}";
            let style =
                ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("=> "));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
    }

    /// A line above the bar, or on stderr; nothing when quiet.
    fn line(&self, text: &str) {
        match (&*self.bar.borrow(), self.display) {
            (_, Display::Quiet) => {}
            (Some(bar), _) => bar.println(text),
            (None, _) => note(text),
        }
    }

    fn update(&self, done: u64, total: Option<u64>) {
        if let Some(bar) = &*self.bar.borrow() {
            if let Some(t) = total {
                bar.set_length(t);
            }
            bar.set_position(done);
            return;
        }
        if !matches!(self.display, Display::Plain { .. }) {
            return;
        }
        let step = match total {
            Some(t) if t > 0 => done.saturating_mul(10) / t,
            _ => done / (64 << 20),
        };
        if step >= self.next.get() {
            self.next.set(step + 1);
            let text = match total {
                Some(t) if t > 0 => format!("  {:>3}%  {} of {}", step * 10, mib(done), mib(t)),
                _ => format!("  {}", mib(done)),
            };
            note(&text);
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.borrow_mut().take() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_values() {
        for v in ["1", "true", "YES", "on", "x"] {
            assert!(is_truthy(v), "{v}");
        }
        for v in ["", "0", "false", "No", " off "] {
            assert!(!is_truthy(v), "{v}");
        }
    }

    #[test]
    fn an_overriding_url_may_name_its_own_checksum() {
        let m = impasto_weights::known_model("vgg16").unwrap();
        let e = |url: &str, o: bool| impasto_weights::expected_file(m, url, o);
        let table = ("vgg16-00b39a1b.pth".to_string(), "00b39a1b".to_string());
        assert_eq!(e("https://h/x/vgg16-abcdef12.pth", false), table);
        assert_eq!(e("https://h/mirror/vgg16-00b39a1b.pth", true), table);
        assert_eq!(e("https://h/mirror/weights.pth", true), table);
        assert_eq!(
            e("https://h/m/tiny-abcdef12.pth?x=1", true),
            ("tiny-abcdef12.pth".into(), "abcdef12".into())
        );
    }

    #[test]
    fn missing_weights_without_a_cache_folder_is_an_error() {
        let s = WeightsSearch::default();
        let e = s.locate(Arch::Vgg16).unwrap_err().to_string();
        assert!(e.starts_with("no vgg16 weights found and no user cache folder"), "{e}");
    }
}
