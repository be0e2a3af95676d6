//! SSH client on russh: connect and authenticate, verify host keys, run commands and
//! PowerShell, interactive shells, local port forwards and SFTP. Knows nothing of Rhai.
//!
//! # Layout
//! - `connect` — `ConnectOptions`, `Session::connect`, algorithm preferences.
//! - `auth` — agent, key files and password, in OpenSSH's order.
//! - `decrypted_keys` — passphrase-protected keys decrypted once per process.
//! - `keys` — public-key parsing, fingerprints, key generation.
//! - `known_hosts` — `known_hosts` files, strict/accept-new/ask, `pin`.
//! - `config` — the `~/.ssh/config` keywords azssh honours.
//! - `exec` — `Session::exec`, `Session::powershell`; `shell` — interactive PTY.
//! - `tunnel` — `Session::forward` and `Tunnel`; `sftp` — `Session::upload`/`download`
//!   (`sftp_upload` runs the upload pipeline itself on `sftp_wire`'s packets; `sftp_writeback`
//!   flushes a large synced upload from a second session while it is written).
//! - `route` — direct, Azure Bastion, jump hosts: the stream a session runs over.
//! - `error` — `SshError`.

pub mod auth;
pub mod config;
pub mod connect;
mod decrypted_keys;
pub mod error;
pub mod exec;
pub mod keys;
pub mod known_hosts;
pub mod route;
pub mod sftp;
mod sftp_upload;
mod sftp_wire;
mod sftp_writeback;
pub mod shell;
pub mod tunnel;

pub use connect::{ConnectOptions, Session};
pub use error::{AuthAttempt, SshError};
pub use exec::{ExecOptions, ExecResult};
pub use known_hosts::{HostKeyPolicy, HostKeyStatus, KnownHosts, StrictHostKeyChecking};
pub use route::{Route, RouteError};
pub use sftp::UploadOptions;
pub use tunnel::{LocalForward, Tunnel};
