//! Compiling and evaluating one script: where it came from (file or bundled runbook), its
//! `ARGS`, and the translation of every failure into a `Diagnostic`.

use std::path::Path;
use std::sync::Arc;

use rhai::{Dynamic, Engine, Map, Scope};

use crate::script::context::ScriptContext;
use crate::script::error::{self, Diagnostic, SourceLookup};
use crate::script::{bundled, engine, resolver};

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
        "script.load"
    }
    fn hint(&self) -> Option<String> {
        match self {
            LoadError::NotFound(_) => {
                Some("give a path to a `.rhai` file, or a bundled runbook name (`azssh runbooks` lists them)".into())
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
        match bundled::runbook(spec) {
            Some(text) => Ok(Script {
                name: format!("runbook:{}", spec.trim_end_matches(".rhai")),
                text: text.to_string(),
            }),
            None => Err(LoadError::NotFound(spec.to_string())),
        }
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

/// Compiles and runs `script` on the current (blocking) thread. Extra scope entries (such as a
/// fleet run's `vm`) come from `prepare`.
pub fn run(
    ctx: &Arc<ScriptContext>,
    script: &Script,
    args: Map,
    prepare: impl FnOnce(&mut Scope),
) -> Result<Dynamic, Box<Diagnostic>> {
    let engine = engine::build(ctx);
    run_with(&engine, script, args, prepare)
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
                &engine::signatures(engine),
            ))
        })
}
