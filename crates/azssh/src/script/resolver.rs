//! Module resolution: `import "azssh/<name>"` loads the embedded `stdlib/<name>.rhai`; any other
//! path resolves relative to the importing script's directory (or the working directory for
//! input without a file, such as the REPL).

use std::path::{Path, PathBuf};

use std::sync::Arc;

use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Scope};

type SharedModule = Arc<Module>;

use crate::script::bundled;

pub const STDLIB_PREFIX: &str = "azssh/";

pub fn stdlib_names() -> Vec<&'static str> {
    bundled::STDLIB.iter().map(|(n, _)| *n).collect()
}

#[derive(Debug, Default)]
pub struct Resolver;

impl Resolver {
    /// Where a non-stdlib import lives, given the importing script's path.
    pub fn file_path(source: Option<&str>, path: &str) -> PathBuf {
        let mut file = PathBuf::from(path);
        if file.extension().is_none() {
            file.set_extension("rhai");
        }
        if file.is_relative() {
            let base = source
                .filter(|s| !s.starts_with(STDLIB_PREFIX))
                .and_then(|s| Path::new(s).parent())
                .map(Path::to_path_buf)
                .unwrap_or_default();
            file = base.join(file);
        }
        file
    }
}

impl ModuleResolver for Resolver {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<SharedModule, Box<EvalAltResult>> {
        let (name, text) = if let Some(stem) = path.strip_prefix(STDLIB_PREFIX) {
            let text = bundled::stdlib(stem)
                .ok_or_else(|| EvalAltResult::ErrorModuleNotFound(path.to_string(), pos))?;
            (path.to_string(), text.to_string())
        } else {
            let file = Self::file_path(source, path);
            // Bounded, BOM dropped, as for the main script.
            let text =
                crate::local_file::read_text(&file, crate::local_file::cap::SCRIPT, "module")
                    .map_err(|_| {
                        EvalAltResult::ErrorModuleNotFound(file.display().to_string(), pos)
                    })?;
            (file.display().to_string(), text)
        };
        let mut ast = engine
            .compile(&text)
            .map_err(|e| EvalAltResult::ErrorInModule(name.clone(), e.into(), pos))?;
        ast.set_source(name.clone());
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine)
            .map_err(|e| EvalAltResult::ErrorInModule(name, e, pos))?;
        Ok(module.into())
    }
}

/// Source text for diagnostics: stdlib modules by their import name, files from disk.
pub fn source_text(name: &str) -> Option<String> {
    match name.strip_prefix(STDLIB_PREFIX) {
        Some(stem) => bundled::stdlib(stem).map(str::to_string),
        None => {
            crate::local_file::read_text(Path::new(name), crate::local_file::cap::SCRIPT, "module")
                .ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_imports_resolve_next_to_the_importer() {
        assert_eq!(
            Resolver::file_path(Some("dir/main.rhai"), "lib/helpers"),
            PathBuf::from("dir/lib/helpers.rhai")
        );
        assert_eq!(Resolver::file_path(None, "x.rhai"), PathBuf::from("x.rhai"));
        assert_eq!(
            Resolver::file_path(Some("azssh/retry"), "x"),
            PathBuf::from("x.rhai")
        );
    }
}
