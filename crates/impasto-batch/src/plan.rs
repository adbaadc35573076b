//! A batch plan as the user wrote it: a TOML file (`output`, `[settings]`, `[grid]`, `[[job]]`) or the
//! same from the command line (`--content`, `--style`, `--grid FLAG=V1,V2`, `--set FLAG=V`). Values are
//! kept as text here; which flags exist and which name files is [`crate::Flags`]' business.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One setting's value: a switch (`preserve-colors = true`) or the text of a flag's value (numbers as
/// written by Rust's `Display`, lists joined by commas).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    /// A flag without a value: given when `true`, left out when `false`.
    Switch(bool),
    /// The value of a flag, as it would be typed after it.
    Text(String),
}

impl Value {
    /// The canonical text: `true`/`false` for switches.
    pub fn text(&self) -> String {
        match self {
            Value::Switch(b) => b.to_string(),
            Value::Text(t) => t.clone(),
        }
    }
}

/// `[[job]]`: one job spelled out.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    /// Where it is in the plan, for messages: `[[job]] 2` (1-based).
    pub place: String,
    /// Its own output name instead of the derived one.
    pub name: Option<String>,
    /// The content image.
    pub content: String,
    /// The style images (several: a blend).
    pub styles: Vec<String>,
    /// Its own settings, over the plan's.
    pub settings: Vec<(String, Value)>,
}

/// `[grid]`: contents × styles × the values of each axis.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grid {
    /// Content images or folders of images.
    pub contents: Vec<String>,
    /// Style entries: one image, a folder (each of its images is an entry), or several images (a blend).
    pub styles: Vec<Vec<String>>,
    /// The other axes: a run flag and its values, in the order given.
    pub axes: Vec<(String, Vec<Value>)>,
}

/// A whole plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The folder relative paths are read from: the plan file's, or the working folder.
    pub base: PathBuf,
    /// `output`: the results folder (relative to `base`).
    pub output: Option<PathBuf>,
    /// `[settings]`: run flags every job gets.
    pub settings: Vec<(String, Value)>,
    /// `[grid]`.
    pub grid: Option<Grid>,
    /// `[[job]]`.
    pub jobs: Vec<JobSpec>,
}

/// The top-level keys of a plan file.
const TOP_KEYS: [&str; 4] = ["output", "settings", "grid", "job"];

/// Converts one TOML value to a setting value; lists (of numbers or words) are joined by commas.
fn value(place: &str, v: &toml::Value) -> Result<Value> {
    Ok(match v {
        toml::Value::Boolean(b) => Value::Switch(*b),
        toml::Value::Array(items) => {
            let parts = items.iter().map(|i| scalar(place, i)).collect::<Result<Vec<_>>>()?;
            Value::Text(parts.join(","))
        }
        other => Value::Text(scalar(place, other)?),
    })
}

fn scalar(place: &str, v: &toml::Value) -> Result<String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        other => {
            Err(Error::plan(place, format!("expected a string or a number, found {}", other.type_str())))
        }
    }
}

fn string(place: &str, v: &toml::Value) -> Result<String> {
    match v.as_str() {
        Some("") => Err(Error::plan(place, "an empty string (expected a file or a name)")),
        Some(s) => Ok(s.to_string()),
        None => Err(Error::plan(place, format!("expected a string, found {}", v.type_str()))),
    }
}

/// A string or a list of strings.
fn strings(place: &str, v: &toml::Value) -> Result<Vec<String>> {
    match v {
        toml::Value::Array(items) => items.iter().map(|i| string(place, i)).collect(),
        other => Ok(vec![string(place, other)?]),
    }
}

fn settings(section: &str, table: &toml::Table) -> Result<Vec<(String, Value)>> {
    table.iter().map(|(k, v)| Ok((k.clone(), value(&format!("{section} {k}"), v)?))).collect()
}

