//! Opening an authenticated SSH session: options, TCP connect with a deadline, algorithm
//! preferences, host-key verification during the handshake, then authentication.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::PublicKeyOrCertificate;
use russh::{Preferred, cipher, kex};
use tokio::net::TcpStream;

use super::auth::{self, Credentials, PromptSecret};
use super::config::SshConfig;
use super::error::SshError;
use super::known_hosts::{self, HostKeyPolicy};
use super::route::{BoxIo, QuickAck, Route, RouteError, parse_jumps, private_net};
use crate::secret::Secret;

/// Overrides the default SSH port (22) when set: how clients reach the emulator's guests, which
/// all listen on one unprivileged port.
pub const SSH_PORT_ENV: &str = "AZSSH_SSH_PORT";

/// `AZSSH_SSH_PORT`, the one reader of it: `None` when unset or empty. A value that is no port
/// (not a number, or 0) is an error rather than a silent 22, which would knock on the real sshd
/// port of an emulated guest that only listens on the unprivileged one.
pub fn ssh_port_from_env() -> Result<Option<u16>, SshError> {
    parse_ssh_port_env(std::env::var(SSH_PORT_ENV).ok().as_deref())
}

/// `ssh_port_from_env`'s rules for a given value.
pub fn parse_ssh_port_env(value: Option<&str>) -> Result<Option<u16>, SshError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .map(Some)
            .ok_or_else(|| SshError::BadPortEnv {
                value: v.to_string(),
            }),
    }
}

/// Everything needed to reach and log into one host.
#[derive(Clone)]
pub struct ConnectOptions {
    /// A name or address; a name found in `~/.ssh/config` takes its `HostName`/`User`/`Port`/
    /// `IdentityFile` unless set here.
    pub host: String,
    /// `None`: `~/.ssh/config`'s `Port`, else 22.
    pub port: Option<u16>,
    /// `None`: `~/.ssh/config`'s `User`, else the local user name.
    pub user: Option<String>,
    /// Private keys to offer (after the agent's). Empty: `~/.ssh/config`'s `IdentityFile`s, else
    /// `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa` when present.
    pub identity_files: Vec<PathBuf>,
    pub password: Option<Secret<String>>,
    /// For encrypted keys; `None`: `AZSSH_KEY_PASSPHRASE`, then `prompt`.
    pub passphrase: Option<Secret<String>>,
    /// Asks for a passphrase or password on a terminal (called on a blocking thread).
    pub prompt: Option<PromptSecret>,
    /// Offer the keys of the agent at `SSH_AUTH_SOCK`.
    pub use_agent: bool,
    /// The agent's socket; `None`: `SSH_AUTH_SOCK`.
    pub agent_socket: Option<PathBuf>,
    pub host_keys: HostKeyPolicy,
    /// TCP connect plus SSH banner; Azure silently drops packets an NSG refuses, so without a
    /// deadline a closed port 22 hangs for the OS's ~2 minutes.
    pub connect_timeout: Duration,
    /// Interval of SSH keepalives; Azure's load balancer drops idle flows after 4 minutes.
    pub keepalive: Option<Duration>,
    /// `None`: `~/.ssh/config` when it exists.
    pub ssh_config: Option<PathBuf>,
    /// How to reach the host: direct TCP (the default), a bastion, jump hosts. A direct route
    /// takes `~/.ssh/config`'s `ProxyJump` for the host, as OpenSSH does.
    pub route: Route,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("identity_files", &self.identity_files)
            .field("password", &self.password)
            .field("passphrase", &self.passphrase)
            .field("use_agent", &self.use_agent)
            .field("host_keys", &self.host_keys)
            .field("connect_timeout", &self.connect_timeout)
            .field("keepalive", &self.keepalive)
            .field("route", &self.route.describe())
            .finish_non_exhaustive()
    }
}

impl ConnectOptions {
    pub fn new(host: impl Into<String>) -> Self {
        ConnectOptions {
            host: host.into(),
            port: None,
            user: None,
            identity_files: Vec::new(),
            password: None,
            passphrase: None,
            prompt: None,
            use_agent: true,
            agent_socket: None,
            host_keys: HostKeyPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            keepalive: Some(Duration::from_secs(30)),
            ssh_config: None,
            route: Route::direct(),
        }
    }
}

