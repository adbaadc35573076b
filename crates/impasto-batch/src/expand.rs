//! From a plan to its job list: every grid point and `[[job]]`, with its inputs found (folders listed),
//! its settings checked against the run flags the caller knows, a fingerprint (SHA-256 of the inputs'
//! bytes and the settings) and an output name derived from both. The list is the same on every machine
//! that reads the same plan and files, which is what lets shards split it without talking.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::plan::{Plan, Value};

/// The file extensions of images a folder entry takes.
pub const IMAGE_EXTENSIONS: [&str; 8] = ["png", "jpg", "jpeg", "webp", "tif", "tiff", "bmp", "gif"];

/// The longest output name before its hash.
const MAX_READABLE: usize = 80;

/// What kind of value a run flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    /// No value: `--preserve-colors`.
    Switch,
    /// A value: `--size 64`.
    Value,
    /// A file whose bytes matter (`--mask`, `--init`): a relative path that exists is read from the
    /// plan's folder, and its bytes go into the fingerprint.
    File,
    /// A path whose bytes are not read (`--weights`): resolved like [`FlagKind::File`], fingerprinted by
    /// its text only.
    Path,
    /// A value that changes how a job runs but not its image (`--checkpoint-every`): left out of the
    /// fingerprint, so that adding or changing it keeps the finished results.
    Runtime,
}

/// The run flags a job may set (long names without dashes), from the caller that runs the jobs.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    kinds: BTreeMap<String, FlagKind>,
    /// Run flags a job may not set, with why.
    excluded: BTreeMap<String, String>,
}

impl Flags {
    /// The flags and their kinds. Names the batch sets itself (`output`, `content`, `style`, `name`)
    /// are never settings.
    pub fn new<S: Into<String>>(flags: impl IntoIterator<Item = (S, FlagKind)>) -> Flags {
        Flags { kinds: flags.into_iter().map(|(n, k)| (n.into(), k)).collect(), excluded: BTreeMap::new() }
    }

    /// Adds run flags that exist but do not apply in a batch, each with why: a plan that sets one is
    /// told so, not that the flag is unknown.
    pub fn excluding<S: Into<String>, W: Into<String>>(
        mut self,
        flags: impl IntoIterator<Item = (S, W)>,
    ) -> Flags {
        self.excluded.extend(flags.into_iter().map(|(n, w)| (n.into(), w.into())));
        self
    }

    fn kind(&self, place: &str, key: &str) -> Result<FlagKind> {
        if key == "output" || key == "o" {
            return Err(Error::plan(
                place,
                "the batch names each output itself (set the folder with `output`)",
            ));
        }
        if let Some(why) = self.excluded.get(key) {
            return Err(Error::plan(place, format!("`{key}` does not apply in a batch: {why}")));
        }
        self.kinds.get(key).copied().ok_or_else(|| {
            Error::plan(place, format!("unknown run flag `{key}` (see `impasto --help` for the flags)"))
        })
    }
}

/// One job: a content, its styles and settings, and where its result goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The output name (the result is `NAME.png` in the output folder).
    pub name: String,
    /// Where it comes from in the plan: `[grid]` or `[[job]] 2`.
    pub place: String,
    /// The content image.
    pub content: PathBuf,
    /// The style images.
    pub styles: Vec<PathBuf>,
    /// Every setting, the plan's and the job's merged, by flag name.
    pub settings: BTreeMap<String, Value>,
    /// Hex SHA-256 of the inputs' bytes and the settings: equal fingerprints, equal results.
    pub fingerprint: String,
    /// Its grid point: (axis, value label) for `content`, `style` and each flag axis; empty for a
    /// `[[job]]`.
    pub coords: Vec<(String, String)>,
}

impl Job {
    /// The run flags of the settings, as command-line words: `--size 64 --preserve-colors`.
    pub fn args(&self, flags: &Flags) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in &self.settings {
            match (flags.kinds.get(k), v) {
                (_, Value::Switch(false)) => {}
                (Some(FlagKind::Switch), Value::Switch(true)) => out.push(format!("--{k}")),
                (_, v) => {
                    out.push(format!("--{k}"));
                    out.push(v.text());
                }
            }
        }
        out
    }
}

