//! Rhai bindings for SSH: `ssh(vm_or_host[, opts])` → `Session` (`exec`, `powershell`,
//! `forward`, `upload`, `download`, `shell`, `close`) and `Tunnel` (`local_port`, `close`), plus
//! `rdp_probe` and `launch_rdp` for Remote Desktop through a tunnel. A thin layer over
//! `crate::ssh`: every wait goes through `ctx.bridge.block_on`.
//!
//! # Layout
//! `target` — options → `ConnectOptions`; `session` — the `Session`/`Tunnel` values and the
//! tunnel registry; `terminal` — host-key and passphrase prompts; `rdp` — probe and client
//! launch; `error` — `SessionError`.

pub mod error;
pub mod rdp;
pub mod session;
pub mod target;
mod terminal;

use std::path::PathBuf;

use rhai::{Dynamic, Engine, EvalAltResult, FuncRegistration, Map};

use crate::azure::vm::Vm;
use crate::script::api::options::Options;
use crate::script::context::Ctx;
use crate::script::error::to_rhai;
use crate::ssh::keys::expand_home;
use crate::ssh::{LocalForward, Session, SshError, UploadOptions};
use session::{ScriptSession, ScriptTunnel, Tunnels, exec_map, exec_options, require_terminal};
use target::TargetOf;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

const SSH_DOC: &str = "\
/// Opens an SSH session to a `Vm` (its public IP, or its private IP with `prefer_private_ip`)
/// or to a host name or address. Options: `user` (default: the VM's admin user), `key` (a
/// private key path or a list; default: `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa` and the agent),
/// `password`, `port` (default: `AZSSH_SSH_PORT` when set, else 22), `prefer_private_ip`,
/// `known_hosts` (a file to use instead of `~/.ssh/known_hosts` and azssh's own), `strict`
/// (`\"yes\"`, the default without a terminal: unknown hosts are refused; `\"accept-new\"`;
/// `\"ask\"`, the default on a terminal), `agent` (false: no agent keys), `timeout` (seconds to
/// connect, default 10). A changed host key is always refused.
///
/// The path to a `Vm` is chosen and reported: its public IP when it has one; else a bastion
/// (Standard/Premium with native client support) serving its virtual network or one peered
/// with it; else the jump hosts given. Options: `via` (`\"direct\"`, `\"bastion\"`, `\"jump\"`;
/// default automatic), `bastion` (a name in the VM's group, `rg/name` or a resource id),
/// `jump` (`\"user@host:port,next\"` as OpenSSH's ProxyJump, or a list; a bastion then goes
/// first). Host keys are verified at every hop. `s.route` says which path was taken.
///
/// # Example
/// ```rhai
/// let s = ssh(vm(\"rg-web\", \"web01\"), #{user: \"azureuser\", key: \"~/.ssh/id_ed25519\"});
/// print(s.exec(\"hostname\").stdout);
/// let t = s.forward(0, \"localhost\", 3389);
/// info(`RDP on 127.0.0.1:${t.local_port}`);
/// ```";

pub fn register(engine: &mut Engine, ctx: &Ctx) {
    engine.register_type_with_name::<ScriptSession>("Session");
    engine.register_type_with_name::<ScriptTunnel>("Tunnel");
    // One registry per engine: dropping the engine (the end of the run) stops its tunnels, and
    // so does `ScriptContext::release` (the end of one VM on a fleet worker's engine).
    let tunnels = Tunnels::default();
    let open = tunnels.clone();
    ctx.on_release(move || open.close_all());
    register_ssh(engine, ctx, &tunnels);
    register_exec(engine, ctx);
    register_transfer(engine, ctx);
    register_forward(engine, ctx);
    register_lifecycle(engine, ctx);
    register_rdp(engine, ctx);
}

