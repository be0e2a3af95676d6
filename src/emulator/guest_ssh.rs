//! The emulated guest's sshd: one russh server per VM whose OpenSSH service runs, reachable at
//! the VM's "public IP" on loopback, speaking to the real OpenSSH `ssh`/`sftp` clients.
//!
//! # How a client finds a guest without root
//! Every guest listens on the same unprivileged port P on its own loopback address in
//! `127.77.0.0/16` ([`guest_ip`]). Linux routes all of `127.0.0.0/8` to `lo` with no
//! configuration; macOS only answers on `127.0.0.1` until each address is added with
//! `sudo ifconfig lo0 alias 127.77.0.5 up`. The emulator picks P once ([`reserve_guest_port`],
//! which holds a bound, non-listening socket on the sentinel address so a second emulator picks
//! a different P) and tells clients through `AZSSH_SSH_PORT`; the VM's public IP in ARM is the
//! loopback address, so `ssh -p $AZSSH_SSH_PORT user@127.77.0.5` reaches it.
//!
//! Listeners are lazy: the ARM side calls [`GuestSshServer::start`] when a guest's sshd starts
//! and [`GuestSshHandle::shutdown`] when it stops, so 5000 VMs do not hold 5000 sockets, and a
//! stopped sshd is a genuine "connection refused", as on a real VM.
//!
//! # Refusals
//! A connection is reset at once (RST, `ssh` says "Connection reset by peer") when the guest's
//! sshd is not running although the listener still is (it is being stopped) or when the NSG
//! ([`Admission`]) does not admit the caller. A real NSG drops packets silently, so `ssh` would
//! hang until its connect timeout; the emulator resets instead so that tests and fleet runs do
//! not wait, and says so here rather than pretending to be exact.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{PrivateKey, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelMsg, ChannelOpenFailure, MethodKind, MethodSet};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

use super::guest_sftp::GuestSftp;
use super::rdp;

/// The port the guest's sshd listens on from the guest's (and the NSG's) point of view.
pub const GUEST_SSHD_PORT: u16 = 22;
/// The guest's Remote Desktop port, reachable only through direct-tcpip forwarding.
pub const GUEST_RDP_PORT: u16 = 3389;
/// The sentinel address that holds the reservation of P; never given to a guest.
pub const PORT_SENTINEL: Ipv4Addr = Ipv4Addr::new(127, 77, 255, 254);

/// What a command run by the guest's default shell produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutcome {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: u32,
}

/// What the embedded sshd needs from the emulated Windows guest (implemented by guest.rs).
pub trait GuestAccess: Send + Sync + 'static {
    /// The guest's sshd host key (`C:\ProgramData\ssh\ssh_host_ed25519_key`).
    fn host_key(&self) -> PrivateKey;
    fn sshd_running(&self) -> bool;
    /// Reads the key files as Windows OpenSSH does: `administrators_authorized_keys` for members
    /// of Administrators, `~\.ssh\authorized_keys` otherwise.
    fn is_authorized(&self, user: &str, key: &PublicKey) -> bool;
    /// Runs `command_line` as `user` through the guest's DefaultShell (`cmd.exe /c` unless set).
    /// May block: the server calls it on tokio's blocking pool.
    fn exec(&self, user: &str, command_line: &str) -> ExecOutcome;
    /// The per-VM sandbox directory; `<root>/C` is `C:\`.
    fn sftp_root(&self) -> std::path::PathBuf;
}

/// Who may connect (the NSG, evaluated by the ARM side): source address and destination port.
/// The port passed is the guest-side [`GUEST_SSHD_PORT`], which is what NSG rules name.
pub type Admission = Arc<dyn Fn(IpAddr, u16) -> bool + Send + Sync>;

/// The loopback address of the `index`th guest: `127.77.0.1`, `127.77.0.2`, ... skipping host
/// parts 0 and 255 so every address looks like a usable IPv4 host; `None` past 64 770 guests.
/// `127.77.255.0/24` is reserved for [`PORT_SENTINEL`].
pub fn guest_ip(index: u32) -> Option<Ipv4Addr> {
    let third = index / 254;
    let fourth = index % 254 + 1;
    (third < 255).then(|| Ipv4Addr::new(127, 77, third as u8, fourth as u8))
}