/// The expanded plan: every job, and the grid's axes (for the contact sheet's rows and columns).
#[derive(Debug, Clone, PartialEq)]
pub struct JobList {
    /// The jobs, grid points first (contents, then styles, then each axis in order), then `[[job]]`s.
    pub jobs: Vec<Job>,
    /// The grid's axes with their value labels, in the order of [`Job::coords`].
    pub axes: Vec<(String, Vec<String>)>,
}

/// Hex SHA-256 of a file's bytes.
fn file_hash(place: &str, path: &Path) -> Result<String> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::Input { place: place.into(), path: path.into(), cause: e })?;
    Ok(hex(&Sha256::digest(&bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `base/p` unless `p` is absolute or `base` is the working folder.
fn under(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() || base == Path::new(".") { p.to_path_buf() } else { base.join(p) }
}

/// The images of an entry: the file itself, or a folder's image files sorted by name.
fn images(place: &str, base: &Path, entry: &str) -> Result<Vec<PathBuf>> {
    let path = under(base, entry);
    let meta = std::fs::metadata(&path).map_err(|e| Error::Input {
        place: place.into(),
        path: path.clone(),
        cause: e,
    })?;
    if !meta.is_dir() {
        return Ok(vec![path]);
    }
    let read = std::fs::read_dir(&path).map_err(|e| Error::Input {
        place: place.into(),
        path: path.clone(),
        cause: e,
    })?;
    let mut out: Vec<PathBuf> = read
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| IMAGE_EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()))
        })
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(Error::plan(
            place,
            format!("folder {} has no images ({})", path.display(), IMAGE_EXTENSIONS.join(", ")),
        ));
    }
    Ok(out)
}

/// A file name's stem, for labels and names.
fn stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Keeps letters, digits, `.`, `-`, `_`, `+` and `=`; anything else becomes `-`.
fn clean(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || ".-_+=".contains(c) { c } else { '-' }).collect()
}

/// Checks every key, resolves path values, and returns the settings as a map.
fn checked(
    flags: &Flags,
    base: &Path,
    place: &str,
    settings: &[(String, Value)],
    into: &mut BTreeMap<String, Value>,
) -> Result<()> {
    for (k, v) in settings {
        let at = format!("{place} {k}");
        let kind = flags.kind(&at, k)?;
        let v = match (kind, v) {
            (FlagKind::Switch, Value::Switch(_)) => v.clone(),
            (FlagKind::Switch, Value::Text(t)) => {
                return Err(Error::plan(at, format!("`{k}` is a switch: use true or false, not `{t}`")));
            }
            (_, Value::Switch(_)) => {
                return Err(Error::plan(at, format!("`{k}` takes a value, not true/false")));
            }
            (FlagKind::File | FlagKind::Path, Value::Text(t))
                if base.join(t).exists() || Path::new(t).is_absolute() =>
            {
                Value::Text(under(base, t).to_string_lossy().into_owned())
            }
            (_, Value::Text(_)) => v.clone(),
        };
        into.insert(k.clone(), v);
    }
    Ok(())
}

/// The fingerprint: the hashes of the content and styles, then each setting (files by their bytes).
fn fingerprint(
    flags: &Flags,
    place: &str,
    content: &Path,
    styles: &[PathBuf],
    settings: &BTreeMap<String, Value>,
) -> Result<String> {
    let mut h = Sha256::new();
    h.update(format!("content {}\n", file_hash(place, content)?));
    for s in styles {
        h.update(format!("style {}\n", file_hash(place, s)?));
    }
    for (k, v) in settings {
        let text = match (flags.kinds.get(k), v) {
            (Some(FlagKind::Runtime), _) => continue,
            (Some(FlagKind::File), Value::Text(t)) if Path::new(t).is_file() => {
                format!("file {}", file_hash(place, Path::new(t))?)
            }
            _ => v.text(),
        };
        h.update(format!("{k}={text}\n"));
    }
    Ok(hex(&h.finalize()))
}

