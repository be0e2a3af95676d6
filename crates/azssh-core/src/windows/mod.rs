//! PowerShell that azssh sends to Windows guests through RunCommand, and parsers for its
//! results.
//!
//! # Layout
//! - `quote` — single-quoted literals and `-EncodedCommand`, the only ways text enters a script.
//! - `setup`, `authorized_keys`, `host_keys` — one step each: its PowerShell block and the typed
//!   result it reports.
//! - `inspect` — the read-only look `check-prereqs` reports from.
//! - `combined` — `GuestScript`, which puts the wanted steps into one RunCommand script.
//! - `keys` — list and edit authorized_keys files (fingerprints, expiry, exclusive, removal).
//! - `audit`, `repair`, `ssh_state` — the facts an SSH setup depends on, the safe repairs, and
//!   the one-RunCommand scripts that combine them with the key files.
//! - `default_shell` — `HKLM:\SOFTWARE\OpenSSH\DefaultShell`.
//! - `result` — finds the `AZSSH-RESULT:` line in the output and types it.

pub mod audit;
pub mod authorized_keys;
pub mod combined;
pub mod default_shell;
pub mod error;
pub mod host_keys;
pub mod inspect;
pub mod keys;
pub mod keys_paging;
pub mod quote;
pub mod repair;
pub mod result;
pub mod setup;
pub mod ssh_state;

pub use authorized_keys::{KeyInstalled, KeyOptions, KeyTarget, UserName};
pub use combined::{
    GuestScript, RESULT_MARKER, host_keys_script, install_key_script, service_script, setup_script,
};
pub use error::WindowsError;
pub use quote::{encoded_command, powershell_command_line, ps_quote, ps_text};
pub use result::ScriptResult;
pub use setup::{SetupMode, SetupOptions, SshdState};
