//! `SshError`: every way reaching a host over SSH can fail, with a stable kind and a hint.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::UserError;
use crate::error::kind;

/// One authentication method tried and why it did not get us in, so that the final
/// `ssh.auth_failed` error can list them all the way `ssh -v` would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthAttempt {
    /// e.g. "publickey `/home/me/.ssh/id_ed25519`", "agent key SHA256:…", "password".
    pub method: String,
    /// e.g. "refused by the server", "key is encrypted and no passphrase was given".
    pub outcome: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("connection to `{host}:{port}` refused")]
    ConnectRefused { host: String, port: u16 },

    #[error("connecting to `{host}:{port}` timed out after {}s", .after.as_secs_f32())]
    ConnectTimeout {
        host: String,
        port: u16,
        after: Duration,
    },

    #[error("cannot reach `{host}:{port}`: {source}")]
    Unreachable {
        host: String,
        port: u16,
        source: std::io::Error,
    },

    #[error("cannot resolve `{host}`: {reason}")]
    Resolve { host: String, reason: String },

    #[error(
        "the host key of `{host}` changed: expected {known}, received {received} ({file}:{line} holds the old key)",
        file = .file.display()
    )]
    HostKeyChanged {
        host: String,
        known: String,
        received: String,
        file: PathBuf,
        line: usize,
    },

    #[error("`{host}` is not a known host (its key is {fingerprint})")]
    UnknownHost { host: String, fingerprint: String },

    #[error(
        "revoked host key for `{host}`: {fingerprint} is marked `@revoked` at {file}:{line}",
        file = .file.display()
    )]
    HostKeyRevoked {
        host: String,
        fingerprint: String,
        file: PathBuf,
        line: usize,
    },

    #[error(transparent)]
    File(#[from] crate::local_file::LocalFileError),

    #[error(transparent)]
    Route(#[from] super::route::RouteError),

    #[error(
        "private key `{}` is readable by others (mode {mode:03o}); OpenSSH refuses such keys",
        .path.display()
    )]
    KeyPermissions { path: PathBuf, mode: u32 },

    #[error("the host key of `{host}` ({fingerprint}) was not accepted")]
    HostKeyRejected { host: String, fingerprint: String },

    #[error("cannot read or write known hosts file `{}`: {reason}", .file.display())]
    KnownHosts { file: PathBuf, reason: String },

    #[error("authentication as `{user}` on `{host}` failed; tried: {}", list_attempts(.attempts))]
    AuthFailed {
        user: String,
        host: String,
        attempts: Vec<AuthAttempt>,
    },

    #[error("cannot use key `{}`: {reason}", .path.display())]
    Key { path: PathBuf, reason: String },

    #[error("`{command}` did not finish within {}s", .after.as_secs_f32())]
    ExecTimeout { command: String, after: Duration },

    #[error("invalid forward `{spec}`: {reason}")]
    InvalidForward { spec: String, reason: String },

    #[error("cannot listen on `{addr}`: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },

    #[error("sftp: {operation} `{path}` failed: {reason}")]
    Sftp {
        operation: &'static str,
        path: String,
        reason: String,
    },

    #[error(
        "sftp: the server listed an unsafe entry {name:?} in `{dir}` ({reason}); nothing was written for it"
    )]
    UnsafeEntryName {
        dir: String,
        name: String,
        reason: &'static str,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },

    #[error("invalid ssh config `{}` line {line}: {reason}", .file.display())]
    Config {
        file: PathBuf,
        line: usize,
        reason: String,
    },

    #[error("ssh protocol error: {0}")]
    Protocol(String),

    #[error("the ssh connection closed")]
    Disconnected,

    #[error("`AZSSH_SSH_PORT` is `{value}`, not a port number")]
    BadPortEnv { value: String },
}

/// The outcome recorded for a key whose passphrase did not decrypt it (the hint keys on it).
pub(crate) const WRONG_PASSPHRASE: &str = "wrong passphrase";

fn list_attempts(attempts: &[AuthAttempt]) -> String {
    if attempts.is_empty() {
        return "nothing (no key, agent or password available)".to_string();
    }
    attempts
        .iter()
        .map(|a| format!("{} ({})", a.method, a.outcome))
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<russh::Error> for SshError {
    fn from(e: russh::Error) -> Self {
        match e {
            russh::Error::Disconnect | russh::Error::HUP | russh::Error::SendError => {
                SshError::Disconnected
            }
            other => SshError::Protocol(other.to_string()),
        }
    }
}

impl SshError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SshError::Io {
            context: context.into(),
            source,
        }
    }
}

