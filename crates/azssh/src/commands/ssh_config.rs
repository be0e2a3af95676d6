//! `azssh ssh-config [-g RG]... [--all] [-f FILE]`: one OpenSSH `Host` block per VM, so that
//! `ssh RG.VM`, `scp`, VS Code Remote-SSH and Ansible reach every VM — private ones through
//! `ProxyCommand azssh proxy` — with host keys checked against azssh's pinned `known_hosts`
//! (`StrictHostKeyChecking yes`), never switched off as `az network bastion ssh` does.

use futures::{StreamExt, TryStreamExt};

use crate::azure::error::AzureError;
use crate::azure::vm::{self, Vm};
use crate::cli::{GlobalArgs, PathArgs, SshConfigArgs};
use crate::error::AppError;
use crate::fleet::targets::{self, SelectError, Selection};
use crate::output;
use crate::ssh::known_hosts::azssh_known_hosts_path;

/// VM reads in flight at once (as `azssh vms`).
const CONCURRENCY: usize = 16;

/// What every block shares.
struct Settings {
    user: Option<String>,
    identity: Option<String>,
    port: u16,
    alias: String,
    azssh: String,
    known_hosts: String,
    subscription: Option<String>,
    path: PathArgs,
}

pub async fn ssh_config(global: &GlobalArgs, args: SshConfigArgs) -> Result<(), AppError> {
    if args.resource_groups.is_empty() && !args.all {
        return Err(AppError::usage(
            "say which VMs: `-g RG` (repeatable) or `--all`",
            None,
        ));
    }
    let settings = Settings {
        user: args.local_user.clone(),
        identity: args
            .identity
            .clone()
            .or_else(default_identity)
            .map(|p| p.to_string()),
        port: match args.port {
            Some(p) => p,
            None => crate::ssh::connect::ssh_port_from_env()
                .map_err(|e| AppError::usage_from(&e))?
                .unwrap_or(22),
        },
        alias: args.alias.clone(),
        azssh: match &args.azssh {
            Some(p) => p.display().to_string(),
            None => std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "azssh".into()),
        },
        known_hosts: azssh_known_hosts_path().display().to_string(),
        subscription: global.subscription.clone(),
        path: args.path.clone(),
    };
    let vms = read_vms(global, &args).await?;
    let mut text = format!(
        "# Written by `azssh ssh-config`: {} VM(s). Host keys are checked against azssh's\n\
         # pinned known_hosts (`azssh pin -g RG -n VM`); private VMs go through `azssh proxy`.\n\n",
        vms.len()
    );
    for v in &vms {
        text.push_str(&host_block(v, &settings)?);
    }
    match &args.file {
        Some(path) => write_config(path, &text),
        None => {
            output::data(&text);
            Ok(())
        }
    }
}