/// Algorithm preferences: AES-256-GCM first (AES-NI makes it ≈ 1.4× chacha20 through a tunnel,
/// see CRATES.md), no CBC/CTR/SHA-1 kex, post-quantum kex first as OpenSSH 9.9 does.
pub(crate) fn client_config(keepalive: Option<Duration>) -> client::Config {
    const CIPHERS: &[cipher::Name] = &[
        cipher::AES_256_GCM,
        cipher::AES_128_GCM,
        cipher::CHACHA20_POLY1305,
    ];
    const KEX: &[kex::Name] = &[
        kex::MLKEM768X25519_SHA256,
        kex::CURVE25519,
        kex::CURVE25519_PRE_RFC_8731,
        kex::ECDH_SHA2_NISTP256,
        kex::DH_G16_SHA512,
        kex::DH_G14_SHA256,
        kex::EXTENSION_SUPPORT_AS_CLIENT,
        kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
    ];
    client::Config {
        // Disabling Nagle halves connect + auth latency: every handshake step is a small write.
        nodelay: true,
        keepalive_interval: keepalive,
        keepalive_max: 3,
        // No inactivity timeout: a quiet interactive session or idle tunnel stays up; the
        // keepalives above find a dead peer (Bastion drops idle streams, azure-cli#28367).
        inactivity_timeout: None,
        // A larger window than russh's 2 MiB and the largest packet russh accepts (OpenSSH
        // sends up to our maximum): fewer window adjustments and packets per byte pulled
        // through a tunnel, measured ≈ 0.6× → 0.9× of `ssh -L` on pull (benches/tunnel.rs).
        window_size: 8 * 1024 * 1024,
        maximum_packet_size: 65535,
        preferred: Preferred {
            kex: Cow::Borrowed(KEX),
            cipher: Cow::Borrowed(CIPHERS),
            ..Preferred::default()
        },
        ..client::Config::default()
    }
}

/// russh callbacks: only host-key verification matters to a client.
pub(crate) struct ClientHandler {
    host: String,
    port: u16,
    policy: HostKeyPolicy,
}

impl client::Handler for ClientHandler {
    type Error = SshError;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, SshError> {
        let key = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            // We never advertise certificate host-key algorithms, so this is a misbehaving
            // server; verify the key inside it like any other.
            PublicKeyOrCertificate::Certificate(cert) => {
                russh::keys::PublicKey::new(cert.public_key().clone(), "")
            }
        };
        known_hosts::verify(&self.policy, &self.host, self.port, &key).await?;
        Ok(true)
    }
}

/// An authenticated SSH connection. Cheap to clone and share: channels (exec, tunnels, SFTP)
/// open concurrently over it.
#[derive(Clone)]
pub struct Session {
    pub(crate) handle: Arc<Handle<ClientHandler>>,
    host: String,
    port: u16,
    user: String,
    /// The jump-host sessions this one runs through: kept open as long as it is.
    via: Arc<Vec<Session>>,
    /// `direct`, `bastion`, `jump` or `bastion+jump`.
    route: &'static str,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Session({}@{}:{})", self.user, self.host, self.port)
    }
}

