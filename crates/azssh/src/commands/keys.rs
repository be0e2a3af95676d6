//! The key and drift verbs: `keys list|remove|rotate|expire`, `audit`, `repair`. Each runs its
//! bundled runbook (or a short verb script) on one VM (`-g RG -n VM`), or, without `-n`, as a
//! fleet run over the selected VMs (journal, resume, pacing: everything `azssh fleet` does),
//! one RunCommand per VM.

use std::collections::BTreeMap;

use rhai::{Dynamic, Map};

use super::fleet::{ExtraSummary, run_fleet};
use crate::cli::{
    AuditArgs, FleetArgs, FleetScopeArgs, GlobalArgs, KeysCommand, KeysExpireArgs, KeysListArgs,
    KeysRemoveArgs, KeysRotateArgs, LimitArgs, RepairArgs,
};
use crate::error::AppError;
use crate::fleet::journal::Status;
use crate::fleet::report::Report;
use crate::script::run::Script;

pub async fn keys(global: &GlobalArgs, command: KeysCommand) -> Result<(), AppError> {
    match command {
        KeysCommand::List(a) => list(global, a).await,
        KeysCommand::Remove(a) => remove(global, a).await,
        KeysCommand::Rotate(a) => rotate(global, a).await,
        KeysCommand::Expire(a) => expire(global, a).await,
    }
}

fn check_user(user: Option<&str>) -> Result<(), AppError> {
    match user {
        Some(u) => crate::windows::UserName::parse(u)
            .map(|_| ())
            .map_err(|e| AppError::usage_from(&e)),
        None => Ok(()),
    }
}

/// The runbook's `ARGS` besides the VM.
#[derive(Default)]
struct RunbookArgs(Vec<(String, serde_json::Value)>);

impl RunbookArgs {
    fn set(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.0.push((key.into(), value.into()));
        self
    }
    fn opt(self, key: &str, value: Option<impl Into<serde_json::Value>>) -> Self {
        match value {
            Some(v) => self.set(key, v),
            None => self,
        }
    }
}

fn bundled(name: &str) -> Result<Script, AppError> {
    let text = crate::script::bundled::runbook(name).ok_or_else(|| {
        AppError::usage(
            format!("the bundled runbook `{name}` is missing from this build"),
            Some("this is a bug in azssh; please report it".into()),
        )
    })?;
    Ok(Script {
        name: format!("runbook:{name}"),
        text: text.to_string(),
    })
}

/// One VM with `-n`, else a fleet run of the same runbook.
async fn one_or_fleet(
    global: &GlobalArgs,
    scope: FleetScopeArgs,
    runbook: &str,
    args: RunbookArgs,
    summary: Option<ExtraSummary>,
) -> Result<(), AppError> {
    if let Some(name) = scope.name.clone() {
        let [rg] = scope.run.resource_groups.as_slice() else {
            return Err(AppError::usage(
                "`-n/--name` needs exactly one `-g/--resource-group`",
                Some("e.g. `-g rg-web -n web01`; leave out `-n` to run over the fleet".into()),
            ));
        };
        let mut map = Map::new();
        map.insert("resource_group".into(), rg.clone().into());
        map.insert("name".into(), name.into());
        for (k, v) in args.0 {
            map.insert(k.into(), crate::script::value::from_json(&v));
        }
        let value = super::session::run_runbook(global, runbook, map).await?;
        return super::print_result(global, &value);
    }
    let fleet_args = FleetArgs {
        script: runbook.into(),
        run: scope.run,
        dry_run: false,
        args: args.0.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        limits: env_limit_args()?,
    };
    run_fleet(global, fleet_args, bundled(runbook)?, summary).await
}

/// The limits a verb without `--max-*` flags runs under (`AZSSH_MAX_*` or the defaults).
fn env_limit_args() -> Result<LimitArgs, AppError> {
    // Checked the way single-VM verbs check them, for the same message on a bad value.
    super::env_limits()?;
    #[derive(clap::Parser)]
    struct EnvOnly {
        #[command(flatten)]
        limits: LimitArgs,
    }
    use clap::Parser;
    EnvOnly::try_parse_from(["azssh"])
        .map(|e| e.limits)
        .map_err(|e| AppError::usage(e.to_string(), None))
}

