//! Script errors: domain errors turned into catchable `#{kind, message, hint}` values, and
//! uncaught errors rendered as one diagnostic with `file:line:col`, the source line, a caret and
//! a hint — never flattened into a string before this point.

use rhai::{Dynamic, EvalAltResult, Map, ParseError, Position};

use crate::error::UserError;
use crate::script::catalog::{Catalog, Origin, normalise_type};
use azssh_core::error::kind;

/// Errors raised by the scripting layer itself.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("cancelled")]
    Cancelled,
    #[error("deadline exceeded: the script ran longer than its `--timeout`")]
    DeadlineExceeded,
    #[error("{message}")]
    BadArgument {
        message: String,
        hint: Option<String>,
    },
    #[error("invalid JSON: {0}")]
    Json(String),
    /// `#{check: true}` and the command exited non-zero.
    #[error("{what} exited with code {code}{detail}")]
    CommandFailed {
        what: String,
        code: String,
        detail: String,
    },
}

impl ScriptError {
    /// The error `exec`/`powershell`/`run_powershell` throw under `#{check: true}` when the
    /// exit code is not 0 (or could not be read): the last line of stderr says why.
    pub fn command_failed(what: &str, code: Option<i64>, stderr: &str) -> Self {
        let last = stderr.lines().rev().map(str::trim).find(|l| !l.is_empty());
        let detail = match last {
            Some(l) if l.chars().count() > 200 => {
                format!(": {}…", l.chars().take(200).collect::<String>())
            }
            Some(l) => format!(": {l}"),
            None => String::new(),
        };
        ScriptError::CommandFailed {
            what: what.to_string(),
            code: code.map_or_else(|| "unknown".to_string(), |c| c.to_string()),
            detail,
        }
    }
}

impl ScriptError {
    pub fn bad_argument(message: impl Into<String>, hint: Option<&str>) -> Self {
        ScriptError::BadArgument {
            message: message.into(),
            hint: hint.map(str::to_string),
        }
    }
}