/// The one port every guest listens on, reserved for as long as this value lives.
#[derive(Debug)]
pub struct GuestPort {
    port: u16,
    // Bound without SO_REUSEADDR and never listening: it blocks another emulator from taking the
    // same P (its sentinel bind fails) without accepting connections.
    _sentinel: TcpSocket,
}

impl GuestPort {
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// Reserves the guest port: `preferred`, or any free port when 0.
pub fn reserve_guest_port(preferred: u16) -> io::Result<GuestPort> {
    let socket = TcpSocket::new_v4()?;
    let addr = SocketAddr::from((PORT_SENTINEL, preferred));
    socket.bind(addr).map_err(|e| bind_error(addr, e))?;
    let port = socket.local_addr()?.port();
    Ok(GuestPort {
        port,
        _sentinel: socket,
    })
}

/// Binds a guest's listener on `ip:port`, with SO_REUSEADDR so a guest whose sshd restarts can
/// bind again while old connections sit in TIME_WAIT. Needs a tokio runtime.
pub fn bind_guest_listener(ip: IpAddr, port: u16) -> io::Result<TcpListener> {
    let addr = SocketAddr::new(ip, port);
    let socket = match ip {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr).map_err(|e| bind_error(addr, e))?;
    socket.listen(1024)
}

fn bind_error(addr: SocketAddr, e: io::Error) -> io::Error {
    let hint = if e.kind() == io::ErrorKind::AddrNotAvailable {
        format!(
            "; this OS does not route all of 127.0.0.0/8 to loopback (macOS): add the address with `sudo ifconfig lo0 alias {} up`",
            addr.ip()
        )
    } else {
        String::new()
    };
    io::Error::new(e.kind(), format!("cannot bind `{addr}`: {e}{hint}"))
}

/// A running guest sshd.
pub struct GuestSshServer;

/// Stops the guest sshd when asked (or when dropped): the listener closes and every session is
/// disconnected, as `Stop-Service sshd` ends the service's sessions on Windows.
#[derive(Debug)]
pub struct GuestSshHandle {
    local_addr: SocketAddr,
    stop: CancellationToken,
}

impl GuestSshHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn shutdown(&self) {
        self.stop.cancel();
    }
}

impl Drop for GuestSshHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl GuestSshServer {
    /// Starts the guest's sshd on `bind` (see [`bind_guest_listener`]). Must run inside a tokio
    /// runtime; it is not async so the ARM side can call it while holding its world lock.
    pub fn start(
        bind: SocketAddr,
        guest: Arc<dyn GuestAccess>,
        admit: Admission,
    ) -> io::Result<GuestSshHandle> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other(
                "the guest sshd must be started inside a tokio runtime",
            ));
        }
        let listener = bind_guest_listener(bind.ip(), bind.port())?;
        let local_addr = listener.local_addr()?;
        let config = Arc::new(server_config(guest.host_key()));
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, config, guest, admit, stop.clone()));
        tracing::debug!(%local_addr, "guest sshd listening");
        Ok(GuestSshHandle { local_addr, stop })
    }
}

/// Keeps one guest's listener in step with its sshd service, so listeners exist only while the
/// service runs. The ARM side calls [`GuestSshSwitch::sync`] after anything that may start or
/// stop sshd (RunCommand, the WindowsOpenSSH extension, VM start/deallocate).
#[derive(Debug)]
pub struct GuestSshSwitch {
    bind: SocketAddr,
    listening: std::sync::Mutex<Option<GuestSshHandle>>,
}

impl GuestSshSwitch {
    /// A switch for the guest reachable at `bind` (its loopback address and the guest port P).
    pub fn new(bind: SocketAddr) -> Self {
        GuestSshSwitch {
            bind,
            listening: std::sync::Mutex::new(None),
        }
    }

    /// Starts the listener if `guest.sshd_running()` and it is not listening, stops it if the
    /// service stopped. Returns whether it now listens. Needs a tokio runtime to start one.
    pub fn sync(&self, guest: &Arc<dyn GuestAccess>, admit: &Admission) -> io::Result<bool> {
        let mut listening = self
            .listening
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match (guest.sshd_running(), listening.is_some()) {
            (true, false) => {
                *listening = Some(GuestSshServer::start(
                    self.bind,
                    guest.clone(),
                    admit.clone(),
                )?);
            }
            (false, true) => {
                // Dropping the handle stops the listener and its sessions.
                *listening = None;
            }
            _ => {}
        }
        Ok(listening.is_some())
    }