/// The readable part of a name and the first 10 hex digits of the fingerprint.
fn name(readable: &str, fingerprint: &str) -> String {
    let mut r = clean(readable);
    if r.len() > MAX_READABLE {
        r.truncate(MAX_READABLE);
    }
    format!("{r}_{}", &fingerprint[..10])
}

/// Expands `plan` into its jobs, checking every key against `flags` and reading every input file.
pub fn expand(plan: &Plan, flags: &Flags) -> Result<JobList> {
    let base = &plan.base;
    let mut common = BTreeMap::new();
    checked(flags, base, "[settings]", &plan.settings, &mut common)?;
    let mut jobs = Vec::new();
    let mut axes = Vec::new();
    if let Some(g) = &plan.grid {
        if g.contents.is_empty() {
            return Err(Error::plan("[grid]", "no `content`"));
        }
        if g.styles.is_empty() {
            return Err(Error::plan("[grid]", "no `style`"));
        }
        let mut contents = Vec::new();
        for c in &g.contents {
            contents.extend(images("[grid] content", base, c)?);
        }
        // A style entry of one folder is one entry per image; several files are one blend.
        let mut styles: Vec<Vec<PathBuf>> = Vec::new();
        for entry in &g.styles {
            if let [one] = &entry[..] {
                styles.extend(images("[grid] style", base, one)?.into_iter().map(|p| vec![p]));
            } else {
                styles.push(entry.iter().map(|s| under(base, s)).collect());
            }
        }
        let style_label = |s: &[PathBuf]| s.iter().map(|p| stem(p)).collect::<Vec<_>>().join("+");
        axes.push(("content".to_string(), contents.iter().map(|c| stem(c)).collect::<Vec<String>>()));
        axes.push(("style".to_string(), styles.iter().map(|s| style_label(s)).collect()));
        let mut flag_axes = Vec::new();
        for (k, values) in &g.axes {
            if values.is_empty() {
                return Err(Error::plan(format!("[grid] {k}"), "no values"));
            }
            let mut resolved = Vec::new();
            for v in values {
                let mut one = BTreeMap::new();
                checked(flags, base, "[grid]", &[(k.clone(), v.clone())], &mut one)?;
                resolved.extend(one.into_values());
            }
            axes.push((k.clone(), values.iter().map(Value::text).collect()));
            flag_axes.push((k.clone(), resolved));
        }
        // Every point of contents × styles × axis values, the last axis fastest.
        let mut points: Vec<Vec<usize>> = vec![vec![]];
        let sizes: Vec<usize> =
            [contents.len(), styles.len()].into_iter().chain(flag_axes.iter().map(|a| a.1.len())).collect();
        for n in sizes {
            points =
                points.into_iter().flat_map(|p| (0..n).map(move |i| [p.clone(), vec![i]].concat())).collect();
        }
        for p in points {
            let content = &contents[p[0]];
            let style = &styles[p[1]];
            let mut settings = common.clone();
            let mut readable = format!("{}_{}", stem(content), style_label(style));
            for (a, &i) in flag_axes.iter().zip(&p[2..]) {
                settings.insert(a.0.clone(), a.1[i].clone());
                let _ = write!(readable, "_{}={}", a.0, values_label(&a.1[i]));
            }
            let fp = fingerprint(flags, "[grid]", content, style, &settings)?;
            let coords =
                axes.iter().zip(&p).map(|((axis, labels), &i)| (axis.clone(), labels[i].clone())).collect();
            jobs.push(Job {
                name: name(&readable, &fp),
                place: "[grid]".into(),
                content: content.clone(),
                styles: style.clone(),
                settings,
                fingerprint: fp,
                coords,
            });
        }
    }
    for spec in &plan.jobs {
        let mut settings = common.clone();
        checked(flags, base, &spec.place, &spec.settings, &mut settings)?;
        let content = under(base, &spec.content);
        let styles: Vec<PathBuf> = spec.styles.iter().map(|s| under(base, s)).collect();
        let fp = fingerprint(flags, &spec.place, &content, &styles, &settings)?;
        let name = match &spec.name {
            Some(n) if n.is_empty() || clean(n) != *n => {
                return Err(Error::plan(
                    format!("{} name", spec.place),
                    format!("`{n}` must be letters, digits, and . - _ + = only"),
                ));
            }
            Some(n) => n.clone(),
            None => {
                let readable = format!(
                    "{}_{}",
                    stem(&content),
                    styles.iter().map(|p| stem(p)).collect::<Vec<_>>().join("+")
                );
                name(&readable, &fp)
            }
        };
        jobs.push(Job {
            name,
            place: spec.place.clone(),
            content,
            styles,
            settings,
            fingerprint: fp,
            coords: Vec::new(),
        });
    }
    if jobs.is_empty() {
        return Err(Error::plan("plan", "no jobs: give a [grid] or [[job]] (or --content and --style)"));
    }
    check_unique(&jobs)?;
    Ok(JobList { jobs, axes })
}

