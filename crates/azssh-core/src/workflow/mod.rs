//! The documented workflow as async Rust over `azure/`, `windows/` and `ssh/` (knows nothing of
//! Rhai; `script/api/workflow` binds it).
//!
//! # Layout
//! - `guest` — choosing capability or extension, and running one `GuestScript` via RunCommand.
//! - `pin` — host keys into azssh's own `known_hosts`, conflicts reported, never overwritten.
//! - `setup` — `setup_ssh` as timed steps.
//! - `nsg` — rules and `open_port` outcomes as JSON. `error` — `WorkflowError`.

pub mod error;
pub mod guest;
pub mod nsg;
pub mod pin;
pub mod setup;