impl Plan {
    /// Parses the text of plan file `path` (relative paths in it are read from its folder).
    pub fn parse(path: &Path, text: &str) -> Result<Plan> {
        let table: toml::Table = toml::from_str(text).map_err(|e| Error::PlanSyntax {
            path: path.to_path_buf(),
            message: e
                .to_string()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" "),
        })?;
        let base = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut plan = Plan { base, output: None, settings: Vec::new(), grid: None, jobs: Vec::new() };
        for (key, v) in &table {
            match key.as_str() {
                "output" => plan.output = Some(PathBuf::from(string("output", v)?)),
                "settings" => {
                    let t = v.as_table().ok_or_else(|| Error::plan("[settings]", "expected a table"))?;
                    plan.settings = settings("[settings]", t)?;
                }
                "grid" => {
                    let t = v.as_table().ok_or_else(|| Error::plan("[grid]", "expected a table"))?;
                    plan.grid = Some(grid(t)?);
                }
                "job" => {
                    let jobs = v.as_array().ok_or_else(|| Error::plan("job", "expected [[job]] tables"))?;
                    for (i, j) in jobs.iter().enumerate() {
                        let place = format!("[[job]] {}", i + 1);
                        let t = j.as_table().ok_or_else(|| Error::plan(&place, "expected a table"))?;
                        plan.jobs.push(job(place, t)?);
                    }
                }
                other => {
                    return Err(Error::plan(
                        other,
                        format!("unknown top-level key (expected one of {})", TOP_KEYS.join(", ")),
                    ));
                }
            }
        }
        Ok(plan)
    }

    /// An empty plan whose relative paths are read from `base` (a command-line grid fills it).
    pub fn empty(base: PathBuf) -> Plan {
        Plan { base, output: None, settings: Vec::new(), grid: None, jobs: Vec::new() }
    }

    /// Adds the command line's grid and settings: `contents` and `styles` replace the grid's (a style
    /// entry `a.jpg+b.jpg` is a blend), each `FLAG=V1,V2` of `axes` replaces or adds that axis, and each
    /// `FLAG=VALUE` of `set` replaces or adds a setting.
    pub fn with_command_line(
        mut self,
        contents: &[String],
        styles: &[String],
        axes: &[String],
        set: &[String],
    ) -> Result<Plan> {
        if !contents.is_empty() || !styles.is_empty() || !axes.is_empty() {
            let grid = self.grid.get_or_insert_with(Grid::default);
            if !contents.is_empty() {
                if contents.iter().any(String::is_empty) {
                    return Err(Error::plan("--content ``", "an empty path"));
                }
                grid.contents = contents.to_vec();
            }
            if !styles.is_empty() {
                grid.styles = styles.iter().map(|s| blend(s)).collect::<Result<_>>()?;
            }
            for a in axes {
                let (key, values) = key_value("--grid", a)?;
                if values.split(',').any(str::is_empty) {
                    return Err(Error::plan(format!("--grid `{a}`"), "an empty value between commas"));
                }
                let values: Vec<Value> = values.split(',').map(command_line_value).collect();
                match grid.axes.iter_mut().find(|(k, _)| *k == key) {
                    Some(axis) => axis.1 = values,
                    None => grid.axes.push((key, values)),
                }
            }
        }
        for s in set {
            let (key, v) = key_value("--set", s)?;
            let v = command_line_value(&v);
            match self.settings.iter_mut().find(|(k, _)| *k == key) {
                Some(setting) => setting.1 = v,
                None => self.settings.push((key, v)),
            }
        }
        Ok(self)
    }
}

/// A `--style` entry: one file or folder, or `A+B` (a blend), each part a file.
fn blend(text: &str) -> Result<Vec<String>> {
    let parts: Vec<String> = text.split('+').map(str::to_string).collect();
    if text.is_empty() {
        return Err(Error::plan("--style ``", "an empty path"));
    }
    if parts.len() > 1 && parts.iter().any(String::is_empty) {
        return Err(Error::plan(
            format!("--style `{text}`"),
            "a blend A+B needs a file on each side of every `+`",
        ));
    }
    Ok(parts)
}

/// `true`/`false` are switches on the command line too; anything else is a flag's value.
fn command_line_value(v: &str) -> Value {
    match v {
        "true" => Value::Switch(true),
        "false" => Value::Switch(false),
        _ => Value::Text(v.to_string()),
    }
}

/// `FLAG=VALUE` → (`FLAG` without leading dashes, `VALUE`).
fn key_value(option: &str, text: &str) -> Result<(String, String)> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim_start_matches('-').is_empty() && !v.is_empty() => {
            Ok((k.trim_start_matches('-').to_string(), v.to_string()))
        }
        _ => Err(Error::plan(format!("{option} `{text}`"), "expected FLAG=VALUE")),
    }
}

fn grid(t: &toml::Table) -> Result<Grid> {
    let mut g = Grid::default();
    for (key, v) in t {
        let place = format!("[grid] {key}");
        match key.as_str() {
            "content" => g.contents = strings(&place, v)?,
            "style" => {
                let entries = match v {
                    toml::Value::Array(items) => items.clone(),
                    other => vec![other.clone()],
                };
                g.styles = entries.iter().map(|e| strings(&place, e)).collect::<Result<_>>()?;
                if g.styles.iter().any(Vec::is_empty) {
                    return Err(Error::plan(&place, "an empty blend `[]` (a blend lists its style images)"));
                }
            }
            _ => {
                let values = match v {
                    toml::Value::Array(items) => {
                        items.iter().map(|i| value(&place, i)).collect::<Result<_>>()?
                    }
                    other => vec![value(&place, other)?],
                };
                g.axes.push((key.clone(), values));
            }
        }
    }
    Ok(g)
}

