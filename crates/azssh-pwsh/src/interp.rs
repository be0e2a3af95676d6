//! The evaluator: walks the tree-sitter syntax tree and runs statements, pipelines and
//! expressions with PowerShell's semantics (scopes, error streams, ErrorAction, output).

use std::collections::HashMap;
use std::rc::Rc;

use tree_sitter::Node;

use crate::dotnet;
use crate::error::ErrorRecord;
use crate::format;
use crate::host::{BoundArgs, Host, HostResult, RawArg};
use crate::ops;
use crate::parse::{Script, Source};
use crate::value::{Hashtable, PsObject, ScriptBlock, Value};

/// What a script run produced: RunCommand's StdOut/StdErr and the process exit code.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// The output stream as the console renders it, plus Write-Host text.
    pub stdout: String,
    /// Errors (and warnings) as the console renders them.
    pub stderr: String,
    /// 0, `exit N`, or 1 when a terminating error escaped or the last statement failed.
    pub exit_code: i32,
}

/// Bounds that keep a hostile script from hanging or exhausting the emulator.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Statements and loop iterations executed.
    pub max_steps: u64,
    /// Nesting of expressions and statements being evaluated.
    pub max_depth: usize,
    /// Function / script block call depth (PowerShell's own limit is 100).
    pub max_calls: usize,
    /// Bytes of stdout + stderr.
    pub max_output: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_steps: 1_000_000,
            max_depth: 100,
            max_calls: 32,
            max_output: 8 << 20,
        }
    }
}

/// Most objects one statement may accumulate before the script is stopped.
pub const MAX_PIPELINE_ITEMS: usize = 100_000;

/// Non-local control flow.
#[derive(Debug)]
pub(crate) enum Flow {
    Break(Option<String>),
    Continue(Option<String>),
    Return,
    Exit(i32),
    /// An error; `true` when script-terminating (throw, -ErrorAction Stop), `false` when it only
    /// ends the statement (command not found, parameter binding).
    Error(Box<ErrorRecord>, bool),
    /// A limit was hit: stops everything, cannot be caught.
    Abort(String),
}

pub(crate) type R<T> = Result<T, Flow>;

/// How a non-terminating error is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Stop,
    Continue,
    Silent,
    Ignore,
}

impl Action {
    pub(crate) fn parse(s: &str) -> Action {
        match s.to_ascii_lowercase().as_str() {
            "stop" => Action::Stop,
            "silentlycontinue" => Action::Silent,
            "ignore" => Action::Ignore,
            _ => Action::Continue,
        }
    }
}

/// Where a command's error stream goes (`2>$null`, `2>&1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum ErrTarget {
    #[default]
    Console,
    Null,
    Output,
}

/// Per-command context: error handling and where the command is in the script.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub action: Action,
    pub err: ErrTarget,
    pub name: String,
    pub start: usize,
    pub end: usize,
}

/// A script function or filter.
#[derive(Debug)]
pub(crate) struct FuncDef {
    source: Rc<Source>,
    start: usize,
    end: usize,
}

const WRAPPERS: &[&str] = &[
    "logical_expression",
    "bitwise_expression",
    "comparison_expression",
    "additive_expression",
    "multiplicative_expression",
    "format_expression",
    "range_expression",
    "array_literal_expression",
    "unary_expression",
    "argument_expression",
    "logical_argument_expression",
    "bitwise_argument_expression",
    "comparison_argument_expression",
    "additive_argument_expression",
    "multiplicative_argument_expression",
    "format_argument_expression",
    "range_argument_expression",
    "left_assignment_expression",
    "while_condition",
    "for_condition",
    "for_initializer",
    "for_iterator",
    "key_expression",
    "label_expression",
    "redirected_file_name",
    "switch_clause_condition",
    "switch_filename",
    "command_name_expr",
    "integer_literal",
    "string_literal",
];

fn unwrap(mut node: Node<'_>) -> Node<'_> {
    while WRAPPERS.contains(&node.kind()) && node.child_count() == 1 {
        match node.child(0) {
            Some(c) => node = c,
            None => break,
        }
    }
    node
}

fn children(node: Node<'_>) -> Vec<Node<'_>> {
    let mut c = node.walk();
    node.children(&mut c).collect()
}

fn named(node: Node<'_>) -> Vec<Node<'_>> {
    let mut c = node.walk();
    node.named_children(&mut c)
        .filter(|n| n.kind() != "comment")
        .collect()
}

fn child_of<'t>(node: Node<'t>, kind: &str) -> Option<Node<'t>> {
    let mut c = node.walk();
    let found = node.named_children(&mut c).find(|n| n.kind() == kind);
    found
}

fn collapse(mut v: Vec<Value>) -> Value {
    match v.len() {
        0 => Value::Null,
        1 => v.pop().unwrap_or_default(),
        _ => Value::array(v),
    }
}

fn emit(v: Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(a) => out.extend(a.borrow().iter().cloned()),
        other => out.push(other),
    }
}

/// A Windows PowerShell 5.1 interpreter bound to a [`Host`].
pub struct Interpreter<'h> {
    pub(crate) host: &'h mut dyn Host,
    scopes: Vec<HashMap<String, Value>>,
    functions: HashMap<String, Rc<FuncDef>>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    steps: u64,
    depth: usize,
    calls: usize,
    pub(crate) limits: Limits,
    pub(crate) errors: Vec<Value>,
    last_ok: bool,
    failed: bool,
    void: bool,
    try_depth: usize,
    /// Output of the current statement goes straight to the console (Write-Host can keep
    /// its place in it).
    pub(crate) direct: bool,
    /// Bytes of host text waiting in console-bound output (counted against max_output).
    pub(crate) pending: usize,
    src: Option<Rc<Source>>,
}

impl std::fmt::Debug for Interpreter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interpreter")
            .field("steps", &self.steps)
            .finish()
    }
}

impl<'h> Interpreter<'h> {
    /// A fresh interpreter (global scope with PowerShell's automatic variables).
    pub fn new(host: &'h mut dyn Host) -> Self {
        let mut global = HashMap::new();
        global.insert(
            "erroractionpreference".into(),
            Value::Str("Continue".into()),
        );
        global.insert("progresspreference".into(), Value::Str("Continue".into()));
        global.insert("warningpreference".into(), Value::Str("Continue".into()));
        global.insert(
            "verbosepreference".into(),
            Value::Str("SilentlyContinue".into()),
        );
        global.insert("lastexitcode".into(), Value::Null);
        global.insert("ofs".into(), Value::Str(" ".into()));
        let mut ver = Hashtable::default();
        for (k, v) in [
            ("PSVersion", Value::Version(vec![5, 1, 20348, 2849])),
            ("PSEdition", Value::Str("Desktop".into())),
            ("BuildVersion", Value::Version(vec![10, 0, 20348, 2849])),
            ("CLRVersion", Value::Version(vec![4, 0, 30319, 42000])),
            ("WSManStackVersion", Value::Version(vec![3, 0])),
            ("PSRemotingProtocolVersion", Value::Version(vec![2, 3])),
            ("SerializationVersion", Value::Version(vec![1, 1, 0, 1])),
        ] {
            ver.entries.push((Value::Str(k.into()), v));
        }
        global.insert("psversiontable".into(), Value::hashtable(ver));
        Interpreter {
            host,
            scopes: vec![global],
            functions: HashMap::new(),
            stdout: String::new(),
            stderr: String::new(),
            steps: 0,
            depth: 0,
            calls: 0,
            limits: Limits::default(),
            errors: Vec::new(),
            last_ok: true,
            failed: false,
            void: false,
            try_depth: 0,
            direct: false,
            pending: 0,
            src: None,
        }
    }

    /// Replaces the limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Parses and runs `text`; a parse error becomes StdErr (as RunCommand reports it) with
    /// exit code 1.
    pub fn run_text(&mut self, text: &str, args: &[(String, Value)]) -> Outcome {
        match crate::parse::parse(text) {
            Ok(script) => self.run(&script, args),
            Err(e) => Outcome {
                stdout: String::new(),
                stderr: e.render(self.host.script_path().as_deref()),
                exit_code: 1,
            },
        }
    }

    /// Runs a parsed script. `args` arrive as RunCommand passes them: `-name value`; a script
    /// with `param()` binds them, one without sees them in `$args`.
    pub fn run(&mut self, script: &Script, args: &[(String, Value)]) -> Outcome {
        self.stdout.clear();
        self.stderr.clear();
        let source = script.source.clone();
        let prev = self.src.replace(source.clone());
        let root = source.tree.root_node();
        let mut raw = Vec::new();
        for (k, v) in args {
            raw.push(RawArg::Param {
                name: k.clone(),
                value: None,
            });
            raw.push(RawArg::Value(v.clone()));
        }
        let mut exit_code = 0;
        let result = self.run_program(root, raw);
        match result {
            Ok(()) => {
                if !self.last_ok {
                    exit_code = 1;
                }
            }
            Err(Flow::Exit(c)) => exit_code = c,
            Err(Flow::Error(e, _)) => {
                self.write_error(&e);
                exit_code = 1;
            }
            Err(Flow::Abort(msg)) => {
                self.stderr.push_str(&msg);
                self.stderr.push_str("\r\n");
                exit_code = 1;
            }
            Err(Flow::Break(_)) | Err(Flow::Continue(_)) | Err(Flow::Return) => {}
        }
        self.src = prev;
        Outcome {
            stdout: std::mem::take(&mut self.stdout),
            stderr: std::mem::take(&mut self.stderr),
            exit_code,
        }
    }

    fn run_program(&mut self, root: Node<'_>, raw: Vec<RawArg>) -> R<()> {
        let params = child_of(root, "param_block");
        let mut args_rest = Vec::new();
        match params {
            Some(pb) => {
                let bound = self.bind_params(Some(pb), raw, &mut args_rest)?;
                for (k, v) in bound {
                    self.set_var(&k, v);
                }
            }
            None => {
                for a in raw {
                    match a {
                        RawArg::Param { name, .. } => {
                            args_rest.push(Value::Str(format!("-{name}")))
                        }
                        RawArg::Value(v) => args_rest.push(v),
                    }
                }
            }
        }
        self.set_var("args", Value::array(args_rest));
        if let Some(list) = child_of(root, "statement_list") {
            self.top_level(list)?;
        }
        Ok(())
    }

    /// Runs the top-level statements, rendering each statement's output as the console does.
    fn top_level(&mut self, list: Node<'_>) -> R<()> {
        let mut label = None;
        let traps: Vec<Node<'_>> = named(list)
            .into_iter()
            .filter(|n| n.kind() == "trap_statement")
            .collect();
        for stmt in named(list) {
            if stmt.kind() == "label" {
                label = Some(self.text(stmt).trim_start_matches(':').to_string());
                continue;
            }
            if stmt.kind() == "empty_statement" {
                continue;
            }
            let mut out = Vec::new();
            self.failed = false;
            self.direct = true;
            let r = self.statement(stmt, &mut out, label.take());
            self.direct = false;
            self.pending = 0;
            self.flush(&out);
            match r {
                Ok(()) => {}
                Err(Flow::Error(e, _)) if !traps.is_empty() => {
                    self.failed = true;
                    let mut tout = Vec::new();
                    let r = self.run_trap(&traps, *e, &mut tout);
                    self.flush(&tout);
                    if let Err(other) = r {
                        self.last_ok = false;
                        return Err(other);
                    }
                }
                Err(Flow::Error(e, false)) => {
                    self.record_error(&e);
                    self.write_error(&e);
                    self.failed = true;
                }
                Err(other) => {
                    self.last_ok = !self.failed;
                    return Err(other);
                }
            }
            self.last_ok = !self.failed;
        }
        Ok(())
    }

    fn flush(&mut self, out: &[Value]) {
        if !out.is_empty() {
            let text = format::out_string(out);
            self.stdout.push_str(&text);
        }
    }

    pub(crate) fn write_error(&mut self, e: &ErrorRecord) {
        let path = self.host.script_path();
        let text = e.render(path.as_deref());
        self.stderr.push_str(&text);
    }

    pub(crate) fn record_error(&mut self, e: &ErrorRecord) {
        self.errors.insert(0, Value::Error(Rc::new(e.clone())));
        self.errors.truncate(256);
    }

