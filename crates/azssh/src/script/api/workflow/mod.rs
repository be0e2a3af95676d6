//! Rhai bindings for the documented workflow: `enable_ssh`, `open_port`/`close_port`/`nsg_rules`
//! (in `nsg`), `copy_key`, `host_keys`, `pin_host_keys`, `jit_request` and `setup_ssh`. A thin
//! layer over `crate::workflow`, which does the work.

use rhai::{Dynamic, Engine, EvalAltResult, FuncRegistration, Map};

use crate::azure::jit;
use crate::azure::vm::Vm;
use crate::error::UserError;
use crate::output::{self, Level};
use crate::script::api::options::Options;
use crate::script::context::Ctx;
use crate::script::error::{ScriptError, error_map, to_rhai};
use crate::script::value;
use crate::ssh::keys::{self, SshPublicKey};
use crate::ssh::known_hosts::azssh_known_hosts_path;
use crate::windows::{KeyTarget, UserName};

pub mod audit;
pub mod key_files;
pub mod nsg;

use crate::workflow::error::WorkflowError;
use crate::workflow::guest::{self, MethodChoice};
use crate::workflow::route::{RouteRequest, Via};
use crate::workflow::{pin, setup};

pub(crate) type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// `bridge.block_on` for the workflow's own error type.
pub(crate) fn block<T>(
    ctx: &Ctx,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, WorkflowError>>,
) -> RhaiResult<T> {
    ctx.bridge.block_on(what, fut)
}

fn bad(message: String, hint: Option<&str>) -> Box<EvalAltResult> {
    to_rhai(&ScriptError::bad_argument(message, hint))
}

fn method_option(o: &Options, function: &str) -> RhaiResult<MethodChoice> {
    match o.string("method")? {
        None => Ok(MethodChoice::Auto),
        Some(m) => m
            .parse()
            .map_err(|e: String| bad(format!("`{function}`: {e}"), None)),
    }
}

fn user_name(name: &str) -> RhaiResult<UserName> {
    UserName::parse(name).map_err(|e| to_rhai(&e))
}

fn public_key(text_or_path: &str) -> RhaiResult<SshPublicKey> {
    keys::load_public_key(text_or_path).map_err(|e| to_rhai(&e))
}

use azssh_core::home::default_public_key;

pub fn register(engine: &mut Engine, ctx: &Ctx) {
    nsg::register(engine, ctx);
    key_files::register(engine, ctx);
    audit::register(engine, ctx);
    register_enable(engine, ctx);
    register_prereqs(engine, ctx);
    register_keys(engine, ctx);
    register_jit(engine, ctx);
    register_setup(engine, ctx);
}

fn register_enable(engine: &mut Engine, ctx: &Ctx) {
    let doc = "\
/// Enables the OpenSSH server on a Windows VM, idempotently. `auto` (the default) installs the
/// `OpenSSH.Server` capability on Windows Server 2019+ (build ≥ 17763) and the `WindowsOpenSSH`
/// extension (publisher `Microsoft.Azure.OpenSSH`, version 3.0) below, judging by the instance
/// view's OS version, else the image SKU. Either way sshd is then started, set to Automatic and
/// its firewall rule ensured (the doc leaves that out), all in one RunCommand that also reads
/// the host keys. Returns `#{method, changed, sshd, startup, firewall, version, host_keys}`.
/// A capability install without Windows Update access (0x800f0954) fails with the fix as hint.
///
/// # Example
/// ```rhai
/// let r = enable_ssh(v);
/// info(`${r.method}: sshd ${r.sshd}, changed: ${r.changed}`);
/// enable_ssh(v, #{method: \"extension\"});
/// ```";
    for with_opts in [false, true] {
        let c = ctx.clone();
        let reg = FuncRegistration::new("enable_ssh").with_comments([doc]);
        if with_opts {
            reg.with_params_info(["vm: Vm", "options: map", "map"])
                .register_into_engine(engine, move |v: Vm, o: Map| enable_ssh(&c, &v, o));
        } else {
            reg.with_params_info(["vm: Vm", "map"])
                .register_into_engine(engine, move |v: Vm| enable_ssh(&c, &v, Map::new()));
        }
    }
}