impl UserError for ScriptError {
    fn kind(&self) -> &'static str {
        match self {
            ScriptError::Cancelled => kind::CANCELLED,
            ScriptError::DeadlineExceeded => kind::DEADLINE,
            ScriptError::BadArgument { .. } => kind::script::BAD_ARGUMENT,
            ScriptError::Json(_) => kind::script::JSON,
            ScriptError::CommandFailed { .. } => kind::script::COMMAND_FAILED,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            ScriptError::BadArgument { hint, .. } => hint.clone(),
            ScriptError::DeadlineExceeded => Some("raise `--timeout` or split the work".into()),
            ScriptError::CommandFailed { .. } => Some(
                "leave out `check: true` (or pass `check: false`) to get the result map with `exit_code`, `stdout` and `stderr` instead"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// Turns a domain error into a script error value. Cancellation is not catchable: a
/// `try`/`catch` in a loop must not swallow Ctrl-C.
pub fn to_rhai<E: UserError + ?Sized>(err: &E) -> Box<EvalAltResult> {
    let value = error_map(err.kind(), &err.to_string(), err.hint());
    if matches!(err.kind(), kind::CANCELLED | kind::DEADLINE) {
        return Box::new(EvalAltResult::ErrorTerminated(value, Position::NONE));
    }
    Box::new(EvalAltResult::ErrorRuntime(value, Position::NONE))
}

/// The value scripts catch: `#{kind, message, hint}` (hint is `()` when there is none).
pub fn error_map(kind: &str, message: &str, hint: Option<String>) -> Dynamic {
    let mut map = Map::new();
    map.insert("kind".into(), kind.into());
    map.insert("message".into(), message.into());
    map.insert("hint".into(), hint.map_or(Dynamic::UNIT, Dynamic::from));
    map.into()
}

pub use azssh_core::error::Diagnostic;

/// Looks up source text by the name rhai records (a file path or `azssh/<module>`).
pub trait SourceLookup {
    fn source_text(&self, name: &str) -> Option<String>;
}

fn locate(diag: &mut Diagnostic, pos: Position, file: &str, sources: &dyn SourceLookup) {
    diag.file = file.to_string();
    diag.line = pos.line();
    diag.column = pos.position();
    if let (Some(text), Some(line)) = (sources.source_text(file), pos.line()) {
        diag.source_line = text.lines().nth(line - 1).map(str::to_string);
    }
}

pub fn from_parse(err: &ParseError, file: &str, sources: &dyn SourceLookup) -> Diagnostic {
    let mut diag = Diagnostic::plain(
        kind::script::SYNTAX,
        lower_first(&err.err_type().to_string()),
        None,
    );
    let message = diag.message.clone();
    if message.contains("end of input") || message.contains("Expecting '}'") {
        diag.hint = Some("an opening `{`, `(` or `[` is missing its closing partner".into());
    } else if message.contains("Expecting ';'") {
        diag.hint = Some("statements end with `;`".into());
    }
    locate(&mut diag, err.position(), file, sources);
    diag
}

/// Renders an uncaught runtime error. `catalog` lists what the engine offers, so a "function
/// not found" can name the overloads that do exist and an unknown property the near ones.
pub fn from_eval(
    err: &EvalAltResult,
    file: &str,
    sources: &dyn SourceLookup,
    catalog: &Catalog,
) -> Diagnostic {
    // Walk into nested calls: the innermost error says what happened, the outer ones where.
    let mut notes = Vec::new();
    let mut current = err;
    let mut current_file = file.to_string();
    loop {
        match current {
            EvalAltResult::ErrorInFunctionCall(name, source, inner, pos) => {
                notes.push(format!(
                    "in call to `{name}` at {}",
                    describe(pos, &current_file)
                ));
                if !source.is_empty() {
                    current_file = source.clone();
                }
                current = inner;
            }
            EvalAltResult::ErrorInModule(name, inner, pos) => {
                notes.push(format!(
                    "in module `{name}` imported at {}",
                    describe(pos, &current_file)
                ));
                current_file = name.clone();
                current = inner;
            }
            _ => break,
        }
    }
    let mut diag = describe_leaf(current, catalog);
    locate(&mut diag, current.position(), &current_file, sources);
    diag.notes = notes;
    diag
}

fn describe(pos: &Position, file: &str) -> String {
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("{file}:{l}:{c}"),
        (Some(l), None) => format!("{file}:{l}"),
        _ => file.to_string(),
    }
}

fn map_field(map: &Map, key: &str) -> Option<String> {
    map.get(key).filter(|v| !v.is_unit()).map(|v| v.to_string())
}

fn describe_leaf(err: &EvalAltResult, catalog: &Catalog) -> Diagnostic {
    match err {
        EvalAltResult::ErrorRuntime(value, _) | EvalAltResult::ErrorTerminated(value, _) => {
            if let Some(map) = value.read_lock::<Map>()
                && let Some(message) = map_field(&map, "message")
            {
                let kind = map_field(&map, "kind").unwrap_or_else(|| kind::script::ERROR.into());
                return Diagnostic::plain(&kind, message, map_field(&map, "hint"));
            }
            let text = value.to_string();
            let kind = if matches!(err, EvalAltResult::ErrorTerminated(..)) {
                kind::CANCELLED
            } else {
                kind::script::THROWN
            };
            Diagnostic::plain(kind, format!("script threw: {text}"), None)
        }
        EvalAltResult::ErrorFunctionNotFound(sig, _) => {
            // `retry::retri (int)`: a module function keeps its module, as the catalog names it.
            let name = sig.split('(').next().unwrap_or(sig).trim();
            let overloads: Vec<&str> = catalog
                .overloads(name)
                .into_iter()
                .filter(|f| f.origin != Origin::Standard)
                .map(|f| f.signature.as_str())
                .collect();
            let hint = if overloads.is_empty() {
                let names = catalog.suggestible();
                let near = azssh_core::suggest::nearest(name, names.iter().map(String::as_str));
                Some(if near.is_empty() {
                    "see `azssh docs` for the functions azssh provides".into()
                } else {
                    format!(
                        "did you mean {}? (`azssh docs` lists every function)",
                        azssh_core::suggest::one_of(&near)
                    )
                })
            } else {
                let list: Vec<String> = overloads.iter().map(|s| format!("`{s}`")).collect();
                Some(format!("`{name}` exists as: {}", list.join(", ")))
            };
            Diagnostic::plain(
                kind::script::FUNCTION_NOT_FOUND,
                format!("function not found: `{}`", friendly_types(sig)),
                hint,
            )
        }
        EvalAltResult::ErrorTooManyOperations(_) => Diagnostic::plain(
            kind::script::OPERATIONS_LIMIT,
            "the script exceeded its operations limit".to_string(),
            Some("an endless loop? if the work is really this big, raise `--max-operations` (or `AZSSH_MAX_OPERATIONS`)".into()),
        ),
        EvalAltResult::ErrorStackOverflow(_) => Diagnostic::plain(
            kind::script::CALL_DEPTH_LIMIT,
            "the script exceeded its call-depth limit".to_string(),
            Some("unbounded recursion? raise `--max-call-depth` (or `AZSSH_MAX_CALL_DEPTH`) if the depth is intended".into()),
        ),
        EvalAltResult::ErrorDataTooLarge(what, _) => Diagnostic::plain(
            kind::script::DATA_LIMIT,
            format!("{what} is larger than the configured limit"),
            Some("raise `--max-string-size` / `--max-array-size` / `--max-map-size` if this is intended".into()),
        ),
        EvalAltResult::ErrorModuleNotFound(path, _) => Diagnostic::plain(
            kind::script::MODULE_NOT_FOUND,
            format!("module not found: `{path}`"),
            Some(format!(
                "bundled modules are {}; other paths resolve relative to the importing script",
                crate::script::resolver::stdlib_names()
                    .iter()
                    .map(|n| format!("`azssh/{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        ),
        EvalAltResult::ErrorVariableNotFound(name, _) => Diagnostic::plain(
            kind::script::VARIABLE_NOT_FOUND,
            format!("variable not found: `{name}`"),
            (name == "vm" || name == "ARGS")
                .then(|| "`vm` exists in fleet runs; `ARGS` holds the `--arg key=value` values".into()),
        ),
        EvalAltResult::ErrorDotExpr(text, _) if text.starts_with("Unknown property '") => {
            let hint = unknown_property_hint(text, catalog);
            Diagnostic::plain(kind::script::ERROR, lower_first(text), hint)
        }
        other => {
            let mut text = other.to_string();
            // rhai appends " (line x, position y)"; the location is printed separately.
            if let Some(idx) = text.rfind(" (line ") {
                text.truncate(idx);
            }
            Diagnostic::plain(kind::script::ERROR, lower_first(&text), None)
        }
    }
}

/// rhai's "Unknown property 'power_stat' - a getter is not registered for type 'Vm'": the
/// type's properties nearest to the one asked for (its getters are `get$NAME(Vm)`).
fn unknown_property_hint(text: &str, catalog: &Catalog) -> Option<String> {
    let mut quoted = text.split('\'').skip(1).step_by(2);
    let property = quoted.next()?;
    let type_name = quoted.next()?;
    // rhai names the type as Rust does (`i64`); scripts know it as `int`.
    let short = normalise_type(type_name);
    let getters: Vec<&str> = catalog.getters_of(&short).collect();
    let near = azssh_core::suggest::nearest(property, getters.iter().copied());
    if !near.is_empty() {
        return Some(format!(
            "did you mean {}?",
            azssh_core::suggest::one_of(&near)
        ));
    }
    (!getters.is_empty()).then(|| {
        let mut all = getters.clone();
        all.sort_unstable();
        all.dedup();
        format!("`{short}` has {}", all.join(", "))
    })
}

/// rhai names Rust types in signatures; scripts know `string`, `int`, `float`, `map`, `array`.
fn friendly_types(sig: &str) -> String {
    sig.replace("&str | ImmutableString | String", "string")
        .replace("i64", "int")
        .replace("f64", "float")
        .replace("rhai::Map", "map")
        .replace("rhai::Array", "array")
}

fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct One(&'static str);
    impl SourceLookup for One {
        fn source_text(&self, _: &str) -> Option<String> {
            Some(self.0.to_string())
        }
    }

    #[test]
    fn render_puts_caret_under_column() {
        let mut d = Diagnostic::plain("x", "boom", Some("do this".into()));
        d.file = "a.rhai".into();
        d.line = Some(2);
        d.column = Some(5);
        d.source_line = Some("let x = ;".into());
        assert_eq!(
            d.render(),
            "a.rhai:2:5: error: boom\n2 | let x = ;\n  |     ^\nhint: do this\n"
        );
    }

    #[derive(Clone)]
    struct Vm;
    #[derive(Clone)]
    struct ExecResult;

    /// An engine with a few registered functions and getters, as the product registers them.
    fn catalog() -> Catalog {
        let mut engine = rhai::Engine::new();
        engine
            .register_type_with_name::<Vm>("Vm")
            .register_get("power_state", |_: &mut Vm| String::new())
            .register_get("public_ip", |_: &mut Vm| Dynamic::UNIT)
            .register_type_with_name::<ExecResult>("ExecResult")
            .register_get("stdout", |_: &mut ExecResult| String::new());
        rhai::FuncRegistration::new("parse_json")
            .with_params_info(["text: &str", "Dynamic"])
            .register_into_engine(&mut engine, |_: &str| Dynamic::UNIT);
        rhai::FuncRegistration::new("parse_int")
            .with_params_info(["s: &str", "i64"])
            .register_into_engine(&mut engine, |_: &str| 0_i64);
        Catalog::from_engine(&engine, None)
    }

    #[test]
    fn function_not_found_lists_overloads() {
        let engine = rhai::Engine::new();
        let err = engine.eval::<()>("parse_int()").unwrap_err();
        let d = from_eval(&err, "t.rhai", &One("parse_int()"), &catalog());
        assert!(d.message.contains("parse_int"), "{}", d.message);
        let hint = d.hint.unwrap();
        assert!(hint.contains("parse_int(s: &str)"), "{hint}");
        assert_eq!(
            hint.matches("parse_int(").count(),
            1,
            "rhai's own overloads stay out: {hint}"
        );
    }

    #[test]
    fn a_mistyped_function_gets_the_nearest_names() {
        let engine = rhai::Engine::new();
        let err = engine.eval::<()>("pars_json(\"1\")").unwrap_err();
        let d = from_eval(&err, "t.rhai", &One("pars_json(\"1\")"), &catalog());
        assert_eq!(
            d.hint.as_deref(),
            Some("did you mean `parse_json`? (`azssh docs` lists every function)")
        );
    }

    #[test]
    fn a_mistyped_module_function_gets_the_modules_names() {
        let mut engine = rhai::Engine::new();
        let ast = engine.compile("fn retry(f, n, d) { f.call() }").unwrap();
        let module = rhai::Module::eval_ast_as_new(rhai::Scope::new(), &ast, &engine).unwrap();
        engine.register_static_module("retry", module.into());
        let catalog = Catalog::from_engine(&engine, None);
        let err = engine.eval::<()>("retry::retri(1)").unwrap_err();
        let d = from_eval(&err, "t.rhai", &One("retry::retri(1)"), &catalog);
        assert_eq!(
            d.hint.as_deref(),
            Some("did you mean `retry::retry`? (`azssh docs` lists every function)")
        );
        let err = engine.eval::<()>("retry::retry(1)").unwrap_err();
        let d = from_eval(&err, "t.rhai", &One("retry::retry(1)"), &catalog);
        assert_eq!(
            d.hint.as_deref(),
            Some("`retry::retry` exists as: `retry(f, n, d)`")
        );
    }

    #[test]
    fn a_mistyped_property_of_rhais_own_types_uses_script_names() {
        let catalog = Catalog::from_engine(&rhai::Engine::new(), None);
        let text = "Unknown property 'lenn' - a getter is not registered for type 'string'";
        assert_eq!(
            unknown_property_hint(text, &catalog).as_deref(),
            Some("did you mean `len`?")
        );
        let text = "Unknown property 'zzz' - a getter is not registered for type 'i64'";
        let hint = unknown_property_hint(text, &catalog).unwrap_or_default();
        assert!(hint.starts_with("`int` has "), "{hint}");
    }

    #[test]
    fn a_mistyped_property_gets_the_types_nearest_properties() {
        let catalog = catalog();
        let text = "Unknown property 'power_stat' - a getter is not registered for type 'Vm'";
        assert_eq!(
            unknown_property_hint(text, &catalog).as_deref(),
            Some("did you mean `power_state`?")
        );
        let text = "Unknown property 'zzz' - a getter is not registered for type 'Vm'";
        assert_eq!(
            unknown_property_hint(text, &catalog).as_deref(),
            Some("`Vm` has power_state, public_ip")
        );
    }

    #[test]
    fn catchable_map_keeps_kind_message_hint() {
        let err = to_rhai(&ScriptError::bad_argument("bad port", Some("use 1-65535")));
        let d = from_eval(&err, "t.rhai", &One(""), &Catalog::default());
        assert_eq!(d.kind, "script.bad_argument");
        assert_eq!(d.message, "bad port");
        assert_eq!(d.hint.as_deref(), Some("use 1-65535"));
    }
}