impl Session {
    /// Connects, verifies the host key, and authenticates (agent, keys, then password).
    pub async fn connect(opts: ConnectOptions) -> Result<Session, SshError> {
        let cfg = match &opts.ssh_config {
            Some(p) => SshConfig::load(p)?,
            None => SshConfig::load_user_default()?,
        };
        let resolved = cfg.resolve(&opts.host);
        let host = resolved.host_name.unwrap_or_else(|| opts.host.clone());
        let port = opts.port.or(resolved.port).unwrap_or(22);
        let user = opts
            .user
            .clone()
            .or(resolved.user)
            .unwrap_or_else(local_user_name);
        let identity_files = if !opts.identity_files.is_empty() {
            opts.identity_files.clone()
        } else if !resolved.identity_files.is_empty() {
            resolved.identity_files
        } else {
            auth::default_identity_files()
        };

        let mut route = opts.route.clone();
        if route.is_direct()
            && let Some(jumps) = &resolved.proxy_jump
        {
            route.jumps = parse_jumps(jumps).map_err(SshError::from)?;
        }
        let (stream, via) = open_stream(&opts, &route, &host, port).await?;
        let handler = ClientHandler {
            host: host.clone(),
            port,
            policy: opts.host_keys.clone(),
        };
        let config = Arc::new(client_config(opts.keepalive));
        // The deadline covers the banner and key exchange too: a listener that accepts but
        // never speaks SSH (a stuck sshd, a middlebox) must not hang us.
        let mut handle = tokio::time::timeout(
            opts.connect_timeout,
            client::connect_stream(config, stream, handler),
        )
        .await
        .map_err(|_| SshError::ConnectTimeout {
            host: host.clone(),
            port,
            after: opts.connect_timeout,
        })??;

        let creds = Credentials {
            identity_files,
            password: opts.password.clone(),
            passphrase: opts.passphrase.clone(),
            prompt: opts.prompt.clone(),
            use_agent: opts.use_agent,
            agent_socket: opts.agent_socket.clone(),
        };
        auth::authenticate(&mut handle, &host, &user, &creds).await?;
        tracing::debug!(%host, port, %user, route = route.via(), "ssh session established");
        Ok(Session {
            handle: Arc::new(handle),
            host,
            port,
            user,
            via: Arc::new(via),
            route: route.via(),
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn user(&self) -> &str {
        &self.user
    }
    /// `direct`, `bastion`, `jump` or `bastion+jump`.
    pub fn route(&self) -> &'static str {
        self.route
    }
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Returns once the connection has ended (the server, the network or a Bastion dropped
    /// it). russh tells only through `is_closed`, so this polls it four times a second.
    pub async fn closed(&self) {
        while !self.is_closed() {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }

    /// Says goodbye to the server; open channels end.
    pub async fn close(&self) -> Result<(), SshError> {
        self.handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await?;
        Ok(())
    }
}

/// A byte stream to `host:port` along `route`, with the jump sessions it runs through.
pub async fn open_stream(
    opts: &ConnectOptions,
    route: &Route,
    host: &str,
    port: u16,
) -> Result<(BoxIo, Vec<Session>), SshError> {
    let Some((before, last)) = route.split_last() else {
        return match &route.bastion {
            Some((bastion, target)) => {
                // `AZSSH_SSH_PORT` is the loopback port that stands for a guest's port 22 on an
                // address dialled directly (the emulator's guests); a bastion dials the VM
                // itself, where sshd listens on 22 (BASTION.md: `resourcePort`).
                let port = match ssh_port_from_env() {
                    Ok(Some(env)) if env == port => 22,
                    _ => port,
                };
                let stream =
                    tokio::time::timeout(opts.connect_timeout * 3, bastion.open(target, port))
                        .await
                        .map_err(|_| SshError::ConnectTimeout {
                            host: host.to_string(),
                            port,
                            after: opts.connect_timeout * 3,
                        })??;
                Ok((Box::new(stream), Vec::new()))
            }
            None => Ok((
                Box::new(QuickAck::new(
                    tcp_connect(
                        &private_net::local_address(host),
                        port,
                        opts.connect_timeout,
                    )
                    .await?,
                )),
                Vec::new(),
            )),
        };
    };
    // The last jump host, itself reached along the rest of the route; then `direct-tcpip`
    // from it to the destination, as `ssh -J` does.
    let hop = super::route::jump::hop_options(opts, last, before);
    let jump = Box::pin(Session::connect(hop)).await?;
    let channel = jump
        .handle
        .channel_open_direct_tcpip(
            private_net::local_address(host),
            u32::from(port),
            "127.0.0.1",
            0,
        )
        .await
        .map_err(|e| {
            SshError::from(RouteError::JumpRefused {
                hop: last.to_string(),
                target: format!("{host}:{port}"),
                reason: e.to_string(),
            })
        })?;
    let mut via = jump.via.as_ref().clone();
    via.push(jump);
    Ok((Box::new(channel.into_stream()), via))
}

fn local_user_name() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "root".to_string())
}

/// Resolves and connects to each address in turn within one deadline, mapping refusals and
/// timeouts to errors that say what to check on the Azure side.
async fn tcp_connect(host: &str, port: u16, deadline: Duration) -> Result<TcpStream, SshError> {
    let attempt = async {
        let addrs: Vec<_> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| SshError::Resolve {
                host: host.to_string(),
                reason: e.to_string(),
            })?
            .collect();
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                SshError::ConnectRefused {
                    host: host.to_string(),
                    port,
                }
            }
            Some(e) => SshError::Unreachable {
                host: host.to_string(),
                port,
                source: e,
            },
            None => SshError::Resolve {
                host: host.to_string(),
                reason: "no addresses".to_string(),
            },
        })
    };
    let stream = tokio::time::timeout(deadline, attempt)
        .await
        .map_err(|_| SshError::ConnectTimeout {
            host: host.to_string(),
            port,
            after: deadline,
        })??;
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!("set_nodelay failed: {e}");
    }
    Ok(stream)
}
