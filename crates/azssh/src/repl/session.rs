//! One REPL session: one engine, one scope, the script functions defined so far (each input's
//! AST is merged into a running AST, whose statements are dropped after each evaluation), the
//! modules imported so far (registered as static modules, so `retry::retry` keeps working on
//! later lines), and everything completion reads.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rhai::{AST, Dynamic, Engine, EvalAltResult, Position, Scope};
use rhai::{Expr, Stmt};

use crate::repl::complete::{self, Candidate};
use crate::repl::names::NameCache;
use crate::repl::progress::Progress;
use crate::script::catalog::Catalog;
use crate::script::context::ScriptContext;
use crate::script::engine;
use crate::script::error::{self, Diagnostic, SourceLookup};

/// What completion and hints read between evaluations (and the evaluation borrows mutably).
#[derive(Default)]
pub struct Shared {
    pub scope: Scope<'static>,
    pub catalog: Catalog,
    pub names: NameCache,
}

impl Shared {
    pub fn complete(&self, line: &str, pos: usize) -> (usize, Vec<Candidate>) {
        let cx = complete::Context {
            catalog: &self.catalog,
            scope: &self.scope,
            names: &self.names,
        };
        complete::complete(line, pos, &cx)
    }
}

pub fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An input compiled and ready to evaluate.
pub struct Prepared {
    ast: AST,
    name: String,
    text: String,
}

pub struct Session {
    ctx: Arc<ScriptContext>,
    progress: Progress,
    engine: Engine,
    functions: AST,
    shared: Arc<Mutex<Shared>>,
    /// Every input that ran without error, for `:save`, and every input by its source name, so
    /// an error inside a function defined three inputs ago still shows its line.
    saved: Vec<String>,
    sources: BTreeMap<String, String>,
    counter: usize,
    /// `ARGS` as scripts see it (empty, or from `azssh repl --arg`), so `:load` of a runbook
    /// that reads `ARGS.x` works as under `azssh run`.
    args: rhai::Map,
}

impl Session {
    pub fn new(ctx: Arc<ScriptContext>) -> Session {
        let progress = Progress::default();
        let engine = build_engine(&ctx, &progress);
        let mut shared = Shared {
            catalog: Catalog::from_engine(&engine, None),
            ..Shared::default()
        };
        shared.scope.push_constant("ARGS", rhai::Map::new());
        Session {
            ctx,
            progress,
            engine,
            functions: AST::empty(),
            shared: Arc::new(Mutex::new(shared)),
            saved: Vec::new(),
            sources: BTreeMap::new(),
            counter: 0,
            args: rhai::Map::new(),
        }
    }

    /// Sets `ARGS` (from `azssh repl --arg`); kept across `:reset`.
    pub fn set_args(&mut self, args: rhai::Map) {
        self.args = args.clone();
        let mut shared = lock(&self.shared);
        // A constant cannot be set, and a second push listed `ARGS` twice in `:vars`.
        let _ = shared.scope.remove::<Dynamic>("ARGS");
        shared.scope.push_constant("ARGS", args);
    }

