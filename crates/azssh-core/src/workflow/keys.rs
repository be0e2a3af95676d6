//! Key management over RunCommand (works whether or not SSH works yet): list the keys of every
//! authorized_keys file, remove one key everywhere (refusing to lock the caller out), add keys
//! with an expiry date or exclusively, drop expired keys, and rotate a key: add the new one,
//! prove a login with it over SSH, and only then remove the old one.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use super::error::WorkflowError;
use super::guest::check_windows_running;
use super::login_proof;
use super::paged_run::run_paged;
use crate::azure::client::ArmClient;
use crate::azure::run_command::{self, RunCommandOptions};
use crate::azure::vm::Vm;
use crate::ssh::keys::{self, SshPublicKey};
use crate::windows::keys::{
    EXPIRES_TAG, KeyEdit, KeyFilesResult, KeyScope, RemovedKey, key_files_script,
};
use crate::windows::{KeyTarget, UserName};

/// Runs a script through RunCommand without the exit-code trailer (the result line says it all,
/// and the 4096-byte output tail has no room to spare).
pub(crate) async fn run_script(
    arm: &ArmClient,
    vm: &Vm,
    script: &str,
) -> Result<run_command::RunCommandOutput, WorkflowError> {
    check_windows_running(vm)?;
    let lines = run_command::script_lines(script);
    let opts = RunCommandOptions {
        report_exit_code: false,
        ..Default::default()
    };
    Ok(run_command::run_powershell(arm, &vm.id, &lines, &opts).await?)
}

/// Lists or edits key files in one RunCommand.
pub async fn key_files(
    arm: &ArmClient,
    vm: &Vm,
    scope: &KeyScope,
    edit: &KeyEdit,
) -> Result<KeyFilesResult, WorkflowError> {
    let (stdout, stderr) = run_paged(arm, vm, &key_files_script(scope, edit)).await?;
    Ok(KeyFilesResult::parse(&stdout, &stderr)?)
}

/// The key line to install: the key re-serialised, with `azssh-expires=DATE` appended to its
/// comment when it expires.
pub fn key_line(key: &SshPublicKey, expires: Option<&str>) -> String {
    let mut line = key.to_line();
    if let Some(date) = expires {
        line.push(' ');
        line.push_str(EXPIRES_TAG);
        line.push_str(date);
    }
    line
}

/// The fingerprints of the caller's own keys: the public halves of `extra` (private or public
/// key files) and of OpenSSH's default identities (`~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`).
/// A file that cannot be read is skipped: protection is best effort, `force` overrides it.
pub fn caller_fingerprints(extra: &[PathBuf]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let defaults = crate::home::default_identity_files();
    for path in extra.iter().chain(defaults.iter()) {
        let public = PathBuf::from(format!("{}.pub", path.display()));
        let source = if public.is_file() { &public } else { path };
        if let Ok(k) = keys::load_public_key(&source.to_string_lossy()) {
            let fp = k.fingerprint();
            if !out.contains(&fp) {
                out.push(fp);
            }
        }
    }
    out
}

/// A fingerprint (`SHA256:...`) as given, or the fingerprint of a public key given as text or
/// as a key file.
pub fn fingerprint_of(text_or_key: &str) -> Result<String, WorkflowError> {
    if let Some(fp) = crate::windows::keys::parse_fingerprint(text_or_key) {
        return Ok(fp);
    }
    keys::load_public_key(text_or_key)
        .map(|k| k.fingerprint())
        .map_err(|e| WorkflowError::InvalidFingerprint {
            text: text_or_key.chars().take(60).collect(),
            reason: e.to_string(),
        })
}

/// An expiry date checked to be a real `YYYY-MM-DD` day.
pub fn expiry_date(text: &str) -> Result<String, WorkflowError> {
    crate::windows::keys::parse_date(text).ok_or_else(|| WorkflowError::InvalidDate {
        text: text.chars().take(40).collect(),
    })
}

