//! From `ssh()`'s arguments to `ConnectOptions`: which address of a `Vm` to use, the default
//! user and port, keys, host-key checking and the terminal prompts.

use std::path::PathBuf;

use rhai::{Dynamic, EvalAltResult, Map};

use super::error::SessionError;
use super::terminal;
use crate::azure::vm::Vm;
use crate::script::api::options::Options;
use crate::script::error::{ScriptError, to_rhai};
use crate::secret::Secret;
use crate::ssh::keys::expand_home;
use crate::ssh::route::parse_jumps;
use crate::ssh::{ConnectOptions, HostKeyPolicy, KnownHosts, StrictHostKeyChecking};
use crate::workflow::route::{RouteRequest, Via};

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// The port the emulator's guests (or any non-standard fleet) listen on, for every session that
/// does not name one.
pub use crate::ssh::connect::SSH_PORT_ENV;

pub const OPTION_NAMES: &[&str] = &[
    "user",
    "key",
    "password",
    "port",
    "prefer_private_ip",
    "known_hosts",
    "strict",
    "agent",
    "timeout",
    "via",
    "bastion",
    "jump",
];

/// Where to connect: an address and, for a VM, its admin user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub default_user: Option<String>,
}

/// The VM's public IP, or its private one when asked; an error naming the missing one.
pub fn vm_target(vm: &Vm, prefer_private_ip: bool) -> Result<Target, SessionError> {
    let (address, which) = if prefer_private_ip {
        (&vm.private_ip, "private")
    } else {
        (&vm.public_ip, "public")
    };
    let host = address.clone().ok_or_else(|| SessionError::NoAddress {
        vm: format!("{}/{}", vm.resource_group, vm.name),
        which,
    })?;
    Ok(Target {
        host,
        default_user: vm.admin_username.clone(),
    })
}

/// The path options of `ssh()`: `via`, `bastion`, `jump` (and `prefer_private_ip`, `port`).
pub fn route_request(map: &Map) -> RhaiResult<RouteRequest> {
    let opts = Options::new("ssh", map.clone(), OPTION_NAMES)?;
    let bad = |e: String| {
        to_rhai(&ScriptError::bad_argument(
            format!("`ssh` option {e}"),
            None,
        ))
    };
    let via = match opts.string("via")? {
        Some(v) => v.parse::<Via>().map_err(|e| bad(format!("`via`: {e}")))?,
        None => Via::Auto,
    };
    let jumps = match opts.raw("jump") {
        None => Vec::new(),
        Some(v) if v.is_string() => parse_jumps(&v.to_string()).map_err(|e| to_rhai(&e))?,
        Some(v) => match v.read_lock::<rhai::Array>() {
            Some(list) => {
                let mut hops = Vec::new();
                for hop in list.iter() {
                    hops.extend(parse_jumps(&hop.to_string()).map_err(|e| to_rhai(&e))?);
                }
                hops
            }
            None => {
                return Err(bad(format!(
                    "`jump` must be a string (`user@host:port,next`) or a list, got a `{}`",
                    v.type_name()
                )));
            }
        },
    };
    let port = match opts.int_in("port", 1..=65535)? {
        Some(p) => p as u16,
        None => crate::ssh::connect::ssh_port_from_env()
            .map_err(|e| to_rhai(&e))?
            .unwrap_or(22),
    };
    Ok(RouteRequest {
        via,
        bastion: opts.string("bastion")?.filter(|b| !b.trim().is_empty()),
        jumps,
        prefer_private_ip: opts.bool("prefer_private_ip")?.unwrap_or(false),
        port,
    })
}

/// Reads the options map and builds the connection settings for `target`. For a `Vm`, the
/// host is a placeholder until the path is chosen (`workflow::route::choose_route`).
pub fn connect_options(target_of: TargetOf<'_>, map: Map) -> RhaiResult<ConnectOptions> {
    let opts = Options::new("ssh", map, OPTION_NAMES)?;
    let prefer_private = opts.bool("prefer_private_ip")?.unwrap_or(false);
    let target = match target_of {
        TargetOf::Vm(vm) => vm_target(vm, prefer_private).unwrap_or_else(|_| Target {
            host: vm.private_ip.clone().unwrap_or_default(),
            default_user: vm.admin_username.clone(),
        }),
        TargetOf::Host(host) => {
            if prefer_private {
                return Err(to_rhai(&ScriptError::bad_argument(
                    "`prefer_private_ip` applies to a `Vm`, not to a host name",
                    Some("pass the VM (`ssh(vm(rg, name), ...)`) or the private address itself"),
                )));
            }
            Target {
                host: host.to_string(),
                default_user: None,
            }
        }
    };
    let mut o = ConnectOptions::new(target.host);
    o.user = opts.string("user")?.or(target.default_user);
    o.port = match opts.int_in("port", 1..=65535)? {
        Some(p) => Some(p as u16),
        None => crate::ssh::connect::ssh_port_from_env().map_err(|e| to_rhai(&e))?,
    };
    o.identity_files = key_paths(&opts)?;
    // The password goes straight into a `Secret`: it never reaches Debug output or logs.
    o.password = opts.string("password")?.map(Secret::new);
    o.use_agent = opts.bool("agent")?.unwrap_or(true);
    if let Some(t) = seconds(&opts, "timeout")? {
        o.connect_timeout = t;
    }
    o.host_keys = host_key_policy(&opts)?;
    if terminal::interactive() {
        o.prompt = Some(terminal::prompt_secret());
    }
    Ok(o)
}

