//! The summary of a batch: a contact sheet (`index.png`, a labelled grid of the results: rows and
//! columns from the grid's axes, one row per `[[job]]`) and an HTML page (`index.html`: each result with
//! its settings, status and losses), both written to a temporary name and renamed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};

use crate::claim::{is_done, output_path};
use crate::error::{Error, Result};
use crate::expand::{Job, JobList};
use crate::font;
use crate::log::{self, Record};

/// The contact sheet's file name in the output folder.
pub const SHEET: &str = "index.png";
/// The HTML page's file name.
pub const PAGE: &str = "index.html";

/// Cell side (pixels) of a result's thumbnail on the sheet.
const CELL: u32 = 128;
/// Space around cells and labels.
const PAD: u32 = 6;
/// Label text scale (font pixels to image pixels).
const SCALE: u32 = 2;
/// The widest row label, in pixels.
const MAX_LABEL: u32 = 480;

/// The sheet's layout: column labels, and rows of a label and one optional job per column.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout<'a> {
    /// Column headers.
    pub columns: Vec<String>,
    /// Rows: a label and, per column, the job shown there.
    pub rows: Vec<(String, Vec<Option<&'a Job>>)>,
}

/// Rows and columns from the axes: the last axis with more than one value gives the columns, the other
/// such axes the rows; each `[[job]]` is a row of its own.
pub fn layout(list: &JobList) -> Layout<'_> {
    let varying: Vec<usize> = (0..list.axes.len()).filter(|&i| list.axes[i].1.len() > 1).collect();
    let column_axis =
        varying.last().copied().or(if list.axes.is_empty() { None } else { Some(list.axes.len() - 1) });
    let columns: Vec<String> = match column_axis {
        Some(a) => list.axes[a].1.iter().map(|v| format!("{}={v}", list.axes[a].0)).collect(),
        None => vec![String::new()],
    };
    let mut rows: Vec<(String, Vec<Option<&Job>>)> = Vec::new();
    for job in &list.jobs {
        if job.coords.is_empty() {
            let mut cells = vec![None; columns.len()];
            cells[0] = Some(job);
            rows.push((job.name.clone(), cells));
            continue;
        }
        let label = varying
            .iter()
            .filter(|&&a| Some(a) != column_axis)
            .map(|&a| format!("{}={}", job.coords[a].0, job.coords[a].1))
            .collect::<Vec<_>>()
            .join(" ");
        let col =
            column_axis.and_then(|a| list.axes[a].1.iter().position(|v| *v == job.coords[a].1)).unwrap_or(0);
        // Equal labels (e.g. two contents of one name in other folders) get a row of their own.
        match rows.iter_mut().rev().find(|(l, cells)| *l == label && cells[col].is_none()) {
            Some((_, cells)) => cells[col] = Some(job),
            None => {
                let mut cells = vec![None; columns.len()];
                cells[col] = Some(job);
                rows.push((label, cells));
            }
        }
    }
    Layout { columns, rows }
}

/// Cuts a label to fit `width` pixels at `scale`, ending in `..` when cut.
fn fit(text: &str, width: u32, scale: u32) -> String {
    if font::text_width(text, scale) <= width {
        return text.to_string();
    }
    let mut t: String = text.to_string();
    while !t.is_empty() && font::text_width(&format!("{t}.."), scale) > width {
        t.pop();
    }
    format!("{t}..")
}

