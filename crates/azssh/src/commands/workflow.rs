//! The Azure-side workflow verbs: `enable-ssh`, `open-port`, `copy-key`, `setup`, `jit`, `pin`,
//! `close-port`. Each
//! turns its az-style flags into the `ARGS` of its bundled runbook and runs it, so the runbooks
//! stay the single source of truth for the workflow.

use rhai::{Dynamic, Map};

use crate::cli::{
    ClosePortArgs, CopyKeyArgs, EnableSshArgs, GlobalArgs, JitArgs, OpenPortArgs, PinArgs,
    SetupArgs, VmArgs,
};
use crate::error::AppError;
use crate::script::run::Script;

/// Builds `ARGS` from `(key, value)` pairs, leaving out the `None`s.
struct ArgsMap(Map);

impl ArgsMap {
    fn new(vm: &VmArgs) -> Self {
        let mut m = Map::new();
        m.insert("resource_group".into(), vm.resource_group.clone().into());
        m.insert("name".into(), vm.name.clone().into());
        ArgsMap(m)
    }

    fn set(mut self, key: &str, value: impl Into<Dynamic>) -> Self {
        self.0.insert(key.into(), value.into());
        self
    }

    fn opt<T: Into<Dynamic>>(self, key: &str, value: Option<T>) -> Self {
        match value {
            Some(v) => self.set(key, v),
            None => self,
        }
    }
}

/// `--source` (comma-separated) with `--allow-internet`: the checks `open_port` makes, first, so
/// they are usage errors (exit 2).
fn check_sources(source: &str, allow_internet: bool) -> Result<(), AppError> {
    let sources = crate::workflow::nsg::split_sources(source);
    crate::workflow::nsg::check_sources(&sources, allow_internet)
        .map(|_| ())
        .map_err(|e| AppError::usage_from(&e))
}