impl UserError for SshError {
    fn kind(&self) -> &'static str {
        match self {
            SshError::ConnectRefused { .. } => kind::ssh::CONNECT_REFUSED,
            SshError::ConnectTimeout { .. } => kind::ssh::CONNECT_TIMEOUT,
            SshError::Unreachable { .. } => kind::ssh::UNREACHABLE,
            SshError::Resolve { .. } => kind::ssh::RESOLVE,
            SshError::HostKeyChanged { .. } => kind::ssh::HOST_KEY_CHANGED,
            SshError::UnknownHost { .. } => kind::ssh::UNKNOWN_HOST,
            SshError::HostKeyRejected { .. } => kind::ssh::HOST_KEY_REJECTED,
            SshError::KnownHosts { .. } => kind::ssh::KNOWN_HOSTS,
            SshError::HostKeyRevoked { .. } => kind::ssh::HOST_KEY_REVOKED,
            SshError::File(e) => e.kind(),
            SshError::Route(e) => e.kind(),
            SshError::KeyPermissions { .. } => kind::ssh::KEY_PERMISSIONS,
            SshError::AuthFailed { .. } => kind::ssh::AUTH_FAILED,
            SshError::Key { .. } => kind::ssh::KEY,
            SshError::ExecTimeout { .. } => kind::ssh::EXEC_TIMEOUT,
            SshError::InvalidForward { .. } => kind::ssh::INVALID_FORWARD,
            SshError::Listen { .. } => kind::ssh::LISTEN,
            SshError::Sftp { .. } => kind::ssh::SFTP,
            SshError::UnsafeEntryName { .. } => kind::ssh::SFTP_UNSAFE_NAME,
            SshError::Io { .. } => kind::ssh::IO,
            SshError::Config { .. } => kind::ssh::CONFIG,
            SshError::Protocol(_) => kind::ssh::PROTOCOL,
            SshError::Disconnected => kind::ssh::DISCONNECTED,
            SshError::BadPortEnv { .. } => kind::ssh::BAD_PORT,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            SshError::BadPortEnv { .. } => Some(
                "unset `AZSSH_SSH_PORT` or set it to the port the guests' sshd listens on".into(),
            ),
            SshError::ConnectRefused { port, .. } => Some(format!(
                "nothing listens on port {port}: start sshd on the VM with `azssh enable-ssh` \
                 (Windows ships OpenSSH Server as an optional capability that is off by default)"
            )),
            SshError::ConnectTimeout { port, .. } | SshError::Unreachable { port, .. } => {
                Some(format!(
                    "Azure drops packets the network security group does not admit: open port \
                     {port} with `azssh open-port` (or request JIT access), check the VM is \
                     running and has a public IP, and that sshd runs (`azssh enable-ssh`)"
                ))
            }
            SshError::HostKeyChanged { file, line, .. } => Some(format!(
                "someone may be intercepting the connection, or the VM was recreated; if you \
                 trust the new key, remove line {line} of `{}` and pin the key through Azure \
                 with `pin_host_keys(vm)`",
                file.display()
            )),
            SshError::UnknownHost { .. } => Some(
                "pin the key through Azure with `pin_host_keys(vm)`, or connect with \
                 `strict: \"accept-new\"` to trust it on first use"
                    .to_string(),
            ),
            SshError::HostKeyRevoked { file, line, .. } => Some(format!(
                "this key was revoked on purpose (line {line} of `{}`); do not connect until \
                 the VM has a new host key, then pin that one with `pin_host_keys(vm)`",
                file.display()
            )),
            SshError::File(e) => e.hint(),
            SshError::Route(e) => e.hint(),
            SshError::UnsafeEntryName { .. } => Some(
                "a directory entry is a single name; this server tried to place a file outside \
                 the destination, so do not trust it"
                    .to_string(),
            ),
            SshError::KeyPermissions { path, .. } => {
                Some(format!("run `chmod 600 {}`", path.display()))
            }
            SshError::AuthFailed { attempts, .. }
                if attempts
                    .iter()
                    .any(|a| a.outcome.contains(WRONG_PASSPHRASE)) =>
            {
                Some(format!(
                    "check the key's passphrase: azssh reads it from `{}` or asks on a \
                     terminal (test it with `ssh-keygen -y -f KEY`)",
                    super::auth::PASSPHRASE_ENV
                ))
            }
            SshError::AuthFailed { .. } => Some(
                "copy your public key to the VM with `azssh copy-key`, pass the right key with \
                 `-i`, or check `--local-user`"
                    .to_string(),
            ),
            SshError::Key { .. } => Some(
                "for an encrypted key, set `AZSSH_KEY_PASSPHRASE` or run on a terminal".to_string(),
            ),
            SshError::InvalidForward { .. } => Some(
                "use `[bind:]local_port:remote_host:remote_port`, e.g. `3389:localhost:3389`"
                    .to_string(),
            ),
            SshError::ExecTimeout { .. } => {
                Some("raise the timeout in the exec options".to_string())
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_failed_lists_every_method_tried() {
        let e = SshError::AuthFailed {
            user: "azureuser".into(),
            host: "vm1".into(),
            attempts: vec![
                AuthAttempt {
                    method: "agent".into(),
                    outcome: "no agent (`SSH_AUTH_SOCK` unset)".into(),
                },
                AuthAttempt {
                    method: "password".into(),
                    outcome: "refused by the server".into(),
                },
            ],
        };
        let msg = e.to_string();
        assert!(msg.contains("agent (no agent"), "{msg}");
        assert!(msg.contains("password (refused by the server)"), "{msg}");
        assert_eq!(e.kind(), "ssh.auth_failed");
    }

    #[test]
    fn connect_errors_hint_at_nsg_and_sshd() {
        let refused = SshError::ConnectRefused {
            host: "h".into(),
            port: 22,
        };
        assert!(
            refused
                .hint()
                .unwrap_or_default()
                .contains("azssh enable-ssh")
        );
        let timeout = SshError::ConnectTimeout {
            host: "h".into(),
            port: 22,
            after: Duration::from_secs(10),
        };
        assert!(
            timeout
                .hint()
                .unwrap_or_default()
                .contains("azssh open-port")
        );
    }
}