    pub(crate) fn check_output(&self) -> R<()> {
        if self.stdout.len() + self.stderr.len() + self.pending > self.limits.max_output {
            return Err(Flow::Abort(format!(
                "The script stopped: its output exceeded {} bytes.",
                self.limits.max_output
            )));
        }
        Ok(())
    }

    fn step(&mut self) -> R<()> {
        self.steps += 1;
        if self.steps > self.limits.max_steps {
            return Err(Flow::Abort(format!(
                "The script stopped: it exceeded {} statements.",
                self.limits.max_steps
            )));
        }
        Ok(())
    }

    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            self.depth -= 1;
            return Err(Flow::Error(
                Box::new(ErrorRecord::new(
                    "The script is nested too deeply.",
                    "System.Management.Automation.ScriptCallDepthException",
                    "ScriptTooComplicated",
                    "InvalidOperation",
                )),
                true,
            ));
        }
        Ok(())
    }

    pub(crate) fn text(&self, node: Node<'_>) -> String {
        self.src
            .as_ref()
            .map(|s| s.node_text(node).to_string())
            .unwrap_or_default()
    }

    pub(crate) fn located(&self, mut e: ErrorRecord, start: usize, end: usize) -> ErrorRecord {
        if e.position.is_none() {
            if let Some(src) = &self.src {
                let width = src
                    .text
                    .get(start..end)
                    .map(|s| {
                        s.split('\n')
                            .next()
                            .unwrap_or("")
                            .trim_end()
                            .chars()
                            .count()
                    })
                    .unwrap_or(1);
                e.position = Some(src.position(start, width));
            }
        }
        e
    }

    fn err_at(&self, e: ErrorRecord, node: Node<'_>, terminating: bool) -> Flow {
        Flow::Error(
            Box::new(self.located(e, node.start_byte(), node.end_byte())),
            terminating,
        )
    }

    // ---------------------------------------------------------------- variables

    /// Reads a variable (`name` without `$`; may carry `env:`, `script:`, ...).
    pub fn get_var(&self, name: &str) -> Value {
        let lower = name.to_ascii_lowercase();
        if let Some((scope, rest)) = lower.split_once(':') {
            match scope {
                "env" => {
                    let orig = &name[4..];
                    return self
                        .host
                        .env_var(orig)
                        .map(Value::Str)
                        .unwrap_or(Value::Null);
                }
                "script" | "global" => {
                    return self.scopes[0].get(rest).cloned().unwrap_or(Value::Null);
                }
                "local" | "private" | "using" => return self.lookup(rest),
                "variable" => return self.lookup(rest),
                _ => return Value::Null,
            }
        }
        match lower.as_str() {
            "null" => Value::Null,
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "psitem" => self.lookup("_"),
            "?" => Value::Bool(self.last_ok),
            "error" => Value::array(self.errors.clone()),
            "pwd" => Value::Str(self.host.cwd()),
            "pid" => Value::Int(4242),
            "home" => Value::Str(
                self.host
                    .env_var("USERPROFILE")
                    .unwrap_or_else(|| "C:\\Windows\\system32\\config\\systemprofile".into()),
            ),
            "pshome" => Value::Str("C:\\Windows\\System32\\WindowsPowerShell\\v1.0".into()),
            "pscommandpath" => self.host.script_path().map(Value::Str).unwrap_or_default(),
            "psscriptroot" => self
                .host
                .script_path()
                .and_then(|p| crate::host::parent_dir(&p))
                .map(Value::Str)
                .unwrap_or_else(|| Value::Str(String::new())),
            _ => self.lookup(&lower),
        }
    }

    fn lookup(&self, lower: &str) -> Value {
        for s in self.scopes.iter().rev() {
            if let Some(v) = s.get(lower) {
                return v.clone();
            }
        }
        Value::Null
    }

    /// Sets a variable in the current scope (or the one its prefix names).
    pub fn set_var(&mut self, name: &str, v: Value) {
        let lower = name.to_ascii_lowercase();
        if let Some((scope, rest)) = lower.split_once(':') {
            match scope {
                "env" => {
                    let orig = name[4..].to_string();
                    let val = match &v {
                        Value::Null => None,
                        other => Some(other.to_str()),
                    };
                    self.host
                        .set_env_var(&orig, val.as_deref().filter(|s| !s.is_empty()));
                }
                "script" | "global" => {
                    self.scopes[0].insert(rest.to_string(), v);
                }
                _ => {
                    if let Some(s) = self.scopes.last_mut() {
                        s.insert(rest.to_string(), v);
                    }
                }
            }
            return;
        }
        if matches!(lower.as_str(), "null" | "true" | "false") {
            return;
        }
        if let Some(s) = self.scopes.last_mut() {
            s.insert(lower, v);
        }
    }

    fn var_name(&self, node: Node<'_>) -> (String, bool) {
        let t = self.text(node);
        let splat = t.starts_with('@');
        let t = t.trim_start_matches(['$', '@']);
        let t = t
            .strip_prefix('{')
            .and_then(|x| x.strip_suffix('}'))
            .unwrap_or(t);
        (t.to_string(), splat)
    }

    // ---------------------------------------------------------------- statements

    pub(crate) fn statements(&mut self, list: Node<'_>, out: &mut Vec<Value>) -> R<()> {
        let mut label = None;
        let traps: Vec<Node<'_>> = named(list)
            .into_iter()
            .filter(|n| n.kind() == "trap_statement")
            .collect();
        for stmt in named(list) {
            if stmt.kind() == "label" {
                label = Some(self.text(stmt).trim_start_matches(':').to_string());
                continue;
            }
            if stmt.kind() == "empty_statement" {
                continue;
            }
            self.failed = false;
            match self.statement(stmt, out, label.take()) {
                Ok(()) => {}
                Err(Flow::Error(e, _)) if !traps.is_empty() => {
                    self.failed = true;
                    self.run_trap(&traps, *e, out)?;
                }
                // A statement-terminating error outside `try` ends only that statement.
                Err(Flow::Error(e, false)) if self.try_depth == 0 => {
                    self.record_error(&e);
                    self.write_error(&e);
                    self.failed = true;
                    self.check_output()?;
                }
                Err(other) => {
                    self.last_ok = !self.failed;
                    return Err(other);
                }
            }
            self.last_ok = !self.failed;
        }
        Ok(())
    }

    /// `trap { }`: runs the first matching trap with `$_`; `continue` in it swallows the
    /// error, `break` makes it terminating, falling through reports it and goes on.
    fn run_trap(&mut self, traps: &[Node<'_>], e: ErrorRecord, out: &mut Vec<Value>) -> R<()> {
        let mut chosen = None;
        for t in traps {
            match child_of(*t, "type_literal") {
                None => {
                    if chosen.is_none() {
                        chosen = Some(*t);
                    }
                }
                Some(ty) => {
                    let ty = dotnet::canonical_type(&self.text(ty)).to_ascii_lowercase();
                    if ty == "system.exception" || ty == e.exception_type.to_ascii_lowercase() {
                        chosen = Some(*t);
                        break;
                    }
                }
            }
        }
        let Some(trap) = chosen else {
            return Err(Flow::Error(Box::new(e), true));
        };
        self.record_error(&e);
        let saved = self.lookup("_");
        self.set_var("_", Value::Error(Rc::new(e.clone())));
        let r = match child_of(trap, "statement_block") {
            Some(b) => self.block(b, out),
            None => Ok(()),
        };
        self.set_var("_", saved);
        match r {
            Ok(()) => {
                self.write_error(&e);
                self.check_output()
            }
            Err(Flow::Continue(_)) => Ok(()),
            Err(Flow::Break(_)) => Err(Flow::Error(Box::new(e), true)),
            Err(other) => Err(other),
        }
    }

    fn block(&mut self, block: Node<'_>, out: &mut Vec<Value>) -> R<()> {
        // statement_block: '{' statement_list? '}'
        match child_of(block, "statement_list") {
            Some(list) => self.statements(list, out),
            None => Ok(()),
        }
    }

    fn statement(&mut self, stmt: Node<'_>, out: &mut Vec<Value>, label: Option<String>) -> R<()> {
        self.step()?;
        self.enter()?;
        let r = self.statement_inner(stmt, out, label);
        self.depth -= 1;
        r
    }

    fn statement_inner(
        &mut self,
        stmt: Node<'_>,
        out: &mut Vec<Value>,
        label: Option<String>,
    ) -> R<()> {
        match stmt.kind() {
            "pipeline" => {
                let r = self.pipeline(stmt, out);
                match r {
                    Ok(()) => Ok(()),
                    Err(Flow::Error(e, false)) if self.eap() == Action::Stop => {
                        Err(Flow::Error(e, true))
                    }
                    Err(e) => Err(e),
                }
            }
            "empty_statement" | "comment" => Ok(()),
            "if_statement" => self.if_statement(stmt, out),
            "foreach_statement" => self.foreach_statement(stmt, out, label),
            "for_statement" => self.for_statement(stmt, out, label),
            "while_statement" => self.while_statement(stmt, out, label),
            "do_statement" => self.do_statement(stmt, out, label),
            "switch_statement" => self.switch_statement(stmt, out, label),
            "function_statement" => {
                let name_node = child_of(stmt, "function_name");
                let name = name_node.map(|n| self.text(n)).unwrap_or_default();
                let Some(source) = self.src.clone() else {
                    return Ok(());
                };
                self.functions.insert(
                    name.to_ascii_lowercase(),
                    Rc::new(FuncDef {
                        source,
                        start: stmt.start_byte(),
                        end: stmt.end_byte(),
                    }),
                );
                Ok(())
            }
            "flow_control_statement" => self.flow_control(stmt, out),
            "try_statement" => self.try_statement(stmt, out),
            "trap_statement" => Ok(()),
            "statement_block" => self.block(stmt, out),
            kind => Err(self.err_at(
                ErrorRecord::new(
                    format!(
                        "The emulated Windows PowerShell does not support '{kind}' statements."
                    ),
                    "System.Management.Automation.ParseException",
                    "NotSupported",
                    "ParserError",
                ),
                stmt,
                true,
            )),
        }
    }

    fn eap(&self) -> Action {
        Action::parse(&self.get_var("ErrorActionPreference").to_str())
    }

    fn if_statement(&mut self, stmt: Node<'_>, out: &mut Vec<Value>) -> R<()> {
        let cond = stmt.child_by_field_name("condition");
        let body = child_of(stmt, "statement_block");
        if let (Some(c), Some(b)) = (cond, body) {
            if self.condition(c)? {
                return self.block(b, out);
            }
        }
        if let Some(clauses) = child_of(stmt, "elseif_clauses") {
            for clause in named(clauses) {
                let c = clause.child_by_field_name("condition");
                let b = child_of(clause, "statement_block");
                if let (Some(c), Some(b)) = (c, b) {
                    if self.condition(c)? {
                        return self.block(b, out);
                    }
                }
            }
        }
        if let Some(e) = child_of(stmt, "else_clause") {
            if let Some(b) = child_of(e, "statement_block") {
                return self.block(b, out);
            }
        }
        Ok(())
    }

    fn condition(&mut self, pipeline: Node<'_>) -> R<bool> {
        Ok(self.pipeline_value(pipeline)?.truthy())
    }

    /// Evaluates a pipeline for its value: a pure expression keeps its value (arrays stay
    /// arrays), anything else collects its output.
    pub(crate) fn pipeline_value(&mut self, node: Node<'_>) -> R<Value> {
        let saved = std::mem::replace(&mut self.direct, false);
        let r = self.pipeline_value_impl(node);
        self.direct = saved;
        r
    }

    fn pipeline_value_impl(&mut self, node: Node<'_>) -> R<Value> {
        let node = unwrap(node);
        if node.kind() == "pipeline" {
            if let Some(e) = self.pure_expression(node) {
                return self.expr(e);
            }
            if let Some(a) = child_of(node, "assignment_expression") {
                return self.assignment(a);
            }
            let mut out = Vec::new();
            self.pipeline(node, &mut out)?;
            return Ok(collapse(out));
        }
        if node.kind() == "assignment_expression" {
            return self.assignment(node);
        }
        if node.kind().ends_with("_statement") {
            let mut out = Vec::new();
            self.statement(node, &mut out, None)?;
            return Ok(collapse(out));
        }
        self.expr(node)
    }

    fn pure_expression<'t>(&self, pipeline: Node<'t>) -> Option<Node<'t>> {
        if pipeline.named_child_count() != 1 {
            return None;
        }
        let chain = pipeline.named_child(0)?;
        if chain.kind() != "pipeline_chain" || chain.child_count() != 1 {
            return None;
        }
        let e = chain.child(0)?;
        if e.kind() == "command" {
            return None;
        }
        Some(e)
    }

    fn loop_body(
        &mut self,
        body: Node<'_>,
        out: &mut Vec<Value>,
        label: &Option<String>,
    ) -> R<bool> {
        // Ok(true): keep looping; Ok(false): break.
        if out.len() > MAX_PIPELINE_ITEMS {
            return Err(Flow::Abort(format!(
                "The script stopped: a pipeline produced more than {MAX_PIPELINE_ITEMS} objects."
            )));
        }
        let before = out.len();
        let r = self.loop_body_inner(body, out, label);
        if out.len() > before {
            self.pending += out[before..]
                .iter()
                .map(|v| match v {
                    Value::Str(s) => s.len(),
                    _ => 16,
                })
                .sum::<usize>();
            self.check_output()?;
        }
        r
    }

    fn loop_body_inner(
        &mut self,
        body: Node<'_>,
        out: &mut Vec<Value>,
        label: &Option<String>,
    ) -> R<bool> {
        match self.block(body, out) {
            Ok(()) => Ok(true),
            Err(Flow::Break(None)) => Ok(false),
            Err(Flow::Continue(None)) => Ok(true),
            Err(Flow::Break(Some(l)))
                if label.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(&l)) =>
            {
                Ok(false)
            }
            Err(Flow::Continue(Some(l)))
                if label.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(&l)) =>
            {
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    fn foreach_statement(
        &mut self,
        stmt: Node<'_>,
        out: &mut Vec<Value>,
        label: Option<String>,
    ) -> R<()> {
        let var = child_of(stmt, "variable");
        let src = child_of(stmt, "pipeline");
        let body = child_of(stmt, "statement_block");
        let (Some(var), Some(src), Some(body)) = (var, src, body) else {
            return Ok(());
        };
        let (name, _) = self.var_name(var);
        let items = self.pipeline_value(src)?.enumerate();
        for item in items {
            self.step()?;
            self.set_var(&name, item);
            if !self.loop_body(body, out, &label)? {
                break;
            }
        }
        Ok(())
    }

    fn for_statement(
        &mut self,
        stmt: Node<'_>,
        out: &mut Vec<Value>,
        label: Option<String>,
    ) -> R<()> {
        let init = stmt.child_by_field_name("for_initializer");
        let cond = stmt.child_by_field_name("for_condition");
        let iter = stmt.child_by_field_name("for_iterator");
        let body = child_of(stmt, "statement_block");
        if let Some(i) = init {
            let mut sink = Vec::new();
            self.pipeline(unwrap(i), &mut sink)?;
        }
        let Some(body) = body else { return Ok(()) };
        loop {
            self.step()?;
            if let Some(c) = cond {
                if !self.pipeline_value(c)?.truthy() {
                    break;
                }
            }
            if !self.loop_body(body, out, &label)? {
                break;
            }
            if let Some(i) = iter {
                let mut sink = Vec::new();
                self.pipeline(unwrap(i), &mut sink)?;
            }
        }
        Ok(())
    }

    fn while_statement(
        &mut self,
        stmt: Node<'_>,
        out: &mut Vec<Value>,
        label: Option<String>,
    ) -> R<()> {
        let cond = stmt.child_by_field_name("condition");
        let body = child_of(stmt, "statement_block");
        let (Some(cond), Some(body)) = (cond, body) else {
            return Ok(());
        };
        loop {
            self.step()?;
            if !self.pipeline_value(cond)?.truthy() {
                break;
            }
            if !self.loop_body(body, out, &label)? {
                break;
            }
        }
        Ok(())
    }

    fn do_statement(
        &mut self,
        stmt: Node<'_>,
        out: &mut Vec<Value>,
        label: Option<String>,
    ) -> R<()> {
        let cond = stmt.child_by_field_name("condition");
        let body = child_of(stmt, "statement_block");
        let until = children(stmt).iter().any(|c| c.kind() == "until");
        let (Some(cond), Some(body)) = (cond, body) else {
            return Ok(());
        };
        loop {
            self.step()?;
            if !self.loop_body(body, out, &label)? {
                break;
            }
            let c = self.pipeline_value(cond)?.truthy();
            if c == until {
                break;
            }
        }
        Ok(())
    }

    fn switch_statement(
        &mut self,
        stmt: Node<'_>,
        out: &mut Vec<Value>,
        label: Option<String>,
    ) -> R<()> {
        let mut regex = false;
        let mut wildcard = false;
        let mut case = false;
        if let Some(ps) = child_of(stmt, "switch_parameters") {
            for p in named(ps) {
                match self.text(p).to_ascii_lowercase().as_str() {
                    "-regex" => regex = true,
                    "-wildcard" => wildcard = true,
                    "-casesensitive" => case = true,
                    _ => {}
                }
            }
        }
        let Some(cond) = child_of(stmt, "switch_condition") else {
            return Ok(());
        };
        let input = match child_of(cond, "pipeline") {
            Some(p) => self.pipeline_value(p)?,
            None => Value::Null,
        };
        let items = match &input {
            Value::Null => vec![Value::Null],
            other => other.enumerate(),
        };
        let clauses: Vec<Node<'_>> = child_of(stmt, "switch_body")
            .and_then(|b| child_of(b, "switch_clauses"))
            .map(named)
            .unwrap_or_default();
        'items: for item in items {
            self.step()?;
            let mut matched = false;
            for pass_default in [false, true] {
                if pass_default && matched {
                    break;
                }
                for clause in &clauses {
                    let Some(cc) = child_of(*clause, "switch_clause_condition") else {
                        continue;
                    };
                    let body = child_of(*clause, "statement_block");
                    let ctext = self.text(cc);
                    let is_default = ctext.eq_ignore_ascii_case("default");
                    if is_default != pass_default {
                        continue;
                    }
                    let hit = if is_default {
                        true
                    } else {
                        let inner = unwrap(cc);
                        let pattern = if inner.kind() == "switch_clause_condition"
                            || inner.kind() == "generic_token"
                        {
                            Value::Str(ctext.clone())
                        } else {
                            self.expr(inner)?
                        };
                        match &pattern {
                            Value::ScriptBlock(sb) => {
                                let sb = sb.clone();
                                let r =
                                    self.invoke_block(&sb, Vec::new(), Some(item.clone()), false)?;
                                collapse(r).truthy()
                            }
                            p => {
                                if regex {
                                    let re = ops::regex(&p.to_str(), case)
                                        .map_err(|e| self.err_at(e, cc, true))?;
                                    let s = item.to_str();
                                    if let Some(caps) = re.captures(&s) {
                                        let mut h = Hashtable::default();
                                        for (i, m) in caps.iter().enumerate() {
                                            if let Some(m) = m {
                                                h.entries.push((
                                                    Value::Int(i as i64),
                                                    Value::Str(m.as_str().into()),
                                                ));
                                            }
                                        }
                                        h.entries.reverse();
                                        self.set_var("Matches", Value::hashtable(h));
                                        true
                                    } else {
                                        false
                                    }
                                } else if wildcard {
                                    ops::wildcard(&p.to_str(), &item.to_str(), case)
                                } else if matches!(item, Value::Str(_))
                                    || matches!(p, Value::Str(_))
                                {
                                    if case {
                                        item.to_str() == p.to_str()
                                    } else {
                                        item.to_str().eq_ignore_ascii_case(&p.to_str())
                                    }
                                } else {
                                    ops::equals(&item, p, case)
                                }
                            }
                        }
                    };
                    if hit {
                        matched = true;
                        if let Some(b) = body {
                            let saved = self.lookup("_");
                            self.set_var("_", item.clone());
                            let r = self.block(b, out);
                            self.set_var("_", saved);
                            match r {
                                Ok(()) => {}
                                Err(Flow::Break(None)) => break 'items,
                                Err(Flow::Continue(None)) => continue 'items,
                                Err(Flow::Break(Some(l)))
                                    if label
                                        .as_deref()
                                        .is_some_and(|x| x.eq_ignore_ascii_case(&l)) =>
                                {
                                    break 'items
                                }
                                Err(e) => return Err(e),
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn flow_control(&mut self, stmt: Node<'_>, out: &mut Vec<Value>) -> R<()> {
        let kids = children(stmt);
        let keyword = kids
            .first()
            .map(|k| self.text(*k).to_ascii_lowercase())
            .unwrap_or_default();
        let arg = kids.get(1).copied();
        match keyword.as_str() {
            "break" | "continue" => {
                let label = arg.map(|a| self.text(a).trim_start_matches(':').to_string());
                if keyword == "break" {
                    Err(Flow::Break(label))
                } else {
                    Err(Flow::Continue(label))
                }
            }
            "return" => {
                if let Some(a) = arg {
                    let v = self.pipeline_value(a)?;
                    if !self.void {
                        emit(v, out);
                    }
                }
                Err(Flow::Return)
            }
            "exit" => {
                let code = match arg {
                    Some(a) => self.pipeline_value(a)?.as_i64().unwrap_or(0) as i32,
                    None => 0,
                };
                Err(Flow::Exit(code))
            }
            _ => {
                // throw
                let value = match arg {
                    Some(a) => Some(self.pipeline_value(a)?),
                    None => None,
                };
                let mut rec = match value {
                    None => match self.lookup("_") {
                        Value::Error(e) => (*e).clone(),
                        _ => ErrorRecord::new(
                            "ScriptHalted",
                            "System.Management.Automation.RuntimeException",
                            "ScriptHalted",
                            "OperationStopped",
                        ),
                    },
                    Some(Value::Error(e)) => (*e).clone(),
                    Some(Value::Object(o)) if o.borrow().type_name.ends_with("Exception") => {
                        let b = o.borrow();
                        let msg = b.get("Message").map(|m| m.to_str()).unwrap_or_default();
                        let mut r = ErrorRecord::runtime(msg);
                        r.exception_type = b.type_name.clone();
                        if let Some(h) = b.get("HResult").and_then(|h| h.as_i64()) {
                            r.hresult = h as i32;
                        }
                        r
                    }
                    Some(v) => {
                        let mut r = ErrorRecord::runtime(v.to_str());
                        r.target_object = Some(Box::new(v));
                        r
                    }
                };
                rec.position = None;
                Err(self.err_at(rec, stmt, true))
            }
        }
    }

    fn try_statement(&mut self, stmt: Node<'_>, out: &mut Vec<Value>) -> R<()> {
        let body = child_of(stmt, "statement_block");
        let catches: Vec<Node<'_>> = child_of(stmt, "catch_clauses")
            .map(named)
            .unwrap_or_default();
        let finally = child_of(stmt, "finally_clause").and_then(|f| child_of(f, "statement_block"));
        self.try_depth += 1;
        let mut result = match body {
            Some(b) => self.block(b, out),
            None => Ok(()),
        };
        self.try_depth -= 1;
        if let Err(Flow::Error(e, _)) = &result {
            let e = e.clone();
            for c in &catches {
                let types: Vec<String> = child_of(*c, "catch_type_list")
                    .map(|l| {
                        named(l)
                            .iter()
                            .map(|t| dotnet::canonical_type(&self.text(*t)))
                            .collect()
                    })
                    .unwrap_or_default();
                let matches = types.is_empty()
                    || types.iter().any(|t| {
                        let t = t.to_ascii_lowercase();
                        t == "system.exception"
                            || t == e.exception_type.to_ascii_lowercase()
                            || (t == "system.management.automation.runtimeexception"
                                && e.exception_type.starts_with("System.Management.Automation"))
                            || (t == "system.io.ioexception"
                                && e.exception_type.starts_with("System.IO."))
                            || e.inner.as_ref().is_some_and(|(it, _, _)| {
                                it.eq_ignore_ascii_case(&t)
                                    || (t == "system.io.ioexception"
                                        && it.starts_with("System.IO."))
                            })
                    });
                if matches {
                    self.record_error(&e);
                    let saved = self.lookup("_");
                    self.set_var("_", Value::Error(Rc::new((*e).clone())));
                    result = match child_of(*c, "statement_block") {
                        Some(b) => self.block(b, out),
                        None => Ok(()),
                    };
                    self.set_var("_", saved);
                    break;
                }
            }
        }
        if let Some(f) = finally {
            if !matches!(result, Err(Flow::Abort(_))) {
                self.block(f, out)?;
            }
        }
        result
    }

    // ---------------------------------------------------------------- pipelines

    pub(crate) fn pipeline(&mut self, node: Node<'_>, out: &mut Vec<Value>) -> R<()> {
        let node = unwrap(node);
        if node.kind() != "pipeline" {
            if node.kind() == "assignment_expression" {
                self.assignment(node)?;
                return Ok(());
            }
            let v = self.expr(node)?;
            emit(v, out);
            return Ok(());
        }
        for chain in named(node) {
            match chain.kind() {
                "assignment_expression" => {
                    self.assignment(chain)?;
                }
                "pipeline_chain" => self.chain(chain, out)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn chain(&mut self, chain: Node<'_>, out: &mut Vec<Value>) -> R<()> {
        let kids = children(chain);
        let parts = kids
            .iter()
            .filter(|k| !matches!(k.kind(), "|" | "comment"))
            .count();
        let saved = self.direct;
        if parts > 1 {
            self.direct = false;
        }
        let r = self.chain_impl(chain, kids, out);
        self.direct = saved;
        r
    }

    fn chain_impl(&mut self, _chain: Node<'_>, kids: Vec<Node<'_>>, out: &mut Vec<Value>) -> R<()> {
        let mut stage: Vec<Value> = Vec::new();
        let mut first = true;
        let mut redirects = Vec::new();
        let mut i = 0;
        while i < kids.len() {
            let k = kids[i];
            match k.kind() {
                "|" => {}
                "command" => {
                    let input = std::mem::take(&mut stage);
                    stage = self.command(k, input, first)?;
                    first = false;
                }
                "redirections" => redirects.extend(named(k)),
                "verbatim_command_argument" => {}
                "comment" => {}
                _ => {
                    // The leading expression.
                    let u = unwrap(k);
                    self.void = false;
                    let v = self.expr(k)?;
                    let voided = self.void
                        && matches!(
                            u.kind(),
                            "invokation_expression"
                                | "expression_with_unary_operator"
                                | "cast_expression"
                                | "post_increment_expression"
                                | "post_decrement_expression"
                                | "pre_increment_expression"
                                | "pre_decrement_expression"
                        );
                    self.void = false;
                    if !voided {
                        emit(v, &mut stage);
                    }
                    first = false;
                }
            }
            i += 1;
        }
        for r in redirects {
            let (target, append, stream) = self.redirection_parts(r)?;
            if stream == "2" || stream == "*" {
                // Expression errors are already raised; nothing more to route.
            }
            if stream == "1" || stream == "*" || stream.is_empty() {
                if let Some(t) = target {
                    self.redirect_to_file(&t, append, &stage)?;
                    stage.clear();
                }
            }
        }
        out.extend(stage);
        Ok(())
    }

    fn redirection_parts(&mut self, r: Node<'_>) -> R<(Option<String>, bool, String)> {
        let kids = children(r);
        let op = kids.first().map(|k| self.text(*k)).unwrap_or_default();
        let stream: String = op
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '*')
            .collect();
        let append = op.contains(">>");
        if op.contains('&') {
            return Ok((None, false, stream));
        }
        let target_node = kids.get(1).map(|t| {
            if t.kind() == "redirected_file_name" {
                named(*t)
                    .into_iter()
                    .rfind(|n| n.kind() != "command_argument_sep")
                    .unwrap_or(*t)
            } else {
                *t
            }
        });
        let target = match target_node {
            Some(t) => {
                let v = self.arg_value(t)?;
                if v.is_null() {
                    None
                } else {
                    Some(v.to_str())
                }
            }
            None => None,
        };
        Ok((
            target.or(Some(String::new())).filter(|s| !s.is_empty()),
            append,
            stream,
        ))
    }

    fn redirect_to_file(&mut self, target: &str, append: bool, values: &[Value]) -> R<()> {
        if target.eq_ignore_ascii_case("$null") || target.is_empty() {
            return Ok(());
        }
        let text = format::out_string(values);
        crate::cmdlets::write_text_file(
            self,
            target,
            &text,
            crate::value::Encoding::Unicode,
            append,
        )
        .map_err(|e| Flow::Error(Box::new(e), false))
    }

    /// Evaluates one command argument node to a value.
    fn arg_value(&mut self, node: Node<'_>) -> R<Value> {
        let u = unwrap(node);
        match u.kind() {
            "generic_token" | "command_name" | "path_command_name" | "path_command_name_token" => {
                Ok(self.bare_word(u))
            }
            "command_argument_sep" => Ok(Value::Null),
            _ => self.expr(u),
        }
    }

    fn bare_word(&mut self, node: Node<'_>) -> Value {
        let t = self.text(node);
        if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
            if let Some(v) = crate::value::parse_number(&t) {
                return v;
            }
        }
        // Bare words may hold `$var` (tree-sitter keeps them in the token).
        if t.contains('$') {
            let expanded = self.expand_bare(&t);
            return Value::Str(expanded);
        }
        Value::Str(t.replace('`', ""))
    }

    fn expand_bare(&self, t: &str) -> String {
        let mut out = String::new();
        let chars: Vec<char> = t.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] == '$'
                && i + 1 < chars.len()
                && (chars[i + 1].is_ascii_alphanumeric() || chars[i + 1] == '_')
            {
                let mut j = i + 1;
                while j < chars.len()
                    && (chars[j].is_ascii_alphanumeric()
                        || chars[j] == '_'
                        || (chars[j] == ':' && j + 1 < chars.len() && chars[j + 1] != '\\'))
                {
                    j += 1;
                }
                let name: String = chars[i + 1..j].iter().collect();
                out.push_str(&self.get_var(&name).to_str());
                i = j;
            } else {
                out.push(chars[i]);
                i += 1;
            }
        }
        out
    }

    /// Runs one command of a pipeline.
    fn command(&mut self, cmd: Node<'_>, input: Vec<Value>, first: bool) -> R<Vec<Value>> {
        self.step()?;
        let kids = children(cmd);
        let mut name_val: Option<Value> = None;
        let mut dot = false;
        let mut invoke_op = false;
        let mut elements = None;
        for k in &kids {
            match k.kind() {
                "command_invokation_operator" => {
                    invoke_op = true;
                    dot = self.text(*k) == ".";
                }
                "command_name" => {
                    name_val = Some(Value::Str(self.text(*k)));
                }
                "path_command_name" => {
                    name_val = Some(self.path_command(*k)?);
                }
                "command_elements" => elements = Some(*k),
                "comment" => {}
                _ => {
                    if name_val.is_none() {
                        name_val = Some(self.expr(unwrap(*k))?);
                    }
                }
            }
        }
        if let Some(n) = cmd.child_by_field_name("command_name") {
            if n.kind() == "path_command_name" {
            } else if !invoke_op {
                name_val = Some(Value::Str(self.text(n)));
            } else if name_val.is_none() {
                name_val = Some(self.arg_value(n)?);
            }
        }
        let name_val = name_val.unwrap_or_default();
        // tree-sitter-powershell reads `1..5` (and other digit-led expressions) at the start
        // of a statement as a command name; PowerShell reads an expression.
        if !invoke_op && first {
            if let Value::Str(n) = &name_val {
                if n.starts_with(|c: char| c.is_ascii_digit()) {
                    let text = self.text(cmd);
                    if let Some(v) = crate::value::parse_number(&text) {
                        return Ok(vec![v]);
                    }
                    return self.reparsed_expression(&text, cmd).map(|v| {
                        let mut out = Vec::new();
                        emit(v, &mut out);
                        out
                    });
                }
            }
        }
        // Arguments.
        let mut raw: Vec<RawArg> = Vec::new();
        let mut err_target = ErrTarget::Console;
        let mut out_file: Option<(String, bool)> = None;
        let mut merge_all = false;
        if let Some(el) = elements {
            let ek = children(el);
            let mut colon_for: Option<usize> = None;
            let mut join_next = false;
            let mut i = 0;
            while i < ek.len() {
                let k = ek[i];
                i += 1;
                match k.kind() {
                    "command_parameter" => {
                        let t = self.text(k);
                        let (n, v) = match t.split_once('=') {
                            Some((a, b)) if a.starts_with("--") => (
                                a.trim_start_matches('-').to_string(),
                                Some(Value::Str(b.to_string())),
                            ),
                            _ => (
                                t.trim_start_matches('-').trim_end_matches(':').to_string(),
                                None,
                            ),
                        };
                        if t.ends_with(':') {
                            colon_for = Some(raw.len());
                        }
                        raw.push(RawArg::Param { name: n, value: v });
                        // `-Name:value`: the separator after is ':'.
                        if let Some(next) = ek.get(i) {
                            if next.kind() == "command_argument_sep"
                                && self.text(*next).contains(':')
                            {
                                colon_for = Some(raw.len() - 1);
                                i += 1;
                            }
                        }
                    }
                    "command_argument_sep" => {}
                    "," => join_next = true,
                    "redirection" => {
                        let (target, append, stream) = self.redirection_parts(k)?;
                        let op = self.text(k);
                        if op.contains("2>&1") {
                            err_target = ErrTarget::Output;
                        } else if op.contains("*>&1") {
                            merge_all = true;
                        } else if stream == "2" {
                            err_target = match &target {
                                None => ErrTarget::Null,
                                Some(t) if t.is_empty() => ErrTarget::Null,
                                Some(_) => ErrTarget::Null,
                            };
                        } else if stream.is_empty() || stream == "1" || stream == "*" {
                            if stream == "*" {
                                err_target = ErrTarget::Null;
                            }
                            if let Some(t) = target {
                                out_file = Some((t, append));
                            } else {
                                out_file = Some(("$null".into(), append));
                            }
                        }
                    }
                    "stop_parsing" => {
                        let t = self.text(k);
                        for w in t.trim_start_matches("--%").split_whitespace() {
                            raw.push(RawArg::Value(Value::Str(w.to_string())));
                        }
                    }
                    "argument_list" => {
                        // `f (1)(2)` style: append as another value.
                        let v = self.argument_list(k)?;
                        raw.push(RawArg::Value(Value::array(v)));
                    }
                    "comment" => {}
                    _ => {
                        let text = self.text(k);
                        // Redirections tree-sitter leaves inside a token: `2>$null`, `2>&1`, `>file`.
                        if k.kind() == "generic_token" {
                            if let Some((stream, rest)) = split_redirect(&text) {
                                let append = rest.starts_with(">>");
                                let target = rest.trim_start_matches('>').to_string();
                                if target == "&1" {
                                    if stream == "2" {
                                        err_target = ErrTarget::Output;
                                    } else if stream == "*" {
                                        merge_all = true;
                                    }
                                } else if stream == "2" {
                                    err_target = ErrTarget::Null;
                                } else {
                                    if stream == "*" {
                                        err_target = ErrTarget::Null;
                                    }
                                    let t = if let Some(v) = target.strip_prefix('$') {
                                        self.get_var(v).to_str()
                                    } else {
                                        target
                                    };
                                    let t = if t.is_empty() { "$null".to_string() } else { t };
                                    out_file = Some((t, append));
                                }
                                continue;
                            }
                        }
                        let v = if k.kind() == "variable" || unwrap(k).kind() == "variable" {
                            let var = unwrap(k);
                            let (vn, splat) = self.var_name(var);
                            if splat {
                                match self.get_var(&vn) {
                                    Value::Hashtable(h) => {
                                        for (key, val) in h.borrow().entries.iter() {
                                            raw.push(RawArg::Param {
                                                name: key.to_str(),
                                                value: Some(val.clone()),
                                            });
                                        }
                                    }
                                    other => {
                                        for x in other.enumerate() {
                                            raw.push(RawArg::Value(x));
                                        }
                                    }
                                }
                                continue;
                            }
                            self.arg_value(k)?
                        } else {
                            self.arg_value(k)?
                        };
                        if let Some(pi) = colon_for.take() {
                            if let Some(RawArg::Param { value, .. }) = raw.get_mut(pi) {
                                *value = Some(v);
                                continue;
                            }
                        }
                        if join_next {
                            join_next = false;
                            if let Some(RawArg::Value(prev)) = raw.last_mut() {
                                let mut items = match &*prev {
                                    Value::Array(a) => a.borrow().clone(),
                                    other => vec![other.clone()],
                                };
                                items.push(v);
                                *prev = Value::array(items);
                                continue;
                            }
                        }
                        raw.push(RawArg::Value(v));
                    }
                }
            }
        }
        let _ = merge_all;
        // Common parameters.
        let mut action = self.eap();
        raw.retain(|a| match a {
            RawArg::Param { name, value } => {
                let l = name.to_ascii_lowercase();
                if (l == "erroraction" || l == "ea") && value.is_some() {
                    if let Some(v) = value {
                        action = Action::parse(&v.to_str());
                    }
                    false
                } else {
                    true
                }
            }
            _ => true,
        });
        // `-ErrorAction Stop` written with a space: value follows as the next raw arg.
        let mut fixed = Vec::with_capacity(raw.len());
        let mut it = raw.into_iter().peekable();
        while let Some(a) = it.next() {
            if let RawArg::Param { name, value: None } = &a {
                let l = name.to_ascii_lowercase();
                if l == "erroraction"
                    || l == "ea"
                    || l == "errorvariable"
                    || l == "ev"
                    || l == "warningaction"
                    || l == "wa"
                    || l == "outvariable"
                    || l == "informationaction"
                {
                    if let Some(RawArg::Value(v)) = it.peek() {
                        if l == "erroraction" || l == "ea" {
                            action = Action::parse(&v.to_str());
                        }
                        it.next();
                    }
                    continue;
                }
            }
            fixed.push(a);
        }
        let raw = fixed;
        let ctx = Ctx {
            action,
            err: err_target,
            name: String::new(),
            start: cmd.start_byte(),
            end: cmd.end_byte(),
        };
        let _ = first;
        let result = match name_val {
            Value::ScriptBlock(sb) => {
                let args = raw;
                self.invoke_block_args(&sb, args, input, dot)
            }
            other => {
                let name = other.to_str();
                let ctx = Ctx {
                    name: name.clone(),
                    ..ctx
                };
                self.invoke_command(&name, raw, input, &ctx)
            }
        };
        let output = result?;
        if let Some((target, append)) = out_file {
            self.redirect_to_file(&target, append, &output)?;
            return Ok(Vec::new());
        }
        Ok(output)
    }

    /// Handles a non-terminating error from a command according to its ErrorAction.
    pub(crate) fn non_terminating(
        &mut self,
        e: ErrorRecord,
        ctx: &Ctx,
        out: &mut Vec<Value>,
    ) -> R<()> {
        let mut e = self.located(e, ctx.start, ctx.end);
        if e.command.is_none() && !ctx.name.is_empty() {
            e.command = Some(ctx.name.clone());
        }
        self.failed = true;
        if ctx.action != Action::Ignore {
            self.record_error(&e);
        }
        match ctx.action {
            Action::Stop => {
                let mut e = e;
                e.exception_type = if e.exception_type.is_empty() {
                    "System.Management.Automation.ActionPreferenceStopException".into()
                } else {
                    e.exception_type
                };
                Err(Flow::Error(Box::new(e), true))
            }
            Action::Silent | Action::Ignore => Ok(()),
            Action::Continue => {
                match ctx.err {
                    ErrTarget::Console => self.write_error(&e),
                    ErrTarget::Null => {}
                    ErrTarget::Output => out.push(Value::Error(Rc::new(e))),
                }
                self.check_output()
            }
        }
    }

    fn invoke_command(
        &mut self,
        name: &str,
        raw: Vec<RawArg>,
        input: Vec<Value>,
        ctx: &Ctx,
    ) -> R<Vec<Value>> {
        let lower = name.to_ascii_lowercase();
        let canonical = crate::cmdlets::resolve_alias(&lower);
        if let Some(f) = self.functions.get(canonical.as_str()).cloned() {
            return self.call_function(&f, raw, input, false);
        }
        if let Some(r) = crate::cmdlets::builtin(self, &canonical, &raw, input.clone(), ctx) {
            return r;
        }
        let switches = self.host.switches(name);
        let args = BoundArgs::bind(raw, switches);
        match self.host.command(name, &args, &input) {
            HostResult::NotFound => {
                let e = ErrorRecord::not_recognized(name);
                Err(Flow::Error(
                    Box::new(self.located(e, ctx.start, ctx.start + name.len())),
                    false,
                ))
            }
            HostResult::Error(mut e) => {
                if e.command.is_none() {
                    e.command = Some(name.to_string());
                }
                self.failed = true;
                Err(Flow::Error(
                    Box::new(self.located(e, ctx.start, ctx.end)),
                    false,
                ))
            }
            HostResult::Output(o) => {
                let mut out = o.values;
                if let Some(code) = o.exit_code {
                    self.scopes[0].insert("lastexitcode".into(), Value::Int(i64::from(code)));
                    if code != 0 {
                        self.failed = true;
                    }
                }
                if !o.stderr.is_empty() && ctx.err == ErrTarget::Console {
                    self.stderr.push_str(&o.stderr);
                    if !o.stderr.ends_with('\n') {
                        self.stderr.push_str("\r\n");
                    }
                }
                for e in o.errors {
                    self.non_terminating(e, ctx, &mut out)?;
                }
                Ok(out)
            }
        }
    }

    // ---------------------------------------------------------------- functions and blocks

    fn call_function(
        &mut self,
        f: &Rc<FuncDef>,
        raw: Vec<RawArg>,
        input: Vec<Value>,
        dot: bool,
    ) -> R<Vec<Value>> {
        let source = f.source.clone();
        let Some(node) = source.find(f.start, f.end, "function_statement") else {
            return Ok(Vec::new());
        };
        let prev = self.src.replace(source.clone());
        let is_filter = children(node)
            .first()
            .is_some_and(|k| source.node_text(*k).eq_ignore_ascii_case("filter"));
        let sb = child_of(node, "script_block");
        let params = child_of(node, "function_parameter_declaration")
            .and_then(|d| child_of(d, "parameter_list"))
            .or_else(|| sb.and_then(|b| child_of(b, "param_block")));
        let r = self.invoke_callable(params, sb, raw, input, dot, is_filter);
        self.src = prev;
        r
    }

    /// Invokes a script block value with already-evaluated arguments.
    pub(crate) fn invoke_block(
        &mut self,
        sb: &Rc<ScriptBlock>,
        args: Vec<Value>,
        dollar: Option<Value>,
        new_scope: bool,
    ) -> R<Vec<Value>> {
        let saved = std::mem::replace(&mut self.direct, false);
        let r = self.invoke_block_impl(sb, args, dollar, new_scope);
        self.direct = saved;
        r
    }

    fn invoke_block_impl(
        &mut self,
        sb: &Rc<ScriptBlock>,
        args: Vec<Value>,
        dollar: Option<Value>,
        new_scope: bool,
    ) -> R<Vec<Value>> {
        let source = sb.source.clone();
        let Some(node) = source.find(sb.start, sb.end, sb.kind) else {
            return Ok(Vec::new());
        };
        let prev = self.src.replace(source.clone());
        let params = child_of(node, "param_block")
            .or_else(|| child_of(node, "script_block").and_then(|s| child_of(s, "param_block")));
        let body = child_of(node, "script_block");
        let raw: Vec<RawArg> = args.into_iter().map(RawArg::Value).collect();
        let r = if new_scope {
            let saved = dollar.map(|d| {
                let old = self.lookup("_");
                self.set_var("_", d);
                old
            });
            let r = self.invoke_callable(params, body, raw, Vec::new(), false, false);
            if let Some(old) = saved {
                self.set_var("_", old);
            }
            r
        } else {
            // ForEach-Object / Where-Object: the caller's scope, `$_` set.
            let old = self.lookup("_");
            if let Some(d) = dollar {
                self.set_var("_", d);
            }
            let mut out = Vec::new();
            let r = match body
                .and_then(|b| child_of(b, "script_block_body"))
                .and_then(|b| child_of(b, "statement_list"))
            {
                Some(list) => {
                    self.calls += 1;
                    let r = if self.calls > self.limits.max_calls {
                        Err(call_depth_error())
                    } else {
                        self.statements(list, &mut out)
                    };
                    self.calls -= 1;
                    r
                }
                None => Ok(()),
            };
            self.set_var("_", old);
            match r {
                Ok(()) | Err(Flow::Return) => Ok(out),
                Err(e) => Err(e),
            }
        };
        self.src = prev;
        r
    }

    fn invoke_block_args(
        &mut self,
        sb: &Rc<ScriptBlock>,
        raw: Vec<RawArg>,
        input: Vec<Value>,
        dot: bool,
    ) -> R<Vec<Value>> {
        let source = sb.source.clone();
        let Some(node) = source.find(sb.start, sb.end, sb.kind) else {
            return Ok(Vec::new());
        };
        let prev = self.src.replace(source.clone());
        let params = child_of(node, "param_block")
            .or_else(|| child_of(node, "script_block").and_then(|s| child_of(s, "param_block")));
        let body = child_of(node, "script_block");
        let r = self.invoke_callable(params, body, raw, input, dot, false);
        self.src = prev;
        r
    }

    fn invoke_callable(
        &mut self,
        params: Option<Node<'_>>,
        body: Option<Node<'_>>,
        raw: Vec<RawArg>,
        input: Vec<Value>,
        dot: bool,
        filter: bool,
    ) -> R<Vec<Value>> {
        let saved = std::mem::replace(&mut self.direct, false);
        let r = self.invoke_callable_impl(params, body, raw, input, dot, filter);
        self.direct = saved;
        r
    }

    fn invoke_callable_impl(
        &mut self,
        params: Option<Node<'_>>,
        body: Option<Node<'_>>,
        raw: Vec<RawArg>,
        input: Vec<Value>,
        dot: bool,
        filter: bool,
    ) -> R<Vec<Value>> {
        self.calls += 1;
        if self.calls > self.limits.max_calls {
            self.calls -= 1;
            return Err(call_depth_error());
        }
        if !dot {
            self.scopes.push(HashMap::new());
        }
        let r = self.invoke_callable_inner(params, body, raw, input, filter);
        if !dot {
            self.scopes.pop();
        }
        self.calls -= 1;
        r
    }

    fn invoke_callable_inner(
        &mut self,
        params: Option<Node<'_>>,
        body: Option<Node<'_>>,
        raw: Vec<RawArg>,
        input: Vec<Value>,
        filter: bool,
    ) -> R<Vec<Value>> {
        let mut rest = Vec::new();
        let bound = self.bind_params(params, raw, &mut rest)?;
        for (k, v) in bound {
            self.set_var(&k, v);
        }
        self.set_var("args", Value::array(rest));
        self.set_var("input", Value::array(input.clone()));
        let mut out = Vec::new();
        let Some(body) = body else { return Ok(out) };
        let Some(sbb) = child_of(body, "script_block_body") else {
            return Ok(out);
        };
        let r = if let Some(named_blocks) = child_of(sbb, "named_block_list") {
            let mut r = Ok(());
            for nb in named(named_blocks) {
                let bname = child_of(nb, "block_name")
                    .map(|b| self.text(b).to_ascii_lowercase())
                    .unwrap_or_default();
                let Some(sblock) = child_of(nb, "statement_block") else {
                    continue;
                };
                if bname == "process" {
                    let items = if input.is_empty() {
                        vec![Value::Null]
                    } else {
                        input.clone()
                    };
                    for item in items {
                        self.set_var("_", item);
                        r = self.block(sblock, &mut out);
                        if r.is_err() {
                            break;
                        }
                    }
                } else {
                    r = self.block(sblock, &mut out);
                }
                if r.is_err() {
                    break;
                }
            }
            r
        } else if let Some(list) = child_of(sbb, "statement_list") {
            if filter {
                let mut r = Ok(());
                for item in input {
                    self.set_var("_", item);
                    r = self.statements(list, &mut out);
                    if r.is_err() {
                        break;
                    }
                }
                r
            } else {
                self.statements(list, &mut out)
            }
        } else {
            Ok(())
        };
        match r {
            Ok(()) | Err(Flow::Return) => Ok(out),
            Err(e) => Err(e),
        }
    }

    /// Binds arguments to declared parameters; returns (name, value) pairs; leftovers go to
    /// `rest` (`$args`).
    fn bind_params(
        &mut self,
        params: Option<Node<'_>>,
        raw: Vec<RawArg>,
        rest: &mut Vec<Value>,
    ) -> R<Vec<(String, Value)>> {
        struct P<'t> {
            name: String,
            ty: Option<String>,
            default: Option<Node<'t>>,
            mandatory: bool,
            switch: bool,
        }
        let list = params.and_then(|p| {
            if p.kind() == "parameter_list" {
                Some(p)
            } else {
                child_of(p, "parameter_list")
            }
        });
        let mut decl: Vec<P<'_>> = Vec::new();
        if let Some(list) = list {
            for sp in named(list) {
                if sp.kind() != "script_parameter" {
                    continue;
                }
                let Some(var) = child_of(sp, "variable") else {
                    continue;
                };
                let (name, _) = self.var_name(var);
                let mut ty = None;
                let mut mandatory = false;
                if let Some(attrs) = child_of(sp, "attribute_list") {
                    for a in named(attrs) {
                        let t = self.text(a);
                        let lower = t.to_ascii_lowercase();
                        if lower.starts_with("[parameter") {
                            if lower.contains("mandatory")
                                && !lower.contains("mandatory=$false")
                                && !lower.contains("mandatory = $false")
                            {
                                mandatory = true;
                            }
                        } else if lower.starts_with("[validate")
                            || lower.starts_with("[alias")
                            || lower.starts_with("[allow")
                            || lower.starts_with("[cmdletbinding")
                        {
                        } else {
                            ty = Some(dotnet::canonical_type(&t));
                        }
                    }
                }
                let default = child_of(sp, "script_parameter_default")
                    .and_then(|d| named(d).into_iter().next());
                let switch = ty.as_deref().is_some_and(|t| {
                    t.eq_ignore_ascii_case("System.Management.Automation.SwitchParameter")
                });
                decl.push(P {
                    name,
                    ty,
                    default,
                    mandatory,
                    switch,
                });
            }
        }
        let mut values: Vec<Option<Value>> = vec![None; decl.len()];
        let mut positional = Vec::new();
        let mut i = 0;
        let find = |n: &str, decl: &[P<'_>]| -> Option<usize> {
            decl.iter()
                .position(|p| p.name.eq_ignore_ascii_case(n))
                .or_else(|| {
                    let hits: Vec<usize> = decl
                        .iter()
                        .enumerate()
                        .filter(|(_, p)| {
                            p.name.len() >= n.len()
                                && p.name
                                    .get(..n.len())
                                    .is_some_and(|f| f.eq_ignore_ascii_case(n))
                        })
                        .map(|(i, _)| i)
                        .collect();
                    if hits.len() == 1 {
                        Some(hits[0])
                    } else {
                        None
                    }
                })
        };
        while i < raw.len() {
            match &raw[i] {
                RawArg::Param { name, value } => match find(name, &decl) {
                    Some(pi) => {
                        if let Some(v) = value {
                            values[pi] = Some(v.clone());
                        } else if decl[pi].switch {
                            values[pi] = Some(Value::Bool(true));
                        } else if let Some(RawArg::Value(v)) = raw.get(i + 1) {
                            values[pi] = Some(v.clone());
                            i += 1;
                        } else {
                            return Err(Flow::Error(
                                Box::new(ErrorRecord::new(
                                    format!("Missing an argument for parameter '{}'. Specify a parameter of type '{}' and try again.", decl[pi].name, decl[pi].ty.clone().unwrap_or_else(|| "System.Object".into())),
                                    "System.Management.Automation.ParameterBindingException",
                                    "MissingArgument",
                                    "InvalidArgument",
                                )),
                                false,
                            ));
                        }
                    }
                    None => {
                        if decl.is_empty() {
                            rest.push(Value::Str(format!("-{name}")));
                            if let Some(v) = value {
                                rest.push(v.clone());
                            }
                        } else {
                            return Err(Flow::Error(
                                Box::new(ErrorRecord::new(
                                    format!("A parameter cannot be found that matches parameter name '{name}'."),
                                    "System.Management.Automation.ParameterBindingException",
                                    "NamedParameterNotFound",
                                    "InvalidArgument",
                                )),
                                false,
                            ));
                        }
                    }
                },
                RawArg::Value(v) => positional.push(v.clone()),
            }
            i += 1;
        }
        let mut pos = positional.into_iter();
        for (pi, p) in decl.iter().enumerate() {
            if values[pi].is_none() && !p.switch {
                if let Some(v) = pos.next() {
                    values[pi] = Some(v);
                }
            }
        }
        rest.extend(pos);
        let mut bound = Vec::new();
        for (pi, p) in decl.iter().enumerate() {
            let v = match values[pi].take() {
                Some(v) => v,
                None => {
                    if p.mandatory {
                        return Err(Flow::Error(
                            Box::new(ErrorRecord::new(
                                format!("Cannot process command because of one or more missing mandatory parameters: {}.", p.name),
                                "System.Management.Automation.ParameterBindingException",
                                "MissingMandatoryParameter",
                                "InvalidArgument",
                            )),
                            false,
                        ));
                    }
                    match p.default {
                        Some(d) => self.expr(d)?,
                        None if p.switch => Value::Bool(false),
                        None => Value::Null,
                    }
                }
            };
            let v = match &p.ty {
                Some(t)
                    if !v.is_null()
                        || t.eq_ignore_ascii_case("System.String")
                        || t.eq_ignore_ascii_case("System.Int32")
                        || t.eq_ignore_ascii_case("System.Boolean") =>
                {
                    dotnet::convert(&v, t).map_err(|e| {
                        let mut e = e;
                        e.message = format!(
                            "Cannot process argument transformation on parameter '{}'. {}",
                            p.name, e.message
                        );
                        e.fqid = "ParameterArgumentTransformationError".into();
                        Flow::Error(Box::new(e), false)
                    })?
                }
                _ => v,
            };
            bound.push((p.name.clone(), v));
        }
        Ok(bound)
    }

    // ---------------------------------------------------------------- assignment

    fn assignment(&mut self, node: Node<'_>) -> R<Value> {
        let saved = std::mem::replace(&mut self.direct, false);
        let r = self.assignment_impl(node);
        self.direct = saved;
        r
    }

    fn assignment_impl(&mut self, node: Node<'_>) -> R<Value> {
        let kids = children(node);
        let left = kids.first().copied();
        let op = kids
            .iter()
            .find(|k| k.kind() == "assignement_operator")
            .map(|k| self.text(*k))
            .unwrap_or_else(|| "=".into());
        let value_node = node.child_by_field_name("value");
        let mut value = match value_node {
            Some(v) => {
                if v.kind() == "pipeline" {
                    self.pipeline_value(v)?
                } else {
                    let mut out = Vec::new();
                    self.statement(v, &mut out, None)?;
                    collapse(out)
                }
            }
            None => Value::Null,
        };
        let Some(left) = left else {
            return Ok(Value::Null);
        };
        let target = unwrap(left);
        if op != "=" {
            let current = self.expr(target)?;
            let bop = &op[..1];
            value = ops::binary(bop, &current, &value)
                .map_err(|e| self.err_at(e, node, false))?
                .0;
        }
        self.assign_to(target, value.clone(), node)?;
        Ok(value)
    }

    fn assign_to(&mut self, target: Node<'_>, value: Value, stmt: Node<'_>) -> R<()> {
        match target.kind() {
            "variable" | "braced_variable" => {
                let (name, _) = self.var_name(target);
                // A typed variable keeps its type.
                self.set_var(&name, value);
                Ok(())
            }
            "expression_with_unary_operator" => {
                // [type]$x = value
                if let Some(cast) = child_of(target, "cast_expression") {
                    let ty = child_of(cast, "type_literal").map(|t| dotnet::canonical_type(&self.text(t))).unwrap_or_default();
                    let inner = child_of(cast, "unary_expression").map(unwrap);
                    let v = dotnet::convert(&value, &ty).map_err(|e| self.err_at(e, stmt, false))?;
                    if let Some(inner) = inner {
                        return self.assign_to(inner, v, stmt);
                    }
                }
                Err(self.err_at(ErrorRecord::new("The assignment expression is not valid. The input to an assignment operator must be an object that is able to accept assignments, such as a variable or a property.", "System.Management.Automation.ParseException", "InvalidLeftHandSide", "ParserError"), stmt, false))
            }
            "cast_expression" => {
                let ty = child_of(target, "type_literal").map(|t| dotnet::canonical_type(&self.text(t))).unwrap_or_default();
                let v = dotnet::convert(&value, &ty).map_err(|e| self.err_at(e, stmt, false))?;
                match child_of(target, "unary_expression").map(unwrap) {
                    Some(inner) => self.assign_to(inner, v, stmt),
                    None => Ok(()),
                }
            }
            "member_access" => {
                let kids = children(target);
                if kids.len() < 2 {
                    return Ok(());
                }
                let obj = self.expr(kids[0])?;
                let name = self.member_name(kids[kids.len() - 1])?;
                match &obj {
                    Value::Array(a) => {
                        let items = a.borrow().clone();
                        for it in items {
                            dotnet::set_property(&it, &name, value.clone()).map_err(|e| self.err_at(e, stmt, false))?;
                        }
                        Ok(())
                    }
                    _ => dotnet::set_property(&obj, &name, value).map_err(|e| self.err_at(e, stmt, false)),
                }
            }
            "element_access" => {
                let kids = named(target);
                if kids.len() < 2 {
                    return Ok(());
                }
                let obj = self.expr(kids[0])?;
                let idx = self.expr(kids[1])?;
                match &obj {
                    Value::Hashtable(h) => {
                        h.borrow_mut().set(idx, value);
                        Ok(())
                    }
                    Value::Array(a) => {
                        let mut a = a.borrow_mut();
                        let n = a.len() as i64;
                        let i = idx.as_i64().unwrap_or(0);
                        let i = if i < 0 { n + i } else { i };
                        if i < 0 || i >= n {
                            drop(a);
                            return Err(self.err_at(ErrorRecord::new("Index was outside the bounds of the array.", "System.IndexOutOfRangeException", "System.IndexOutOfRangeException", "OperationStopped"), stmt, false));
                        }
                        a[i as usize] = value;
                        Ok(())
                    }
                    Value::Object(_) => dotnet::set_property(&obj, &idx.to_str(), value).map_err(|e| self.err_at(e, stmt, false)),
                    Value::Null => Err(self.err_at(ErrorRecord::new("Cannot index into a null array.", "System.Management.Automation.RuntimeException", "NullArray", "InvalidOperation"), stmt, false)),
                    _ => Err(self.err_at(ErrorRecord::new(format!("Unable to index into an object of type {}.", obj.type_name()), "System.Management.Automation.RuntimeException", "CannotIndex", "InvalidOperation"), stmt, false)),
                }
            }
            "array_literal_expression" => {
                let targets: Vec<Node<'_>> = named(target).into_iter().map(unwrap).collect();
                let items = value.enumerate();
                let n = targets.len();
                for (i, t) in targets.iter().enumerate() {
                    let v = if i + 1 == n && items.len() > n {
                        Value::array(items[i..].to_vec())
                    } else {
                        items.get(i).cloned().unwrap_or_default()
                    };
                    self.assign_to(*t, v, stmt)?;
                }
                Ok(())
            }
            "parenthesized_expression" => match child_of(target, "pipeline").and_then(|p| self.pure_expression(p)) {
                Some(e) => self.assign_to(unwrap(e), value, stmt),
                None => Ok(()),
            },
            _ => Err(self.err_at(ErrorRecord::new("The assignment expression is not valid. The input to an assignment operator must be an object that is able to accept assignments, such as a variable or a property.", "System.Management.Automation.ParseException", "InvalidLeftHandSide", "ParserError"), stmt, false)),
        }
    }

    // ---------------------------------------------------------------- expressions

    pub(crate) fn expr(&mut self, node: Node<'_>) -> R<Value> {
        let node = unwrap(node);
        self.enter()?;
        let r = self.expr_inner(node);
        self.depth -= 1;
        r
    }

    fn expr_inner(&mut self, node: Node<'_>) -> R<Value> {
        match node.kind() {
            "variable" | "braced_variable" => {
                let (name, _) = self.var_name(node);
                Ok(self.get_var(&name))
            }
            "decimal_integer_literal" | "hexadecimal_integer_literal" | "real_literal" => {
                let t = self.text(node);
                crate::value::parse_number(&t).ok_or_else(|| {
                    self.err_at(
                        ErrorRecord::new(
                            format!("The numeric constant {t} is not valid."),
                            "System.Management.Automation.ParseException",
                            "BadNumericConstant",
                            "ParserError",
                        ),
                        node,
                        true,
                    )
                })
            }
            "verbatim_string_characters" => {
                let t = self.text(node);
                let inner = t.get(1..t.len().saturating_sub(1)).unwrap_or("");
                Ok(Value::Str(inner.replace("''", "'")))
            }
            "verbatim_here_string_characters" => {
                let t = self.text(node);
                Ok(Value::Str(here_body(&t)))
            }
            "expandable_string_literal" | "expandable_here_string_literal" => {
                self.expand_string(node)
            }
            "parenthesized_expression" => {
                let Some(p) = child_of(node, "pipeline") else {
                    return Ok(Value::Null);
                };
                self.pipeline_value(p)
            }
            "sub_expression" => {
                let mut out = Vec::new();
                if let Some(list) = child_of(node, "statement_list") {
                    let saved = std::mem::replace(&mut self.direct, false);
                    let r = self.statements(list, &mut out);
                    self.direct = saved;
                    r?;
                }
                Ok(collapse(out))
            }
            "array_expression" => {
                let mut out = Vec::new();
                if let Some(list) = child_of(node, "statement_list") {
                    let saved = std::mem::replace(&mut self.direct, false);
                    let r = self.statements(list, &mut out);
                    self.direct = saved;
                    r?;
                }
                Ok(Value::array(out))
            }
            "script_block_expression" => Ok(Value::ScriptBlock(Rc::new(ScriptBlock {
                source: match self.src.clone() {
                    Some(s) => s,
                    None => return Ok(Value::Null),
                },
                start: node.start_byte(),
                end: node.end_byte(),
                kind: "script_block_expression",
            }))),
            "hash_literal_expression" => self.hash_literal(node, false),
            "type_literal" => Ok(Value::Type(dotnet::canonical_type(&self.text(node)))),
            "array_literal_expression" => {
                let mut items = Vec::new();
                for c in named(node) {
                    items.push(self.expr(c)?);
                }
                Ok(Value::array(items))
            }
            "range_expression" | "range_argument_expression" => {
                let k = named(node);
                if k.len() < 2 {
                    return Ok(Value::Null);
                }
                let a = self.expr(k[0])?;
                let b = self.expr(k[k.len() - 1])?;
                ops::range(&a, &b).map_err(|e| self.err_at(e, node, false))
            }
            "logical_expression" | "logical_argument_expression" => {
                let kids = children(node);
                if kids.len() != 3 {
                    return Ok(Value::Null);
                }
                let op = self.text(kids[1]).to_ascii_lowercase();
                let l = self.expr(kids[0])?;
                match op.as_str() {
                    "-and" => {
                        if !l.truthy() {
                            return Ok(Value::Bool(false));
                        }
                        Ok(Value::Bool(self.expr(kids[2])?.truthy()))
                    }
                    "-or" => {
                        if l.truthy() {
                            return Ok(Value::Bool(true));
                        }
                        Ok(Value::Bool(self.expr(kids[2])?.truthy()))
                    }
                    _ => {
                        let r = self.expr(kids[2])?;
                        Ok(Value::Bool(l.truthy() ^ r.truthy()))
                    }
                }
            }
            "bitwise_expression"
            | "comparison_expression"
            | "additive_expression"
            | "multiplicative_expression"
            | "format_expression"
            | "bitwise_argument_expression"
            | "comparison_argument_expression"
            | "additive_argument_expression"
            | "multiplicative_argument_expression"
            | "format_argument_expression" => {
                let kids = children(node);
                if kids.len() != 3 {
                    return Ok(Value::Null);
                }
                let l = self.expr(kids[0])?;
                let op = self.text(kids[1]);
                let r = self.expr(kids[2])?;
                let (v, m) = ops::binary(&op, &l, &r).map_err(|e| self.err_at(e, node, false))?;
                if let Some(m) = m {
                    self.set_var("Matches", m);
                }
                Ok(v)
            }
            "expression_with_unary_operator" => self.unary(node),
            "cast_expression" => self.cast(node),
            "pre_increment_expression" | "pre_decrement_expression" => {
                let Some(inner) = named(node).first().map(|n| unwrap(*n)) else {
                    return Ok(Value::Null);
                };
                let cur = self.expr(inner)?;
                let delta = if node.kind() == "pre_increment_expression" {
                    "+"
                } else {
                    "-"
                };
                let v = ops::binary(delta, &cur, &Value::Int(1))
                    .map_err(|e| self.err_at(e, node, false))?
                    .0;
                self.assign_to(inner, v.clone(), node)?;
                self.void = true;
                Ok(v)
            }
            "post_increment_expression" | "post_decrement_expression" => {
                let Some(inner) = named(node).first().map(|n| unwrap(*n)) else {
                    return Ok(Value::Null);
                };
                let cur = self.expr(inner)?;
                let delta = if node.kind() == "post_increment_expression" {
                    "+"
                } else {
                    "-"
                };
                let v = ops::binary(delta, &cur, &Value::Int(1))
                    .map_err(|e| self.err_at(e, node, false))?
                    .0;
                self.assign_to(inner, v, node)?;
                self.void = true;
                Ok(cur)
            }
            "member_access" => self.member_access(node),
            "element_access" => self.element_access(node),
            "invokation_expression" => self.invocation(node),
            "invokation_foreach_expression" => {
                let kids = named(node);
                if kids.len() < 2 {
                    return Ok(Value::Null);
                }
                let target = self.expr(kids[0])?;
                let sb = self.expr(kids[kids.len() - 1])?;
                match sb {
                    Value::ScriptBlock(sb) => {
                        let mut out = Vec::new();
                        for item in target.enumerate() {
                            out.extend(self.invoke_block(&sb, Vec::new(), Some(item), false)?);
                        }
                        Ok(Value::array(out))
                    }
                    _ => Ok(Value::Null),
                }
            }
            "pipeline" => self.pipeline_value(node),
            "assignment_expression" => self.assignment(node),
            "generic_token" | "command_name" => Ok(self.bare_word(node)),
            "path_command_name" => self.path_command(node),
            "simple_name" => Ok(Value::Str(self.text(node))),
            "argument_list" => Ok(Value::array(self.argument_list(node)?)),
            kind => Err(self.err_at(
                ErrorRecord::new(
                    format!("The emulated Windows PowerShell cannot evaluate '{kind}'."),
                    "System.Management.Automation.RuntimeException",
                    "NotSupported",
                    "NotImplemented",
                ),
                node,
                true,
            )),
        }
    }

    fn hash_literal(&mut self, node: Node<'_>, ordered: bool) -> R<Value> {
        let mut h = Hashtable {
            ordered,
            entries: Vec::new(),
        };
        if let Some(body) = child_of(node, "hash_literal_body") {
            for entry in named(body) {
                if entry.kind() != "hash_entry" {
                    continue;
                }
                let kids = named(entry);
                let Some(knode) = kids.first() else { continue };
                let k = unwrap(*knode);
                let key = if k.kind() == "simple_name" || k.kind() == "key_expression" {
                    Value::Str(self.text(k))
                } else {
                    self.expr(k)?
                };
                let value = match kids.get(1) {
                    Some(v) if v.kind() == "pipeline" => self.pipeline_value(*v)?,
                    Some(v) => {
                        let mut out = Vec::new();
                        self.statement(*v, &mut out, None)?;
                        collapse(out)
                    }
                    None => Value::Null,
                };
                if h.index_of(&key).is_some() {
                    return Err(self.err_at(
                        ErrorRecord::new(
                            format!(
                                "Duplicate keys '{}' are not allowed in hash literals.",
                                key.to_str()
                            ),
                            "System.Management.Automation.ParseException",
                            "DuplicateKeyInHashLiteral",
                            "ParserError",
                        ),
                        entry,
                        true,
                    ));
                }
                h.entries.push((key, value));
            }
        }
        Ok(Value::hashtable(h))
    }

    fn unary(&mut self, node: Node<'_>) -> R<Value> {
        let kids = children(node);
        if kids.len() == 1 {
            return self.expr(kids[0]);
        }
        if kids.len() < 2 {
            return Ok(Value::Null);
        }
        let op = self.text(kids[0]).to_ascii_lowercase();
        let v = self.expr(kids[1])?;
        match op.as_str() {
            "," => Ok(Value::array(vec![v])),
            "-not" | "!" => Ok(Value::Bool(!v.truthy())),
            "-bnot" => Ok(Value::Int(!v.as_i64().unwrap_or(0))),
            "+" => Ok(v.to_number().unwrap_or(v)),
            "-" => ops::negate(&v).map_err(|e| self.err_at(e, node, false)),
            "-split" => ops::binary("-split", &v, &Value::Str("\\s+".into()))
                .map(|(v, _)| {
                    Value::array(
                        v.enumerate()
                            .into_iter()
                            .filter(|s| !s.to_str().is_empty())
                            .collect(),
                    )
                })
                .map_err(|e| self.err_at(e, node, false)),
            "-join" => Ok(Value::Str(
                v.enumerate().iter().map(Value::to_str).collect(),
            )),
            _ => Ok(v),
        }
    }

    fn cast(&mut self, node: Node<'_>) -> R<Value> {
        let ty_node = child_of(node, "type_literal");
        let ty = ty_node
            .map(|t| dotnet::canonical_type(&self.text(t)))
            .unwrap_or_default();
        let inner = named(node).into_iter().find(|n| n.kind() != "type_literal");
        let Some(inner) = inner else {
            return Ok(Value::Null);
        };
        let iu = unwrap(inner);
        if ty == "ordered" {
            if iu.kind() == "hash_literal_expression" {
                return self.hash_literal(iu, true);
            }
            return Err(self.err_at(
                ErrorRecord::new(
                    "The ordered attribute can be specified only on a hash literal node.",
                    "System.Management.Automation.ParseException",
                    "OrderedAttributeOnlyOnHashLiteralNode",
                    "ParserError",
                ),
                node,
                true,
            ));
        }
        let v = self.expr(inner)?;
        if ty.eq_ignore_ascii_case("System.Void") {
            self.void = true;
            return Ok(Value::Null);
        }
        let r = dotnet::convert(&v, &ty).map_err(|e| self.err_at(e, node, false))?;
        self.void = false;
        Ok(r)
    }

    pub(crate) fn member_name(&mut self, node: Node<'_>) -> R<String> {
        let u = unwrap(node);
        if u.kind() == "member_name" {
            let kids = named(u);
            if let Some(k) = kids.first() {
                let k = unwrap(*k);
                if k.kind() == "simple_name" {
                    return Ok(self.text(k));
                }
                return Ok(self.expr(k)?.to_str());
            }
            return Ok(self.text(u));
        }
        Ok(self.text(u))
    }

    fn is_static(&self, node: Node<'_>) -> bool {
        children(node).iter().any(|c| c.kind() == "::")
    }

    fn member_access(&mut self, node: Node<'_>) -> R<Value> {
        let kids = children(node);
        if kids.len() < 2 {
            return Ok(Value::Null);
        }
        let target = self.expr(kids[0])?;
        let name = self.member_name(kids[kids.len() - 1])?;
        if self.is_static(node) {
            if let Value::Type(t) = &target {
                return dotnet::static_property(self.host, t, &name)
                    .map_err(|e| self.err_at(e, node, false));
            }
        }
        Ok(self.get_member(&target, &name))
    }

    /// `$x.Name` with member enumeration on arrays.
    pub(crate) fn get_member(&mut self, target: &Value, name: &str) -> Value {
        if let Some(v) = dotnet::property(target, name) {
            return v;
        }
        if let Value::Array(a) = target {
            let items = a.borrow().clone();
            let mut out = Vec::new();
            for it in items {
                let v = self.get_member(&it, name);
                if !v.is_null() {
                    emit(v, &mut out);
                }
            }
            return collapse(out);
        }
        Value::Null
    }

    fn element_access(&mut self, node: Node<'_>) -> R<Value> {
        let kids = named(node);
        if kids.len() < 2 {
            return Ok(Value::Null);
        }
        let target = self.expr(kids[0])?;
        let idx = self.expr(kids[1])?;
        index(&target, &idx).map_err(|e| self.err_at(e, node, false))
    }

    pub(crate) fn argument_list(&mut self, node: Node<'_>) -> R<Vec<Value>> {
        let mut out = Vec::new();
        if let Some(list) = child_of(node, "argument_expression_list") {
            for a in named(list) {
                out.push(self.expr(a)?);
            }
        }
        Ok(out)
    }

    fn invocation(&mut self, node: Node<'_>) -> R<Value> {
        let kids = children(node);
        if kids.is_empty() {
            return Ok(Value::Null);
        }
        let target = self.expr(kids[0])?;
        let name_node = kids.iter().find(|k| k.kind() == "member_name").copied();
        let name = match name_node {
            Some(n) => self.member_name(n)?,
            None => String::new(),
        };
        let args = match kids.iter().find(|k| k.kind() == "argument_list") {
            Some(a) => self.argument_list(*a)?,
            None => Vec::new(),
        };
        let r = self.call_method(&target, &name, args, self.is_static(node));
        self.void = false;
        match r {
            Ok(v) => {
                if v.is_null() {
                    self.void = true;
                }
                Ok(v)
            }
            Err(Flow::Error(e, t)) => Err(Flow::Error(
                Box::new(self.located(*e, node.start_byte(), node.end_byte())),
                t,
            )),
            Err(other) => Err(other),
        }
    }

    pub(crate) fn call_method(
        &mut self,
        target: &Value,
        name: &str,
        args: Vec<Value>,
        is_static: bool,
    ) -> R<Value> {
        let err = |e: ErrorRecord| Flow::Error(Box::new(e), false);
        if is_static {
            if let Value::Type(t) = target {
                if name.eq_ignore_ascii_case("new") {
                    return dotnet::new_object(t, &args).map_err(err);
                }
                return dotnet::static_method(self.host, t, name, &args).map_err(err);
            }
        }
        let lower = name.to_ascii_lowercase();
        // .Where({}) / .ForEach({}) on collections.
        if (lower == "where" || lower == "foreach")
            && matches!(args.first(), Some(Value::ScriptBlock(_)))
        {
            let Some(Value::ScriptBlock(sb)) = args.first() else {
                return Ok(Value::Null);
            };
            let sb = sb.clone();
            let mut out = Vec::new();
            for item in target.enumerate() {
                let r = self.invoke_block(&sb, Vec::new(), Some(item.clone()), false)?;
                if lower == "where" {
                    if collapse(r).truthy() {
                        out.push(item);
                    }
                } else {
                    out.extend(r);
                }
            }
            return Ok(Value::array(out));
        }
        if let Value::ScriptBlock(sb) = target {
            if lower == "invoke" || lower == "invokereturnasis" {
                let sb = sb.clone();
                return Ok(collapse(self.invoke_block(&sb, args, None, true)?));
            }
        }
        if let Value::Object(o) = target {
            let m = o.borrow().get(name);
            if let Some(Value::ScriptBlock(sb)) = m {
                return Ok(collapse(self.invoke_block(&sb, args, None, true)?));
            }
        }
        if let Some(r) = dotnet::instance_method(target, name, &args) {
            return r.map_err(err);
        }
        if let Some(r) = self.host.call_method(target, name, &args) {
            return r.map_err(err);
        }
        Err(err(ErrorRecord::new(
            format!(
                "Method invocation failed because [{}] does not contain a method named '{name}'.",
                target.type_name()
            ),
            "System.Management.Automation.RuntimeException",
            "MethodNotFound",
            "InvalidOperation",
        )))
    }

    fn expand_string(&mut self, node: Node<'_>) -> R<Value> {
        let text = self.text(node);
        let start = node.start_byte();
        let here = node.kind() == "expandable_here_string_literal";
        // The content range, in bytes relative to the node.
        let (cs, ce) = if here {
            let first_nl = text.find('\n').map(|i| i + 1).unwrap_or(text.len());
            let last = text.rfind('\n').unwrap_or(text.len());
            let last = if last > 0 && text.as_bytes().get(last - 1) == Some(&b'\r') {
                last - 1
            } else {
                last
            };
            (first_nl, last.max(first_nl))
        } else {
            (
                1.min(text.len()),
                text.len().saturating_sub(1).max(1.min(text.len())),
            )
        };
        let mut out = String::new();
        let mut pos = cs;
        for child in named(node) {
            let (a, b) = (child.start_byte() - start, child.end_byte() - start);
            if a < pos || b > ce {
                continue;
            }
            out.push_str(&unescape(&text[pos..a], here));
            let v = self.expr(child)?;
            out.push_str(&self.interpolate(&v));
            pos = b;
        }
        if pos < ce {
            out.push_str(&unescape(&text[pos..ce], here));
        }
        Ok(Value::Str(out))
    }

    fn interpolate(&self, v: &Value) -> String {
        match v {
            Value::Array(a) => {
                let sep = self.get_var("OFS").to_str();
                a.borrow()
                    .iter()
                    .map(Value::to_str)
                    .collect::<Vec<_>>()
                    .join(&sep)
            }
            other => other.to_str(),
        }
    }
}

fn call_depth_error() -> Flow {
    Flow::Error(
        Box::new(ErrorRecord::new(
            "The script failed due to call depth overflow.",
            "System.Management.Automation.ScriptCallDepthException",
            "CallDepthOverflow",
            "InvalidOperation",
        )),
        true,
    )
}

fn split_redirect(t: &str) -> Option<(String, String)> {
    let stream: String = t
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '*')
        .collect();
    let rest = &t[stream.len()..];
    if rest.starts_with('>') && (stream.is_empty() || stream == "*" || stream.len() == 1) {
        Some((stream, rest.to_string()))
    } else {
        None
    }
}

/// Body of a verbatim here-string `@'\n...\n'@`.
fn here_body(t: &str) -> String {
    let first_nl = t.find('\n').map(|i| i + 1).unwrap_or(t.len());
    let last = t.rfind('\n').unwrap_or(t.len());
    let last = if last > 0 && t.as_bytes().get(last - 1) == Some(&b'\r') {
        last - 1
    } else {
        last
    };
    t.get(first_nl..last.max(first_nl))
        .unwrap_or("")
        .to_string()
}

/// Backtick escapes and `""` in double-quoted strings.
pub(crate) fn unescape(s: &str, here: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some('0') => out.push('\0'),
                Some('a') => out.push('\u{7}'),
                Some('b') => out.push('\u{8}'),
                Some('e') => out.push('\u{1b}'),
                Some('f') => out.push('\u{c}'),
                Some('v') => out.push('\u{b}'),
                Some(o) => out.push(o),
                None => {}
            },
            '"' if !here && chars.peek() == Some(&'"') => {
                chars.next();
                out.push('"');
            }
            other => out.push(other),
        }
    }
    out
}

