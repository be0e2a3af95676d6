//! azssh: a scriptable automation runtime for reaching Azure Windows VMs over SSH.
//!
//! # Layout
//! - `commands` — one file per subcommand; `cli` — clap definitions only.
//! - `script` — the Rhai engine (the one place that registers the API and the one place that
//!   blocks on async), `repl` and `fleet` drive it.
//! - `azure` — the ARM client; `ssh` — the russh client; `windows` — PowerShell we send to guests.
//! - `emulator` — a local ARM endpoint with emulated Windows guests.
//! - `output` — the one place that prints; `error` — the shared error contract.
//!
//! Layers only call downward: commands → script/fleet/repl → windows, azure, ssh.

pub mod azure;
pub mod emulator;
pub mod error;
pub mod secret;
pub mod ssh;
pub mod windows;

pub fn run(_args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    0
}
