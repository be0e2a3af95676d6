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
//! Listeners are lazy: the ARM side starts one when a guest's sshd starts and stops it when the
//! service stops ([`GuestSshSwitch::sync`] does both), so 5000 VMs do not hold 5000 sockets, and
//! a stopped sshd is a genuine "connection refused", as on a real VM.
//!
//! # Refusals
//! A connection is reset at once (RST, `ssh` says "Connection reset by peer") when the guest's
//! sshd is not running although the listener still is (it is being stopped) or when the NSG
//! ([`Admission`]) does not admit the caller. A real NSG drops packets silently, so `ssh` would
//! hang until its connect timeout; the emulator resets instead so that tests and fleet runs do
//! not wait, and says so here rather than pretending to be exact. Admission is decided when the
//! TCP connection arrives: like Azure's stateful NSG flows, removing a rule later does not cut a
//! session that is already open.
//!
//! # Layout
//! `address` — guest addresses and the shared port; `session` — one connection (auth, exec,
//! sftp, forwarding); `shell` — the interactive `cmd.exe`. SFTP itself lives in
//! `emulator::guest_sftp`, the RDP listener in `emulator::rdp`.

mod address;
mod session;
mod shell;

pub use address::{GuestPort, PORT_SENTINEL, bind_guest_listener, guest_ip, reserve_guest_port};

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{PrivateKey, PublicKey};
use russh::{MethodKind, MethodSet};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use session::GuestSession;

/// The port the guest's sshd listens on from the guest's (and the NSG's) point of view.
pub const GUEST_SSHD_PORT: u16 = 22;
/// The guest's Remote Desktop port, reachable only through direct-tcpip forwarding.
pub const GUEST_RDP_PORT: u16 = 3389;

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
        // What the in-box OpenSSH capability of Windows Server 2019/2022 announces, so banners
        // and logs look familiar.
        server_id: russh::SshId::Standard("SSH-2.0-OpenSSH_for_Windows_8.1".into()),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        keys: vec![host_key],
        // OpenSSH probes with `none` first; refusing that must not cost a delay.
        auth_rejection_time: Duration::from_millis(100),
        auth_rejection_time_initial: Some(Duration::ZERO),
        nodelay: true,
        // Windows' sshd never drops an idle session (ClientAliveInterval 0), and an idle
        // `ssh -N -L` tunnel must survive; russh's default 10-minute inactivity cut would not.
        // Keepalives still reap clients that vanished, so dead sessions do not pile up.
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(60)),
        keepalive_max: 3,
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
        let session = GuestSession::new(guest.clone());
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

#[cfg(test)]
mod tests {
    use super::*;

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