/// A value's label in a name: its text, paths by their file name.
fn values_label(v: &Value) -> String {
    let t = v.text();
    match Path::new(&t).file_name() {
        Some(n) if t.contains('/') => n.to_string_lossy().into_owned(),
        _ => t,
    }
}

/// Refuses two jobs with one output name (names differ in case only count as one: case-insensitive
/// file systems).
fn check_unique(jobs: &[Job]) -> Result<()> {
    let mut seen: BTreeMap<String, &Job> = BTreeMap::new();
    for (i, j) in jobs.iter().enumerate() {
        if let Some(first) = seen.insert(j.name.to_ascii_lowercase(), j) {
            let where_ = |job: &Job, n: usize| {
                if job.place == "[grid]" { format!("[grid] point {n}") } else { job.place.clone() }
            };
            let n_first = jobs.iter().position(|x| std::ptr::eq(x, first)).unwrap_or(0) + 1;
            return Err(Error::DuplicateName {
                name: j.name.clone(),
                first: where_(first, n_first),
                second: where_(j, i + 1),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> Flags {
        Flags::new([
            ("size", FlagKind::Value),
            ("style-weight", FlagKind::Value),
            ("preserve-colors", FlagKind::Switch),
            ("mask", FlagKind::File),
            ("weights", FlagKind::Path),
            ("checkpoint-every", FlagKind::Runtime),
        ])
        .excluding([("resume", "each job starts from the start")])
    }

    fn setup() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("photos")).unwrap();
        for (name, bytes) in [
            ("photos/b.png", "b"),
            ("photos/a.jpg", "a"),
            ("photos/notes.txt", "n"),
            ("s.png", "s"),
            ("t.png", "t"),
            ("m.png", "m"),
        ] {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        dir
    }

    fn plan(dir: &Path, text: &str) -> Result<JobList> {
        expand(&Plan::parse(&dir.join("plan.toml"), text)?, &flags())
    }

    #[test]
    fn a_grid_is_every_point_with_stable_names() {
        let dir = setup();
        let text = "[settings]\nsize = 64\n[grid]\ncontent = 'photos'\nstyle = ['s.png', ['s.png', 't.png']]\nstyle-weight = [10, 100]\n";
        let list = plan(dir.path(), text).unwrap();
        assert_eq!(list.jobs.len(), 2 * 2 * 2);
        assert_eq!(list.axes[0], ("content".into(), vec!["a".into(), "b".into()]));
        assert_eq!(list.axes[1], ("style".into(), vec!["s".into(), "s+t".into()]));
        let j = &list.jobs[1];
        assert!(j.name.starts_with("a_s_style-weight=100_"), "{}", j.name);
        assert_eq!(j.args(&flags()), ["--size", "64", "--style-weight", "100"]);
        assert_eq!(j.coords[2], ("style-weight".into(), "100".into()));
        // The same plan and files give the same names; changed bytes give other names.
        assert_eq!(plan(dir.path(), text).unwrap(), list);
        std::fs::write(dir.path().join("photos/a.jpg"), "A").unwrap();
        let changed = plan(dir.path(), text).unwrap();
        assert_ne!(changed.jobs[1].name, j.name);
        assert_eq!(changed.jobs[4].name, list.jobs[4].name, "b's jobs keep their names");
    }

    #[test]
    fn files_in_settings_are_read_from_the_plan_folder_and_fingerprinted() {
        let dir = setup();
        let text = "[[job]]\ncontent = 's.png'\nstyle = 't.png'\nmask = 'm.png'\npreserve-colors = true\nweights = 'builtin'\n";
        let a = plan(dir.path(), text).unwrap().jobs.remove(0);
        assert_eq!(a.settings["mask"], Value::Text(dir.path().join("m.png").to_string_lossy().into_owned()));
        assert_eq!(
            a.args(&flags())[2..],
            ["--preserve-colors".to_string(), "--weights".into(), "builtin".into()]
        );
        std::fs::write(dir.path().join("m.png"), "M").unwrap();
        assert_ne!(plan(dir.path(), text).unwrap().jobs[0].fingerprint, a.fingerprint);
    }

    #[test]
    fn runtime_settings_are_passed_on_but_left_out_of_the_fingerprint() {
        let dir = setup();
        let text = "[[job]]\ncontent = 's.png'\nstyle = 't.png'\n";
        let plain = plan(dir.path(), text).unwrap().jobs.remove(0);
        let every = plan(dir.path(), &format!("{text}checkpoint-every = 5\n")).unwrap().jobs.remove(0);
        assert_eq!((&every.fingerprint, &every.name), (&plain.fingerprint, &plain.name));
        assert_eq!(every.args(&flags()), ["--checkpoint-every", "5"]);
    }

    #[test]
    fn bad_plans_are_refused_by_key_or_job() {
        let dir = setup();
        let err = |t: &str| plan(dir.path(), t).unwrap_err().to_string();
        assert_eq!(
            err("[settings]\nstyle-weigth = 1\n[grid]\ncontent='s.png'\nstyle='t.png'"),
            "[settings] style-weigth: unknown run flag `style-weigth` (see `impasto --help` for the flags)"
        );
        assert_eq!(
            err("[grid]\ncontent='s.png'\nstyle='t.png'\npreserve-colors = ['yes']"),
            "[grid] preserve-colors: `preserve-colors` is a switch: use true or false, not `yes`"
        );
        assert_eq!(
            err("[[job]]\ncontent='s.png'\nstyle='t.png'\noutput='x.png'"),
            "[[job]] 1 output: the batch names each output itself (set the folder with `output`)"
        );
        let e = err("[[job]]\ncontent='nope.png'\nstyle='t.png'");
        assert!(e.starts_with("[[job]] 1: cannot read ") && e.contains("nope.png"), "{e}");
        let e = err("[[job]]\ncontent='s.png'\nstyle='t.png'\n[[job]]\ncontent='s.png'\nstyle='t.png'");
        assert!(
            e.starts_with("duplicate output name `s_t_")
                && e.ends_with(": [[job]] 1 and [[job]] 2 (give one of them another `name` or setting)"),
            "{e}"
        );
        let e = err(
            "[[job]]\nname='x'\ncontent='s.png'\nstyle='t.png'\n[[job]]\nname='X'\ncontent='t.png'\nstyle='s.png'",
        );
        assert!(e.starts_with("duplicate output name `X`"), "{e}");
        assert_eq!(
            err("[[job]]\nname='a/b'\ncontent='s.png'\nstyle='t.png'"),
            "[[job]] 1 name: `a/b` must be letters, digits, and . - _ + = only"
        );
        assert_eq!(
            err("[settings]\nresume = 'r.ckpt'\n[grid]\ncontent='s.png'\nstyle='t.png'"),
            "[settings] resume: `resume` does not apply in a batch: each job starts from the start"
        );
        assert_eq!(err("output = 'x'"), "plan: no jobs: give a [grid] or [[job]] (or --content and --style)");
    }
}