/// `$x[i]`: arrays (negative and multiple indexes), hashtables, strings.
pub(crate) fn index(target: &Value, idx: &Value) -> Result<Value, ErrorRecord> {
    match target {
        Value::Null => Err(ErrorRecord::new(
            "Cannot index into a null array.",
            "System.Management.Automation.RuntimeException",
            "NullArray",
            "InvalidOperation",
        )),
        Value::Hashtable(h) => {
            if let Value::Array(keys) = idx {
                let h = h.borrow();
                return Ok(Value::array(
                    keys.borrow().iter().filter_map(|k| h.get(k)).collect(),
                ));
            }
            Ok(h.borrow().get(idx).unwrap_or(Value::Null))
        }
        Value::Object(o) => Ok(o.borrow().get(&idx.to_str()).unwrap_or(Value::Null)),
        _ => {
            let items: Vec<Value> = match target {
                Value::Array(a) => a.borrow().clone(),
                Value::Str(s) => s.chars().map(Value::Char).collect(),
                other => vec![other.clone()],
            };
            let n = items.len() as i64;
            let pick = |i: &Value| -> Option<Value> {
                let i = i.as_i64()?;
                let i = if i < 0 { n + i } else { i };
                if i < 0 || i >= n {
                    None
                } else {
                    Some(items[i as usize].clone())
                }
            };
            match idx {
                Value::Array(list) => Ok(Value::array(
                    list.borrow().iter().filter_map(pick).collect(),
                )),
                other => Ok(pick(other).unwrap_or(Value::Null)),
            }
        }
    }
}

