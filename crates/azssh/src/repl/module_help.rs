//! `:help` beyond the engine's own functions: the stdlib modules (`:help retry`, `:help
//! retry::retry`, `:help azssh/retry`), read from their embedded sources (`//!` line, then each
//! `fn` with its `///` comment), and the globals a script may find set (`ARGS`, `vm`).

use rhai::Engine;

use crate::script::bundled;

/// The globals scripts see without declaring them, and what sets them.
pub const GLOBALS: &[(&str, &str)] = &[
    (
        "ARGS",
        "ARGS: map (constant)\n\nThe script's arguments: `azssh run FILE --arg key=value` (values are JSON when they parse, else strings),\n`azssh repl --arg key=value` here, and under `azssh fleet` also `ARGS.vm`. Empty when none were given.\n\n    let port = ARGS.port ?? 22;",
    ),
    (
        "vm",
        "vm: Vm (fleet runs only)\n\nUnder `azssh fleet`, the VM this run is for (also `ARGS.vm`). In the REPL and under `azssh run`,\n`vm(resource_group, name)` is the function that looks one up (`:help vm()`).",
    ),
];

/// Help for `name`: a global, a stdlib module, or `module::function`.
pub fn help(name: &str) -> Option<String> {
    let name = name.trim();
    if let Some((_, text)) = GLOBALS.iter().find(|(n, _)| *n == name) {
        return Some((*text).to_string());
    }
    let name = name
        .strip_prefix(crate::script::resolver::STDLIB_PREFIX)
        .unwrap_or(name);
    match name.split_once("::") {
        Some((module, function)) => function_help(module, function),
        None => module_help(name),
    }
}

/// Every name `help` knows: globals, modules and `module::function`s (for "did you mean").
pub fn names() -> Vec<String> {
    let mut names: Vec<String> = GLOBALS.iter().map(|(n, _)| (*n).to_string()).collect();
    for (module, _) in bundled::STDLIB {
        names.push((*module).to_string());
        for f in functions(module) {
            names.push(format!("{module}::{}", f.name));
        }
    }
    names
}

struct ScriptFn {
    name: String,
    signature: String,
    doc: String,
}

/// The module's functions with their doc comments, parsed (never run) from its source.
fn functions(module: &str) -> Vec<ScriptFn> {
    let Some(source) = bundled::stdlib(module) else {
        return Vec::new();
    };
    let engine = parser();
    let Ok(ast) = engine.compile(source) else {
        return Vec::new();
    };
    ast.iter_functions()
        .map(|f| ScriptFn {
            name: f.name.to_string(),
            signature: format!("{module}::{}({})", f.name, f.params.join(", ")),
            doc: f
                .comments
                .iter()
                .flat_map(|c| c.lines())
                .map(|l| l.trim_start().trim_start_matches("///").trim())
                .collect::<Vec<_>>()
                .join("\n"),
        })
        .collect()
}

/// A bare engine to parse the embedded modules, with the script limits' expression depth (the
/// raw engine's own default is shallower than the product's).
fn parser() -> Engine {
    let mut engine = Engine::new_raw();
    let depth = crate::script::engine::Limits::DEFAULT.max_expr_depth;
    engine.set_max_expr_depths(depth, depth);
    engine
}

fn module_help(module: &str) -> Option<String> {
    let source = bundled::stdlib(module)?;
    let mut out = format!(
        "module `azssh/{module}`: {}\n\n    import \"azssh/{module}\" as {module};\n\n",
        bundled::description(source)
    );
    for f in functions(module) {
        let first = f.doc.lines().next().unwrap_or_default();
        out.push_str(&format!("  {}\n      {first}\n", f.signature));
    }
    Some(out.trim_end().to_string())
}

fn function_help(module: &str, function: &str) -> Option<String> {
    let function = function.trim_end_matches("()");
    let f = functions(module).into_iter().find(|f| f.name == function)?;
    let mut out = f.signature;
    if !f.doc.is_empty() {
        out.push_str("\n\n");
        out.push_str(&f.doc);
    }
    out.push_str(&format!(
        "\n\n(from `import \"azssh/{module}\" as {module};`)"
    ));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stdlib_function_shows_its_signature_and_doc() {
        let text = help("retry::retry").unwrap();
        assert!(
            text.starts_with("retry::retry(f, attempts, delay_seconds)"),
            "{text}"
        );
        assert!(
            text.contains("exponential") || text.contains("doubling"),
            "{text}"
        );
    }

    #[test]
    fn a_module_lists_its_functions() {
        let text = help("azssh/target").unwrap();
        assert!(
            text.contains("import \"azssh/target\" as target;"),
            "{text}"
        );
        assert!(text.contains("target::vm_from(args)"), "{text}");
    }

    #[test]
    fn every_stdlib_module_parses_for_help() {
        for (module, source) in bundled::STDLIB {
            let parsed = parser().compile(source);
            assert!(parsed.is_ok(), "{module}: {parsed:?}");
        }
    }

    #[test]
    fn globals_are_explained() {
        assert!(help("ARGS").unwrap().contains("--arg key=value"));
        assert!(help("nope").is_none());
        assert!(names().contains(&"retry::retry".to_string()));
    }
}
