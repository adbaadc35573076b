//! The batch log: one JSON object a line per job attempt (done, failed, interrupted, skipped or busy),
//! one file per shard in `OUT/batch-log/` so that shards on a shared file system never append to the
//! same file; read back (all shards) for the index.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::shard::Shard;

/// The log folder inside the output folder.
pub const LOG_DIR: &str = "batch-log";

/// The loss terms of a finished run (weighted, as impasto reports them).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Losses {
    /// Content loss.
    pub content: f64,
    /// Style loss.
    pub style: f64,
    /// Total-variation loss.
    pub tv: f64,
    /// Their sum.
    pub total: f64,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// When the attempt ended, RFC 3339 UTC.
    pub time: String,
    /// The job's output name.
    pub job: String,
    /// `done`, `failed`, `interrupted`, `skipped` (already done) or `busy` (another owner holds it).
    pub status: String,
    /// Why it failed or was not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Seconds the attempt took.
    pub seconds: f64,
    /// Iterations run, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<usize>,
    /// The final losses, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub losses: Option<Losses>,
    /// Whether the attempt continued from the checkpoint of an earlier one stopped early.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resumed: bool,
    /// The shard, `I/N`.
    pub shard: String,
    /// The host that ran it.
    pub host: String,
    /// Its process id.
    pub pid: u32,
}

/// The log file of a shard.
pub fn log_path(out: &Path, shard: Shard) -> PathBuf {
    out.join(LOG_DIR).join(format!("shard-{}-of-{}.jsonl", shard.index, shard.count))
}

/// Appends one record as one line (one write).
pub fn append(path: &Path, record: &Record) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("log folder", dir, e))?;
    }
    let mut line =
        serde_json::to_string(record).map_err(|e| Error::io("log", path, std::io::Error::other(e)))?;
    line.push('\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io("log", path, e))?;
    f.write_all(line.as_bytes()).map_err(|e| Error::io("log", path, e))
}

/// Every record of every shard's log in `out`, by file name and line order (lines that are not
/// records, e.g. cut short by a crash, are left out).
pub fn read_all(out: &Path) -> Vec<Record> {
    let Ok(dir) = std::fs::read_dir(out.join(LOG_DIR)) else { return Vec::new() };
    let mut files: Vec<PathBuf> = dir
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|text| text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect::<Vec<Record>>())
        .collect()
}

/// The latest record of each job with one of `statuses`, by time.
pub fn latest<'a>(records: &'a [Record], statuses: &[&str]) -> BTreeMap<&'a str, &'a Record> {
    let mut out: BTreeMap<&str, &Record> = BTreeMap::new();
    for r in records.iter().filter(|r| statuses.contains(&r.status.as_str())) {
        if out.get(r.job.as_str()).is_none_or(|prev| prev.time <= r.time) {
            out.insert(&r.job, r);
        }
    }
    out
}

/// `2026-11-29T12:34:56Z`.
pub fn timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp(UNIX_EPOCH + Duration::from_secs(1_796_041_696)), "2026-11-30T12:28:16Z");
        assert_eq!(timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn records_round_trip_per_shard() {
        let dir = tempfile::tempdir().unwrap();
        let rec = |job: &str, status: &str, time: &str| Record {
            time: time.into(),
            job: job.into(),
            status: status.into(),
            reason: (status == "failed").then(|| "bad".into()),
            seconds: 1.5,
            iterations: Some(3),
            losses: Some(Losses { content: 1.0, style: 2.0, tv: 3.0, total: 6.0 }),
            resumed: status == "done",
            shard: "0/2".into(),
            host: "h".into(),
            pid: 1,
        };
        append(
            &log_path(dir.path(), Shard { index: 0, count: 2 }),
            &rec("a", "failed", "2026-01-01T00:00:00Z"),
        )
        .unwrap();
        append(
            &log_path(dir.path(), Shard { index: 1, count: 2 }),
            &rec("a", "done", "2026-01-02T00:00:00Z"),
        )
        .unwrap();
        let all = read_all(dir.path());
        assert_eq!(all.len(), 2);
        assert_eq!(latest(&all, &["done", "failed"])["a"].status, "done");
        let line = std::fs::read_to_string(log_path(dir.path(), Shard { index: 0, count: 2 })).unwrap();
        assert!(
            line.starts_with(
                r#"{"time":"2026-01-01T00:00:00Z","job":"a","status":"failed","reason":"bad","seconds":1.5"#
            ),
            "{line}"
        );
    }
}
