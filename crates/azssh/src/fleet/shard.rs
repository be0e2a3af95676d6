//! `--shard I/N`: a partition of the targets that N machines compute independently (no
//! coordination), by a hash of the lower-cased resource id. SHA-256, not `std`'s hasher, so
//! every azssh build and platform agrees on which shard owns a VM.

use sha2::{Digest, Sha256};

use super::error::FleetError;
use super::targets::Target;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// `I/N`, or `/N` (or `N`) with I from `index_env` (Kubernetes Indexed Jobs set
    /// `JOB_COMPLETION_INDEX`).
    pub fn parse(spec: &str, index_env: Option<&str>) -> Result<Shard, FleetError> {
        let bad = |reason: &str| FleetError::BadShard {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let (index, count) = match spec.split_once('/') {
            Some((i, n)) if !i.trim().is_empty() => (i.trim().to_string(), n),
            Some((_, n)) => (
                env_index(index_env).ok_or_else(|| bad("`JOB_COMPLETION_INDEX` is not set"))?,
                n,
            ),
            None => (
                env_index(index_env).ok_or_else(|| bad("`JOB_COMPLETION_INDEX` is not set"))?,
                spec,
            ),
        };
        let index: u64 = index
            .parse()
            .map_err(|_| bad("the index is not a number"))?;
        let count: u64 = count
            .trim()
            .parse()
            .map_err(|_| bad("the count is not a number"))?;
        if count == 0 {
            return Err(bad("the count must be at least 1"));
        }
        if index >= count {
            return Err(bad(
                "the index must be below the count (shards count from 0)",
            ));
        }
        Ok(Shard { index, count })
    }

    pub fn owns(&self, target: &Target) -> bool {
        shard_of(&target.key(), self.count) == self.index
    }
}

fn env_index(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// The shard (0..count) owning a lower-cased resource id.
pub fn shard_of(key: &str, count: u64) -> u64 {
    let digest = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % count.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_and_complete() {
        let ids: Vec<String> = (0..500)
            .map(|i| format!("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm{i}"))
            .collect();
        let targets = super::super::targets::dedupe(ids);
        let mut owners = vec![0; targets.len()];
        for i in 0..7 {
            let shard = Shard::parse(&format!("{i}/7"), None).unwrap();
            for (n, t) in targets.iter().enumerate() {
                if shard.owns(t) {
                    owners[n] += 1;
                }
            }
        }
        assert!(owners.iter().all(|&o| o == 1));
    }

    #[test]
    fn index_comes_from_job_completion_index() {
        assert_eq!(
            Shard::parse("/4", Some("3")).unwrap(),
            Shard { index: 3, count: 4 }
        );
        assert_eq!(Shard::parse("4", Some("0")).unwrap().count, 4);
        assert!(Shard::parse("/4", None).is_err());
    }

    #[test]
    fn index_must_be_below_count() {
        assert!(Shard::parse("4/4", None).is_err());
        assert!(Shard::parse("0/0", None).is_err());
    }

    #[test]
    fn shard_ignores_id_case() {
        assert_eq!(
            shard_of("/a/b", 13),
            shard_of(&"/a/b".to_ascii_lowercase(), 13)
        );
    }
}
