//! The documented workflow as async Rust over `azure/`, `windows/` and `ssh/` (knows nothing of
//! Rhai; `script/api/workflow` binds it).
//!
//! # Layout
//! - `guest` — choosing capability or extension, and running one `GuestScript` via RunCommand.
//! - `pin` — host keys into azssh's own `known_hosts`, conflicts reported, never overwritten.
//! - `setup` — `setup_ssh` as timed steps.
//! - `nsg` — `open_port`/`close_port`: a rule per source, subnet rules aimed at the VM, JIT
//!   respected, Internet-wide sources opted into; rules and outcomes as JSON.
//! - `error` — `WorkflowError`.

pub mod error;
pub mod guest;
pub mod nsg;
pub mod nsg_writes;
pub mod pin;
pub mod setup;