    pub fn context(&self) -> &Arc<ScriptContext> {
        &self.ctx
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    pub fn shared(&self) -> &Arc<Mutex<Shared>> {
        &self.shared
    }

    pub fn saved_inputs(&self) -> &[String] {
        &self.saved
    }

    /// Forgets variables, functions and imports; the name cache stays (the VMs still exist).
    pub fn reset(&mut self) {
        self.engine = build_engine(&self.ctx, &self.progress);
        self.functions = AST::empty();
        self.saved.clear();
        let mut shared = lock(&self.shared);
        shared.scope = Scope::new();
        shared.scope.push_constant("ARGS", self.args.clone());
        shared.catalog = Catalog::from_engine(&self.engine, None);
    }

    /// Compiles `text`; imports are resolved now and registered for the rest of the session.
    pub fn prepare(&mut self, text: &str, name: Option<&str>) -> Result<Prepared, Box<Diagnostic>> {
        self.counter += 1;
        let name = name.map_or_else(|| format!("input {}", self.counter), str::to_string);
        self.sources.insert(name.clone(), text.to_string());
        let compiled = {
            let shared = lock(&self.shared);
            self.engine.compile_with_scope(&shared.scope, text)
        };
        let ast = compiled.map_err(|e| self.diagnostic_parse(&e, &name))?;
        let mut kept = Vec::new();
        for stmt in ast.statements() {
            match import_of(stmt) {
                Some((path, alias, pos)) => self
                    .import(&path, &alias, pos)
                    .map_err(|e| self.diagnostic_eval(&e, &name))?,
                None => kept.push(stmt.clone()),
            }
        }
        let mut ast = AST::new(kept, ast.shared_lib().clone());
        ast.set_source(name.as_str());
        Ok(Prepared {
            ast: self.functions.merge(&ast),
            name,
            text: text.to_string(),
        })
    }

    fn import(&mut self, path: &str, alias: &str, pos: Position) -> Result<(), Box<EvalAltResult>> {
        let module = self
            .engine
            .module_resolver()
            .resolve(&self.engine, None, path, pos)?;
        if !alias.is_empty() {
            self.engine.register_static_module(alias, module);
            // Completion offers `alias::` and its functions from here on.
            lock(&self.shared).catalog = Catalog::from_engine(&self.engine, Some(&self.functions));
        }
        Ok(())
    }

    /// Evaluates on the calling thread (the REPL runs this on a worker thread it can abandon
    /// to Ctrl-C). The scope is locked for the whole evaluation.
    pub fn evaluate(&self, prepared: &Prepared) -> Result<Dynamic, Box<EvalAltResult>> {
        let mut shared = lock(&self.shared);
        self.engine
            .eval_ast_with_scope::<Dynamic>(&mut shared.scope, &prepared.ast)
    }

    /// Keeps what the evaluation defined and learns names from its result and the scope.
    pub fn finish(
        &mut self,
        prepared: Prepared,
        outcome: &Result<Dynamic, Box<EvalAltResult>>,
    ) -> Result<(), Box<Diagnostic>> {
        let had_functions = prepared.ast.has_functions();
        let mut functions = prepared.ast;
        functions.clear_statements();
        self.functions = functions;
        let mut shared = lock(&self.shared);
        if had_functions {
            shared.catalog = Catalog::from_engine(&self.engine, Some(&self.functions));
        }
        let Shared { scope, names, .. } = &mut *shared;
        for (_, _, value) in scope.iter_raw() {
            names.observe(value);
        }
        drop(shared);
        match outcome {
            Ok(value) => {
                lock(&self.shared).names.observe(value);
                self.saved.push(prepared.text);
                Ok(())
            }
            Err(e) => Err(self.diagnostic_eval(e, &prepared.name)),
        }
    }

    fn diagnostic_parse(&self, e: &rhai::ParseError, name: &str) -> Box<Diagnostic> {
        let diag = error::from_parse(e, name, &Sources(&self.sources));
        Box::new(hide_current(diag, name))
    }

    fn diagnostic_eval(&self, e: &EvalAltResult, name: &str) -> Box<Diagnostic> {
        let diag = error::from_eval(
            e,
            name,
            &Sources(&self.sources),
            &lock(&self.shared).catalog,
        );
        Box::new(hide_current(diag, name))
    }
}

/// The one engine, with `print` routed around the spinner.
fn build_engine(ctx: &Arc<ScriptContext>, progress: &Progress) -> Engine {
    let mut engine = engine::build(ctx);
    let progress = progress.clone();
    engine.on_print(move |text| progress.print(text));
    engine
}

/// An error in what was just typed needs no `input 7:1:5:` prefix: the caret shows where.
fn hide_current(mut diag: Diagnostic, name: &str) -> Diagnostic {
    if diag.file == name {
        diag.file.clear();
    }
    diag
}

struct Sources<'a>(&'a BTreeMap<String, String>);

