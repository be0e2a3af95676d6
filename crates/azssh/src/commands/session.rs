//! The session verbs, each a thin front for its bundled runbook (the scripts are the single
//! source of truth for the workflow): `azssh connect` (runbook `connect`), `azssh tunnel`
//! (`connect` with `wait`), `azssh rdp` (`rdp-tunnel`), `azssh cp` (`copy-files`).

use rhai::{Dynamic, Map};

use crate::cli::{
    ConnectArgs, CpArgs, GlobalArgs, RdpArgs, SshLoginArgs, TunnelArgs, VmTargetArgs,
};
use crate::error::AppError;
use crate::script::run::Script;

pub async fn connect(global: &GlobalArgs, args: ConnectArgs) -> Result<(), AppError> {
    let mut map = target_args(&args.target);
    put_list(&mut map, "forwards", &args.forwards);
    if !args.command.is_empty() {
        // Like `ssh host a b c`: the words are joined and the remote shell splits them again.
        map.insert("command".into(), args.command.join(" ").into());
        map.insert("stream".into(), true.into());
    }
    let result = run_runbook(global, "connect", map).await?;
    exit_with(&result)
}

pub async fn tunnel(global: &GlobalArgs, args: TunnelArgs) -> Result<(), AppError> {
    if let Some(port) = args.resource_port {
        return super::proxy::bastion_tunnel(global, &args, port).await;
    }
    let mut map = target_args(&args.target);
    put_list(&mut map, "forwards", &args.forwards);
    map.insert("wait".into(), true.into());
    until_interrupted(run_runbook(global, "connect", map).await)
}

pub async fn rdp(global: &GlobalArgs, args: RdpArgs) -> Result<(), AppError> {
    let mut map = target_args(&args.target);
    map.insert(
        "local_port".into(),
        Dynamic::from(i64::from(args.local_port)),
    );
    map.insert("launch".into(), (!args.no_launch).into());
    map.insert("keep_open".into(), true.into());
    until_interrupted(run_runbook(global, "rdp-tunnel", map).await)
}

pub async fn cp(global: &GlobalArgs, args: CpArgs) -> Result<(), AppError> {
    let mut map = login_args(&args.login);
    put(&mut map, "ip", &args.ip);
    map.insert("source".into(), args.source.into());
    map.insert("destination".into(), args.destination.into());
    if args.no_fsync {
        map.insert("fsync".into(), false.into());
    }
    let result = run_runbook(global, "copy-files", map).await?;
    super::print_result(global, &result)
}

/// Runs a bundled runbook by name: never a file of that name in the current directory, which
/// `azssh run` would prefer.
pub async fn run_runbook(global: &GlobalArgs, name: &str, args: Map) -> Result<Dynamic, AppError> {
    let text = crate::script::bundled::runbook(name).ok_or_else(|| {
        AppError::usage(
            format!("the bundled runbook `{name}` is missing from this build"),
            Some("this is a bug in azssh; please report it".into()),
        )
    })?;
    run_verb_script(
        global,
        Script {
            name: format!("runbook:{name}"),
            text: text.to_string(),
        },
        args,
    )
    .await
}

/// Runs the script behind a verb; its failure is told in the verb's words (see `in_verb_words`).
pub async fn run_verb_script(
    global: &GlobalArgs,
    script: Script,
    args: Map,
) -> Result<Dynamic, AppError> {
    let verbose = global.verbose;
    super::run_blocking(
        super::settings(global),
        super::env_limits()?,
        None,
        move |ctx| crate::script::run::run(&ctx, &script, args, |_| {}),
    )
    .await
    .map_err(|e| match e {
        AppError::Failed(d) if verbose == 0 => AppError::Failed(Box::new(in_verb_words(*d))),
        other => other,
    })
}

/// A verb's failure in the words of the command line: without `-v`, no runbook source line
/// (the operator did not write it), and the fixes scripts would use named as verbs and flags.
pub fn in_verb_words(mut d: crate::script::error::Diagnostic) -> crate::script::error::Diagnostic {
    // Everything a verb runs (its runbook, the stdlib modules it imports) is azssh's code.
    d.file.clear();
    d.line = None;
    d.column = None;
    d.source_line = None;
    d.notes.clear();
    d.message = to_flags(&d.message);
    d.hint = d.hint.map(|h| to_flags(&h));
    d
}

