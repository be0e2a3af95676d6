//! Drift audit and repair: one RunCommand (more when the result outgrows RunCommand's 4096-byte
//! output tail, `paged_run`) reads the facts an SSH login depends on
//! (`windows::ssh_state`), and this file judges them against the stock Windows OpenSSH setup,
//! as a list of deviations with stable codes a fleet summary can group VMs by.
//!
//! The stock setup: sshd Running and Automatic; the `OpenSSH-Server-In-TCP` rule enabled for
//! every active network's profile; `sshd_config` with no active `Port` other than 22, no active
//! `PasswordAuthentication` line (the stock file has it commented out), no `AllowGroups`/
//! `AllowUsers`/`Deny*` line and its `Match Group administrators` block; no `DefaultShell`;
//! key files UTF-8 without BOM whose ACL StrictModes accepts; `C:\ProgramData\ssh\logs` with
//! SYSTEM and Administrators only, not inherited.

use serde::Serialize;

use super::error::WorkflowError;
use super::paged_run::run_paged;
use crate::azure::client::ArmClient;
use crate::azure::vm::Vm;
use crate::windows::audit::{SshFacts, rule_covers};
use crate::windows::authorized_keys::{ADMINISTRATORS_SID, SYSTEM_SID};
use crate::windows::keys::KeyFile;
use crate::windows::repair::{Change, FailedChange};
use crate::windows::ssh_state::{SshStateResult, audit_script, repair_script};

/// OpenSSH releases before this lack what current clients expect (Windows Server 2019's
/// capability ships 7.7; ansible's Windows SSH guide asks for 7.9 or later).
pub const MIN_OPENSSH: (u32, u32) = (7, 9);

/// One way a VM differs from the stock setup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deviation {
    /// Stable code, e.g. `sshd.startup`, `firewall.profile`, `keys.encoding`.
    pub code: String,
    /// What was found, in words.
    pub detail: String,
}

fn dev(code: &str, detail: impl Into<String>) -> Deviation {
    Deviation {
        code: code.into(),
        detail: detail.into(),
    }
}

/// A key file as the audit shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyFileView {
    pub path: String,
    pub owner: String,
    pub encoding: Option<String>,
    pub acl: String,
    pub keys: usize,
    pub fingerprints: Vec<String>,
}

fn view(f: &KeyFile) -> KeyFileView {
    KeyFileView {
        path: f.path.clone(),
        owner: f.owner.clone(),
        encoding: f.encoding.clone(),
        acl: f.acl_verdict(),
        keys: f.keys.len(),
        fingerprints: f.keys.iter().map(|k| k.fingerprint.clone()).collect(),
    }
}

fn version_below(version: &str, min: (u32, u32)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    major > 0 && (major, minor) < min
}