/// Today's date in UTC, `YYYY-MM-DD`: a key whose expiry date is before it has expired.
pub fn today_utc() -> String {
    time::OffsetDateTime::now_utc().date().to_string()
}

/// Where a rotation stopped, and what it did until then.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RotateReport {
    pub vm: String,
    pub old: String,
    pub new: String,
    /// `add`, `login` or `remove` when a step failed; `None` when the rotation completed.
    pub stopped_at: Option<&'static str>,
    /// The new key was written (false: it was already there).
    pub added: bool,
    /// `whoami` and `hostname` over SSH with the new key.
    pub login: Option<Value>,
    pub removed: Vec<RemovedKey>,
    /// What holds now, in words.
    pub state: String,
}

/// What a rotation needs to log in with the new key.
#[derive(Debug, Clone)]
pub struct RotateRequest {
    pub old_fingerprint: String,
    pub new: SshPublicKey,
    /// The new key's private half.
    pub identity: PathBuf,
    /// Whose file (and who logs in).
    pub target: KeyTarget,
    pub user: UserName,
    pub host: String,
    pub port: u16,
    pub known_hosts: PathBuf,
}

/// Adds the new key, proves a login with it, then removes the old one. On any failure the old
/// key stays; the report says where it stopped (the new key, once added, also stays: it is
/// harmless and removing it again would be a second guess).
pub async fn rotate_key(
    arm: &ArmClient,
    vm: &Vm,
    req: &RotateRequest,
) -> Result<RotateReport, Box<(RotateReport, WorkflowError)>> {
    let mut report = RotateReport {
        vm: vm.name.clone(),
        old: req.old_fingerprint.clone(),
        new: req.new.fingerprint(),
        ..Default::default()
    };
    let scope = KeyScope::Target(req.target.clone());
    let fail = |mut report: RotateReport, step: &'static str, state: &str, e: WorkflowError| {
        report.stopped_at = Some(step);
        report.state = state.to_string();
        Box::new((report, e))
    };
    let add = KeyEdit {
        add: vec![key_line(&req.new, None)],
        ..Default::default()
    };
    match key_files(arm, vm, &scope, &add).await {
        Ok(r) => report.added = r.added.iter().any(|a| !a.replaced),
        Err(e) => {
            return Err(fail(
                report,
                "add",
                "nothing changed: the old key stays, the new one was not added",
                e,
            ));
        }
    }
    let proof = login_proof::identity_only_options(
        &req.host,
        req.port,
        &req.user,
        &req.identity,
        &req.known_hosts,
    );
    match login_proof::prove_login(proof).await {
        Ok(v) => report.login = Some(Value::Object(v)),
        Err(e) => {
            return Err(fail(
                report,
                "login",
                "the new key is installed but the login with it failed: the old key stays",
                e,
            ));
        }
    }
    let remove = KeyEdit {
        remove: vec![req.old_fingerprint.clone()],
        protect: vec![req.new.fingerprint()],
        ..Default::default()
    };
    match key_files(arm, vm, &scope, &remove).await {
        Ok(r) => report.removed = r.removed,
        Err(e) => {
            return Err(fail(
                report,
                "remove",
                "the new key works; removing the old key failed, so both are installed",
                e,
            ));
        }
    }
    report.state = if report.removed.is_empty() {
        "the new key works; the old key was not in the file".into()
    } else {
        "the new key works and the old key is removed".into()
    };
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_expiring_key_line_carries_its_date_in_the_comment() {
        let k = SshPublicKey::parse("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJQnYzj9mKCCZE8M3eHtdm9nNOltS0LYhpqLqkyVKFA me@laptop").unwrap();
        assert!(key_line(&k, Some("2027-03-01")).ends_with(" me@laptop azssh-expires=2027-03-01"));
        assert_eq!(key_line(&k, None), k.to_line());
        assert_eq!(today_utc().len(), 10);
    }
}
