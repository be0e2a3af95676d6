//! `azssh proxy -g RG -n VM [--port 22]`: a stdin/stdout relay to the VM's SSH port over the
//! path azssh chooses (direct, Azure Bastion, jump hosts), for OpenSSH's `ProxyCommand` — so
//! plain `ssh`, `scp`, VS Code Remote-SSH and Ansible reach private VMs with their own host-key
//! checking on (the Bastion path of `az` turns it off). Also `azssh tunnel --resource-port`: a
//! local listener whose every connection gets its own path (its own Bastion WebSocket), all
//! served at once, unlike `az network bastion tunnel` (Azure/azure-cli#24600).

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::azure::vm;
use crate::cli::{GlobalArgs, PathArgs, ProxyArgs, TunnelArgs};
use crate::error::AppError;
use crate::output::{self, Level};
use crate::ssh::connect::open_stream;
use crate::ssh::known_hosts::{STRICT_HOST_KEYS_ENV, StrictHostKeyChecking};
use crate::ssh::route::{Route, parse_jumps};
use crate::ssh::{ConnectOptions, HostKeyPolicy, KnownHosts};
use crate::workflow::route::{RouteRequest, Via, choose_route};

/// Where the bytes go: the VM address, the route, and the settings jump hops log in with.
struct Path {
    host: String,
    route: Route,
    hop_options: ConnectOptions,
    report: String,
}

/// The route request the path flags spell.
pub fn route_request(
    path: &PathArgs,
    port: u16,
    prefer_private_ip: bool,
) -> Result<RouteRequest, AppError> {
    let via = match &path.via {
        Some(v) => v
            .parse::<Via>()
            .map_err(|e| AppError::usage(format!("`--via`: {e}"), None))?,
        None => Via::Auto,
    };
    let jumps = match &path.jump {
        Some(j) => parse_jumps(j).map_err(|e| AppError::usage_from(&e))?,
        None => Vec::new(),
    };
    Ok(RouteRequest {
        via,
        bastion: path.bastion.clone().or_else(|| path.bastion_id.clone()),
        jumps,
        prefer_private_ip,
        port,
    })
}

async fn resolve(
    global: &GlobalArgs,
    resource_group: &str,
    name: &str,
    request: RouteRequest,
) -> Result<Path, AppError> {
    let arm = crate::script::context::arm_client(&super::settings(global))
        .map_err(|e| AppError::usage_from(&e))?;
    let vm = vm::get_vm(&arm, resource_group, name)
        .await
        .map_err(|e| AppError::failed(&e))?;
    let chosen = choose_route(&arm, &vm, &request)
        .await
        .map_err(|e| AppError::failed(&e))?;
    // Jump hosts log in as `ssh -J` does: agent and default keys, known_hosts verified; no
    // prompt (stdin is the SSH stream), so unknown hop keys are refused unless
    // `AZSSH_STRICT_HOST_KEYS=accept-new`.
    let mut hop_options = ConnectOptions::new(chosen.host.clone());
    hop_options.host_keys = HostKeyPolicy {
        mode: std::env::var(STRICT_HOST_KEYS_ENV)
            .ok()
            .and_then(|m| m.parse::<StrictHostKeyChecking>().ok())
            .filter(|m| *m != StrictHostKeyChecking::Ask)
            .unwrap_or(StrictHostKeyChecking::Yes),
        known_hosts: KnownHosts::user_default(),
        ask: None,
    };
    Ok(Path {
        report: chosen.report(&vm),
        host: chosen.host,
        route: chosen.route,
        hop_options,
    })
}

fn ssh_port(port: Option<u16>) -> Result<u16, AppError> {
    match port {
        Some(p) => Ok(p),
        None => Ok(crate::ssh::connect::ssh_port_from_env()
            .map_err(|e| AppError::usage_from(&e))?
            .unwrap_or(22)),
    }
}