/// Judges the facts. `known`: the fingerprints that belong (a key not among them is
/// `keys.unknown`; `None` skips that check); `today`: `YYYY-MM-DD` in UTC.
pub fn deviations(
    facts: &SshFacts,
    files: &[KeyFile],
    known: Option<&[String]>,
    today: &str,
) -> Vec<Deviation> {
    let mut out = Vec::new();
    if facts.sshd == "missing" {
        out.push(dev("sshd.missing", "the OpenSSH server is not installed"));
    } else {
        if facts.sshd != "Running" {
            out.push(dev("sshd.status", facts.sshd.clone()));
        }
        if let Some(s) = facts.startup.as_deref().filter(|s| *s != "Automatic") {
            out.push(dev("sshd.startup", s));
        }
        if let Some(v) = facts
            .version
            .as_deref()
            .filter(|v| version_below(v, MIN_OPENSSH))
        {
            out.push(dev("sshd.version", format!("{v} (below 7.9)")));
        }
        match &facts.rule {
            None => out.push(dev("firewall.rule", "OpenSSH-Server-In-TCP is missing")),
            Some(rule) => {
                if !rule.enabled {
                    out.push(dev("firewall.enabled", "OpenSSH-Server-In-TCP is disabled"));
                }
                let uncovered: Vec<&String> = facts
                    .categories
                    .iter()
                    .flatten()
                    .filter(|c| {
                        !rule_covers(&rule.profile, c)
                            && !facts
                                .own_rules
                                .iter()
                                .any(|o| o.enabled && rule_covers(&o.profile, c))
                    })
                    .collect();
                if !uncovered.is_empty() {
                    out.push(dev(
                        "firewall.profile",
                        format!(
                            "the rule covers {} but the network is {}",
                            rule.profile,
                            uncovered
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
        }
        if let Some(acl) = &facts.logs {
            let foreign = acl
                .sids
                .iter()
                .any(|s| s != ADMINISTRATORS_SID && s != SYSTEM_SID);
            if acl.inherited || foreign {
                out.push(dev(
                    "logs.acl",
                    format!(
                        "C:\\ProgramData\\ssh\\logs: inherited {}, grants {}",
                        acl.inherited,
                        acl.sids.join(", ")
                    ),
                ));
            }
        }
    }
    if let Some(c) = &facts.config {
        if !c.match_admins {
            out.push(dev(
                "config.match_block",
                "no active `Match Group administrators` block: administrators' keys are read from their own profile",
            ));
        }
        let odd_ports: Vec<&String> = c.ports.iter().filter(|p| *p != "22").collect();
        if !odd_ports.is_empty() {
            out.push(dev(
                "config.port",
                format!(
                    "Port {}",
                    odd_ports
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if let Some(p) = c.password.first() {
            out.push(dev("config.password_authentication", p.clone()));
        }
        if !c.access.is_empty() {
            out.push(dev("config.allow_groups", c.access.join("; ")));
        }
    }
    if let Some(shell) = facts.default_shell.as_deref().filter(|s| !s.is_empty()) {
        out.push(dev("default_shell", shell));
    }
    for f in files {
        if !f.encoding_ok() {
            out.push(dev(
                "keys.encoding",
                format!(
                    "{}: {} (sshd reads UTF-8 without BOM only)",
                    f.path,
                    f.encoding.as_deref().unwrap_or("?")
                ),
            ));
        }
        let acl = f.acl_verdict();
        if acl != "ok" {
            out.push(dev("keys.acl", format!("{}: {acl}", f.path)));
        }
        for k in &f.keys {
            if k.expires.as_deref().is_some_and(|d| d < today) {
                out.push(dev(
                    "keys.expired",
                    format!(
                        "{}:{} {} expired {}",
                        f.path,
                        k.line,
                        k.fingerprint,
                        k.expires.as_deref().unwrap_or_default()
                    ),
                ));
            }
            if let Some(known) = known
                && !known.contains(&k.fingerprint)
            {
                out.push(dev(
                    "keys.unknown",
                    format!("{}:{} {} {}", f.path, k.line, k.fingerprint, k.comment),
                ));
            }
        }
    }
    out
}

/// An audit's report.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub vm: String,
    pub resource_group: String,
    /// The deviation codes alone, sorted: what a fleet summary groups by.
    pub drift: Vec<String>,
    pub deviations: Vec<Deviation>,
    pub facts: SshFacts,
    pub key_files: Vec<KeyFileView>,
}

fn codes(d: &[Deviation]) -> Vec<String> {
    let mut c: Vec<String> = d.iter().map(|d| d.code.clone()).collect();
    c.sort();
    c.dedup();
    c
}

/// Audits one VM in one RunCommand.
pub async fn audit(
    arm: &ArmClient,
    vm: &Vm,
    known: Option<&[String]>,
) -> Result<AuditReport, WorkflowError> {
    let (stdout, stderr) = run_paged(arm, vm, &audit_script()).await?;
    let r = SshStateResult::parse(&stdout, &stderr)?;
    let facts = r.facts.unwrap_or_default();
    let files = r.keys.map(|k| k.files).unwrap_or_default();
    let deviations = deviations(&facts, &files, known, &super::keys::today_utc());
    Ok(AuditReport {
        vm: vm.name.clone(),
        resource_group: vm.resource_group.clone(),
        drift: codes(&deviations),
        deviations,
        key_files: files.iter().map(view).collect(),
        facts,
    })
}

/// A repair's report.
#[derive(Debug, Clone, Serialize)]
pub struct RepairReport {
    pub vm: String,
    pub resource_group: String,
    pub dry_run: bool,
    /// What was changed (or, in a dry run, would be).
    pub changes: Vec<Change>,
    pub failed: Vec<FailedChange>,
    /// Deviations before the repair.
    pub before: Vec<Deviation>,
    /// Deviations after it (a dry run: the same as before); what repair leaves to you.
    pub remaining: Vec<Deviation>,
    pub drift: Vec<String>,
}

/// Repairs what is safe in one RunCommand (see `windows::repair`).
pub async fn repair(
    arm: &ArmClient,
    vm: &Vm,
    dry_run: bool,
) -> Result<RepairReport, WorkflowError> {
    let (stdout, stderr) = run_paged(arm, vm, &repair_script(dry_run)).await?;
    let r = SshStateResult::parse(&stdout, &stderr)?;
    let today = super::keys::today_utc();
    let before_facts = r.facts.clone().unwrap_or_default();
    let before_files = r.keys.clone().map(|k| k.files).unwrap_or_default();
    let before = deviations(&before_facts, &before_files, None, &today);
    let remaining = match (&r.after, &r.keys_after) {
        (Some(f), Some(k)) => deviations(f, &k.files, None, &today),
        _ => before.clone(),
    };
    let fix = r.repair.unwrap_or_default();
    Ok(RepairReport {
        vm: vm.name.clone(),
        resource_group: vm.resource_group.clone(),
        dry_run,
        changes: fix.changes,
        failed: fix.failed,
        drift: codes(&remaining),
        before,
        remaining,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::windows::audit::{ConfigFacts, FolderAcl, RuleFacts};

    fn stock() -> SshFacts {
        SshFacts {
            sshd: "Running".into(),
            startup: Some("Automatic".into()),
            version: Some("8.1.0.1".into()),
            rule: Some(RuleFacts {
                enabled: true,
                profile: "Any".into(),
            }),
            categories: Some(vec!["Public".into()]),
            config: Some(ConfigFacts {
                match_admins: true,
                ..Default::default()
            }),
            logs: Some(FolderAcl {
                inherited: false,
                sids: vec![ADMINISTRATORS_SID.into(), SYSTEM_SID.into()],
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_stock_setup_has_no_deviation_and_each_drift_is_one_code() {
        assert!(deviations(&stock(), &[], None, "2026-11-29").is_empty());
        let mut f = stock();
        f.startup = Some("Manual".into());
        f.sshd = "Stopped".into();
        f.rule = Some(RuleFacts {
            enabled: true,
            profile: "Domain, Private".into(),
        });
        f.default_shell = Some(crate::windows::default_shell::POWERSHELL_EXE.into());
        f.config = Some(ConfigFacts {
            ports: vec!["2222".into()],
            password: vec!["no".into()],
            access: vec!["AllowGroups administrators".into()],
            match_admins: false,
            match_keys: String::new(),
        });
        f.version = Some("7.7.2.1".into());
        let got = codes(&deviations(&f, &[], None, "2026-11-29"));
        assert_eq!(
            got,
            [
                "config.allow_groups",
                "config.match_block",
                "config.password_authentication",
                "config.port",
                "default_shell",
                "firewall.profile",
                "sshd.startup",
                "sshd.status",
                "sshd.version",
            ]
        );
    }
}
