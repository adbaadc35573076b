//! Where the weights come from: the environment values that steer the search (`IMPASTO_WEIGHTS`,
//! `IMPASTO_CACHE_DIR`, `IMPASTO_OFFLINE`, `IMPASTO_MODEL_URL`), finding a run's weights file, and
//! downloading a known model into the user cache folder (on the first run, or with
//! `impasto models download`): fetched with `impasto_weights::fetch`, shown as a progress bar, plain
//! log lines or nothing, converted to impasto's safetensors form, and the checkpoint deleted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use impasto::Arch;
use impasto_weights::{
    FileLock, KnownModel, fetch, known_model, model_url, read_pth_filtered, sha256_prefix_from_file_name,
    to_conv_safetensors,
};
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
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// The cache's subfolder for checkpoints being downloaded (each is deleted once converted).
pub const DOWNLOADS: &str = "downloads";

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
    cache_dir.join(impasto::cache_file_name(arch))
}

/// The places the weights file may be, in the order `impasto::locate_weights` tries them, and what to
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
pub struct Missing {
    arch: Arch,
    cache_dir: PathBuf,
    offline: Option<&'static str>,
    model_url: Option<String>,
}

impl WeightsSearch {
    /// Finds the weights file for `arch`. A `--weights` or `IMPASTO_WEIGHTS` that names no file is an
    /// error; an empty cache is [`Located::Missing`] (an error without a cache folder).
    pub fn locate(&self, arch: Arch) -> Result<Located> {
        if self.builtin {
            return Ok(Located::Builtin);
        }
        let (explicit, env, cache) =
            (self.explicit.as_deref(), self.env.as_deref(), self.cache_dir.as_deref());
        match impasto::locate_weights(arch, explicit, env, cache) {
            Ok(p) => Ok(Located::File(p)),
            Err(impasto::Error::WeightsNotFound { .. }) if explicit.is_none() && env.is_none() => {
                match &self.cache_dir {
                    Some(dir) => Ok(Located::Missing(Missing {
                        arch,
                        cache_dir: dir.clone(),
                        offline: self.offline,
                        model_url: self.model_url.clone(),
                    })),
                    None => bail!(
                        "no {} weights found and no user cache folder to download them into (no home folder): \
                         pass --weights FILE, set {WEIGHTS_ENV}, or set {CACHE_DIR_ENV} to a folder",
                        arch.name()
                    ),
                }
            }
            Err(e) => Err(e.into()),
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
    /// says what is missing.
    pub fn get(&self, display: Display) -> Result<Got> {
        let name = self.arch.name();
        let file = cached_file(&self.cache_dir, self.arch);
        let builtin = self.arch == Arch::Vgg16 && impasto::embedded_model().is_some();
        if let Some(why) = self.offline {
            if builtin {
                return Ok(Got::Builtin(format!("offline mode ({why}) and no {name} weights found")));
            }
            bail!(
                "no {name} weights found (looked in: --weights (not given), {WEIGHTS_ENV} (not set), {}) \
                 and offline mode ({why}) forbids downloading them (the built-in compact model is a VGG-16); \
                 get them with `impasto models download {name}` while online, or `impasto models import FILE` \
                 from a {name} checkpoint you have, or pass --weights FILE",
                file.display()
            );
        }
        let m = known_model(name)?;
        if display != Display::Quiet {
            note(&format!("no {name} weights in {} yet: downloading them once", self.cache_dir.display()));
        }
        match download(m, &self.cache_dir, self.model_url.as_deref(), display) {
            Ok(p) => Ok(Got::File(p)),
            Err(e) if builtin && unreachable(&e) => {
                Ok(Got::Builtin(format!("cannot download the {name} weights ({e:#})")))
            }
            Err(e) => Err(e.context(format!(
                "cannot get the {name} weights (retry, or run `impasto models import FILE` with a {name} \
                 checkpoint you have, or pass --weights FILE)"
            ))),
        }
    }
}

/// Whether a download failed for lack of network (no connection, no answer), rather than because of
/// what the server answered.
fn unreachable(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<impasto_weights::Error>(),
        Some(impasto_weights::Error::Network { .. } | impasto_weights::Error::Timeout { .. })
    )
}

/// The file name a download is saved under and the SHA-256 prefix it must have: the table's, unless
/// the URL came from `IMPASTO_MODEL_URL` and names a torch-hub style file of its own
/// (`NAME-HEX.pth`), whose `HEX` is then the expected prefix. A mirror of the same file keeps the
/// table's name, and so its checksum.
pub fn expected_file(m: &KnownModel, url: &str, overridden: bool) -> (String, String) {
    if overridden {
        let path = url.split(['?', '#']).next().unwrap_or_default();
        let name = path.rsplit('/').next().unwrap_or_default();
        let plain = !name.is_empty() && !name.starts_with('.') && !name.contains('\\');
        if plain && let Some(prefix) = sha256_prefix_from_file_name(name) {
            return (name.to_string(), prefix.to_string());
        }
    }
    (m.file_name.to_string(), m.sha256_prefix.to_string())
}

/// Downloads known model `m` (from `IMPASTO_MODEL_URL` when `url_override` is given) into
/// `cache_dir`, converts it to `cache_dir/<arch>-conv-imagenet.safetensors` and deletes the
/// checkpoint. Two processes doing this at once download once: the second waits, then finds the file.
pub fn download(
    m: &KnownModel,
    cache_dir: &Path,
    url_override: Option<&str>,
    display: Display,
) -> Result<PathBuf> {
    let arch = Arch::from_name(m.arch).ok_or_else(|| anyhow!("unknown architecture `{}`", m.arch))?;
    let out = cached_file(cache_dir, arch);
    let downloads = cache_dir.join(DOWNLOADS);
    std::fs::create_dir_all(&downloads)
        .with_context(|| format!("cannot create the cache folder {}", downloads.display()))?;
    let _lock = FileLock::acquire(&downloads.join(format!("{}.lock", m.name)))?;
    if out.is_file() {
        return Ok(out); // another process finished it while this one waited
    }
    let url = model_url(m.name, url_override)?;
    let (file_name, prefix) = expected_file(m, &url, url_override.is_some());
    let meter = Meter::new(display);
    meter.line(&format!("downloading {url} to {}", downloads.join(&file_name).display()));
    let mut progress = |done: u64, total: Option<u64>| meter.update(done, total);
    let fetched = fetch(&url, &downloads, &file_name, Some(&prefix), &mut progress, TIMEOUT);
    meter.finish();
    let pth = fetched?;
    meter.line(&format!("converting to {}", out.display()));
    let sd = read_pth_filtered(&pth, &|k| k.starts_with("features."))?;
    to_conv_safetensors(&sd, m.arch, m.conv_count, m.preprocessing, &out)?;
    if let Err(e) = std::fs::remove_file(&pth) {
        meter.line(&format!("warning: cannot delete the downloaded checkpoint {}: {e}", pth.display()));
    }
    meter.line(&format!("cached the {} weights: {} ({})", m.name, out.display(), size_text(&out)));
    Ok(out)
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

/// How a download's progress is shown: a bar on a terminal, a line every 10 % otherwise (every
/// 64 MiB when the size is unknown), nothing when quiet.
#[derive(Debug)]
struct Meter {
    display: Display,
    bar: Option<ProgressBar>,
    /// The next step (a tenth, or a 64 MiB block) that gets a plain line.
    next: std::cell::Cell<u64>,
}

impl Meter {
    fn new(display: Display) -> Meter {
        let bar = (display == Display::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let template = "{spinner} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}";
            let style =
                ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("=> "));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Meter { display, bar, next: std::cell::Cell::new(1) }
    }

    /// A line above the bar, or on stderr; nothing when quiet.
    fn line(&self, text: &str) {
        match (&self.bar, self.display) {
            (_, Display::Quiet) => {}
            (Some(bar), _) => bar.println(text),
            (None, _) => note(text),
        }
    }

    fn update(&self, done: u64, total: Option<u64>) {
        if let Some(bar) = &self.bar {
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
        if let Some(bar) = &self.bar {
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
        let m = known_model("vgg16").unwrap();
        let e = |url: &str, o: bool| expected_file(m, url, o);
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