fn register_ssh(engine: &mut Engine, ctx: &Ctx, tunnels: &Tunnels) {
    for with_opts in [false, true] {
        let (c, t) = (ctx.clone(), tunnels.clone());
        let reg = FuncRegistration::new("ssh").with_comments([SSH_DOC]);
        if with_opts {
            reg.with_params_info(["vm: Vm", "options: map", "Session"])
                .register_into_engine(engine, move |v: Vm, o: Map| {
                    connect(&c, &t, TargetOf::Vm(&v), o)
                });
        } else {
            reg.with_params_info(["vm: Vm", "Session"])
                .register_into_engine(engine, move |v: Vm| {
                    connect(&c, &t, TargetOf::Vm(&v), Map::new())
                });
        }
        let (c, t) = (ctx.clone(), tunnels.clone());
        let reg = FuncRegistration::new("ssh").with_comments([SSH_DOC]);
        if with_opts {
            reg.with_params_info(["host: string", "options: map", "Session"])
                .register_into_engine(engine, move |h: &str, o: Map| {
                    connect(&c, &t, TargetOf::Host(h), o)
                });
        } else {
            reg.with_params_info(["host: string", "Session"])
                .register_into_engine(engine, move |h: &str| {
                    connect(&c, &t, TargetOf::Host(h), Map::new())
                });
        }
    }
}

fn connect(
    ctx: &Ctx,
    tunnels: &Tunnels,
    target: TargetOf<'_>,
    o: Map,
) -> RhaiResult<ScriptSession> {
    let request = target::route_request(&o)?;
    let mut opts = target::connect_options(target_ref(&target), o)?;
    match target {
        TargetOf::Vm(vm) => {
            let arm = ctx.arm()?;
            let vm = vm.clone();
            let chosen = ctx
                .bridge
                .block_on("choosing the path to the VM", async move {
                    crate::workflow::route::choose_route(&arm, &vm, &request)
                        .await
                        .map(|c| (c.report(&vm), c))
                })?;
            // Only a path other than the plain public IP is news worth a line.
            if !chosen.1.route.is_direct() || chosen.1.host != opts.host {
                azssh_core::notice::info(&chosen.0);
            }
            opts.host = chosen.1.host;
            opts.route = chosen.1.route;
        }
        TargetOf::Host(_) => {
            if request.bastion.is_some() || request.via == crate::workflow::route::Via::Bastion {
                return Err(to_rhai(&crate::script::error::ScriptError::bad_argument(
                    "a bastion reaches a `Vm`, not a host name",
                    Some("pass the VM (`ssh(vm(rg, name), #{bastion: ...})`)"),
                )));
            }
            opts.route.jumps = request.jumps;
        }
    }
    let what = format!("connecting to `{}` over ssh", opts.host);
    let session = ctx
        .bridge
        .block_on(&what, async move { Session::connect(opts).await })?;
    Ok(ScriptSession::new(session, tunnels.clone()))
}

fn target_ref<'a>(t: &TargetOf<'a>) -> TargetOf<'a> {
    match t {
        TargetOf::Vm(v) => TargetOf::Vm(v),
        TargetOf::Host(h) => TargetOf::Host(h),
    }
}

/// The session, or a clear error when it was closed.
fn live(s: &ScriptSession) -> RhaiResult<Session> {
    s.open().map_err(|e| to_rhai(&e))
}

/// `exec`/`powershell` options, and whether `check: true` asks for a throw on a non-zero exit.
fn exec_opts(function: &str, o: Map) -> RhaiResult<(crate::ssh::ExecOptions, bool)> {
    let opts = Options::new(function, o, &["timeout", "stream", "check"])?;
    let timeout = target::seconds(&opts, "timeout")?;
    let check = opts.bool("check")?.unwrap_or(false);
    Ok((
        exec_options(timeout, opts.bool("stream")?.unwrap_or(false)),
        check,
    ))
}

