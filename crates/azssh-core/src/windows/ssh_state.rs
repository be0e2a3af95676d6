//! The audit and repair scripts: the facts block (`audit`), the key-file listing (`keys`) and,
//! for a repair, the repair block then both reads again, all in one RunCommand; a result
//! longer than RunCommand's output tail comes back in pages (`keys_paging`).

use serde::{Deserialize, Serialize};

use super::audit::{self, SSH_FACTS, SshFacts};
use super::combined::{EPILOGUE, PROLOGUE, frame, prologue};
use super::error::WindowsError;
use super::keys::{self, KEY_FILES, KeyEdit, KeyFilesResult, KeyScope};
use super::keys_paging;
use super::repair::{self, REPAIR, RepairResult};

/// The result line, or (past RunCommand's 4096-byte output tail, which a VM with some twenty
/// keys reaches) its first page: the key listing nests files → keys, hence `-Depth 8`.
fn epilogue() -> String {
    keys_paging::paged_epilogue(&keys_paging::new_page_id(), 8)
}

/// Facts and key files, read only.
pub fn audit_script() -> String {
    let mut s = frame(PROLOGUE, &prologue());
    s.push_str(&frame(SSH_FACTS, &audit::block()));
    s.push_str(&frame(
        KEY_FILES,
        &keys::block(&KeyScope::All, &KeyEdit::default()),
    ));
    s.push_str(&frame(EPILOGUE, &epilogue()));
    s
}

/// Facts and key files, the repair, then (unless a dry run) facts and key files again.
pub fn repair_script(dry_run: bool) -> String {
    let mut s = frame(PROLOGUE, &prologue());
    s.push_str(&frame(SSH_FACTS, &audit::block()));
    s.push_str(&frame(
        KEY_FILES,
        &keys::block(&KeyScope::All, &KeyEdit::default()),
    ));
    s.push_str(&frame(REPAIR, &repair::block(dry_run)));
    if !dry_run {
        s.push_str(&frame(
            SSH_FACTS,
            &audit::block().replace("$r.facts = $a", "$r.after = $a"),
        ));
        s.push_str(&frame(
            KEY_FILES,
            &keys::block(&KeyScope::All, &KeyEdit::default())
                .replace("$r.keys = $k", "$r.keys_after = $k"),
        ));
    }
    s.push_str(&frame(EPILOGUE, &epilogue()));
    s
}

/// What an audit or repair script reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SshStateResult {
    pub facts: Option<SshFacts>,
    pub keys: Option<KeyFilesResult>,
    pub repair: Option<RepairResult>,
    pub after: Option<SshFacts>,
    pub keys_after: Option<KeyFilesResult>,
}

impl SshStateResult {
    pub fn parse(stdout: &str, stderr: &str) -> Result<Self, WindowsError> {
        let r: SshStateResult = super::result::parse_line(stdout, stderr)?;
        for facts in [&r.facts, &r.after].into_iter().flatten() {
            if let Some(message) = facts.error.clone() {
                return Err(WindowsError::StepFailed {
                    step: "ssh facts",
                    message,
                });
            }
        }
        for keys in [&r.keys, &r.keys_after].into_iter().flatten() {
            if let Some(message) = keys.error.clone() {
                return Err(WindowsError::StepFailed {
                    step: "key files",
                    message,
                });
            }
        }
        if let Some(message) = r.repair.as_ref().and_then(|x| x.error.clone()) {
            return Err(WindowsError::StepFailed {
                step: "repair",
                message,
            });
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_and_repair_scripts_are_ps51_and_ascii() {
        for script in [audit_script(), repair_script(true), repair_script(false)] {
            let problems = pwsh::check_ps51(&script);
            assert!(problems.is_empty(), "{problems:?}");
            assert!(script.is_ascii());
        }
        assert_eq!(repair_script(false).matches("$r.after = $a").count(), 1);
        assert_eq!(
            repair_script(false).matches("$r.keys_after = $k").count(),
            1
        );
    }
}