/// Script-side fixes as the verbs spell them.
fn to_flags(text: &str) -> String {
    const WORDS: &[(&str, &str)] = &[
        ("`pin_host_keys(vm)`", "`azssh pin -g RG -n VM`"),
        (
            "`strict: \"accept-new\"`",
            "`--strict-host-keys accept-new`",
        ),
        ("leave `priority` out", "leave `--priority` out"),
        (" (`allow_internet: true` in a script)", ""),
        (
            "`--permanent-rule` (`permanent: true`)",
            "`--permanent-rule`",
        ),
        ("--permanent-rule / permanent: true", "--permanent-rule"),
        ("pass `start=true` (`--start`)", "pass `--start`"),
        ("`#{replace: true}`", "`azssh pin --replace`"),
        ("`fsync: false`", "`--no-fsync`"),
    ];
    let mut out = text.to_string();
    for (script, verb) in WORDS {
        out = out.replace(script, verb);
    }
    out
}

/// `azssh connect -- command` exits with the remote command's code, as `ssh` does; a command
/// killed by a signal counts as a failure.
pub fn exit_with(result: &Dynamic) -> Result<(), AppError> {
    let code = result
        .read_lock::<Map>()
        .and_then(|m| m.get("exit_code").map(|c| c.as_int().unwrap_or(1)));
    match code {
        None | Some(0) => Ok(()),
        Some(c) => Err(AppError::Exit(i32::try_from(c).unwrap_or(1))),
    }
}

/// Long-lived tunnels end with Ctrl-C: that is success, not an error.
fn until_interrupted(result: Result<Dynamic, AppError>) -> Result<(), AppError> {
    match result {
        Err(AppError::Failed(diag)) if diag.kind == azssh_core::error::kind::CANCELLED => {
            crate::output::log(crate::output::Level::Info, "tunnel closed");
            Ok(())
        }
        other => other.map(|_| ()),
    }
}

fn target_args(t: &VmTargetArgs) -> Map {
    let mut map = login_args(&t.login);
    put(&mut map, "resource_group", &t.resource_group);
    put(&mut map, "name", &t.name);
    put(&mut map, "ip", &t.ip);
    map
}

fn login_args(l: &SshLoginArgs) -> Map {
    let mut map = Map::new();
    put(&mut map, "user", &l.local_user);
    put(&mut map, "key", &l.private_key);
    put(&mut map, "strict", &l.strict_host_keys);
    put(&mut map, "known_hosts", &l.known_hosts);
    if let Some(p) = l.port {
        map.insert("port".into(), Dynamic::from(i64::from(p)));
    }
    if l.prefer_private_ip {
        map.insert("prefer_private_ip".into(), true.into());
    }
    path_args(&mut map, &l.path);
    map
}

/// `--bastion`/`--bastion-id` → `bastion`, `--jump` → `jump`, `--via` → `via`.
pub fn path_args(map: &mut Map, p: &crate::cli::PathArgs) {
    put(
        map,
        "bastion",
        &p.bastion.clone().or_else(|| p.bastion_id.clone()),
    );
    put(map, "jump", &p.jump);
    put(map, "via", &p.via);
}

fn put(map: &mut Map, key: &str, value: &Option<String>) {
    if let Some(v) = value {
        map.insert(key.into(), v.clone().into());
    }
}

fn put_list(map: &mut Map, key: &str, values: &[String]) {
    if !values.is_empty() {
        let list: rhai::Array = values.iter().cloned().map(Dynamic::from).collect();
        map.insert(key.into(), list.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_exit_code_becomes_ours() {
        let mut m = Map::new();
        m.insert("exit_code".into(), Dynamic::from(7_i64));
        let err = exit_with(&Dynamic::from(m)).unwrap_err();
        assert_eq!(err.exit_code(), 7);
        assert_eq!(err.render(), "");
        let mut ok = Map::new();
        ok.insert("exit_code".into(), Dynamic::from(0_i64));
        assert!(exit_with(&Dynamic::from(ok)).is_ok());
    }

    #[test]
    fn ctrl_c_ends_a_tunnel_successfully() {
        let cancelled = AppError::Failed(Box::new(crate::script::error::Diagnostic::plain(
            "cancelled",
            "cancelled",
            None,
        )));
        assert!(until_interrupted(Err(cancelled)).is_ok());
        let failed = AppError::Failed(Box::new(crate::script::error::Diagnostic::plain(
            "ssh.auth_failed",
            "no",
            None,
        )));
        assert!(until_interrupted(Err(failed)).is_err());
    }

    #[test]
    fn every_verb_runbook_is_bundled() {
        for name in ["connect", "rdp-tunnel", "copy-files"] {
            assert!(crate::script::bundled::runbook(name).is_some(), "{name}");
        }
    }
}
