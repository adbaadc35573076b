//! Who works on a job, on a shared file system: an owner marker `.NAME.png.lock` created atomically
//! (create-new), refreshed while the job runs, removed when it ends; a marker whose owner is gone (its
//! process ended on this host, or no refresh for longer than the stale time) is taken over. And whether
//! a job is done: its output PNG exists and carries the job's fingerprint.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};

/// The PNG text key that holds a batch job's fingerprint (next to impasto's `parameters`).
pub const FINGERPRINT_KEY: &str = "impasto-batch";

/// The key of impasto's embedded run parameters.
pub const PARAMETERS_KEY: &str = "parameters";

/// The output file of job `name` in `dir`.
pub fn output_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.png"))
}

/// The folder inside the results folder that holds the checkpoints of jobs stopped early.
pub const CHECKPOINT_DIR: &str = "batch-checkpoints";

/// The checkpoint of job `name` in results folder `dir`: written when the job stops early (and every
/// `checkpoint-every` iterations), continued from by the next run of the batch, removed once the
/// job's image is written.
pub fn checkpoint_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(CHECKPOINT_DIR).join(format!("{name}.ckpt"))
}

/// The owner marker of job `name` in `dir`.
pub fn lock_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.png.lock"))
}

/// The PNG text chunks of a file (before its image data), or none if it is not a readable PNG.
pub fn png_text(path: &Path) -> Vec<(String, String)> {
    let Ok(file) = std::fs::File::open(path) else { return Vec::new() };
    let Ok(reader) = png::Decoder::new(std::io::BufReader::new(file)).read_info() else { return Vec::new() };
    let info = reader.info();
    let latin = info.uncompressed_latin1_text.iter().map(|t| (t.keyword.clone(), t.text.clone()));
    let utf8 = info.utf8_text.iter().filter_map(|t| Some((t.keyword.clone(), t.get_text().ok()?)));
    latin.chain(utf8).collect()
}

/// Whether the result at `path` is a finished run of the job with this fingerprint: a PNG carrying
/// impasto's `parameters` and this fingerprint. (Outputs are written to a temporary name and renamed,
/// so a file that exists is whole.)
pub fn is_done(path: &Path, fingerprint: &str) -> bool {
    let text = png_text(path);
    text.iter().any(|(k, _)| k == PARAMETERS_KEY)
        && text.iter().any(|(k, v)| k == FINGERPRINT_KEY && v == fingerprint)
}

/// Who holds a claim: written into the marker, one `key=value` a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The host name.
    pub host: String,
    /// The process id on that host.
    pub pid: u32,
    /// The shard, e.g. `2/4`.
    pub shard: String,
    /// A token unique to this process (host, pid and start time), to tell a marker from its successor.
    pub token: String,
}

impl Owner {
    fn to_text(&self) -> String {
        format!("host={}\npid={}\nshard={}\ntoken={}\n", self.host, self.pid, self.shard, self.token)
    }

    /// Reads a marker's text; `None` if it is not one.
    pub fn parse(text: &str) -> Option<Owner> {
        let get =
            |key: &str| text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).map(str::to_string);
        Some(Owner {
            host: get("host")?,
            pid: get("pid")?.parse().ok()?,
            shard: get("shard")?,
            token: get("token")?,
        })
    }
}

/// When a marker is taken over.
#[derive(Debug, Clone, Copy)]
pub struct Staleness<'a> {
    /// This host's name: a marker from it whose process is gone is stale at once.
    pub host: &'a str,
    /// Whether a process of this host is running.
    pub alive: fn(u32) -> bool,
    /// A marker not refreshed for this long is stale, whoever wrote it (its node died).
    pub after: Duration,
}

impl Staleness<'_> {
    /// Whether a marker written by `owner` (`None`: unreadable), last refreshed at `modified`, is stale
    /// at `now`.
    pub fn is_stale(&self, owner: Option<&Owner>, modified: SystemTime, now: SystemTime) -> bool {
        if let Some(o) = owner
            && o.host == self.host
            && !(self.alive)(o.pid)
        {
            return true;
        }
        now.duration_since(modified).is_ok_and(|age| age > self.after)
    }
}

/// A held claim; [`Claim::release`] removes the marker (dropping it without release leaves it, as a
/// killed process would).
#[derive(Debug)]
pub struct Claim {
    path: PathBuf,
}

/// What [`claim`] found.
#[derive(Debug)]
pub enum Claimed {
    /// The job is ours.
    Mine(Claim),
    /// Another live owner holds it.
    Busy(Option<Owner>),
}

