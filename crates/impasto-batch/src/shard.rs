//! Shards without a coordinator: `I/N` parsing, and a split of the job list into N disjoint parts
//! balanced by estimated cost (pixels × iterations), the same on every machine.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Shard `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which part, 0 ≤ index < count.
    pub index: usize,
    /// How many parts.
    pub count: usize,
}

impl Shard {
    /// The whole job list as one shard.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Checks `index < count` and `count > 0`; `text` is what the user gave, for the message.
    pub fn new(index: usize, count: usize, text: &str) -> Result<Shard> {
        let bad = |why: String| Err(Error::Shard { text: text.to_string(), why });
        if count == 0 {
            return bad("the shard count must be at least 1".into());
        }
        if index >= count {
            return bad(format!(
                "index {index} is not below the count {count} (shards are numbered 0 to {})",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }
}

impl FromStr for Shard {
    type Err = Error;

    /// `I/N`, e.g. `0/4`.
    fn from_str(text: &str) -> Result<Shard> {
        let parse = |t: &str| t.trim().parse::<usize>().ok();
        match text.split_once('/').map(|(i, n)| (parse(i), parse(n))) {
            Some((Some(i), Some(n))) => Shard::new(i, n, text),
            _ => Err(Error::Shard {
                text: text.to_string(),
                why: "expected I/N with whole numbers, e.g. 0/4".into(),
            }),
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard of each job: longest first (cost descending, then name), each to the least-loaded shard
/// (the lowest index on a tie). `jobs` are (name, cost); the result is in the same order. Shards past
/// the job count stay empty (every job costs at least 1, so an empty shard beats a used one and the
/// first `jobs.len()` shards are filled first), so only that many are tracked: `count` may be huge.
pub fn assign(jobs: &[(&str, u64)], count: usize) -> Vec<usize> {
    let count = count.clamp(1, jobs.len().max(1));
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by(|&a, &b| jobs[b].1.cmp(&jobs[a].1).then_with(|| jobs[a].0.cmp(jobs[b].0)));
    let mut load = vec![0u64; count];
    let mut out = vec![0; jobs.len()];
    for i in order {
        let least = (0..count).min_by_key(|&s| (load[s], s)).unwrap_or(0);
        load[least] = load[least].saturating_add(jobs[i].1.max(1));
        out[i] = least;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_parsed_and_checked() {
        assert_eq!("2/4".parse::<Shard>().unwrap(), Shard { index: 2, count: 4 });
        let err = |t: &str| t.parse::<Shard>().unwrap_err().to_string();
        assert_eq!(
            err("3/2"),
            "invalid shard `3/2`: index 3 is not below the count 2 (shards are numbered 0 to 1)"
        );
        assert_eq!(err("0/0"), "invalid shard `0/0`: the shard count must be at least 1");
        assert_eq!(err("1-4"), "invalid shard `1-4`: expected I/N with whole numbers, e.g. 0/4");
        assert_eq!(err("-1/4"), "invalid shard `-1/4`: expected I/N with whole numbers, e.g. 0/4");
    }

    #[test]
    fn parts_are_disjoint_balanced_by_cost_and_deterministic() {
        // One big job and six small ones: by count each shard would get 3 or 4; by cost the big one
        // is alone.
        let jobs: Vec<(String, u64)> =
            std::iter::once(("big".to_string(), 600)).chain((0..6).map(|i| (format!("s{i}"), 100))).collect();
        let refs: Vec<(&str, u64)> = jobs.iter().map(|(n, c)| (n.as_str(), *c)).collect();
        let a = assign(&refs, 2);
        assert_eq!(a, [0, 1, 1, 1, 1, 1, 1]);
        // The input order does not matter.
        let mut rev = refs.clone();
        rev.reverse();
        let mut b = assign(&rev, 2);
        b.reverse();
        assert_eq!(a, b);
        // More shards than jobs: some are empty, none has a job twice.
        let c = assign(&refs[..2], 4);
        assert_eq!(c, [0, 1]);
        // A huge count allocates nothing per shard: the jobs go to the first shards, the rest are empty.
        assert_eq!(assign(&refs[..2], 99_999_999_999), [0, 1]);
        assert_eq!(assign(&refs, usize::MAX), assign(&refs, refs.len()));
        assert_eq!(assign(&refs, 7), [0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(assign(&[], usize::MAX), Vec::<usize>::new());
    }
}
