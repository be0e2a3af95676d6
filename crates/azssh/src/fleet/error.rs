//! `FleetError`: what can go wrong choosing targets, reading flags, or keeping the journal,
//! before or around the per-VM runs (a VM's own failure is a journal entry, not this).

use crate::error::UserError;
use azssh_core::error::kind;

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("no targets given")]
    NoSelector,
    #[error("`{spec}` is not a valid shard: {reason}")]
    BadShard { spec: String, reason: String },
    #[error("`--tag {0}` has no `=`")]
    BadTag(String),
    #[error("cannot read the targets file `{path}`: {reason}")]
    TargetsFile { path: String, reason: String },
    #[error("line {line} of `{path}`: `{text}` is not a VM resource id")]
    BadTarget {
        path: String,
        line: usize,
        text: String,
    },
    #[error("the Resource Graph query returned rows without an `id` column")]
    QueryWithoutId,
    #[error("the journal `{path}` already holds entries")]
    JournalExists { path: String },
    #[error("`--resume` and `--retry-failed` need `--journal FILE`")]
    ResumeWithoutJournal,
    #[error("the journal `{path}` is in use by {holder}")]
    JournalLocked { path: String, holder: String },
    #[error("cannot use the journal `{path}`: {reason}")]
    Journal { path: String, reason: String },
    #[error("`--max-fail {0}` is not a percentage between 0 and 100")]
    BadMaxFail(f64),
}

impl UserError for FleetError {
    fn kind(&self) -> &'static str {
        match self {
            FleetError::NoSelector => kind::fleet::NO_TARGETS,
            FleetError::BadShard { .. } => kind::fleet::BAD_SHARD,
            FleetError::BadTag(_) => kind::fleet::BAD_TAG,
            FleetError::TargetsFile { .. } | FleetError::BadTarget { .. } => {
                kind::fleet::TARGETS_FILE
            }
            FleetError::QueryWithoutId => kind::fleet::QUERY_WITHOUT_ID,
            FleetError::JournalExists { .. }
            | FleetError::ResumeWithoutJournal
            | FleetError::JournalLocked { .. }
            | FleetError::Journal { .. } => kind::fleet::JOURNAL,
            FleetError::BadMaxFail(_) => kind::fleet::BAD_MAX_FAIL,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            FleetError::NoSelector => Some(
                "choose VMs with `--resource-group`, `--tag k=v`, `--query KQL`, `--targets FILE` or `--all`"
                    .into(),
            ),
            FleetError::BadShard { .. } => Some(
                "write `--shard I/N` with 0 <= I < N, or `--shard /N` to take I from `JOB_COMPLETION_INDEX`"
                    .into(),
            ),
            FleetError::BadTag(_) => Some("write `--tag key=value`, e.g. `--tag env=prod`".into()),
            FleetError::TargetsFile { .. } | FleetError::BadTarget { .. } => Some(
                "give VM resource ids one a line, or a JSON array of ids or of objects with an `id`"
                    .into(),
            ),
            FleetError::QueryWithoutId => {
                Some("end the query with `| project id, name` (or keep the `id` column)".into())
            }
            FleetError::JournalExists { .. } => Some(
                "pass `--resume` to continue that run, or choose a new journal file".into(),
            ),
            FleetError::ResumeWithoutJournal => {
                Some("pass the journal of the run to continue, e.g. `--journal fleet.jsonl`".into())
            }
            FleetError::JournalLocked { .. } => Some(
                "wait for that run to finish (or stop it), or choose another journal; a lock record left by a run that died on another machine expires after a minute"
                    .into(),
            ),
            FleetError::Journal { .. } => Some("check the path and its permissions".into()),
            FleetError::BadMaxFail(_) => Some("e.g. `--max-fail 5` stops starting new VMs once 5% failed".into()),
        }
    }
}
