//! Compiling and evaluating one script: where it came from (file or bundled runbook), its
//! `ARGS`, and the translation of every failure into a `Diagnostic`.

use std::path::Path;
use std::sync::Arc;

use rhai::{Dynamic, Engine, Map, Scope};

use crate::script::context::ScriptContext;
use crate::script::error::{self, Diagnostic, SourceLookup};
use crate::script::{bundled, engine, resolver, runbook};
use azssh_core::error::kind;

/// A script to run: its display name (a path, or `runbook:<name>`) and its text.
#[derive(Debug, Clone)]
pub struct Script {
    pub name: String,
    pub text: String,
}

/// Why a script could not be loaded: a usage error (exit 2) rather than a script failure.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no script or runbook named `{0}`")]
    NotFound(String),
    #[error("cannot read `{path}`: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("`{0}` is not valid UTF-8 text")]
    NotUtf8(String),
    /// Too large, not a regular file, unreadable (`local_file`'s bounded read).
    #[error(transparent)]
    File(#[from] crate::local_file::LocalFileError),
}

impl crate::error::UserError for LoadError {
    fn kind(&self) -> &'static str {
        kind::script::LOAD
    }
    fn hint(&self) -> Option<String> {
        match self {
            LoadError::NotFound(_) => {
                Some("give a path to a `.rhai` file, or a runbook name: `./NAME.rhai`, a directory of `AZSSH_RUNBOOK_PATH`, `~/.config/azssh/runbooks/`, or bundled (`azssh runbooks` lists them)".into())
            }
            LoadError::NotUtf8(_) => Some("save the script as UTF-8".into()),
            LoadError::Unreadable { .. } => Some("check the path and its permissions".into()),
            LoadError::File(e) => crate::error::UserError::hint(e),
        }
    }
}

impl Script {
    /// A file path wins over a runbook of the same name, so a local copy can shadow a bundled one.
    pub fn load(spec: &str) -> Result<Script, LoadError> {
        let path = Path::new(spec);
        if path.is_file() {
            // Bounded, and a leading UTF-8 BOM (Notepad's default) dropped: Rhai refuses it.
            let text = crate::local_file::read_text(path, crate::local_file::cap::SCRIPT, "script")
                .map_err(|e| match e {
                    crate::local_file::LocalFileError::NotUtf8 { .. } => {
                        LoadError::NotUtf8(spec.to_string())
                    }
                    other => LoadError::File(other),
                })?;
            return Ok(Script {
                name: spec.to_string(),
                text,
            });
        }
        if path.exists() {
            return Err(LoadError::Unreadable {
                path: spec.to_string(),
                reason: "it is not a regular file".into(),
            });
        }
        match runbook::find(spec) {
            // `./NAME.rhai` or a directory of the runbook path: loaded as the file it is.
            Some(runbook::Origin::File(p)) => Script::load(&p.display().to_string()),
            Some(runbook::Origin::Bundled) => match bundled::runbook(spec) {
                Some(text) => Ok(Script {
                    name: format!("runbook:{}", spec.trim_end_matches(".rhai")),
                    text: text.to_string(),
                }),
                None => Err(LoadError::NotFound(spec.to_string())),
            },
            None => Err(LoadError::NotFound(spec.to_string())),
        }
    }

    /// Code given on the command line (`azssh run -e CODE`).
    pub fn inline(code: &str) -> Script {
        Script {
            name: "-e".into(),
            text: code.to_string(),
        }
    }

    /// The script's `//!` header (description and declared arguments).
    pub fn header(&self) -> runbook::Header {
        runbook::header(&self.text)
    }
}

struct Sources<'a> {
    script: &'a Script,
}

impl SourceLookup for Sources<'_> {
    fn source_text(&self, name: &str) -> Option<String> {
        if name == self.script.name {
            Some(self.script.text.clone())
        } else {
            resolver::source_text(name)
        }
    }
}

