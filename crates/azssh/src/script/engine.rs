//! The one place that builds the Rhai `Engine`: registers the whole API (one `register` call per
//! namespace in `script/api/`), sets the limits, routes `print`/`debug`, and installs the
//! `on_progress` hook that stops a running script on Ctrl-C or a deadline.

use std::sync::{Arc, OnceLock};

use rhai::packages::{Package, StandardPackage};
use rhai::{Engine, Module, Shared};

use crate::script::context::ScriptContext;
use crate::script::{api, resolver::Resolver};

/// Rhai's own default (`Engine::new()`): strings the engine keeps one copy of.
const MAX_STRINGS_INTERNED: usize = 256;

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

/// Rhai's standard library, built once per process and shared (it is immutable):
/// `Engine::new()` builds it afresh, and a fleet run builds one engine per script thread.
fn standard_library() -> Shared<Module> {
    static STANDARD: OnceLock<Shared<Module>> = OnceLock::new();
    STANDARD
        .get_or_init(|| StandardPackage::new().as_shared_module())
        .clone()
}

/// Builds an engine bound to `ctx` (its bridge, settings and cancellation).
pub fn build(ctx: &Arc<ScriptContext>) -> Engine {
    // What `Engine::new()` sets up (its module resolver and print/debug are replaced below),
    // with the standard library shared rather than rebuilt.
    let mut engine = Engine::new_raw();
    engine.set_max_strings_interned(MAX_STRINGS_INTERNED);
    engine.register_global_module(standard_library());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::bridge::{Bridge, Cancel};

    /// A fleet builds one engine per script thread: they share one standard library, and every
    /// engine still has all of it (arrays, strings, maps, parsing) next to azssh's own functions.
    #[test]
    fn engines_share_one_standard_library_and_keep_all_of_it() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let ctx = Arc::new(ScriptContext::new(
            Bridge::new(rt.handle().clone(), Cancel::new(None)),
            Default::default(),
            Default::default(),
        ));
        assert!(Shared::ptr_eq(&standard_library(), &standard_library()));
        for engine in [build(&ctx), build(&ctx)] {
            let n: i64 = engine
                .eval(
                    r#"let a = [3, 1, 2]; a.sort();
                       let m = #{k: "x-y-z".split("-")};
                       let s = "abc"; s.to_upper();
                       a[0] + m.k.len() + parse_int("40") + s.len() + [1, 2, 3].map(|x| x * 2)[2]"#,
                )
                .unwrap();
            assert_eq!(n, 1 + 3 + 40 + 3 + 6);
            let names = crate::script::catalog::Catalog::from_engine(&engine, None);
            assert!(names.function_names().iter().any(|n| n == "ssh"));
        }
    }
}