/// Draws the contact sheet of `list`'s results in folder `out`.
pub fn render(list: &JobList, out: &Path) -> RgbImage {
    let l = layout(list);
    let text_h = font::HEIGHT * SCALE;
    let label_w =
        l.rows.iter().map(|(label, _)| font::text_width(label, SCALE)).max().unwrap_or(0).min(MAX_LABEL);
    let left = if label_w == 0 { PAD } else { label_w + 2 * PAD };
    let top = 2 * text_h + 3 * PAD;
    let width = left + l.columns.len() as u32 * (CELL + PAD);
    let height = top + l.rows.len() as u32 * (CELL + PAD);
    let (black, grey) = (Rgb([0, 0, 0]), Rgb([200, 200, 200]));
    let mut img = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    for (c, header) in l.columns.iter().enumerate() {
        let x = left + c as u32 * (CELL + PAD);
        // Column headers take two lines when `axis=value` is too wide for a cell.
        let (axis, value) = header.split_once('=').unwrap_or(("", header));
        if font::text_width(header, SCALE) <= CELL {
            font::draw(&mut img, header, x, PAD + text_h + PAD, SCALE, black);
        } else {
            font::draw(&mut img, &fit(&format!("{axis}="), CELL, SCALE), x, PAD, SCALE, black);
            font::draw(&mut img, &fit(value, CELL, SCALE), x, 2 * PAD + text_h, SCALE, black);
        }
    }
    for (r, (label, cells)) in l.rows.iter().enumerate() {
        let y = top + r as u32 * (CELL + PAD);
        font::draw(&mut img, &fit(label, label_w, SCALE), PAD, y + (CELL - text_h) / 2, SCALE, black);
        for (c, job) in cells.iter().enumerate() {
            let x = left + c as u32 * (CELL + PAD);
            let Some(job) = job else { continue };
            let path = output_path(out, &job.name);
            match image::open(&path).ok().filter(|_| is_done(&path, &job.fingerprint)) {
                Some(result) => {
                    let thumb = result.resize(CELL, CELL, image::imageops::FilterType::Triangle).to_rgb8();
                    let (dx, dy) = ((CELL - thumb.width()) / 2, (CELL - thumb.height()) / 2);
                    image::imageops::overlay(&mut img, &thumb, i64::from(x + dx), i64::from(y + dy));
                }
                None => {
                    for py in y..y + CELL {
                        for px in x..x + CELL {
                            img.put_pixel(px, py, grey);
                        }
                    }
                    font::draw(
                        &mut img,
                        "MISSING",
                        x + (CELL - font::text_width("MISSING", SCALE)) / 2,
                        y + (CELL - text_h) / 2,
                        SCALE,
                        black,
                    );
                }
            }
        }
    }
    img
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// What a job's row says: `done`, or the latest failure (with its reason), or `missing`.
fn status(job: &Job, out: &Path, failed: Option<&&Record>) -> String {
    if is_done(&output_path(out, &job.name), &job.fingerprint) {
        "done".into()
    } else if let Some(r) = failed {
        format!("{}: {}", r.status, r.reason.as_deref().unwrap_or(""))
    } else {
        "missing".into()
    }
}

/// The HTML page: the sheet, then a table of every job.
pub fn page(list: &JobList, out: &Path, records: &[Record]) -> String {
    let done = log::latest(records, &["done"]);
    let failed = log::latest(records, &["failed", "interrupted"]);
    let n_done = list.jobs.iter().filter(|j| is_done(&output_path(out, &j.name), &j.fingerprint)).count();
    let mut h = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>impasto batch</title>\n<style>\
         body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}td,th{border:1px solid #ccc;\
         padding:4px;vertical-align:top;text-align:left}img.t{max-width:160px;max-height:160px}\
         code{font-size:90%}</style></head><body>\n",
    );
    let _ = writeln!(h, "<h1>impasto batch: {n_done} of {} done</h1>", list.jobs.len());
    let _ = writeln!(h, "<p><img src=\"{SHEET}\" alt=\"contact sheet\"></p>");
    h.push_str("<table>\n<tr><th>result</th><th>job</th><th>status</th><th>inputs</th><th>settings</th><th>losses</th><th>time</th></tr>\n");
    for job in &list.jobs {
        let file = format!("{}.png", job.name);
        let st = status(job, out, failed.get(job.name.as_str()));
        let img = if st == "done" {
            format!("<a href=\"{0}\"><img class=\"t\" src=\"{0}\" alt=\"{0}\"></a>", escape(&file))
        } else {
            String::new()
        };
        let inputs = std::iter::once(&job.content)
            .chain(&job.styles)
            .map(|p: &PathBuf| escape(&p.to_string_lossy()))
            .collect::<Vec<_>>()
            .join("<br>");
        let settings = job
            .settings
            .iter()
            .map(|(k, v)| escape(&format!("{k}={}", v.text())))
            .collect::<Vec<_>>()
            .join("<br>");
        let rec = done.get(job.name.as_str()).filter(|_| st == "done");
        let losses = rec.and_then(|r| r.losses).map_or(String::new(), |l| {
            format!(
                "content {:.3e}<br>style {:.3e}<br>tv {:.3e}<br>total {:.3e}",
                l.content, l.style, l.tv, l.total
            )
        });
        let time = rec.map_or(String::new(), |r| format!("{:.1} s<br>{}", r.seconds, escape(&r.time)));
        let _ = writeln!(
            h,
            "<tr id=\"{0}\"><td>{img}</td><td><code>{0}</code></td><td>{1}</td><td>{inputs}</td><td><code>{settings}</code></td><td>{losses}</td><td>{time}</td></tr>",
            escape(&job.name),
            escape(&st)
        );
    }
    h.push_str("</table>\n</body></html>\n");
    h
}