/// Stack of the thread every script is compiled and evaluated on. Rhai walks scripts and
/// values recursively: a chain of closures each capturing the previous one (`let g = f;
/// f = |x| g.call(x)` in a loop) is dropped one nested `Arc` at a time, and Rust turns a stack
/// overflow into a process abort that no `catch_unwind` sees. Tokio's blocking threads have
/// 2 MiB; 1 GiB of address space is only reserved (pages are touched as the stack grows and
/// freed when the thread ends), and holds some 10 million nested closures in a release build,
/// more than `--max-operations`' default lets a loop build.
pub const SCRIPT_STACK: usize = 1024 * 1024 * 1024;

/// Runs `job` (compiling, evaluating and dropping a script's values) on its own thread with
/// `SCRIPT_STACK`, turning a panic inside Rhai or a native into an error for that script alone:
/// in a fleet the other VMs go on.
pub fn isolated<T: Send>(name: &str, job: impl FnOnce() -> T + Send) -> Result<T, Box<Diagnostic>> {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("azssh-script".into())
            .stack_size(SCRIPT_STACK)
            .spawn_scoped(scope, job)
            .map_err(|e| crashed(name, &format!("cannot start its thread: {e}")))?;
        handle
            .join()
            .map_err(|panic| crashed_by_panic(name, panic.as_ref()))
    })
}

/// The failure of a script whose evaluator could not run it to the end (`why`).
pub fn crashed(name: &str, why: &str) -> Box<Diagnostic> {
    Box::new(Diagnostic::plain(
        kind::script::CRASHED,
        format!("the script `{name}` stopped azssh's evaluator: {why}"),
        Some(
            "the script was stopped, not finished; simplify the deepest nesting or recursion, and report it if it persists"
                .into(),
        ),
    ))
}

/// `crashed`, from a caught panic's payload (`catch_unwind`, a thread's `join`).
pub fn crashed_by_panic(name: &str, panic: &(dyn std::any::Any + Send)) -> Box<Diagnostic> {
    let why = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into());
    crashed(name, &format!("an internal error (panic: {why})"))
}

/// Compiles and runs `script` on its own thread (`isolated`). Extra scope entries (such as a
/// fleet run's `vm`) come from `prepare`.
pub fn run(
    ctx: &Arc<ScriptContext>,
    script: &Script,
    args: Map,
    prepare: impl FnOnce(&mut Scope) + Send,
) -> Result<Dynamic, Box<Diagnostic>> {
    isolated(&script.name, || {
        let engine = engine::build(ctx);
        run_with(&engine, script, args, prepare)
    })?
}

/// As `run`, with an engine the caller keeps (fleet runs share one engine).
pub fn run_with(
    engine: &Engine,
    script: &Script,
    args: Map,
    prepare: impl FnOnce(&mut Scope),
) -> Result<Dynamic, Box<Diagnostic>> {
    let sources = Sources { script };
    let mut ast = engine
        .compile(&script.text)
        .map_err(|e| Box::new(error::from_parse(&e, &script.name, &sources)))?;
    ast.set_source(script.name.as_str());
    let mut scope = Scope::new();
    scope.push_constant("ARGS", args);
    prepare(&mut scope);
    engine
        .eval_ast_with_scope::<Dynamic>(&mut scope, &ast)
        .map_err(|e| {
            Box::new(error::from_eval(
                &e,
                &script.name,
                &sources,
                engine::catalog(engine),
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_panic_fails_only_that_script() {
        let err = isolated("t.rhai", || -> i64 { panic!("boom in a native") }).unwrap_err();
        assert_eq!(err.kind, "script.crashed");
        assert!(err.message.contains("t.rhai"), "{}", err.message);
        assert!(err.message.contains("boom in a native"), "{}", err.message);
        // The caller's thread goes on.
        assert_eq!(isolated("u.rhai", || 7).unwrap(), 7);
    }

    /// Dropping 100 000 nested closures recurses once per closure: far past 2 MiB of stack.
    #[test]
    fn nested_closures_drop_within_the_script_stack() {
        let value = isolated("n.rhai", || {
            let engine = Engine::new();
            engine
                .eval::<i64>(
                    "let f = |x| x; for i in 0..100000 { let g = f; f = |x| g.call(x); } 1",
                )
                .map_err(|e| e.to_string())
        })
        .unwrap();
        assert_eq!(value, Ok(1));
    }
}