/// What `ssh()` was given.
pub enum TargetOf<'a> {
    Vm(&'a Vm),
    Host(&'a str),
}

/// `key` is a path or a list of paths, tried in order (after the agent's keys).
fn key_paths(opts: &Options<'_>) -> RhaiResult<Vec<PathBuf>> {
    let Some(value) = opts.raw("key") else {
        return Ok(Vec::new());
    };
    let as_path = |v: &Dynamic| -> RhaiResult<PathBuf> {
        if v.is_string() {
            Ok(expand_home(&v.to_string()))
        } else {
            Err(to_rhai(&ScriptError::bad_argument(
                format!(
                    "`ssh` option `key` must be a path or a list of paths, got a `{}`",
                    v.type_name()
                ),
                None,
            )))
        }
    };
    match value.read_lock::<rhai::Array>() {
        Some(list) => list.iter().map(as_path).collect(),
        None => Ok(vec![as_path(value)?]),
    }
}

fn host_key_policy(opts: &Options<'_>) -> RhaiResult<HostKeyPolicy> {
    let mode = match opts.string("strict")? {
        Some(s) => s.parse::<StrictHostKeyChecking>().map_err(|e| {
            to_rhai(&ScriptError::bad_argument(
                format!("`ssh` option `strict`: {e}"),
                None,
            ))
        })?,
        // OpenSSH asks on a terminal; a script nobody watches must not trust a key blindly.
        None if terminal::interactive() => StrictHostKeyChecking::Ask,
        None => StrictHostKeyChecking::Yes,
    };
    let known_hosts = match opts.string("known_hosts")? {
        Some(path) => KnownHosts::single(expand_home(&path)),
        None => KnownHosts::user_default(),
    };
    let ask = (mode == StrictHostKeyChecking::Ask && terminal::interactive())
        .then(terminal::ask_host_key);
    Ok(HostKeyPolicy {
        mode,
        known_hosts,
        ask,
    })
}

/// A duration option in seconds (whole or fractional).
pub fn seconds(opts: &Options<'_>, key: &str) -> RhaiResult<Option<std::time::Duration>> {
    let Some(v) = opts.raw(key) else {
        return Ok(None);
    };
    let secs = v
        .as_int()
        .map(|i| i as f64)
        .or_else(|_| v.as_float())
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0);
    match secs {
        Some(s) => Ok(Some(std::time::Duration::from_secs_f64(s))),
        None => Err(to_rhai(&ScriptError::bad_argument(
            format!("option `{key}` must be a positive number of seconds"),
            None,
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm() -> Vm {
        Vm {
            name: "web01".into(),
            resource_group: "rg".into(),
            public_ip: Some("20.1.2.3".into()),
            private_ip: Some("10.0.0.4".into()),
            admin_username: Some("azureuser".into()),
            ..Vm::default()
        }
    }

    #[test]
    fn vm_connects_to_public_ip_as_its_admin_user() {
        let t = vm_target(&vm(), false).unwrap();
        assert_eq!(t.host, "20.1.2.3");
        assert_eq!(t.default_user.as_deref(), Some("azureuser"));
        assert_eq!(vm_target(&vm(), true).unwrap().host, "10.0.0.4");
    }

    #[test]
    fn vm_without_public_ip_names_the_way_out() {
        let mut v = vm();
        v.public_ip = None;
        let err = vm_target(&v, false).unwrap_err();
        assert_eq!(err.to_string(), "VM `rg/web01` has no public IP address");
        use crate::error::UserError;
        assert!(err.hint().unwrap().contains("prefer_private_ip"));
        assert_eq!(err.kind(), "ssh.no_address");
    }

    #[test]
    fn ssh_port_env_is_validated() {
        use crate::ssh::connect::parse_ssh_port_env as port_from_env;
        assert_eq!(port_from_env(None).unwrap(), None);
        assert_eq!(port_from_env(Some("2222")).unwrap(), Some(2222));
        assert!(port_from_env(Some("0")).is_err());
        assert!(port_from_env(Some("ssh")).is_err());
    }

    #[test]
    fn explicit_options_win_over_vm_defaults() {
        let mut m = Map::new();
        m.insert("user".into(), "ops".into());
        m.insert("port".into(), Dynamic::from(2200_i64));
        m.insert("key".into(), "/k/id".into());
        m.insert("strict".into(), "accept-new".into());
        m.insert("password".into(), "hunter2".into());
        let v = vm();
        let o = connect_options(TargetOf::Vm(&v), m).unwrap();
        assert_eq!(o.user.as_deref(), Some("ops"));
        assert_eq!(o.port, Some(2200));
        assert_eq!(o.identity_files, vec![PathBuf::from("/k/id")]);
        assert_eq!(o.host_keys.mode, StrictHostKeyChecking::AcceptNew);
        assert!(!format!("{o:?}").contains("hunter2"));
    }

    #[test]
    fn prefer_private_ip_on_a_host_name_is_refused() {
        let mut m = Map::new();
        m.insert("prefer_private_ip".into(), true.into());
        let err = connect_options(TargetOf::Host("example.com"), m).unwrap_err();
        assert!(format!("{err:?}").contains("applies to a `Vm`"));
    }
}
