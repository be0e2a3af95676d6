//! Rhai bindings for drift: `audit_ssh`, `repair_ssh`, `set_default_shell`. A thin layer over
//! `crate::workflow::audit` and `crate::workflow::shell`.

use rhai::{Array, Dynamic, Engine, FuncRegistration, Map};

use super::{RhaiResult, block};
use crate::azure::vm::Vm;
use crate::script::api::options::Options;
use crate::script::context::Ctx;
use crate::script::error::to_rhai;
use crate::script::value;
use crate::windows::default_shell::Shell;
use crate::workflow::error::WorkflowError;
use crate::workflow::{audit, keys as wk, shell};

const AUDIT_DOC: &str = "\
/// Audits a Windows VM's SSH setup against the stock one, in one RunCommand (works when SSH
/// does not): sshd state, start-up type and version; the `OpenSSH-Server-In-TCP` rule and its
/// profiles against the active network categories; `sshd_config` lines that differ from the
/// stock file (`Match Group administrators` block, `Port`, `PasswordAuthentication`,
/// `AllowGroups`/`AllowUsers`/`Deny*`); `DefaultShell`; key files (encoding, ACL, expired keys,
/// and with `known_keys` — fingerprints or public keys — every other key as unknown); the ACL of
/// `C:\\ProgramData\\ssh\\logs`. Returns `#{vm, resource_group, drift, deviations: [#{code,
/// detail}], facts, key_files}`; `drift` is the sorted list of codes (`sshd.status`,
/// `sshd.startup`, `sshd.version`, `sshd.missing`, `firewall.rule`, `firewall.enabled`,
/// `firewall.profile`, `config.match_block`, `config.port`, `config.password_authentication`,
/// `config.allow_groups`, `default_shell`, `keys.encoding`, `keys.acl`, `keys.expired`,
/// `keys.unknown`, `logs.acl`), empty when nothing drifted.
///
/// # Example
/// ```rhai
/// let a = audit_ssh(v, #{known_keys: [\"~/.ssh/id_ed25519.pub\"]});
/// for d in a.deviations { warn(`${v.name}: ${d.code}: ${d.detail}`); }
/// ```";

const REPAIR_DOC: &str = "\
/// Repairs what is safe to repair in a Windows VM's SSH setup, in one RunCommand, and reports
/// each change: the logs folder's ACL (SYSTEM and Administrators only, not inherited: sshd fails
/// with error 1067 after some Windows Updates otherwise), start-up type Manual → Automatic, sshd
/// started, the firewall rule created, enabled or extended to the active network's profile, key
/// files re-encoded as UTF-8 without BOM and their ACL reset by SID. It leaves a Disabled
/// service, `sshd_config`, `DefaultShell` and keys alone (they are decisions). `dry_run: true`
/// only reports. Returns `#{vm, dry_run, changes: [#{what, path, from, to}], failed, before,
/// remaining, drift}`.
///
/// # Example
/// ```rhai
/// let r = repair_ssh(v, #{dry_run: true});
/// for c in r.changes { info(`would change ${c.what}: ${c.from} -> ${c.to}`); }
/// ```";

const SHELL_DOC: &str = "\
/// Sets the shell Windows OpenSSH runs commands and sessions with (registry
/// `HKLM:\\SOFTWARE\\OpenSSH\\DefaultShell`), through RunCommand: `powershell` (Windows
/// PowerShell 5.1), `pwsh` (PowerShell 7, which must be installed) or `cmd` (the default: the
/// value is removed). New sessions use it; `exec` and `powershell()` keep working either way.
/// Returns `#{vm, shell, previous, changed}`.
///
/// # Example
/// ```rhai
/// set_default_shell(v, \"powershell\");
/// ssh(v).exec(\"$PSVersionTable.PSVersion.Major\").stdout  // \"5\"
/// ```";

