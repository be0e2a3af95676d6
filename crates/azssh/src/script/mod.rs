//! Rhai scripting: the engine and its API, the async bridge, module resolution, diagnostics,
//! and `run`, which compiles and evaluates one script with its `ARGS`.

pub mod api;
pub mod bridge;
pub mod bundled;
pub mod catalog;
pub mod context;
pub mod engine;
pub mod error;
pub mod resolver;
pub mod run;
pub mod runbook;
pub mod value;
