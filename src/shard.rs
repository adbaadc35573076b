//! Which shard of a job list this process takes: `--shard I/N`, else a Slurm job array's task, else a
//! Kubernetes Indexed Job's completion index with a count, else everything; and the environment and
//! host name `impasto batch` and `impasto tiles run` read for it.

use anyhow::{Result, anyhow, bail};
use impasto_batch::Shard;

/// Slurm job arrays: this task's index, the array's lowest index and its task count.
pub const SLURM_ID_ENV: &str = "SLURM_ARRAY_TASK_ID";
/// See [`SLURM_ID_ENV`].
pub const SLURM_MIN_ENV: &str = "SLURM_ARRAY_TASK_MIN";
/// See [`SLURM_ID_ENV`].
pub const SLURM_COUNT_ENV: &str = "SLURM_ARRAY_TASK_COUNT";
/// Kubernetes Indexed Jobs: the pod's completion index (Kubernetes sets no count).
pub const K8S_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// The shard count that goes with `JOB_COMPLETION_INDEX` (or `--shard-count`).
pub const SHARD_COUNT_ENV: &str = "IMPASTO_SHARD_COUNT";

/// What `impasto batch` and `impasto tiles run` read from their environment and system.
#[derive(Debug, Clone, Default)]
pub struct ShardEnv {
    /// `SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_MIN`, `SLURM_ARRAY_TASK_COUNT`.
    pub slurm: (Option<String>, Option<String>, Option<String>),
    /// `JOB_COMPLETION_INDEX`.
    pub k8s_index: Option<String>,
    /// `IMPASTO_SHARD_COUNT`.
    pub count: Option<String>,
    /// This host's name.
    pub host: String,
}

impl ShardEnv {
    /// Reads the real environment and host name.
    pub fn from_process() -> ShardEnv {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .find_map(|p| {
                std::fs::read_to_string(p).ok().map(|h| h.trim().to_string()).filter(|h| !h.is_empty())
            })
            .or_else(|| var("HOSTNAME"))
            .unwrap_or_else(|| "localhost".into());
        ShardEnv {
            slurm: (var(SLURM_ID_ENV), var(SLURM_MIN_ENV), var(SLURM_COUNT_ENV)),
            k8s_index: var(K8S_INDEX_ENV),
            count: var(SHARD_COUNT_ENV),
            host,
        }
    }
}

/// The shard of `--shard` and `--shard-count` (`impasto batch`, `impasto tiles run`): the flag, else
/// Slurm's array, else Kubernetes' index with a count, else everything.
pub fn shard_from(shard: Option<&str>, shard_count: Option<usize>, env: &ShardEnv) -> Result<Shard> {
    let num = |name: &str, v: &str| -> Result<usize> {
        v.trim().parse().map_err(|_| anyhow!("invalid ${name} `{v}`: expected a whole number"))
    };
    if shard_count == Some(0) {
        bail!("invalid --shard-count 0: the shard count must be at least 1");
    }
    if let Some(text) = shard {
        return Ok(text.parse()?);
    }
    if let (Some(id), min, Some(count)) = &env.slurm {
        let (id, count) = (num(SLURM_ID_ENV, id)?, num(SLURM_COUNT_ENV, count)?);
        let min = min.as_deref().map(|m| num(SLURM_MIN_ENV, m)).transpose()?.unwrap_or(0);
        let index = id
            .checked_sub(min)
            .ok_or_else(|| anyhow!("${SLURM_ID_ENV} {id} is below ${SLURM_MIN_ENV} {min}"))?;
        return Ok(Shard::new(
            index,
            count,
            &format!(
                "{index}/{count} (from ${SLURM_ID_ENV} - ${SLURM_MIN_ENV} of ${SLURM_COUNT_ENV}; use a contiguous array such as --array=0-3)"
            ),
        )?);
    }
    if let Some(i) = &env.k8s_index {
        let count = match (shard_count, &env.count) {
            (Some(n), _) => n,
            (None, Some(n)) => num(SHARD_COUNT_ENV, n)?,
            (None, None) => bail!(
                "${K8S_INDEX_ENV} is set but not the shard count: pass --shard-count N or set ${SHARD_COUNT_ENV} (the Job's completions)"
            ),
        };
        let index = num(K8S_INDEX_ENV, i)?;
        return Ok(Shard::new(index, count, &format!("{index}/{count}"))?);
    }
    Ok(Shard::ALL)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(
        slurm: (Option<&str>, Option<&str>, Option<&str>),
        k8s: Option<&str>,
        count: Option<&str>,
    ) -> ShardEnv {
        let s = |v: Option<&str>| v.map(str::to_string);
        ShardEnv {
            slurm: (s(slurm.0), s(slurm.1), s(slurm.2)),
            k8s_index: s(k8s),
            count: s(count),
            host: "h".into(),
        }
    }

    #[test]
    fn the_shard_comes_from_the_flag_slurm_or_kubernetes() {
        let none = (None, None, None);
        let shard = |a: &[&str], e: ShardEnv| {
            let flag = |name: &str| a.iter().position(|f| *f == name).map(|i| a[i + 1]);
            let count = flag("--shard-count").map(|n| n.parse().unwrap());
            shard_from(flag("--shard"), count, &e).map(|s| s.to_string()).map_err(|e| e.to_string())
        };
        assert_eq!(shard(&[], env(none, None, None)), Ok("0/1".into()));
        assert_eq!(
            shard(&["--shard", "1/3"], env((Some("0"), None, Some("4")), None, None)),
            Ok("1/3".into())
        );
        assert_eq!(shard(&[], env((Some("2"), Some("0"), Some("4")), None, None)), Ok("2/4".into()));
        assert_eq!(shard(&[], env((Some("5"), Some("4"), Some("4")), None, None)), Ok("1/4".into()));
        assert_eq!(shard(&[], env(none, Some("3"), Some("5"))), Ok("3/5".into()));
        assert_eq!(shard(&["--shard-count", "6"], env(none, Some("3"), Some("5"))), Ok("3/6".into()));
        assert!(
            shard(&[], env(none, Some("3"), None))
                .unwrap_err()
                .contains("pass --shard-count N or set $IMPASTO_SHARD_COUNT")
        );
        assert_eq!(
            shard(&["--shard", "3/2"], env(none, None, None)).unwrap_err(),
            "invalid shard `3/2`: index 3 is not below the count 2 (shards are numbered 0 to 1)"
        );
        assert!(shard(&[], env(none, Some("7"), Some("4"))).unwrap_err().starts_with("invalid shard `7/4`"));
        // A zero count is refused wherever it is given, also where nothing reads it.
        let zero = "invalid --shard-count 0: the shard count must be at least 1";
        assert_eq!(shard(&["--shard-count", "0"], env(none, None, None)).unwrap_err(), zero);
        assert_eq!(shard(&["--shard-count", "0"], env(none, Some("0"), Some("2"))).unwrap_err(), zero);
        assert!(shard(&[], env(none, Some("0"), Some("0"))).unwrap_err().ends_with("must be at least 1"));
        // A huge count is a shard like any other (most of them empty).
        assert_eq!(
            shard(&[], env((Some("3"), None, Some("99999999999")), None, None)),
            Ok("3/99999999999".into())
        );
    }
}