fn register_exec(engine: &mut Engine, ctx: &Ctx) {
    let exec_doc = "\
/// Runs a command (through the server's default shell: `cmd.exe` on Windows unless
/// DefaultShell says otherwise) and returns `#{exit_code, stdout, stderr, signal}`. Options:
/// `timeout` (seconds), `stream` (true: also copy the output to this terminal as it arrives),
/// `check` (true: throw `script.command_failed` when the exit code is not 0).
///
/// # Example
/// ```rhai
/// let r = s.exec(\"whoami\");
/// if r.exit_code != 0 { throw r.stderr; }
/// ```";
    let ps_doc = "\
/// Runs a PowerShell script as `powershell.exe -NoProfile -NonInteractive -EncodedCommand
/// <base64 UTF-16LE>`, so no quoting is needed and any DefaultShell works. Returns the same map
/// as `exec` and takes the same options (`check: true` throws on a non-zero exit).
///
/// # Example
/// ```rhai
/// let r = s.powershell(\"(Get-Service sshd).Status\");
/// r.stdout.trim();
/// ```";
    for (name, doc, ps) in [("exec", exec_doc, false), ("powershell", ps_doc, true)] {
        let param = if ps {
            "script: string"
        } else {
            "command: string"
        };
        let c = ctx.clone();
        FuncRegistration::new(name)
            .with_comments([doc])
            .with_params_info(["session: Session", param, "map"])
            .register_into_engine(engine, move |s: &mut ScriptSession, cmd: &str| {
                run(&c, s, cmd, ps, (crate::ssh::ExecOptions::default(), false))
            });
        let c = ctx.clone();
        FuncRegistration::new(name)
            .with_comments([doc])
            .with_params_info(["session: Session", param, "options: map", "map"])
            .register_into_engine(engine, move |s: &mut ScriptSession, cmd: &str, o: Map| {
                run(&c, s, cmd, ps, exec_opts(name, o)?)
            });
    }
}

fn run(
    ctx: &Ctx,
    s: &ScriptSession,
    command: &str,
    powershell: bool,
    (opts, check): (crate::ssh::ExecOptions, bool),
) -> RhaiResult<Map> {
    let session = live(s)?;
    let command = command.to_string();
    let what = format!("running a command on `{}`", s.label());
    // Streamed output owns the terminal's lines: no progress line between them.
    let _hold = opts.stdout_to.is_some().then(crate::output::hold_progress);
    let result = ctx.bridge.block_on(&what, async move {
        if powershell {
            session.powershell(&command, opts).await
        } else {
            session.exec(&command, opts).await
        }
    })?;
    if check && result.exit_code != Some(0) {
        let what = if powershell { "powershell()" } else { "exec()" };
        return Err(to_rhai(&crate::script::error::ScriptError::command_failed(
            &format!("{what} on `{}`", s.label()),
            result.exit_code.map(i64::from),
            &String::from_utf8_lossy(&result.stderr),
        )));
    }
    Ok(exec_map(&result))
}