async fn read_vms(global: &GlobalArgs, args: &SshConfigArgs) -> Result<Vec<Vm>, AppError> {
    let arm = crate::script::context::arm_client(&super::settings(global))
        .map_err(|e| AppError::usage_from(&e))?;
    let selection = Selection {
        resource_groups: args.resource_groups.clone(),
        tags: Default::default(),
        query: None,
        ids: Vec::new(),
        all: args.all,
    };
    // One Resource Graph read gives every VM with its network; per-VM GETs only for VMs the
    // graph did not return.
    let inventory = crate::fleet::inventory::load(&arm).await;
    let found = targets::select(&arm, &selection, inventory.as_deref())
        .await
        .map_err(|e| match e {
            SelectError::Usage(u) => AppError::usage_from(&u),
            SelectError::Azure(a) => AppError::failed(&a),
        })?;
    let arm_ref = &arm;
    let known = crate::fleet::inventory::index(inventory, &found);
    let known = &known;
    let mut vms: Vec<Vm> = futures::stream::iter(found)
        .map(|t| async move {
            match known.get(&t.key()) {
                Some(v) => Ok(v.clone()),
                None => vm::get_vm_by_id(arm_ref, &t.id).await,
            }
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await
        .map_err(|e: AzureError| AppError::failed(&e))?;
    vms.sort_by(|a, b| (&a.resource_group, &a.name).cmp(&(&b.resource_group, &b.name)));
    Ok(vms)
}

/// `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`: the first that exists.
fn default_identity() -> Option<String> {
    crate::ssh::auth::default_identity_files()
        .into_iter()
        .find(|p| p.exists())
        .map(|p| p.display().to_string())
}

/// One `Host` block. A VM without a public IP (or any VM, when path flags were given) gets a
/// `ProxyCommand`; `HostName` is the address its host keys are pinned under.
fn host_block(v: &Vm, s: &Settings) -> Result<String, AppError> {
    let alias = s
        .alias
        .replace("{rg}", &v.resource_group)
        .replace("{name}", &v.name);
    if alias.is_empty() || alias.chars().any(|c| c.is_whitespace() || c == '#') {
        return Err(AppError::usage(
            format!(
                "`--alias` gives `{alias}` for `{}/{}`: not a usable Host name",
                v.resource_group, v.name
            ),
            Some("keep `{rg}` and `{name}` and no spaces, e.g. `{rg}.{name}`".into()),
        ));
    }
    let forced = s.path.bastion.is_some()
        || s.path.bastion_id.is_some()
        || s.path.jump.is_some()
        || s.path.via.is_some();
    let private = v.public_ip.is_none() || forced;
    let host_name = if private {
        v.private_ip.clone()
    } else {
        v.public_ip.clone()
    };
    let Some(host_name) = host_name else {
        return Ok(format!(
            "# {}/{}: no address (network not attached?)\n\n",
            v.resource_group, v.name
        ));
    };
    let mut out = format!("Host {alias}\n    HostName {host_name}\n");
    if let Some(user) = s.user.clone().or_else(|| v.admin_username.clone()) {
        out.push_str(&format!("    User {}\n", config_value(&user)));
    }
    out.push_str(&format!("    Port {}\n", s.port));
    if let Some(key) = &s.identity {
        out.push_str(&format!("    IdentityFile {}\n", config_value(key)));
    }
    out.push_str(&format!(
        "    UserKnownHostsFile {}\n    StrictHostKeyChecking yes\n",
        config_value(&s.known_hosts)
    ));
    if private {
        out.push_str(&format!("    ProxyCommand {}\n", proxy_command(v, s)));
    }
    out.push('\n');
    Ok(out)
}

/// `azssh proxy -g RG -n VM --port %p` with the path flags, every word shell-quoted (OpenSSH
/// runs it with `$SHELL -c`; `%` is doubled so OpenSSH keeps it).
fn proxy_command(v: &Vm, s: &Settings) -> String {
    let mut words = vec![s.azssh.clone()];
    if let Some(sub) = &s.subscription {
        words.extend(["--subscription".to_string(), sub.clone()]);
    }
    words.extend([
        "proxy".to_string(),
        "-g".to_string(),
        v.resource_group.clone(),
        "-n".to_string(),
        v.name.clone(),
    ]);
    let p = &s.path;
    for (flag, value) in [
        ("--bastion", &p.bastion),
        ("--bastion-id", &p.bastion_id),
        ("--jump", &p.jump),
        ("--via", &p.via),
    ] {
        if let Some(value) = value {
            words.extend([flag.to_string(), value.clone()]);
        }
    }
    let mut line: Vec<String> = words
        .iter()
        .map(|w| shell_quote(w).replace('%', "%%"))
        .collect();
    line.extend(["--port".to_string(), "%p".to_string()]);
    line.join(" ")
}

fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@,+=".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// A value OpenSSH reads as one token: quoted when it holds spaces.
fn config_value(v: &str) -> String {
    if v.contains(char::is_whitespace) {
        format!("\"{}\"", v.replace('"', ""))
    } else {
        v.to_string()
    }
}

/// Replaces `path` whole (a temporary file renamed over it), readable by its owner only:
/// OpenSSH refuses a config others can write.
fn write_config(path: &std::path::Path, text: &str) -> Result<(), AppError> {
    use std::io::Write;
    let fail = |e: std::io::Error| {
        AppError::usage(
            format!("cannot write `{}`: {e}", path.display()),
            Some("pick a writable `--file`".into()),
        )
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    tmp.write_all(text.as_bytes()).map_err(fail)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o600))
            .map_err(fail)?;
    }
    tmp.persist(path).map_err(|e| fail(e.error))?;
    output::log(
        output::Level::Info,
        &format!(
            "wrote {}; add `Include {}` to ~/.ssh/config or use `ssh -F`",
            path.display(),
            path.display()
        ),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            user: None,
            identity: Some("/home/me/.ssh/id_ed25519".into()),
            port: 22,
            alias: "{rg}.{name}".into(),
            azssh: "/usr/local/bin/azssh".into(),
            known_hosts: "/home/me/.config/azssh/known_hosts".into(),
            subscription: None,
            path: PathArgs::default(),
        }
    }

    fn vm(public: Option<&str>) -> Vm {
        Vm {
            name: "app01".into(),
            resource_group: "rg-prod".into(),
            public_ip: public.map(str::to_string),
            private_ip: Some("10.0.0.7".into()),
            admin_username: Some("azureuser".into()),
            ..Vm::default()
        }
    }

    #[test]
    fn a_private_vm_goes_through_azssh_proxy_with_strict_checking() {
        let block = host_block(&vm(None), &settings()).unwrap();
        assert_eq!(
            block,
            "Host rg-prod.app01\n    HostName 10.0.0.7\n    User azureuser\n    Port 22\n    \
             IdentityFile /home/me/.ssh/id_ed25519\n    UserKnownHostsFile \
             /home/me/.config/azssh/known_hosts\n    StrictHostKeyChecking yes\n    ProxyCommand \
             /usr/local/bin/azssh proxy -g rg-prod -n app01 --port %p\n\n"
        );
    }

    #[test]
    fn a_public_vm_is_reached_directly() {
        let block = host_block(&vm(Some("20.1.2.3")), &settings()).unwrap();
        assert!(block.contains("HostName 20.1.2.3\n"));
        assert!(!block.contains("ProxyCommand"));
    }

    #[test]
    fn path_flags_reach_every_proxy_command_quoted() {
        let mut s = settings();
        s.path.jump = Some("ops@10.0.0.5:2222".into());
        s.azssh = "/opt/my tools/azssh".into();
        let block = host_block(&vm(Some("20.1.2.3")), &s).unwrap();
        assert!(
            block.contains("ProxyCommand '/opt/my tools/azssh' proxy -g rg-prod -n app01 --jump ops@10.0.0.5:2222 --port %p"),
            "{block}"
        );
        assert!(block.contains("HostName 10.0.0.7"));
    }
}
