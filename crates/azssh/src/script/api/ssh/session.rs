//! The script-side `Session` and `Tunnel` values and what they do: exec, PowerShell, forwards,
//! SFTP, the interactive shell, close. Tunnels are kept in a per-engine registry so they keep
//! running while the script goes on, whether or not it holds on to the value, and stop when it
//! calls `close()`, when the engine (the script run, the REPL) goes away, or when a fleet
//! worker's evaluation of one VM ends (`ScriptContext::release`).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rhai::{Dynamic, Map};

use super::error::SessionError;
use crate::ssh::{ExecOptions, ExecResult, LocalForward, Session, Tunnel};

/// A script's SSH connection. Cloning shares the connection.
#[derive(Clone)]
pub struct ScriptSession {
    pub(super) inner: Session,
    id: u64,
    tunnels: Tunnels,
    /// Set by `close()`: russh notices the disconnect a moment later, the script at once.
    closed: Arc<AtomicBool>,
}

/// A script's local forward. Cloning shares the tunnel; `close()` on any clone stops it.
#[derive(Clone)]
pub struct ScriptTunnel {
    inner: Arc<Mutex<Option<Tunnel>>>,
    session_id: u64,
    local_port: u16,
    spec: LocalForward,
}

/// Every open tunnel of one engine.
#[derive(Clone, Default)]
pub struct Tunnels(Arc<Mutex<Vec<ScriptTunnel>>>);

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

impl ScriptSession {
    pub fn new(inner: Session, tunnels: Tunnels) -> Self {
        ScriptSession {
            inner,
            id: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
            tunnels,
            closed: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn label(&self) -> String {
        format!(
            "{}@{}:{}",
            self.inner.user(),
            self.inner.host(),
            self.inner.port()
        )
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed) || self.inner.is_closed()
    }

    pub fn mark_closed(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    /// Refuses work on a session the script (or the server) closed, with a clear message
    /// rather than russh's "channel send error".
    pub fn open(&self) -> Result<Session, SessionError> {
        if self.is_closed() {
            return Err(SessionError::SessionClosed {
                session: self.label(),
            });
        }
        Ok(self.inner.clone())
    }

    pub fn adopt(&self, tunnel: Tunnel) -> ScriptTunnel {
        let t = ScriptTunnel {
            local_port: tunnel.local_port(),
            spec: tunnel.spec().clone(),
            inner: Arc::new(Mutex::new(Some(tunnel))),
            session_id: self.id,
        };
        self.tunnels.add(t.clone());
        t
    }

    /// The tunnels of this session that are still open, taken out of the registry.
    pub fn take_tunnels(&self) -> Vec<Tunnel> {
        self.tunnels.take(|t| t.session_id == self.id)
    }

    pub fn to_map(&self) -> Map {
        let mut m = Map::new();
        m.insert("user".into(), self.inner.user().into());
        m.insert("host".into(), self.inner.host().into());
        m.insert("port".into(), Dynamic::from(i64::from(self.inner.port())));
        m.insert("closed".into(), self.is_closed().into());
        m
    }
}

impl ScriptTunnel {
    pub fn local_port(&self) -> u16 {
        self.local_port
    }

    pub fn spec(&self) -> &LocalForward {
        &self.spec
    }

    pub fn is_open(&self) -> bool {
        self.inner.lock().map(|g| g.is_some()).unwrap_or(false)
    }

    /// Takes the running tunnel out, leaving this value (and its clones) closed.
    pub fn take(&self) -> Option<Tunnel> {
        self.inner.lock().ok().and_then(|mut g| g.take())
    }

    pub fn describe(&self) -> String {
        format!(
            "Tunnel({}:{} -> {}:{}{})",
            self.spec.bind,
            self.local_port,
            self.spec.remote_host,
            self.spec.remote_port,
            if self.is_open() { "" } else { ", closed" }
        )
    }

    pub fn to_map(&self) -> Map {
        let mut m = Map::new();
        m.insert("bind".into(), self.spec.bind.clone().into());
        m.insert(
            "local_port".into(),
            Dynamic::from(i64::from(self.local_port)),
        );
        m.insert("remote_host".into(), self.spec.remote_host.clone().into());
        m.insert(
            "remote_port".into(),
            Dynamic::from(i64::from(self.spec.remote_port)),
        );
        m.insert("open".into(), self.is_open().into());
        m
    }
}

impl Tunnels {
    fn add(&self, t: ScriptTunnel) {
        if let Ok(mut list) = self.0.lock() {
            // Forget tunnels closed through another clone, so a long REPL session does not grow.
            list.retain(ScriptTunnel::is_open);
            list.push(t);
        }
    }

    fn take(&self, which: impl Fn(&ScriptTunnel) -> bool) -> Vec<Tunnel> {
        let Ok(mut list) = self.0.lock() else {
            return Vec::new();
        };
        let (chosen, kept): (Vec<_>, Vec<_>) = list.drain(..).partition(|t| which(t));
        *list = kept;
        chosen.iter().filter_map(ScriptTunnel::take).collect()
    }

    /// Stops every tunnel (the end of one evaluation on a reused engine). Dropping a `Tunnel`
    /// stops it (`ssh::Tunnel`'s `Drop`).
    pub fn close_all(&self) {
        drop(self.take(|_| true));
    }

    /// Open tunnels, for tests and the REPL.
    pub fn open_count(&self) -> usize {
        self.0
            .lock()
            .map(|l| l.iter().filter(|t| t.is_open()).count())
            .unwrap_or(0)
    }
}

/// `#{exit_code, stdout, stderr, signal}`; `exit_code` is `()` when the command died of a
/// signal or the server sent no status, never a guess.
pub fn exec_map(r: &ExecResult) -> Map {
    let mut m = Map::new();
    m.insert(
        "exit_code".into(),
        r.exit_code
            .map_or(Dynamic::UNIT, |c| Dynamic::from(i64::from(c))),
    );
    m.insert(
        "stdout".into(),
        String::from_utf8_lossy(&r.stdout).into_owned().into(),
    );
    m.insert(
        "stderr".into(),
        String::from_utf8_lossy(&r.stderr).into_owned().into(),
    );
    m.insert(
        "signal".into(),
        r.signal.clone().map_or(Dynamic::UNIT, Dynamic::from),
    );
    m
}

/// Exec options from a script: `timeout` (seconds) and `stream` (copy output to this
/// process's stdout/stderr as it arrives, for `azssh connect -- command`).
pub fn exec_options(timeout: Option<std::time::Duration>, stream: bool) -> ExecOptions {
    let mut o = ExecOptions {
        timeout,
        ..ExecOptions::default()
    };
    if stream {
        o.stdout_to = Some(Box::new(tokio::io::stdout()));
        o.stderr_to = Some(Box::new(tokio::io::stderr()));
    }
    o
}

/// An interactive shell needs a person at a terminal on both ends of the pipe.
pub fn require_terminal(what: &'static str) -> Result<(), SessionError> {
    if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        Ok(())
    } else {
        Err(SessionError::NotATerminal { what })
    }
}