/// The options `enable_ssh` and `setup_ssh` share: `allow_windows_update`,
/// `set_sshd_port` (with `port`), `fix_sshd_config`.
fn enable_options(o: &Options<'_>, port: Option<u16>) -> RhaiResult<guest::EnableOptions> {
    let set_port = o.bool("set_sshd_port")?.unwrap_or(false);
    Ok(guest::EnableOptions {
        setup: crate::windows::SetupOptions {
            allow_windows_update: o.bool("allow_windows_update")?.unwrap_or(false),
            sshd_port: if set_port {
                Some(port.unwrap_or(22))
            } else {
                None
            },
        },
        key: crate::windows::KeyOptions {
            fix_sshd_config: o.bool("fix_sshd_config")?.unwrap_or(false),
        },
    })
}

fn register_prereqs(engine: &mut Engine, ctx: &Ctx) {
    let doc = "\
/// Looks inside a running Windows VM through RunCommand, changing nothing, at what SSH depends
/// on: OpenSSH capability state, WSUS policy, sshd status and last exit code (1067: the logs
/// folder ACL), sshd_config (`port`, `admin_match_block`, `allow_groups`, `allow_users`), the
/// network category and whether Windows Firewall admits sshd's port on it, whether
/// Administrators can be listed (an unresolvable SID makes `Get-LocalGroupMember` throw),
/// `DefaultShell`, free disk space, and with `user` whether AllowGroups/AllowUsers let them in.
/// `check-prereqs` turns it into a list of what to fix, in order.
///
/// # Example
/// ```rhai
/// let g = ssh_prereqs(v, #{user: \"azureadmin\"});
/// if !g.firewall_admits { warn(`port ${g.port} closed on the ${g.network_category} network`); }
/// ```";
    for with_opts in [false, true] {
        let c = ctx.clone();
        let reg = FuncRegistration::new("ssh_prereqs").with_comments([doc]);
        if with_opts {
            reg.with_params_info(["vm: Vm", "options: map", "map"])
                .register_into_engine(engine, move |v: Vm, o: Map| ssh_prereqs(&c, &v, o));
        } else {
            reg.with_params_info(["vm: Vm", "map"])
                .register_into_engine(engine, move |v: Vm| ssh_prereqs(&c, &v, Map::new()));
        }
    }
}

fn ssh_prereqs(ctx: &Ctx, v: &Vm, options: Map) -> RhaiResult<Dynamic> {
    let o = Options::new("ssh_prereqs", options, &["user"])?;
    let user = match o.string("user")? {
        Some(u) => user_name(&u)?.as_str().to_string(),
        None => String::new(),
    };
    let arm = ctx.arm()?;
    let vm = v.clone();
    let found = block(ctx, &format!("looking inside `{}`", v.name), async move {
        guest::inspect(&arm, &vm, &user).await
    })?;
    Ok(value::from_json(&found))
}

fn enable_ssh(ctx: &Ctx, v: &Vm, options: Map) -> RhaiResult<Dynamic> {
    let o = Options::new(
        "enable_ssh",
        options,
        &["method", "allow_windows_update", "set_sshd_port", "port"],
    )?;
    let method = method_option(&o, "enable_ssh")?;
    let port = o.int_in("port", 1..=65535)?.map(|p| p as u16);
    let opts = enable_options(&o, port)?;
    let arm = ctx.arm()?;
    let vm = v.clone();
    let e = block(ctx, &format!("enabling SSH on `{}`", v.name), async move {
        guest::enable(&arm, &vm, method, None, opts).await
    })?;
    let result = serde_json::json!({
        "method": e.method, "changed": e.changed, "extension_installed": e.extension_installed,
        "sshd": e.sshd.sshd, "startup": e.sshd.startup, "firewall": e.sshd.firewall,
        "version": e.sshd.version, "os_build": e.sshd.os_build,
        "port": e.sshd.port, "network_category": e.sshd.network_category,
        "firewall_profile": e.sshd.firewall_profile, "firewall_rule": e.sshd.firewall_rule,
        "repaired": e.sshd.repaired, "windows_update_policy_set": e.sshd.windows_update_policy_set,
        "host_keys": e.host_keys.iter().map(SshPublicKey::to_line).collect::<Vec<_>>(),
    });
    Ok(value::from_json(&result))
}