    /// Where the guest listens right now, if it does.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listening
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(GuestSshHandle::local_addr)
    }
}

fn server_config(host_key: PrivateKey) -> russh::server::Config {
    russh::server::Config {
        // What Windows Server 2022's OpenSSH announces, so banners and logs look familiar.
        server_id: russh::SshId::Standard("SSH-2.0-OpenSSH_for_Windows_9.5".into()),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        keys: vec![host_key],
        // OpenSSH probes with `none` first; refusing that must not cost a delay.
        auth_rejection_time: Duration::from_millis(100),
        auth_rejection_time_initial: Some(Duration::ZERO),
        nodelay: true,
        ..Default::default()
    }
}

async fn accept_loop(
    listener: TcpListener,
    config: Arc<russh::server::Config>,
    guest: Arc<dyn GuestAccess>,
    admit: Admission,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning on a full descriptor table.
                tracing::debug!(error = %e, "guest sshd accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !guest.sshd_running() {
            tracing::debug!(%peer, "guest sshd not running: resetting");
            reset(stream);
            continue;
        }
        if !admit(peer.ip(), GUEST_SSHD_PORT) {
            tracing::debug!(%peer, "nsg denies the caller: resetting (a real NSG would drop)");
            reset(stream);
            continue;
        }
        let session = GuestSession {
            guest: guest.clone(),
            user: None,
            channels: HashMap::new(),
            pty: HashMap::new(),
            sftp: Default::default(),
        };
        tokio::spawn(serve_connection(
            stream,
            peer,
            config.clone(),
            session,
            stop.clone(),
        ));
    }
    tracing::debug!("guest sshd stopped");
}

fn reset(stream: TcpStream) {
    // SO_LINGER 0 turns close into RST, so the client fails at once instead of reading EOF.
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    config: Arc<russh::server::Config>,
    session: GuestSession,
    stop: CancellationToken,
) {
    let running = match russh::server::run_stream(config, stream, session).await {
        Ok(running) => running,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "guest ssh handshake failed");
            return;
        }
    };
    let handle = running.handle();
    tokio::select! {
        result = running => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "guest ssh session ended with an error");
            }
        }
        _ = stop.cancelled() => {
            let _ = handle
                .disconnect(
                    russh::Disconnect::ByApplication,
                    "sshd stopped".to_string(),
                    "en".to_string(),
                )
                .await;
        }
    }
}

/// One client connection's state.
struct GuestSession {
    guest: Arc<dyn GuestAccess>,
    /// Set once public-key authentication succeeds.
    user: Option<String>,
    /// Session channels waiting for their exec / subsystem / shell request.
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// Channels that asked for a terminal (the shell then echoes input).
    pty: HashMap<ChannelId, bool>,
    /// Channels running the sftp subsystem.
    sftp: std::collections::HashSet<ChannelId>,
}

impl GuestSession {
    fn user(&self) -> String {
        self.user.clone().unwrap_or_default()
    }
}

fn is_rdp_target(host: &str, port: u32) -> bool {
    port == u32::from(GUEST_RDP_PORT)
        && matches!(
            host.to_ascii_lowercase().as_str(),
            "localhost" | "127.0.0.1" | "::1" | "[::1]"
        )
}