fn register_transfer(engine: &mut Engine, ctx: &Ctx) {
    let upload_doc = "\
/// Copies a local file or directory (recursively) to `remote` over SFTP. Windows paths
/// (`C:\\\\x\\\\y`, `C:/x/y`) are mapped to what Windows OpenSSH expects. Returns `#{files, bytes}`.
/// Each file is reported done only once the server has synced it to its disk
/// (`fsync@openssh.com`, as `sftp -f` does), so it survives the VM restarting. Option: `fsync`
/// (`false`: skip that flush, as OpenSSH's `sftp` and `scp` do; faster, but a file just
/// uploaded can be lost if the VM stops before Windows writes it out).
///
/// # Example
/// ```rhai
/// s.upload(\"./tools/setup.ps1\", \"C:/Users/azureuser/setup.ps1\");
/// s.upload(\"./scratch.bin\", \"C:/Temp/scratch.bin\", #{fsync: false});
/// ```";
    let c = ctx.clone();
    FuncRegistration::new("upload")
        .with_comments([upload_doc])
        .with_params_info(["session: Session", "local: string", "remote: string", "map"])
        .register_into_engine(
            engine,
            move |s: &mut ScriptSession, local: &str, remote: &str| -> RhaiResult<Map> {
                upload(&c, s, local, remote, UploadOptions::default())
            },
        );
    let c = ctx.clone();
    FuncRegistration::new("upload")
        .with_comments([upload_doc])
        .with_params_info([
            "session: Session",
            "local: string",
            "remote: string",
            "options: map",
            "map",
        ])
        .register_into_engine(
            engine,
            move |s: &mut ScriptSession, local: &str, remote: &str, o: Map| -> RhaiResult<Map> {
                let opts = Options::new("upload", o, &["fsync"])?;
                let fsync = opts.bool("fsync")?.unwrap_or(true);
                upload(&c, s, local, remote, UploadOptions { fsync })
            },
        );
    let c = ctx.clone();
    FuncRegistration::new("download")
        .with_comments(["\
/// Copies a remote file or directory (recursively) to `local` over SFTP. Returns
/// `#{files, bytes}`.
///
/// # Example
/// ```rhai
/// s.download(\"C:/ProgramData/ssh/logs/sshd.log\", \"./sshd.log\");
/// ```"])
        .with_params_info(["session: Session", "remote: string", "local: string", "map"])
        .register_into_engine(
            engine,
            move |s: &mut ScriptSession, remote: &str, local: &str| -> RhaiResult<Map> {
                let session = live(s)?;
                let (remote, local): (String, PathBuf) = (remote.to_string(), expand_home(local));
                let moved = c.bridge.block_on(
                    &format!("downloading `{remote}` from `{}`", s.label()),
                    async move { session.download(&remote, &local).await },
                )?;
                Ok(transferred(moved))
            },
        );
}

fn upload(
    ctx: &Ctx,
    s: &ScriptSession,
    local: &str,
    remote: &str,
    options: UploadOptions,
) -> RhaiResult<Map> {
    let session = live(s)?;
    let (local, remote) = (expand_home(local), remote.to_string());
    let moved = ctx.bridge.block_on(
        &format!("uploading `{}` to `{}`", local.display(), s.label()),
        async move { session.upload_with(&local, &remote, options).await },
    )?;
    Ok(transferred(moved))
}

fn transferred(t: crate::ssh::sftp::Transferred) -> Map {
    let mut m = Map::new();
    m.insert("files".into(), Dynamic::from(t.files as i64));
    m.insert("bytes".into(), Dynamic::from(t.bytes as i64));
    m
}

fn register_forward(engine: &mut Engine, ctx: &Ctx) {
    let doc = "\
/// Forwards a local port to `remote_host:remote_port` as seen from the server (`ssh -L`), on
/// 127.0.0.1; `local_port` 0 picks any free port. The tunnel runs while the script goes on and
/// stops on `close()`, when the session closes, or when the script ends. Also takes an `ssh -L`
/// spec: `s.forward(\"8080:localhost:80\")`.
///
/// # Example
/// ```rhai
/// let t = s.forward(0, \"localhost\", 3389);
/// rdp_probe(t.local_port);
/// t.close();
/// ```";
    let c = ctx.clone();
    FuncRegistration::new("forward")
        .with_comments([doc])
        .with_params_info([
            "session: Session",
            "local_port: int",
            "remote_host: string",
            "remote_port: int",
            "Tunnel",
        ])
        .register_into_engine(
            engine,
            move |s: &mut ScriptSession, local: i64, host: &str, remote: i64| {
                let spec = LocalForward::parse(&format!("{local}:[{host}]:{remote}"))
                    .map_err(|e| to_rhai(&e))?;
                forward(&c, s, spec)
            },
        );
    let c = ctx.clone();
    FuncRegistration::new("forward")
        .with_comments([doc])
        .with_params_info(["session: Session", "spec: string", "Tunnel"])
        .register_into_engine(engine, move |s: &mut ScriptSession, spec: &str| {
            let spec = LocalForward::parse(spec).map_err(|e| to_rhai(&e))?;
            forward(&c, s, spec)
        });

    engine
        .register_get("local_port", |t: &mut ScriptTunnel| {
            i64::from(t.local_port())
        })
        .register_get("remote_host", |t: &mut ScriptTunnel| {
            t.spec().remote_host.clone()
        })
        .register_get("remote_port", |t: &mut ScriptTunnel| {
            i64::from(t.spec().remote_port)
        })
        .register_get("is_open", |t: &mut ScriptTunnel| t.is_open())
        .register_fn("to_string", |t: &mut ScriptTunnel| t.describe())
        .register_fn("to_debug", |t: &mut ScriptTunnel| t.describe());

    let c = ctx.clone();
    FuncRegistration::new("close")
        .with_comments(["\
/// Stops the tunnel: no new connections, and the ones it carries are closed. Closing twice is
/// harmless.
///
/// # Example
/// ```rhai
/// t.close();
/// ```"])
        .with_params_info(["tunnel: Tunnel", "()"])
        .register_into_engine(engine, move |t: &mut ScriptTunnel| -> RhaiResult<()> {
            let Some(tunnel) = t.take() else {
                return Ok(());
            };
            c.bridge.block_on("closing a tunnel", async move {
                tunnel.close().await;
                Ok::<_, SshError>(())
            })
        });
}

fn forward(ctx: &Ctx, s: &ScriptSession, spec: LocalForward) -> RhaiResult<ScriptTunnel> {
    let session = live(s)?;
    let what = format!(
        "forwarding port {} to `{}:{}`",
        spec.local_port, spec.remote_host, spec.remote_port
    );
    let tunnel = ctx
        .bridge
        .block_on(&what, async move { session.forward(spec).await })?;
    Ok(s.adopt(tunnel))
}

fn register_lifecycle(engine: &mut Engine, ctx: &Ctx) {
    engine
        .register_get("user", |s: &mut ScriptSession| s.inner.user().to_string())
        .register_get("host", |s: &mut ScriptSession| s.inner.host().to_string())
        .register_get("port", |s: &mut ScriptSession| i64::from(s.inner.port()))
        .register_get("route", |s: &mut ScriptSession| s.inner.route().to_string())
        .register_get("is_closed", |s: &mut ScriptSession| s.is_closed())
        .register_fn("to_string", |s: &mut ScriptSession| {
            format!("Session({})", s.label())
        })
        .register_fn("to_debug", |s: &mut ScriptSession| {
            format!("Session({})", s.label())
        });

    let c = ctx.clone();
    FuncRegistration::new("shell")
        .with_comments(["\
/// Opens an interactive shell on the server with a terminal (PTY) sized like this one, until
/// it exits; returns its exit code (or `()`). Needs a terminal: in a pipeline or CI it fails
/// with `ssh.not_a_terminal` rather than hang.
///
/// # Example
/// ```rhai
/// ssh(vm(\"rg-web\", \"web01\")).shell();
/// ```"])
        .with_params_info(["session: Session", "?"])
        .register_into_engine(
            engine,
            move |s: &mut ScriptSession| -> RhaiResult<Dynamic> {
                require_terminal("shell()").map_err(|e| to_rhai(&e))?;
                let session = live(s)?;
                // The shell owns the terminal: no progress line drawn over it.
                let _terminal = c.bridge.activity().hand_over_terminal();
                let _hold = crate::output::hold_progress();
                let code = c
                    .bridge
                    .block_on(&format!("shell on `{}`", s.label()), async move {
                        session.shell().await
                    })?;
                Ok(code.map_or(Dynamic::UNIT, |c| Dynamic::from(i64::from(c))))
            },
        );

    let c = ctx.clone();
    FuncRegistration::new("wait_closed")
        .with_comments(["\
/// Waits until the connection ends (the server, the network or a Bastion drops it), its
/// tunnels carrying traffic meanwhile. Ctrl-C, or a fleet's `--timeout`, ends the wait as it
/// ends `sleep`. What `azssh tunnel` and `azssh rdp` do to keep their tunnels open.
///
/// # Example
/// ```rhai
/// let t = s.forward(3389, \"localhost\", 3389);
/// s.wait_closed();
/// ```"])
        .with_params_info(["session: Session", "()"])
        .register_into_engine(engine, move |s: &mut ScriptSession| -> RhaiResult<()> {
            let session = s.inner.clone();
            c.bridge
                .block_on(&format!("keeping `{}` open", s.label()), async move {
                    session.closed().await;
                    Ok::<(), SshError>(())
                })
        });

    let c = ctx.clone();
    FuncRegistration::new("close")
        .with_comments(["\
/// Closes the session and every tunnel opened through it. Closing twice is harmless.
///
/// # Example
/// ```rhai
/// s.close();
/// ```"])
        .with_params_info(["session: Session", "()"])
        .register_into_engine(engine, move |s: &mut ScriptSession| -> RhaiResult<()> {
            let tunnels = s.take_tunnels();
            let session = s.inner.clone();
            s.mark_closed();
            c.bridge
                .block_on(&format!("closing `{}`", s.label()), async move {
                    for t in tunnels {
                        t.close().await;
                    }
                    if session.is_closed() {
                        return Ok(());
                    }
                    match session.close().await {
                        Err(SshError::Disconnected) | Ok(()) => Ok(()),
                        Err(e) => Err(e),
                    }
                })
        });
}

fn register_rdp(engine: &mut Engine, ctx: &Ctx) {
    let doc = "\
/// Checks that a Remote Desktop listener answers at `host:port` (default host 127.0.0.1, e.g.
/// a tunnel's local end): sends an X.224 Connection Request as `mstsc` does and reads the
/// Confirm. Returns `#{address, security, failure_code, duration_ms}`; fails with `rdp.*` kinds.
///
/// # Example
/// ```rhai
/// let t = s.forward(0, \"localhost\", 3389);
/// rdp_probe(t.local_port).security   // \"tls\"
/// ```";
    let c = ctx.clone();
    FuncRegistration::new("rdp_probe")
        .with_comments([doc])
        .with_params_info(["port: int", "map"])
        .register_into_engine(engine, move |port: i64| rdp_probe(&c, "127.0.0.1", port));
    let c = ctx.clone();
    FuncRegistration::new("rdp_probe")
        .with_comments([doc])
        .with_params_info(["host: string", "port: int", "map"])
        .register_into_engine(engine, move |host: &str, port: i64| {
            rdp_probe(&c, host, port)
        });

    let launch_doc = "\
/// Starts this machine's RDP client on `address` (`127.0.0.1:PORT`) without waiting for it:
/// `mstsc` on Windows, `xfreerdp3`/`xfreerdp` where installed, `open rdp://...` on macOS.
/// Returns the client's name, or `()` when there is none (print the address instead).
///
/// # Example
/// ```rhai
/// let t = s.forward(0, \"localhost\", 3389);
/// let client = launch_rdp(`127.0.0.1:${t.local_port}`, \"azureuser\");
/// if client == () { print(`connect your RDP client to 127.0.0.1:${t.local_port}`) }
/// ```";
    FuncRegistration::new("launch_rdp")
        .with_comments([launch_doc])
        .with_params_info(["address: string", "?"])
        .register_into_engine(engine, |address: &str| launch(address, None));
    FuncRegistration::new("launch_rdp")
        .with_comments([launch_doc])
        .with_params_info(["address: string", "user: string", "?"])
        .register_into_engine(engine, |address: &str, user: &str| {
            launch(address, Some(user))
        });
}

fn rdp_probe(ctx: &Ctx, host: &str, port: i64) -> RhaiResult<Map> {
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            to_rhai(&crate::script::error::ScriptError::bad_argument(
                format!("`rdp_probe` needs a port between 1 and 65535, got {port}"),
                None,
            ))
        })?;
    let host = host.to_string();
    ctx.bridge
        .block_on(&format!("probing RDP on {host}:{port}"), async move {
            rdp::probe(&host, port).await
        })
}

fn launch(address: &str, user: Option<&str>) -> RhaiResult<Dynamic> {
    let client = rdp::launch(address, user).map_err(|e| to_rhai(&e))?;
    Ok(client.map_or(Dynamic::UNIT, Dynamic::from))
}

/// The map form of a `Session` or `Tunnel`, for JSON and table output.
pub fn value_map(value: &Dynamic) -> Option<Map> {
    if let Some(s) = value.read_lock::<ScriptSession>() {
        return Some(s.to_map());
    }
    value.read_lock::<ScriptTunnel>().map(|t| t.to_map())
}