impl SourceLookup for Sources<'_> {
    fn source_text(&self, name: &str) -> Option<String> {
        self.0
            .get(name)
            .cloned()
            .or_else(|| crate::script::resolver::source_text(name))
    }
}

/// `import "path" as alias;` with a constant path; other imports run as ordinary statements.
fn import_of(stmt: &Stmt) -> Option<(String, String, Position)> {
    match stmt {
        Stmt::Import(x, pos) => match &x.0 {
            Expr::StringConstant(path, _) => Some((path.to_string(), x.1.name.to_string(), *pos)),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::bridge::{Bridge, Cancel};
    use crate::script::context::Settings;
    use crate::script::engine::Limits;

    fn session(rt: &tokio::runtime::Runtime) -> Session {
        let bridge = Bridge::new(rt.handle().clone(), Cancel::new(None));
        Session::new(Arc::new(ScriptContext::new(
            bridge,
            Settings::default(),
            Limits::default(),
        )))
    }

    fn eval(s: &mut Session, text: &str) -> Result<Dynamic, Box<Diagnostic>> {
        let p = s.prepare(text, None)?;
        let out = s.evaluate(&p);
        s.finish(p, &out)?;
        Ok(out.unwrap())
    }

    #[test]
    fn variables_functions_and_imports_persist_across_inputs() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut s = session(&rt);
        let _ = eval(&mut s, "let x = 20;").unwrap();
        let _ = eval(&mut s, "fn twice(n) {\n  n * 2\n}").unwrap();
        assert_eq!(eval(&mut s, "twice(x) + 2").unwrap().as_int().unwrap(), 42);
        let _ = eval(&mut s, "import \"azssh/retry\" as retry;").unwrap();
        let v = eval(&mut s, "retry::retry(|| 7, 1, 0)").unwrap();
        assert_eq!(v.as_int().unwrap(), 7);
        let shared = lock(s.shared());
        assert!(shared.catalog.overloads("twice").len() == 1);
        assert!(shared.catalog.modules().any(|(alias, _)| alias == "retry"));
        assert_eq!(shared.catalog.overloads("retry::retry").len(), 1);
    }

    #[test]
    fn errors_point_into_the_input_with_a_caret() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut s = session(&rt);
        let d = eval(&mut s, "let y = 1 +;").unwrap_err();
        let text = d.render();
        assert!(text.starts_with("error: "), "{text}");
        assert!(
            text.contains("1 | let y = 1 +;\n  |            ^"),
            "{text}"
        );
        let d = eval(&mut s, "no_such_fn(1)").unwrap_err();
        assert!(d.render().contains("function not found"), "{}", d.render());
    }

    #[test]
    fn names_are_learned_from_results_and_variables() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut s = session(&rt);
        let _ = eval(
            &mut s,
            "let v = #{resource_group: \"rg-web\", name: \"web01\"};",
        )
        .unwrap();
        let _ = eval(&mut s, "[#{resource_group: \"rg-db\", name: \"db01\"}]").unwrap();
        let shared = lock(s.shared());
        assert_eq!(shared.names.groups(""), vec!["rg-db", "rg-web"]);
    }

    #[test]
    fn args_are_one_variable_after_set_args() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut s = session(&rt);
        let mut args = rhai::Map::new();
        args.insert("port".into(), Dynamic::from(2222_i64));
        s.set_args(args);
        let shared = lock(s.shared());
        let named: Vec<&str> = shared
            .scope
            .iter_raw()
            .map(|(n, ..)| n)
            .filter(|n| *n == "ARGS")
            .collect();
        assert_eq!(named, ["ARGS"]);
        drop(shared);
        assert_eq!(eval(&mut s, "ARGS.port").unwrap().as_int().unwrap(), 2222);
    }

    #[test]
    fn reset_forgets_the_session() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut s = session(&rt);
        let _ = eval(&mut s, "let x = 1; fn f() { 1 }").unwrap();
        s.reset();
        assert!(eval(&mut s, "x").is_err());
        assert!(eval(&mut s, "f()").is_err());
        assert!(s.saved_inputs().is_empty());
    }
}