async fn list(global: &GlobalArgs, a: KeysListArgs) -> Result<(), AppError> {
    check_user(a.local_user.as_deref())?;
    let mut args = Map::new();
    args.insert("resource_group".into(), a.vm.resource_group.into());
    args.insert("name".into(), a.vm.name.into());
    args.insert(
        "user".into(),
        a.local_user.map(Dynamic::from).unwrap_or(Dynamic::UNIT),
    );
    let script = Script {
        name: "verb:keys-list".into(),
        text: "let v = vm(ARGS.resource_group, ARGS.name);
if ARGS.user != () { authorized_keys(v, #{user: ARGS.user}) } else { authorized_keys(v) }"
            .into(),
    };
    let value = super::session::run_verb_script(global, script, args).await?;
    super::print_result(global, &value)
}

async fn remove(global: &GlobalArgs, a: KeysRemoveArgs) -> Result<(), AppError> {
    check_user(a.local_user.as_deref())?;
    let key = match (a.fingerprint, a.key) {
        (Some(fp), _) => crate::windows::keys::parse_fingerprint(&fp).ok_or_else(|| {
            AppError::usage(
                format!("`--fingerprint {fp}` is not a SHA256 fingerprint"),
                Some(
                    "give it as `ssh-keygen -lf KEY.pub` prints it: `SHA256:` and 43 characters"
                        .into(),
                ),
            )
        })?,
        (None, Some(k)) => {
            crate::workflow::keys::fingerprint_of(&k).map_err(|e| AppError::usage_from(&e))?
        }
        (None, None) => {
            return Err(AppError::usage(
                "`keys remove` needs `--fingerprint` or `--key`",
                None,
            ));
        }
    };
    let args = RunbookArgs::default()
        .set("key", key)
        .set("force", a.force)
        .set("dry_run", a.dry_run)
        .opt("user", a.local_user);
    one_or_fleet(global, a.scope, "remove-key", args, Some(removal_summary)).await
}

async fn expire(global: &GlobalArgs, a: KeysExpireArgs) -> Result<(), AppError> {
    check_user(a.local_user.as_deref())?;
    let args = RunbookArgs::default()
        .set("dry_run", a.dry_run)
        .opt("user", a.local_user);
    one_or_fleet(global, a.scope, "expire-keys", args, Some(removal_summary)).await
}

async fn rotate(global: &GlobalArgs, a: KeysRotateArgs) -> Result<(), AppError> {
    check_user(a.local_user.as_deref())?;
    let mut args = Map::new();
    args.insert("resource_group".into(), a.vm.resource_group.into());
    args.insert("name".into(), a.vm.name.into());
    // `new` is a reserved word in Rhai: the keys are `old_key` and `new_key`.
    args.insert("old_key".into(), a.old.into());
    args.insert("new_key".into(), a.new.into());
    let mut opts = Map::new();
    if let Some(u) = a.local_user {
        opts.insert("user".into(), u.into());
    }
    if let Some(i) = a.identity {
        opts.insert("identity".into(), i.into());
    }
    if let Some(p) = a.port {
        opts.insert("port".into(), i64::from(p).into());
    }
    opts.insert("prefer_private_ip".into(), a.prefer_private_ip.into());
    args.insert("opts".into(), opts.into());
    let script = Script {
        name: "verb:keys-rotate".into(),
        text:
            "rotate_key(vm(ARGS.resource_group, ARGS.name), ARGS.old_key, ARGS.new_key, ARGS.opts)"
                .into(),
    };
    let value = super::session::run_verb_script(global, script, args).await?;
    super::print_result(global, &value)
}

pub async fn audit(global: &GlobalArgs, a: AuditArgs) -> Result<(), AppError> {
    let mut known = Vec::new();
    for k in &a.known_keys {
        known.push(crate::workflow::keys::fingerprint_of(k).map_err(|e| AppError::usage_from(&e))?);
    }
    let args = RunbookArgs::default().opt(
        "known_keys",
        (!known.is_empty()).then(|| serde_json::json!(known)),
    );
    one_or_fleet(global, a.scope, "audit", args, Some(drift_summary)).await
}

pub async fn repair(global: &GlobalArgs, a: RepairArgs) -> Result<(), AppError> {
    let args = RunbookArgs::default().set("dry_run", a.dry_run);
    one_or_fleet(global, a.scope, "repair", args, Some(drift_summary)).await
}

/// VMs grouped by identical drift, like `clush -b` groups identical output: one line per
/// distinct set of deviation codes, naming its VMs.
pub fn drift_summary(report: &Report) -> Option<String> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in &report.entries {
        if e.status != Status::Ok {
            continue;
        }
        let codes: Vec<String> = e
            .result
            .as_ref()
            .and_then(|r| r.get("drift"))
            .and_then(|d| d.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let label = if codes.is_empty() {
            "no drift".to_string()
        } else {
            codes.join(", ")
        };
        groups.entry(label).or_default().push(e.name.clone());
    }
    if groups.is_empty() {
        return None;
    }
    let mut out = String::from("drift by VM:");
    for (label, vms) in groups {
        out.push_str(&format!(
            "\n  {} VM(s) [{}]: {label}",
            vms.len(),
            vms.join(", ")
        ));
    }
    Some(out)
}

/// Which VMs had the key (or expired keys) removed and which did not hold it.
pub fn removal_summary(report: &Report) -> Option<String> {
    let (mut removed, mut absent) = (Vec::new(), Vec::new());
    for e in &report.entries {
        if e.status != Status::Ok {
            continue;
        }
        let n = e
            .result
            .as_ref()
            .and_then(|r| r.get("removed"))
            .and_then(|d| d.as_array())
            .map_or(0, Vec::len);
        if n > 0 {
            removed.push(e.name.clone());
        } else {
            absent.push(e.name.clone());
        }
    }
    Some(format!(
        "removed from {} VM(s) [{}]; not present on {} VM(s)",
        removed.len(),
        removed.join(", "),
        absent.len()
    ))
}