impl russh::server::Handler for GuestSession {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // Answering the probe truthfully lets `ssh` move on to its next key without signing.
        Ok(if self.guest.is_authorized(user, offer.public_key) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.guest.is_authorized(user, key.public_key) {
            self.user = Some(user.to_string());
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if !is_rdp_target(host_to_connect, port_to_connect) {
            // Nothing else listens inside the emulated guest; OpenSSH reports "connect failed".
            tracing::debug!(host_to_connect, port_to_connect, "forward refused");
            reply.reject(ChannelOpenFailure::ConnectFailed).await;
            return Ok(());
        }
        reply.accept().await;
        tokio::spawn(async move {
            // In-process: the RDP listener sits on the other end of a duplex pipe, not a port.
            let (mut near, far) = tokio::io::duplex(64 * 1024);
            tokio::spawn(async move {
                if let Err(e) = rdp::serve_rdp_connection(far).await {
                    tracing::debug!(error = %e, "emulated rdp connection ended");
                }
            });
            let mut stream = channel.into_stream();
            let _ = tokio::io::copy_bidirectional(&mut stream, &mut near).await;
        });
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.pty.insert(channel, true);
        session.channel_success(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _variable_name: &str,
        _variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Windows OpenSSH has no AcceptEnv by default: refuse, as it does.
        session.channel_failure(channel)
    }

    async fn exec_request(
        &mut self,
        channel_id: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(channel) = self.channels.remove(&channel_id) else {
            return session.channel_failure(channel_id);
        };
        session.channel_success(channel_id)?;
        let command = String::from_utf8_lossy(data).into_owned();
        tokio::spawn(run_exec(channel, self.guest.clone(), self.user(), command));
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel_id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let channel = match (name, self.channels.remove(&channel_id)) {
            ("sftp", Some(channel)) => channel,
            _ => return session.channel_failure(channel_id),
        };
        session.channel_success(channel_id)?;
        self.sftp.insert(channel_id);
        let sftp = GuestSftp::new(self.guest.sftp_root(), &self.user());
        russh_sftp::server::run(channel.into_stream(), sftp).await;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel_id: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(channel) = self.channels.remove(&channel_id) else {
            return session.channel_failure(channel_id);
        };
        session.channel_success(channel_id)?;
        let echo = self.pty.remove(&channel_id).unwrap_or(false);
        tokio::spawn(run_shell(channel, self.guest.clone(), self.user(), echo));
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The client sends EOF once it has every reply it wants. OpenSSH's sshd then reports
        // sftp-server's exit status 0, and `scp` (which runs over SFTP since OpenSSH 9) fails
        // without it, so report it, as sshd does, and close.
        if self.sftp.remove(&channel) {
            session.exit_status_request(channel, 0)?;
            session.eof(channel)?;
            session.close(channel)?;
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        self.pty.remove(&channel);
        self.sftp.remove(&channel);
        Ok(())
    }
}

/// Runs the guest's command on the blocking pool; a panic in the guest model is exit code 1.
async fn guest_exec(guest: Arc<dyn GuestAccess>, user: String, command: String) -> ExecOutcome {
    tokio::task::spawn_blocking(move || guest.exec(&user, &command))
        .await
        .unwrap_or_else(|_| ExecOutcome {
            stdout: Vec::new(),
            stderr: b"the emulated guest failed to run the command\r\n".to_vec(),
            exit_code: 1,
        })
}

/// An exec channel: stdout as data, stderr as extended data 1, then exit-status, EOF, close
/// (the order OpenSSH's sshd uses, so `ssh` exits with the command's code).
async fn run_exec(
    channel: Channel<Msg>,
    guest: Arc<dyn GuestAccess>,
    user: String,
    command: String,
) {
    tracing::debug!(%user, %command, "guest exec");
    let outcome = guest_exec(guest, user, command).await;
    let _ = channel.data(&outcome.stdout[..]).await;
    let _ = channel.extended_data(1, &outcome.stderr[..]).await;
    let _ = channel.exit_status(outcome.exit_code).await;
    let _ = channel.eof().await;
    let _ = channel.close().await;
}

/// The `cmd.exe` banner Windows Server 2022 prints at the start of an interactive session.
const CMD_BANNER: &str = "Microsoft Windows [Version 10.0.20348.2655]\r\n(c) Microsoft Corporation. All rights reserved.\r\n\r\n";

/// A minimal interactive `cmd.exe`: a prompt, line editing (backspace, Ctrl-C, Ctrl-D), and each
/// line run through [`GuestAccess::exec`]. With a pty the server echoes input, as a terminal
/// expects; without one (`ssh -T`, piped input) it only reads lines.
async fn run_shell(
    mut channel: Channel<Msg>,
    guest: Arc<dyn GuestAccess>,
    user: String,
    echo: bool,
) {
    let prompt = format!("C:\\Users\\{user}>");
    let _ = channel.data_bytes(format!("{CMD_BANNER}{prompt}")).await;
    let mut line: Vec<u8> = Vec::new();
    let mut exit_code = 0;
    'session: while let Some(msg) = channel.wait().await {
        let data = match msg {
            ChannelMsg::Data { data } => data,
            ChannelMsg::Eof | ChannelMsg::Close => break,
            _ => continue,
        };
        for &byte in data.iter() {
            let mut out: Vec<u8> = Vec::new();
            match byte {
                b'\r' | b'\n' => {
                    // A terminal sends CR, a pipe LF, Windows text CR LF: one line each way.
                    if byte == b'\n' && echo {
                        continue;
                    }
                    if echo {
                        out.extend_from_slice(b"\r\n");
                    }
                    let command = String::from_utf8_lossy(&line).trim().to_string();
                    line.clear();
                    if command.eq_ignore_ascii_case("exit") {
                        let _ = channel.data(&out[..]).await;
                        break 'session;
                    }
                    if let Some(code) = command
                        .strip_prefix("exit ")
                        .and_then(|c| c.trim().parse().ok())
                    {
                        exit_code = code;
                        let _ = channel.data(&out[..]).await;
                        break 'session;
                    }
                    if !command.is_empty() {
                        let _ = channel.data(&out[..]).await;
                        out.clear();
                        let outcome = guest_exec(guest.clone(), user.clone(), command).await;
                        exit_code = outcome.exit_code;
                        let _ = channel.data(&outcome.stdout[..]).await;
                        let _ = channel.extended_data(1, &outcome.stderr[..]).await;
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(prompt.as_bytes());
                }
                0x7f | 0x08 => {
                    if line.pop().is_some() && echo {
                        out.extend_from_slice(b"\x08 \x08");
                    }
                }
                0x03 => {
                    line.clear();
                    out.extend_from_slice(b"^C\r\n");
                    out.extend_from_slice(prompt.as_bytes());
                }
                0x04 if line.is_empty() => break 'session,
                byte => {
                    line.push(byte);
                    if echo {
                        out.push(byte);
                    }
                }
            }
            if !out.is_empty() {
                let _ = channel.data(&out[..]).await;
            }
        }
    }
    let _ = channel.exit_status(exit_code).await;
    let _ = channel.eof().await;
    let _ = channel.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_ips_skip_network_and_broadcast_host_parts() {
        assert_eq!(guest_ip(0), Some(Ipv4Addr::new(127, 77, 0, 1)));
        assert_eq!(guest_ip(253), Some(Ipv4Addr::new(127, 77, 0, 254)));
        assert_eq!(guest_ip(254), Some(Ipv4Addr::new(127, 77, 1, 1)));
        let last = guest_ip(255 * 254 - 1).expect("last guest");
        assert_eq!(last, Ipv4Addr::new(127, 77, 254, 254));
        assert_eq!(guest_ip(255 * 254), None);
        assert_ne!(last, PORT_SENTINEL);
    }

    #[test]
    fn rdp_targets_are_loopback_3389_only() {
        assert!(is_rdp_target("localhost", 3389));
        assert!(is_rdp_target("LOCALHOST", 3389));
        assert!(is_rdp_target("127.0.0.1", 3389));
        assert!(!is_rdp_target("localhost", 22));
        assert!(!is_rdp_target("10.0.0.4", 3389));
    }

    #[tokio::test]
    async fn a_reserved_port_cannot_be_reserved_twice() {
        let first = reserve_guest_port(0).expect("reserve");
        assert_ne!(first.port(), 0);
        let second = reserve_guest_port(first.port());
        assert!(
            second.is_err(),
            "second reservation of the same port must fail"
        );
        // Guests can still listen on P at their own addresses.
        let guest = bind_guest_listener(IpAddr::V4(Ipv4Addr::new(127, 77, 0, 9)), first.port());
        assert!(guest.is_ok(), "{guest:?}");
    }

    #[test]
    fn start_outside_a_runtime_is_an_error_not_a_panic() {
        struct NoGuest;
        impl GuestAccess for NoGuest {
            fn host_key(&self) -> PrivateKey {
                PrivateKey::random(
                    &mut russh::keys::key::safe_rng(),
                    russh::keys::Algorithm::Ed25519,
                )
                .expect("key")
            }
            fn sshd_running(&self) -> bool {
                true
            }
            fn is_authorized(&self, _: &str, _: &PublicKey) -> bool {
                false
            }
            fn exec(&self, _: &str, _: &str) -> ExecOutcome {
                ExecOutcome::default()
            }
            fn sftp_root(&self) -> std::path::PathBuf {
                std::path::PathBuf::new()
            }
        }
        let result = GuestSshServer::start(
            "127.0.0.1:0".parse().expect("addr"),
            Arc::new(NoGuest),
            Arc::new(|_, _| true),
        );
        assert!(result.is_err());
    }
}
