//! The documented workflow as async Rust over `azure/`, `windows/` and `ssh/` (knows nothing of
//! Rhai; `script/api/workflow` binds it).
//!
//! # Layout
//! - `guest` — choosing capability or extension, and running one `GuestScript` via RunCommand.
//! - `pin` — host keys into azssh's own `known_hosts`, conflicts reported, never overwritten.
//! - `setup` — `setup_ssh` as timed steps.
//! - `nsg` — `open_port`/`close_port`: a rule per source, subnet rules aimed at the VM, JIT
//!   respected, Internet-wide sources opted into; rules and outcomes as JSON.
//! - `nsg_close` — `close_port`: only this VM's destination, never a rule azssh did not write.
//! - `nsg_writes`, `jit_policies` — what `open_port` shares across the VMs of a fleet run.
//! - `login_proof` — the strict, one-key SSH login (`whoami`, `hostname`) setup and rotate run.
//! - `keys` — list, remove, add (expiring, exclusive), expire and rotate keys over RunCommand.
//! - `paged_run` — a script whose result comes back in pages past RunCommand's output tail.
//! - `audit` — drift audit and safe repair, as deviations with stable codes.
//! - `shell` — `set_default_shell`.
//! - `route` — the path to a VM (direct, bastion, jump hosts), chosen and reported.
//! - `error` — `WorkflowError`.

pub mod audit;
pub mod error;
pub mod guest;
pub mod jit_policies;
pub mod keys;
pub mod login_proof;
pub mod nsg;
pub mod nsg_close;
pub mod nsg_cover;
pub mod nsg_writes;
mod paged_run;
pub mod pin;
pub mod route;
pub mod setup;
pub mod shell;