fn job(place: String, t: &toml::Table) -> Result<JobSpec> {
    let mut content = None;
    let mut styles = Vec::new();
    let mut name = None;
    let mut settings = Vec::new();
    for (key, v) in t {
        let at = format!("{place} {key}");
        match key.as_str() {
            "content" => content = Some(string(&at, v)?),
            "style" => styles = strings(&at, v)?,
            "name" => name = Some(string(&at, v)?),
            _ => settings.push((key.clone(), value(&at, v)?)),
        }
    }
    let content = content.ok_or_else(|| Error::plan(&place, "no `content`"))?;
    if styles.is_empty() {
        return Err(Error::plan(&place, "no `style`"));
    }
    Ok(JobSpec { place, name, content, styles, settings })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = r#"
output = "results"
[settings]
size = 64
weights = "builtin"
style-layers = ["relu1_1", "relu2_1"]
[grid]
content = ["photos/", "a.jpg"]
style = ["s.jpg", ["x.jpg", "y.jpg"]]
style-weight = [10, 100, 1e3]
preserve-colors = [true, false]
[[job]]
content = "c.png"
style = "s.png"
name = "mine"
tv-weight = 0.5
"#;

    #[test]
    fn a_plan_file_is_read() {
        let p = Plan::parse(Path::new("plans/p.toml"), PLAN).unwrap();
        assert_eq!(p.base, Path::new("plans"));
        assert_eq!(p.output.as_deref(), Some(Path::new("results")));
        let text = |s: &str| Value::Text(s.into());
        assert_eq!(
            p.settings,
            [
                ("size".into(), text("64")),
                ("style-layers".into(), text("relu1_1,relu2_1")),
                ("weights".into(), text("builtin"))
            ]
        );
        let g = p.grid.unwrap();
        assert_eq!(g.contents, ["photos/", "a.jpg"]);
        assert_eq!(g.styles, [vec!["s.jpg".to_string()], vec!["x.jpg".into(), "y.jpg".into()]]);
        assert_eq!(
            g.axes,
            [
                ("preserve-colors".into(), vec![Value::Switch(true), Value::Switch(false)]),
                ("style-weight".into(), vec![text("10"), text("100"), text("1000")]),
            ]
        );
        assert_eq!(p.jobs.len(), 1);
        assert_eq!(
            (p.jobs[0].name.as_deref(), &p.jobs[0].styles[..]),
            (Some("mine"), &["s.png".to_string()][..])
        );
        assert_eq!(p.jobs[0].settings, [("tv-weight".into(), text("0.5"))]);
    }

    #[test]
    fn plan_mistakes_name_their_key() {
        let err = |t: &str| Plan::parse(Path::new("p.toml"), t).unwrap_err().to_string();
        assert_eq!(
            err("outptu = 'x'"),
            "outptu: unknown top-level key (expected one of output, settings, grid, job)"
        );
        assert_eq!(err("[[job]]\nstyle = 's.png'"), "[[job]] 1: no `content`");
        assert_eq!(
            err("[grid]\nsize = [{a = 1}]"),
            "[grid] size: expected a string or a number, found table"
        );
        assert!(err("[grid\n").starts_with("plan p.toml: "), "{}", err("[grid\n"));
        assert_eq!(
            err("[grid]\ncontent = 'c.png'\nstyle = ['s.png', ['a.png', '']]"),
            "[grid] style: an empty string (expected a file or a name)"
        );
        assert_eq!(
            err("[grid]\ncontent = 'c.png'\nstyle = ['s.png', []]"),
            "[grid] style: an empty blend `[]` (a blend lists its style images)"
        );
        assert_eq!(
            err("[[job]]\ncontent = ''\nstyle = 's.png'"),
            "[[job]] 1 content: an empty string (expected a file or a name)"
        );
    }

    #[test]
    fn the_command_line_adds_a_grid_and_settings() {
        let p = Plan::empty(".".into())
            .with_command_line(
                &["c.png".into()],
                &["a.png".into(), "b.png+c.png".into()],
                &["style-weight=10,100".into(), "--luminance-only=true,false".into()],
                &["size=64".into()],
            )
            .unwrap();
        let g = p.grid.unwrap();
        assert_eq!(g.styles, [vec!["a.png".to_string()], vec!["b.png".into(), "c.png".into()]]);
        assert_eq!(
            g.axes[0],
            ("style-weight".into(), vec![Value::Text("10".into()), Value::Text("100".into())])
        );
        assert_eq!(g.axes[1], ("luminance-only".into(), vec![Value::Switch(true), Value::Switch(false)]));
        assert_eq!(p.settings, [("size".into(), Value::Text("64".into()))]);
        let e = Plan::empty(".".into()).with_command_line(&[], &[], &["size".into()], &[]).unwrap_err();
        assert_eq!(e.to_string(), "--grid `size`: expected FLAG=VALUE");
        let refused = |c: &str, s: &str, g: &str| {
            let (c, s, g) = ([c.to_string()], [s.to_string()], [g.to_string()]);
            Plan::empty(".".into()).with_command_line(&c, &s, &g, &[]).unwrap_err().to_string()
        };
        assert_eq!(refused("", "s.png", "size=64"), "--content ``: an empty path");
        assert_eq!(refused("c.png", "", "size=64"), "--style ``: an empty path");
        assert_eq!(
            refused("c.png", "s.png", "size=64,,96"),
            "--grid `size=64,,96`: an empty value between commas"
        );
        for style in ["s.png+", "+s.png", "a.png++b.png"] {
            let e = Plan::empty(".".into()).with_command_line(&[], &[style.into()], &[], &[]).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("--style `{style}`: a blend A+B needs a file on each side of every `+`")
            );
        }
    }
}
