//! The Rhai API, one file per namespace. Each file exposes `register(engine, ctx)`; only
//! `script::engine` calls `register_all`.

use std::sync::Arc;

use rhai::Engine;

use crate::script::context::ScriptContext;

pub mod azure;
pub mod core;
pub mod keys;
pub mod options;
pub mod parallel;
pub mod ssh;
pub mod workflow;

pub fn register_all(engine: &mut Engine, ctx: &Arc<ScriptContext>) {
    core::register(engine, ctx);
    azure::register(engine, ctx);
    keys::register(engine, ctx);
    workflow::register(engine, ctx);
    parallel::register(engine, ctx);
    ssh::register(engine, ctx);
}

/// The map form of an azssh custom type (a `Vm`, a `Session`...), for JSON and table output.
pub fn as_map(value: &rhai::Dynamic) -> Option<rhai::Map> {
    azure::vm_map(value).or_else(|| ssh::value_map(value))
}