/// Tries to claim the job whose marker is `lock`, taking over a stale marker.
pub fn claim(lock: &Path, me: &Owner, stale: &Staleness<'_>) -> Result<Claimed> {
    for _ in 0..2 {
        match OpenOptions::new().write(true).create_new(true).open(lock) {
            Ok(mut f) => {
                f.write_all(me.to_text().as_bytes())
                    .and_then(|()| f.sync_all())
                    .map_err(|e| Error::io("claim", lock, e))?;
                return Ok(Claimed::Mine(Claim { path: lock.to_path_buf() }));
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("claim", lock, e)),
        }
        let text = std::fs::read_to_string(lock).unwrap_or_default();
        let owner = Owner::parse(&text);
        let Ok(modified) = std::fs::metadata(lock).and_then(|m| m.modified()) else { continue };
        if !stale.is_stale(owner.as_ref(), modified, SystemTime::now()) {
            return Ok(Claimed::Busy(owner));
        }
        // Take the stale marker away by renaming it (only one taker's rename succeeds); if what was
        // renamed is not the marker judged stale, a successor's fresh one was taken: put it back.
        let aside = lock.with_extension(format!("lock.stale-{}", me.token));
        if std::fs::rename(lock, &aside).is_err() {
            continue;
        }
        let taken = std::fs::read_to_string(&aside).unwrap_or_default();
        if taken != text {
            let _ = std::fs::hard_link(&aside, lock);
            let _ = std::fs::remove_file(&aside);
            return Ok(Claimed::Busy(Owner::parse(&taken)));
        }
        let _ = std::fs::remove_file(&aside);
    }
    let owner = std::fs::read_to_string(lock).ok().and_then(|t| Owner::parse(&t));
    Ok(Claimed::Busy(owner))
}

impl Claim {
    /// The marker file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Marks the claim as alive now (its modification time).
    pub fn refresh(&self) {
        if let Ok(f) = OpenOptions::new().write(true).open(&self.path) {
            let _ = f.set_modified(SystemTime::now());
        }
    }

    /// Gives the job up: removes the marker.
    pub fn release(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(host: &str, pid: u32) -> Owner {
        Owner { host: host.into(), pid, shard: "0/1".into(), token: format!("{host}-{pid}") }
    }

    #[test]
    fn one_claim_per_job_and_dead_owners_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let lock = lock_path(dir.path(), "job");
        let alive: fn(u32) -> bool = |pid| pid == 1;
        let stale = Staleness { host: "here", alive, after: Duration::from_secs(60) };
        let Claimed::Mine(first) = claim(&lock, &owner("here", 1), &stale).unwrap() else { panic!("free") };
        // A live owner keeps it, here or elsewhere.
        match claim(&lock, &owner("here", 2), &stale).unwrap() {
            Claimed::Busy(Some(o)) => assert_eq!(o, owner("here", 1)),
            other => panic!("{other:?}"),
        }
        first.release();
        assert!(!lock.exists());
        // A marker of a process of this host that ended is taken over at once.
        std::fs::write(&lock, owner("here", 7).to_text()).unwrap();
        let Claimed::Mine(c) = claim(&lock, &owner("here", 1), &stale).unwrap() else { panic!("dead owner") };
        assert_eq!(Owner::parse(&std::fs::read_to_string(c.path()).unwrap()), Some(owner("here", 1)));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no leftovers");
        // A marker of another host is stale only once not refreshed for longer than `after`.
        let now = SystemTime::now();
        let there = owner("there", 7);
        assert!(!stale.is_stale(Some(&there), now - Duration::from_secs(30), now));
        assert!(stale.is_stale(Some(&there), now - Duration::from_secs(90), now));
        assert!(!stale.is_stale(None, now, now));
    }

    #[test]
    fn done_means_a_png_with_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let out = output_path(dir.path(), "a");
        assert!(!is_done(&out, "f1"));
        let write = |pairs: &[(&str, &str)]| {
            let file = std::fs::File::create(&out).unwrap();
            let mut enc = png::Encoder::new(file, 1, 1);
            enc.set_color(png::ColorType::Grayscale);
            for (k, v) in pairs {
                enc.add_text_chunk(k.to_string(), v.to_string()).unwrap();
            }
            enc.write_header().unwrap().write_image_data(&[0]).unwrap();
        };
        write(&[(PARAMETERS_KEY, "impasto c.png s.png"), (FINGERPRINT_KEY, "f1")]);
        assert!(is_done(&out, "f1"));
        assert!(!is_done(&out, "f2"), "other settings");
        write(&[(FINGERPRINT_KEY, "f1")]);
        assert!(!is_done(&out, "f1"), "no parameters");
        std::fs::write(&out, b"not a png").unwrap();
        assert!(!is_done(&out, "f1"));
    }
}