pub async fn proxy(global: &GlobalArgs, args: ProxyArgs) -> Result<(), AppError> {
    let port = ssh_port(args.port)?;
    let request = route_request(&args.path, port, args.prefer_private_ip)?;
    let path = resolve(global, &args.vm.resource_group, &args.vm.name, request).await?;
    // OpenSSH shows a ProxyCommand's stderr on the terminal: one line per connection only
    // with `-v`.
    tracing::debug!("{}", path.report);
    let (stream, _hops) = open_stream(&path.hop_options, &path.route, &path.host, port)
        .await
        .map_err(|e| AppError::failed(&e))?;
    let (mut remote_read, mut remote_write) = tokio::io::split(stream);
    let (mut stdin, mut stdout) = output::raw_stdio();
    let up = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = stdin.read(&mut buf).await?;
            if n == 0 {
                let _ = remote_write.shutdown().await;
                return Ok::<_, std::io::Error>(());
            }
            remote_write.write_all(&buf[..n]).await?;
        }
    };
    let down = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = remote_read.read(&mut buf).await?;
            if n == 0 {
                stdout.flush().await?;
                return Ok::<_, std::io::Error>(());
            }
            stdout.write_all(&buf[..n]).await?;
            stdout.flush().await?;
        }
    };
    // Either side closing ends the relay, as `ssh -W` does.
    let outcome = tokio::select! {
        r = up => r,
        r = down => r,
    };
    outcome.map_err(|e| {
        AppError::Failed(Box::new(crate::script::error::Diagnostic::plain(
            azssh_core::error::kind::ssh::IO,
            format!(
                "the relay to `{}/{}` broke: {e}",
                args.vm.resource_group, args.vm.name
            ),
            None,
        )))
    })
}

/// `azssh tunnel --resource-port PORT`: every local connection is carried to the VM's port over
/// its own path until Ctrl-C; one that fails is reported and closed, the others go on.
pub async fn bastion_tunnel(
    global: &GlobalArgs,
    args: &TunnelArgs,
    remote_port: u16,
) -> Result<(), AppError> {
    let target = &args.target;
    let (Some(rg), Some(name)) = (&target.resource_group, &target.name) else {
        return Err(AppError::usage(
            "`--resource-port` tunnels to a VM: give `-g` and `-n`",
            None,
        ));
    };
    let mut path_flags = target.login.path.clone();
    if path_flags.via.is_none() && path_flags.jump.is_none() {
        // A raw tunnel is what `az network bastion tunnel` does: through a bastion.
        path_flags.via = Some("bastion".into());
    }
    let request = route_request(&path_flags, remote_port, target.login.prefer_private_ip)?;
    let path = resolve(global, rg, name, request).await?;
    output::log(Level::Info, &path.report);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.local_port))
        .await
        .map_err(|e| {
            AppError::usage(
                format!("cannot listen on 127.0.0.1:{}: {e}", args.local_port),
                Some("pick another `--local-port`, or 0 for any free one".into()),
            )
        })?;
    let local = listener
        .local_addr()
        .map_err(|e| AppError::usage(e.to_string(), None))?;
    output::data_line(&local.to_string());
    output::log(
        Level::Info,
        &format!(
            "tunnel open: {local} -> `{rg}/{name}` port {remote_port}; press Ctrl-C to close it"
        ),
    );
    let path = std::sync::Arc::new(path);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = tokio::signal::ctrl_c() => {
                output::log(Level::Info, "tunnel closed");
                return Ok(());
            }
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                output::log(Level::Warn, &format!("accept failed: {e}"));
                continue;
            }
        };
        let path = path.clone();
        tokio::spawn(async move {
            let _ = socket.set_nodelay(true);
            let opened = open_stream(&path.hop_options, &path.route, &path.host, remote_port).await;
            let (mut stream, _hops) = match opened {
                Ok(s) => s,
                Err(e) => {
                    output::log(Level::Warn, &format!("connection from {peer}: {e}"));
                    return;
                }
            };
            let mut socket = socket;
            if let Err(e) = tokio::io::copy_bidirectional(&mut socket, &mut stream).await {
                output::log(Level::Warn, &format!("connection from {peer} ended: {e}"));
            }
        });
    }
}