fn register_keys(engine: &mut Engine, ctx: &Ctx) {
    let doc = "\
/// Installs a public key (a `.pub` path, a private key path, or the key text) for SSH logins,
/// through RunCommand. Without `user`, or when the user is an administrator, the key goes to
/// `C:\\ProgramData\\ssh\\administrators_authorized_keys` (the only file Windows OpenSSH reads
/// for admins); otherwise to the user's `.ssh\\authorized_keys`. The file is written as UTF-8
/// without BOM, a key already there is not added twice, the ACL is set by SID (works on
/// localized Windows) and the file is read back. Returns `#{path, added, fingerprint, repaired,
/// admin}`. `expires: \"2027-03-01\"` writes `azssh-expires=2027-03-01` into the key's comment
/// (`expire_keys` removes it after that day); `exclusive: true` leaves exactly this key (or
/// these, given an array) in the file.
///
/// # Example
/// ```rhai
/// let k = copy_key(v, \"~/.ssh/id_ed25519.pub\", #{user: \"azureuser\"});
/// if !k.added { info(`key ${k.fingerprint} was already in ${k.path}`); }
/// ```";
    for with_opts in [false, true] {
        let c = ctx.clone();
        let reg = FuncRegistration::new("copy_key").with_comments([doc]);
        if with_opts {
            reg.with_params_info(["vm: Vm", "key_path_or_text: string", "options: map", "map"])
                .register_into_engine(engine, move |v: Vm, key: &str, o: Map| {
                    copy_key(&c, &v, key, o)
                });
        } else {
            reg.with_params_info(["vm: Vm", "key_path_or_text: string", "map"])
                .register_into_engine(engine, move |v: Vm, key: &str| {
                    copy_key(&c, &v, key, Map::new())
                });
        }
    }

    let c = ctx.clone();
    FuncRegistration::new("host_keys")
        .with_comments(["\
/// Reads the VM's SSH host public keys (`ssh_host_*_key.pub`) through RunCommand, i.e. through
/// Azure rather than the network, as OpenSSH lines. DSA keys are left out.
///
/// # Example
/// ```rhai
/// for k in host_keys(v) { print(key_info(k).fingerprint); }
/// ```"])
        .with_params_info(["vm: Vm", "array"])
        .register_into_engine(engine, move |v: Vm| -> RhaiResult<rhai::Array> {
            let arm = c.arm()?;
            let keys = block(
                &c,
                &format!("reading host keys of `{}`", v.name),
                async move { guest::read_host_keys(&arm, &v).await },
            )?;
            Ok(keys.iter().map(|k| Dynamic::from(k.to_line())).collect())
        });

    let doc = "\
/// Reads the VM's host keys through Azure and pins them in azssh's own known_hosts
/// (`<config dir>/azssh/known_hosts`, which `ssh()` reads) for the VM's public and private
/// addresses (with the emulator's `AZSSH_SSH_PORT`, as `[ip]:port`). A key that differs from
/// one already pinned is not written: it is listed in `conflicts` and SSH refuses the host until
/// you pin with `#{replace: true}`. Options: `replace`, `port` (the SSH port clients use),
/// `known_hosts` (another file). Returns `#{known_hosts, hosts, fingerprints, added,
/// conflicts}`.
///
/// # Example
/// ```rhai
/// let p = pin_host_keys(v);
/// if p.conflicts.len() > 0 { warn(`host key of ${v.name} changed`); }
/// pin_host_keys(v, #{replace: true});  // after a deliberate rebuild
/// ```";
    for with_opts in [false, true] {
        let c = ctx.clone();
        let reg = FuncRegistration::new("pin_host_keys").with_comments([doc]);
        if with_opts {
            reg.with_params_info(["vm: Vm", "options: map", "map"])
                .register_into_engine(engine, move |v: Vm, o: Map| pin_host_keys(&c, &v, o));
        } else {
            reg.with_params_info(["vm: Vm", "map"])
                .register_into_engine(engine, move |v: Vm| pin_host_keys(&c, &v, Map::new()));
        }
    }
}

fn copy_key(ctx: &Ctx, v: &Vm, key: &str, options: Map) -> RhaiResult<Dynamic> {
    if ["expires", "exclusive"]
        .iter()
        .any(|k| options.contains_key(*k))
    {
        return key_files::copy_key_with(ctx, v, key, options);
    }
    let o = Options::new(
        "copy_key",
        options,
        &["user", "fix_sshd_config", "expires", "exclusive"],
    )?;
    let key_opts = crate::windows::KeyOptions {
        fix_sshd_config: o.bool("fix_sshd_config")?.unwrap_or(false),
    };
    let target = match o.string("user")? {
        Some(u) => KeyTarget::User(user_name(&u)?),
        None => KeyTarget::Administrators,
    };
    let key = public_key(key)?;
    let fingerprint = key.fingerprint();
    let arm = ctx.arm()?;
    let vm = v.clone();
    let k = block(
        ctx,
        &format!("installing a key on `{}`", v.name),
        async move { guest::copy_key(&arm, &vm, key, target, key_opts).await },
    )?;
    Ok(value::from_json(&serde_json::json!({
        "path": k.path, "added": k.added, "fingerprint": fingerprint,
        "repaired": k.repaired, "admin": k.admin,
        "allow_groups": k.allow_groups, "allow_users": k.allow_users, "sshd_config_fixed": k.fixed,
    })))
}

fn pin_host_keys(ctx: &Ctx, v: &Vm, options: Map) -> RhaiResult<Dynamic> {
    let o = Options::new(
        "pin_host_keys",
        options,
        &["replace", "port", "known_hosts"],
    )?;
    let replace = o.bool("replace")?.unwrap_or(false);
    let port = match o.int_in("port", 1..=65535)? {
        Some(p) => p as u16,
        None => pin::ssh_port(22).map_err(|e| to_rhai(&e))?,
    };
    let file = o
        .string("known_hosts")?
        .map(|p| keys::expand_home(&p))
        .unwrap_or_else(azssh_known_hosts_path);
    let hosts = pin::vm_addresses(v);
    if hosts.is_empty() {
        return Err(to_rhai(&WorkflowError::NoPublicIp {
            vm: v.name.clone(),
            private_ip: None,
        }));
    }
    let arm = ctx.arm()?;
    let vm = v.clone();
    let pinned = block(
        ctx,
        &format!("pinning host keys of `{}`", v.name),
        async move {
            let keys = guest::read_host_keys(&arm, &vm).await?;
            pin::pin_keys(&file, &hosts, port, &keys, replace)
        },
    )?;
    for c in &pinned.conflicts {
        output::log(
            Level::Warn,
            &format!(
                "host key of `{}` changed: Azure reports {}, {} holds {}; not pinned (use `replace: true` if the VM was rebuilt)",
                c.host, c.fingerprint, c.at, c.pinned
            ),
        );
    }
    Ok(value::to_dynamic(&pinned))
}

fn register_jit(engine: &mut Engine, ctx: &Ctx) {
    let c = ctx.clone();
    FuncRegistration::new("jit_request")
        .with_comments(["\
/// Requests just-in-time access (Microsoft Defender for Cloud) to a port of the VM: finds the
/// JIT policy that lists the VM, checks the port and duration against it, initiates, and waits
/// until the request is active. Options: `port` (22), `source` (an address or CIDR; default:
/// your address as Azure sees it), `duration` (ISO 8601, default `PT3H`). Returns `#{policy,
/// port, source, end_time_utc, status}`; a VM without a policy is an `azure.not_found` error.
///
/// # Example
/// ```rhai
/// let a = jit_request(v, #{port: 22, source: \"203.0.113.7\", duration: \"PT1H\"});
/// info(`ssh open until ${a.end_time_utc}`);
/// ```"])
        .with_params_info(["vm: Vm", "options: map", "map"])
        .register_into_engine(engine, move |v: Vm, o: Map| jit_request(&c, &v, o));
}

fn jit_request(ctx: &Ctx, v: &Vm, options: Map) -> RhaiResult<Dynamic> {
    let o = Options::new("jit_request", options, &["port", "source", "duration"])?;
    let port = o.int_in("port", 1..=65535)?.unwrap_or(22) as u16;
    let source = o.string("source")?;
    if let Some(s) = &source {
        crate::azure::network::validate_source(s).map_err(|e| to_rhai(&e))?;
    }
    let duration_text = o.string("duration")?.unwrap_or_else(|| "PT3H".into());
    let duration = jit::parse_duration(&duration_text).map_err(|e| to_rhai(&e))?;
    if duration < std::time::Duration::from_secs(5 * 60) {
        return Err(bad(
            format!("`jit_request` duration `{duration_text}` is under the 5 minutes Azure allows"),
            None,
        ));
    }
    let arm = ctx.arm()?;
    let id = v.id.clone();
    let access = block(
        ctx,
        &format!("requesting JIT access to `{}`", v.name),
        async move { Ok(jit::request_and_wait(&arm, &id, port, source.as_deref(), duration).await?) },
    )?;
    Ok(value::to_dynamic(&access))
}

fn register_setup(engine: &mut Engine, ctx: &Ctx) {
    let c = ctx.clone();
    FuncRegistration::new("setup_ssh")
        .with_comments(["\
/// The whole documented workflow for one VM, each step timed: start it if needed (`start:
/// false` refuses instead), find its public address (`prefer_private_ip: true` to use the
/// private one), enable SSH + install the key + read the host keys in ONE RunCommand, open the
/// port to `source` in the NSG, pin the host keys, then log in over SSH with strict host-key
/// checking against the pinned file and run `hostname` and `whoami`. Options: `user`
/// (default: the VM's admin), `key` (public key path; default `~/.ssh/id_ed25519.pub`, ...),
/// `identity` (private key; default: `key` without `.pub`), `source` (required; as for
/// `open_port`, Internet-wide needs `allow_internet: true`), `port` (22), `priority`, `method`,
/// `permanent` (a standing rule even when a JIT policy covers the port; by default JIT access is
/// requested instead), `via`/`bastion`/`jump` (the path, as for `ssh()`: a VM without a public
/// IP is set up through a bastion in reach, whose `AzureBastionSubnet` prefix is then the one
/// source the NSG admits, so `source` is not needed). Returns `#{vm, host, ssh_port, user, ok,
/// steps, total_ms}`; a failure
/// throws the step's error with `step` and `report` added.
///
/// # Example
/// ```rhai
/// let r = setup_ssh(v, #{user: \"azureuser\", key: \"~/.ssh/id_ed25519.pub\", source: \"203.0.113.7\"});
/// for s in r.steps { info(`${s.step}: ${s.duration_ms} ms`); }
/// ```"])
        .with_params_info(["vm: Vm", "options: map", "map"])
        .register_into_engine(engine, move |v: Vm, o: Map| setup_ssh(&c, &v, o));
}

/// `via`, `bastion` and `jump`, as `ssh()` takes them.
fn route_options(o: &Options<'_>) -> RhaiResult<RouteRequest> {
    let via = match o.string("via")? {
        Some(v) => v
            .parse::<Via>()
            .map_err(|e| bad(format!("`setup_ssh` option `via`: {e}"), None))?,
        None => Via::Auto,
    };
    let jumps = match o.string("jump")? {
        Some(j) => crate::ssh::route::parse_jumps(&j).map_err(|e| to_rhai(&e))?,
        None => Vec::new(),
    };
    Ok(RouteRequest {
        via,
        bastion: o.string("bastion")?.filter(|b| !b.trim().is_empty()),
        jumps,
        prefer_private_ip: false,
        port: 22,
    })
}

fn setup_ssh(ctx: &Ctx, v: &Vm, options: Map) -> RhaiResult<Dynamic> {
    let o = Options::new(
        "setup_ssh",
        options,
        &[
            "user",
            "key",
            "identity",
            "source",
            "port",
            "priority",
            "method",
            "prefer_private_ip",
            "start",
            "known_hosts",
            "allow_internet",
            "permanent",
            "allow_windows_update",
            "set_sshd_port",
            "fix_sshd_config",
            "via",
            "bastion",
            "jump",
        ],
    )?;
    let route = route_options(&o)?;
    // Through a bastion the NSG admits its subnet, not a source of the caller's.
    let sources = if o.raw("source").is_none() && route.via != Via::Direct {
        Vec::new()
    } else {
        nsg::sources_option(&o, "setup_ssh")?
    };
    let allow_internet = o.bool("allow_internet")?.unwrap_or(false);
    if !sources.is_empty() {
        crate::workflow::nsg::check_sources(&sources, allow_internet).map_err(|e| to_rhai(&e))?;
    }
    let user = match o.string("user")?.or_else(|| v.admin_username.clone()) {
        Some(u) => user_name(&u)?,
        None => {
            return Err(bad(
                "`setup_ssh` needs `user`: the VM does not name its admin".into(),
                Some("pass `user: \"azureuser\"` (`--local-user`)"),
            ));
        }
    };
    let key_path = match o.string("key")? {
        Some(k) => keys::expand_home(&k),
        None => default_public_key().ok_or_else(|| {
            bad(
                "`setup_ssh` found no public key in `~/.ssh`".into(),
                Some("pass `key: \"path/to/key.pub\"`, or make one with `generate_key(\"~/.ssh/azssh_ed25519\")`"),
            )
        })?,
    };
    let key = public_key(&key_path.to_string_lossy())?;
    let identity = match o.string("identity")? {
        Some(i) => keys::expand_home(&i),
        None => setup::private_key_beside(&key_path).ok_or_else(|| {
            to_rhai(&WorkflowError::NoPrivateKey {
                public: key_path.display().to_string(),
            })
        })?,
    };
    let port = o.int_in("port", 1..=65535)?.unwrap_or(22) as u16;
    let options = enable_options(&o, Some(port))?;
    let req = setup::SetupRequest {
        options,
        user,
        key,
        identity,
        sources,
        allow_internet,
        permanent: o.bool("permanent")?.unwrap_or(false),
        port,
        priority: o.int_in("priority", 100..=4096)?.map(|p| p as i32),
        method: method_option(&o, "setup_ssh")?,
        prefer_private_ip: o.bool("prefer_private_ip")?.unwrap_or(false),
        start: o.bool("start")?.unwrap_or(true),
        known_hosts: o
            .string("known_hosts")?
            .map(|p| keys::expand_home(&p))
            .unwrap_or_else(azssh_known_hosts_path),
        route,
    };
    let arm = ctx.arm()?;
    let vm = v.clone();
    let outcome = ctx
        .bridge
        .block_on(&format!("setting up SSH on `{}`", v.name), async move {
            Ok::<_, ScriptError>(setup::setup_ssh(&arm, &vm, &req).await)
        })?;
    match outcome {
        Ok(report) => Ok(value::to_dynamic(&report)),
        Err(failed) => {
            let (report, err) = *failed;
            let mut map = error_map(
                err.kind(),
                &format!(
                    "setup_ssh step `{}` failed: {err}",
                    report.failed.unwrap_or("?")
                ),
                err.hint(),
            )
            .try_cast::<Map>()
            .unwrap_or_default();
            map.insert("step".into(), report.failed.unwrap_or("?").into());
            map.insert("report".into(), value::to_dynamic(&report));
            Err(Box::new(EvalAltResult::ErrorRuntime(
                map.into(),
                rhai::Position::NONE,
            )))
        }
    }
}