impl Interpreter<'_> {
    /// Calls a script block in a child scope (used by cmdlets like Invoke-Command).
    pub(crate) fn call_block(
        &mut self,
        sb: &Rc<ScriptBlock>,
        args: Vec<Value>,
        input: Vec<Value>,
    ) -> R<Vec<Value>> {
        let raw = args.into_iter().map(RawArg::Value).collect();
        self.invoke_block_args(sb, raw, input, false)
    }

    /// Whether a command of that name is a script function.
    pub(crate) fn has_function(&self, name: &str) -> bool {
        self.functions.contains_key(&name.to_ascii_lowercase())
    }

    /// Builds a pscustomobject-like view of an item (used by Select-Object).
    pub(crate) fn object_from(&mut self, pairs: Vec<(String, Value)>) -> Value {
        let mut o = PsObject::custom();
        for (k, v) in pairs {
            o.set(&k, v);
        }
        o.into()
    }
}

impl Interpreter<'_> {
    /// `& $sb` / `& "C:\x\$name.exe"`: a command name made of words and variables.
    fn path_command(&mut self, node: Node<'_>) -> R<Value> {
        let parts = named(node);
        if parts.len() == 1 && parts[0].kind() == "variable" {
            return self.expr(parts[0]);
        }
        let mut s = String::new();
        for p in children(node) {
            if p.kind() == "variable" {
                s.push_str(&self.expr(p)?.to_str());
            } else {
                s.push_str(&self.text(p));
            }
        }
        Ok(Value::Str(s))
    }

    /// Evaluates `text` as an expression (wrapped in parentheses and parsed again).
    fn reparsed_expression(&mut self, text: &str, at: Node<'_>) -> R<Value> {
        let wrapped = format!("+{text}");
        let script = crate::parse::parse(&wrapped).map_err(|e| {
            let msg = e
                .problems
                .first()
                .map(|p| p.message.clone())
                .unwrap_or_default();
            self.err_at(
                ErrorRecord::new(
                    msg,
                    "System.Management.Automation.ParseException",
                    "UnexpectedToken",
                    "ParserError",
                ),
                at,
                true,
            )
        })?;
        let source = script.source.clone();
        let root = source.tree.root_node();
        let prev = self.swap_source(Some(source.clone()));
        let r = match child_of(root, "statement_list").and_then(|l| named(l).into_iter().next()) {
            Some(stmt) => self.pipeline_value(stmt),
            None => Ok(Value::Null),
        };
        self.swap_source(prev);
        r
    }

    /// Makes `source` the current one; returns the previous.
    pub(crate) fn swap_source(&mut self, source: Option<Rc<Source>>) -> Option<Rc<Source>> {
        std::mem::replace(&mut self.src, source)
    }
}
