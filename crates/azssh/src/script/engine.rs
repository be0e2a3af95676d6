//! The one place that builds the Rhai `Engine`: registers the whole API (one `register` call per
//! namespace in `script/api/`), sets the limits, routes `print`/`debug`, and installs the
//! `on_progress` hook that stops a running script on Ctrl-C or a deadline.

use std::sync::Arc;

use rhai::Engine;

use crate::script::context::ScriptContext;
use crate::script::{api, resolver::Resolver};

/// Resource limits for one script run. Generous by default; all configurable from the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_operations: u64,
    pub max_call_depth: usize,
    pub max_expr_depth: usize,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
}

impl Limits {
    /// The defaults, defined once: `Default` and the CLI's `--max-*` flags both read these.
    pub const DEFAULT: Limits = Limits {
        max_operations: 100_000_000,
        max_call_depth: 64,
        max_expr_depth: 128,
        max_string_size: 16 * 1024 * 1024,
        max_array_size: 1_000_000,
        max_map_size: 100_000,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Builds an engine bound to `ctx` (its bridge, settings and cancellation).
pub fn build(ctx: &Arc<ScriptContext>) -> Engine {
    let mut engine = Engine::new();
    let limits = &ctx.limits;
    engine
        .set_max_operations(limits.max_operations)
        .set_max_call_levels(limits.max_call_depth)
        .set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth)
        .set_max_string_size(limits.max_string_size)
        .set_max_array_size(limits.max_array_size)
        .set_max_map_size(limits.max_map_size)
        .set_max_modules(256)
        .set_module_resolver(Resolver);

    // `on_progress` runs between operations: a pure-Rhai loop stops here; natives that wait
    // watch the same token through the bridge.
    let cancel = ctx.bridge.cancel().clone();
    engine.on_progress(move |_ops| {
        cancel.reason().map(|reason| {
            crate::script::error::error_map(kind_of(&reason), &reason.to_string(), None)
        })
    });

    engine.on_print(crate::output::data_line);
    engine.on_debug(|text, source, pos| {
        let at = match (source, pos.line()) {
            (Some(s), Some(l)) => format!("{s}:{l}: "),
            (None, Some(l)) => format!("line {l}: "),
            _ => String::new(),
        };
        crate::output::log(crate::output::Level::Debug, &format!("{at}{text}"));
    });

    api::register_all(&mut engine, ctx);
    engine
}

fn kind_of(err: &crate::script::error::ScriptError) -> &'static str {
    use crate::error::UserError;
    err.kind()
}

/// The catalog of what an engine built here offers (functions, signatures, docs, properties),
/// for "did you mean" hints; read once per process (`Catalog::api`).
pub fn catalog(engine: &Engine) -> &'static crate::script::catalog::Catalog {
    crate::script::catalog::Catalog::api(engine)
}