pub fn register(engine: &mut Engine, ctx: &Ctx) {
    let c = ctx.clone();
    FuncRegistration::new("audit_ssh")
        .with_comments([AUDIT_DOC])
        .with_params_info(["vm: Vm", "map"])
        .register_into_engine(engine, move |v: Vm| audit_ssh(&c, &v, Map::new()));
    let c = ctx.clone();
    FuncRegistration::new("audit_ssh")
        .with_comments([AUDIT_DOC])
        .with_params_info(["vm: Vm", "options: map", "map"])
        .register_into_engine(engine, move |v: Vm, o: Map| audit_ssh(&c, &v, o));
    let c = ctx.clone();
    FuncRegistration::new("repair_ssh")
        .with_comments([REPAIR_DOC])
        .with_params_info(["vm: Vm", "map"])
        .register_into_engine(engine, move |v: Vm| repair_ssh(&c, &v, Map::new()));
    let c = ctx.clone();
    FuncRegistration::new("repair_ssh")
        .with_comments([REPAIR_DOC])
        .with_params_info(["vm: Vm", "options: map", "map"])
        .register_into_engine(engine, move |v: Vm, o: Map| repair_ssh(&c, &v, o));
    let c = ctx.clone();
    FuncRegistration::new("set_default_shell")
        .with_comments([SHELL_DOC])
        .with_params_info(["vm: Vm", "shell: string", "map"])
        .register_into_engine(engine, move |v: Vm, s: &str| set_default_shell(&c, &v, s));
}

fn audit_ssh(ctx: &Ctx, v: &Vm, options: Map) -> RhaiResult<Dynamic> {
    let o = Options::new("audit_ssh", options, &["known_keys"])?;
    let known = match o.raw("known_keys") {
        None => None,
        Some(d) if d.is_unit() => None,
        Some(d) => {
            let items: Array = if d.is_array() {
                d.clone().into_array().unwrap_or_default()
            } else {
                vec![d.clone()]
            };
            let mut fps = Vec::new();
            for item in items {
                let text = item.to_string();
                let path = crate::ssh::keys::expand_home(&text);
                let fp = wk::fingerprint_of(&path.to_string_lossy())
                    .or_else(|_| wk::fingerprint_of(&text))
                    .map_err(|e| to_rhai(&e))?;
                fps.push(fp);
            }
            Some(fps)
        }
    };
    let arm = ctx.arm()?;
    let vm = v.clone();
    let report = block(ctx, &format!("auditing SSH on `{}`", v.name), async move {
        audit::audit(&arm, &vm, known.as_deref()).await
    })?;
    Ok(value::to_dynamic(&report))
}

fn repair_ssh(ctx: &Ctx, v: &Vm, options: Map) -> RhaiResult<Dynamic> {
    let o = Options::new("repair_ssh", options, &["dry_run"])?;
    let dry_run = o.bool("dry_run")?.unwrap_or(false);
    let arm = ctx.arm()?;
    let vm = v.clone();
    let report = block(ctx, &format!("repairing SSH on `{}`", v.name), async move {
        audit::repair(&arm, &vm, dry_run).await
    })?;
    Ok(value::to_dynamic(&report))
}

fn set_default_shell(ctx: &Ctx, v: &Vm, shell_name: &str) -> RhaiResult<Dynamic> {
    let chosen: Shell = shell_name
        .parse()
        .map_err(|reason| to_rhai(&WorkflowError::InvalidShell { reason }))?;
    let arm = ctx.arm()?;
    let vm = v.clone();
    let r = block(
        ctx,
        &format!("setting the default shell of `{}`", v.name),
        async move { shell::set_default_shell(&arm, &vm, chosen).await },
    )?;
    Ok(value::from_json(&serde_json::json!({
        "vm": v.name, "shell": if r.shell.is_empty() { "cmd" } else { r.shell.as_str() },
        "previous": r.previous, "changed": r.changed,
    })))
}