/// Flag values the runbook would refuse anyway, checked first so they are usage errors (exit 2).
fn check_source(source: Option<&str>) -> Result<(), AppError> {
    match source {
        Some(s) => crate::azure::network::validate_source(s)
            .map(|_| ())
            .map_err(|e| AppError::usage_from(&e)),
        None => Ok(()),
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

/// Runs bundled runbook `name` with `args` and prints its result.
async fn run_runbook(global: &GlobalArgs, name: &str, args: ArgsMap) -> Result<(), AppError> {
    // Bundled only: a `./enable-ssh.rhai` in the current directory must not replace a verb.
    let value = super::session::run_runbook(global, name, args.0).await?;
    super::print_result(global, &value)
}

pub async fn enable_ssh(global: &GlobalArgs, a: EnableSshArgs) -> Result<(), AppError> {
    let args = ArgsMap::new(&a.vm)
        .set("method", a.method)
        .set("start", a.start)
        .set("allow_windows_update", a.allow_windows_update)
        .opt("default_shell", a.default_shell);
    run_runbook(global, "enable-ssh", args).await
}

pub async fn open_port(global: &GlobalArgs, a: OpenPortArgs) -> Result<(), AppError> {
    check_sources(&a.source, a.allow_internet)?;
    let args = ArgsMap::new(&a.vm)
        .set("source", a.source)
        .set("allow_internet", a.allow_internet)
        .set("permanent", a.permanent_rule)
        .set("port", i64::from(a.port))
        .opt("priority", a.priority)
        .opt("rule_name", a.rule_name);
    run_runbook(global, "open-ssh-port", args).await
}

pub async fn copy_key(global: &GlobalArgs, a: CopyKeyArgs) -> Result<(), AppError> {
    check_user(a.local_user.as_deref())?;
    let args = ArgsMap::new(&a.vm)
        .opt("key", a.key)
        .opt("user", a.local_user)
        .set("fix_sshd_config", a.fix_sshd_config);
    run_runbook(global, "copy-key", args).await
}

pub async fn setup(global: &GlobalArgs, a: SetupArgs) -> Result<(), AppError> {
    if let Some(source) = &a.source {
        check_sources(source, a.allow_internet)?;
    }
    check_user(a.local_user.as_deref())?;
    let args = ArgsMap::new(&a.vm)
        .opt("source", a.source)
        .opt("bastion", a.path.bastion.or(a.path.bastion_id))
        .opt("jump", a.path.jump)
        .opt("via", a.path.via)
        .set("allow_internet", a.allow_internet)
        .set("permanent", a.permanent_rule)
        .opt("user", a.local_user)
        .opt("key", a.key)
        .opt("identity", a.identity)
        .set("port", i64::from(a.port))
        .opt("priority", a.priority)
        .set("method", a.method)
        .set("prefer_private_ip", a.prefer_private_ip)
        .set("start", !a.no_start)
        .set("allow_windows_update", a.allow_windows_update)
        .set("set_sshd_port", a.set_sshd_port)
        .set("fix_sshd_config", a.fix_sshd_config);
    run_runbook(global, "setup-ssh", args).await
}

pub async fn jit(global: &GlobalArgs, a: JitArgs) -> Result<(), AppError> {
    check_source(a.source.as_deref())?;
    crate::azure::jit::parse_duration(&a.duration).map_err(|e| AppError::usage_from(&e))?;
    let args = ArgsMap::new(&a.vm)
        .opt("source", a.source)
        .set("port", i64::from(a.port))
        .set("duration", a.duration)
        .opt("user", a.local_user)
        .opt("key", a.private_key);
    if a.command.is_empty() {
        return run_runbook(global, "jit-connect", args).await;
    }
    // Like `ssh host a b c`: the words are joined and the remote shell splits them again.
    let args = args.set("command", a.command.join(" ")).set("stream", true);
    let result = super::session::run_runbook(global, "jit-connect", args.0).await?;
    super::session::exit_with(&result)
}

/// `azssh pin`: the VM's host keys read through Azure and pinned (what error hints point to).
pub async fn pin(global: &GlobalArgs, a: PinArgs) -> Result<(), AppError> {
    let args = ArgsMap::new(&a.vm).set("replace", a.replace);
    let script = Script {
        name: "verb:pin".into(),
        text: "pin_host_keys(vm(ARGS.resource_group, ARGS.name), #{replace: ARGS.replace})".into(),
    };
    let value = super::session::run_verb_script(global, script, args.0).await?;
    super::print_result(global, &value)
}

/// `azssh close-port`: deletes the rule `open-port` made for `--source` (or `--rule-name`).
pub async fn close_port(global: &GlobalArgs, a: ClosePortArgs) -> Result<(), AppError> {
    check_source(a.source.as_deref())?;
    let args = ArgsMap::new(&a.vm)
        .opt("source", a.source)
        .opt("rule_name", a.rule_name)
        .set("port", i64::from(a.port));
    let script = Script {
        name: "verb:close-port".into(),
        text: r#"let v = vm(ARGS.resource_group, ARGS.name);
let closed = if ARGS.rule_name != () { close_port(v, ARGS.rule_name) } else { close_port(v, #{source: ARGS.source, port: ARGS.port}) };
#{vm: v.name, closed: closed}"#
            .into(),
    };
    let value = super::session::run_verb_script(global, script, args.0).await?;
    super::print_result(global, &value)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<crate::cli::Cli, clap::Error> {
        crate::cli::Cli::try_parse_from(std::iter::once("azssh").chain(args.iter().copied()))
    }

    #[test]
    fn verbs_take_az_style_flags() {
        let cli = parse(&[
            "open-port",
            "-g",
            "rg",
            "-n",
            "web01",
            "--source",
            "203.0.113.7",
            "--priority",
            "1100",
        ])
        .unwrap();
        match cli.command {
            crate::cli::Command::OpenPort(a) => {
                assert_eq!(
                    (a.vm.resource_group.as_str(), a.vm.name.as_str()),
                    ("rg", "web01")
                );
                assert_eq!((a.port, a.priority), (22, Some(1100)));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            parse(&[
                "setup",
                "--resource-group",
                "rg",
                "--name",
                "v",
                "--local-user",
                "u",
                "--source",
                "*",
                "-i",
                "k"
            ])
            .is_ok()
        );
    }

    #[test]
    fn missing_or_bad_flags_are_usage_errors() {
        for bad in [
            &["open-port", "-g", "rg", "-n", "v"][..],
            &["enable-ssh", "-n", "v"],
            &["enable-ssh", "-g", "rg", "-n", "v", "--method", "msi"],
            &[
                "open-port",
                "-g",
                "rg",
                "-n",
                "v",
                "--source",
                "x",
                "--priority",
                "50",
            ],
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }
}
