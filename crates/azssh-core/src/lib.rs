//! azssh-core: the domain under the azssh product — no Rhai, no clap.
//!
//! - `azure` — the ARM client and one file per resource kind (calls and DTOs, no policy).
//! - `ssh` — the russh client: connect, auth, known_hosts, exec, shell, tunnel, sftp, keys.
//! - `windows` — the PowerShell we send to Windows guests, and the result protocol it prints.
//! - `rdp` — the X.224 client probe that tells an RDP listener answered.
//! - `workflow` — the documented steps as policy (enable, copy_key, open_port, jit, pin, setup).
//! - `error` — the contract every domain shares; `secret` — values that never print;
//!   `local_file` — bounded reads of the operator's files; `tls` — trusted roots
//!   (`AZSSH_CA_BUNDLE`).
//!
//! Layers only call downward: workflow → windows, azure, ssh.

pub mod azure;
pub mod error;
pub mod home;
pub mod local_file;
pub mod notice;
pub mod rdp;
pub mod secret;
pub mod ssh;
pub mod suggest;
pub mod tls;
pub mod windows;
pub mod workflow;