/// Writes `bytes` to `path` through a temporary name in the same folder and a rename.
fn write_atomic(path: &Path, tag: &str, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{tag}.tmp"));
    write(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("index", path, e)
    })
}

/// Writes `index.png` and `index.html` in `out`; `tag` makes the temporary names unique to the caller
/// (e.g. host and pid). Returns the two paths.
pub fn write(list: &JobList, out: &Path, tag: &str) -> Result<(PathBuf, PathBuf)> {
    let sheet = out.join(SHEET);
    let img = render(list, out);
    write_atomic(&sheet, tag, |tmp| {
        img.save_with_format(tmp, image::ImageFormat::Png)
            .map_err(|e| Error::Image { path: sheet.clone(), cause: e })
    })?;
    let html = out.join(PAGE);
    let text = page(list, out, &log::read_all(out));
    write_atomic(&html, tag, |tmp| std::fs::write(tmp, &text).map_err(|e| Error::io("index", &html, e)))?;
    Ok((sheet, html))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expand::{FlagKind, Flags, expand};
    use crate::plan::Plan;

    fn list(dir: &Path, text: &str) -> JobList {
        for n in ["a.png", "b.png", "s.png"] {
            image::RgbImage::from_pixel(8, 8, Rgb([9, 9, 9])).save(dir.join(n)).unwrap();
        }
        let flags = Flags::new([("style-weight", FlagKind::Value), ("size", FlagKind::Value)]);
        expand(&Plan::parse(&dir.join("p.toml"), text).unwrap(), &flags).unwrap()
    }

    #[test]
    fn rows_and_columns_come_from_the_varying_axes() {
        let dir = tempfile::tempdir().unwrap();
        let l = list(
            dir.path(),
            "[grid]\ncontent=['a.png','b.png']\nstyle='s.png'\nstyle-weight=[1,2,3]\nsize=64\n[[job]]\ncontent='a.png'\nstyle='s.png'\n",
        );
        let lay = layout(&l);
        assert_eq!(lay.columns, ["style-weight=1", "style-weight=2", "style-weight=3"]);
        let labels: Vec<&str> = lay.rows.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels[..2], ["content=a", "content=b"]);
        assert!(labels[2].starts_with("a_s_"));
        assert_eq!(lay.rows[1].1[2].unwrap().coords[3], ("style-weight".into(), "3".into()));
        assert_eq!(lay.rows[2].1[1], None);
    }

    #[test]
    fn the_index_shows_results_and_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let l = list(dir.path(), "[grid]\ncontent='a.png'\nstyle='s.png'\nstyle-weight=[1,2]\n");
        // One result, written as a run would (parameters and fingerprint).
        let out = output_path(dir.path(), &l.jobs[0].name);
        let mut enc = png::Encoder::new(std::fs::File::create(&out).unwrap(), 1, 1);
        enc.set_color(png::ColorType::Rgb);
        enc.add_text_chunk("parameters".into(), "impasto".into()).unwrap();
        enc.add_text_chunk("impasto-batch".into(), l.jobs[0].fingerprint.clone()).unwrap();
        enc.write_header().unwrap().write_image_data(&[255, 0, 0]).unwrap();
        let (sheet, html) = write(&l, dir.path(), "t").unwrap();
        let img = image::open(&sheet).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (PAD + 2 * (CELL + PAD), 2 * 14 + 3 * PAD + CELL + PAD));
        let top = 2 * 14 + 3 * PAD;
        assert_eq!(img.get_pixel(PAD + CELL / 2, top + CELL / 2).0, [255, 0, 0], "the result, scaled up");
        assert_eq!(img.get_pixel(PAD + CELL + PAD + 2, top + 2).0, [200, 200, 200], "the missing one");
        let page = std::fs::read_to_string(html).unwrap();
        assert!(page.contains("<h1>impasto batch: 1 of 2 done</h1>"), "{page}");
        assert!(page.contains("<td>missing</td>"));
        assert_eq!(
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tmp"))
                .count(),
            0
        );
    }
}
