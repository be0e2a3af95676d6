//! Parsing with `tree-sitter-powershell`, PowerShell-style parser errors, and the
//! Windows PowerShell 5.1 guard rail ([`check_ps51`]).

use std::rc::Rc;

use tree_sitter::{Node, Parser, Tree};

use crate::error::{ParseError, ParseProblem, Position};

/// Deepest syntax tree the interpreter accepts (a hostile script cannot blow the stack).
pub const MAX_TREE_DEPTH: usize = 1500;

/// A parsed script: its text and syntax tree.
#[derive(Debug)]
pub struct Source {
    /// The script text.
    pub text: String,
    /// The tree-sitter tree.
    pub tree: Tree,
}

impl Source {
    /// The text of a node.
    pub fn node_text(&self, node: Node<'_>) -> &str {
        self.text.get(node.byte_range()).unwrap_or("")
    }

    /// Finds the node of `kind` spanning exactly `start..end`.
    pub fn find(&self, start: usize, end: usize, kind: &str) -> Option<Node<'_>> {
        let mut node = self
            .tree
            .root_node()
            .descendant_for_byte_range(start, end)?;
        loop {
            if node.kind() == kind && node.start_byte() == start && node.end_byte() == end {
                return Some(node);
            }
            node = node.parent()?;
            if node.start_byte() != start || node.end_byte() != end {
                return None;
            }
        }
    }

    /// Line/column (1-based) and the line's text for a byte offset.
    pub fn position(&self, byte: usize, width: usize) -> Position {
        let byte = byte.min(self.text.len());
        let before = self.text.get(..byte).unwrap_or("");
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let line = before.matches('\n').count() + 1;
        let column = self
            .text
            .get(line_start..byte)
            .map(|s| s.chars().count())
            .unwrap_or(0)
            + 1;
        let rest = self.text.get(line_start..).unwrap_or("");
        let line_text = rest.split('\n').next().unwrap_or("").trim_end_matches('\r');
        Position {
            line,
            column,
            line_text: line_text.to_string(),
            width: width
                .min(line_text.chars().count().saturating_sub(column - 1))
                .max(1),
        }
    }
}

/// A parsed script, ready for [`crate::Interpreter::run`].
#[derive(Debug, Clone)]
pub struct Script {
    pub(crate) source: Rc<Source>,
}

impl Script {
    /// The script text.
    pub fn text(&self) -> &str {
        &self.source.text
    }
}

fn raw_parse(text: &str) -> Option<Tree> {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_powershell::LANGUAGE.into())
        .ok()?;
    parser.parse(text, None)
}

/// Visits every node iteratively (no recursion), with its depth.
fn walk(tree: &Tree, mut f: impl FnMut(Node<'_>, usize) -> bool) {
    let mut cursor = tree.walk();
    let mut depth = 0usize;
    loop {
        let descend = f(cursor.node(), depth);
        if descend && cursor.goto_first_child() {
            depth += 1;
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return;
            }
            depth -= 1;
        }
    }
}

fn missing_message(kind: &str) -> (String, &'static str) {
    match kind {
        "}" => (
            "Missing closing '}' in statement block or type definition.".into(),
            "MissingEndCurlyBrace",
        ),
        ")" => (
            "Missing closing ')' in expression.".into(),
            "MissingEndParenthesisInExpression",
        ),
        "]" => (
            "Missing ']' at end of attribute or type literal.".into(),
            "EndSquareBracketExpectedAtEndOfAttribute",
        ),
        "\"" | "'" => (
            format!("The string is missing the terminator: {kind}."),
            "TerminatorExpectedAtEndOfString",
        ),
        k if k.ends_with("_literal") || k.ends_with("expression") || k == "variable" => {
            ("Missing expression.".into(), "ExpectedExpression")
        }
        _ => (format!("Missing '{kind}'."), "MissingToken"),
    }
}

/// The byte offset and quote of a string that never ends, if any.
fn unterminated_string(text: &str) -> Option<(usize, char)> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            q @ (b'\'' | b'"') => {
                let start = i;
                i += 1;
                loop {
                    if i >= b.len() {
                        return Some((start, q as char));
                    }
                    if q == b'"' && b[i] == b'`' {
                        i += 2;
                        continue;
                    }
                    if b[i] == q {
                        if b.get(i + 1) == Some(&q) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn error_message(source: &Source, node: Node<'_>) -> (String, &'static str, usize) {
    let text = source.node_text(node);
    let trimmed = text.trim_start();
    let offset = node.start_byte() + (text.len() - trimmed.len());
    if let Some((at, q)) = unterminated_string(&source.text[node.start_byte()..]) {
        return (
            format!("The string is missing the terminator: {q}."),
            "TerminatorExpectedAtEndOfString",
            node.start_byte() + at,
        );
    }
    let opens = text.matches('{').count();
    let closes = text.matches('}').count();
    if opens > closes {
        let at = node.start_byte() + text.rfind('{').unwrap_or(0);
        return (
            "Missing closing '}' in statement block or type definition.".into(),
            "MissingEndCurlyBrace",
            at,
        );
    }
    if text.matches('(').count() > text.matches(')').count() {
        let at = node.start_byte() + text.rfind('(').unwrap_or(0);
        return (
            "Missing closing ')' in expression.".into(),
            "MissingEndParenthesisInExpression",
            at,
        );
    }
    // The first token the parser could not place.
    let mut cursor = node.walk();
    let mut token = None;
    for child in node.children(&mut cursor) {
        if child.kind() == "ERROR" || child.is_error() || child.child_count() == 0 {
            token = Some(child);
            break;
        }
    }
    let (tok, at) = match token {
        Some(t) => (source.node_text(t).to_string(), t.start_byte()),
        None => (
            trimmed.split_whitespace().next().unwrap_or("").to_string(),
            offset,
        ),
    };
    let tok: String = tok.chars().take(40).collect();
    let rest_of_line = source.text[at + tok.len().min(source.text.len() - at)..]
        .split('\n')
        .next()
        .unwrap_or("")
        .trim();
    let t = tok.trim();
    if rest_of_line.is_empty()
        && (matches!(t, "+" | "-" | "*" | "/" | "%" | "=" | ",")
            || (t.starts_with('-')
                && t.len() > 2
                && t[1..].chars().all(|c| c.is_ascii_alphabetic())))
    {
        return (
            format!("You must provide a value expression following the '{t}' operator."),
            "ExpectedValueExpression",
            at,
        );
    }
    if t == "|" {
        return (
            "An empty pipe element is not allowed.".into(),
            "EmptyPipeElement",
            at,
        );
    }
    (
        format!("Unexpected token '{tok}' in expression or statement."),
        "UnexpectedToken",
        at,
    )
}

/// Parses a script. ERROR or MISSING nodes become a [`ParseError`] worded as Windows
/// PowerShell's parser words it.
pub fn parse(text: &str) -> Result<Script, ParseError> {
    let tree = raw_parse(text).ok_or_else(|| ParseError {
        problems: vec![ParseProblem {
            position: Position {
                line: 1,
                column: 1,
                line_text: text.lines().next().unwrap_or("").into(),
                width: 1,
            },
            message: "The script could not be parsed.".into(),
            id: "ParseFailed".into(),
        }],
    })?;
    let source = Source {
        text: text.to_string(),
        tree,
    };
    let mut problems = Vec::new();
    let mut too_deep = None;
    walk(&source.tree, |node, depth| {
        if depth > MAX_TREE_DEPTH {
            too_deep.get_or_insert(node.start_byte());
            return false;
        }
        if node.kind() == "pipeline_chain_tail" {
            problems.push(ParseProblem {
                position: source.position(node.start_byte(), 2),
                message: format!(
                    "The token '{}' is not a valid statement separator in this version.",
                    source.node_text(node)
                ),
                id: "InvalidEndOfLine".into(),
            });
            return false;
        }
        if node.is_missing() {
            let (message, id) = missing_message(node.kind());
            problems.push(ParseProblem {
                position: source.position(node.start_byte(), 1),
                message,
                id: id.into(),
            });
            return false;
        }
        if node.is_error() {
            let (message, id, at) = error_message(&source, node);
            problems.push(ParseProblem {
                position: source.position(at, 1),
                message,
                id: id.into(),
            });
            return false;
        }
        node.has_error() || node.child_count() > 0
    });
    if let Some(at) = too_deep {
        problems.push(ParseProblem {
            position: source.position(at, 1),
            message: "The script is nested too deeply.".into(),
            id: "ScriptTooComplicated".into(),
        });
    }
    if !problems.is_empty() {
        problems.truncate(10);
        return Err(ParseError { problems });
    }
    Ok(Script {
        source: Rc::new(source),
    })
}

/// What [`check_ps51`] found wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// An ERROR or MISSING node: the script does not parse.
    Syntax,
    /// `&&` / `||` pipeline chains (PowerShell 7).
    PipelineChain,
    /// `??` (PowerShell 7).
    NullCoalescing,
    /// `??=` (PowerShell 7).
    NullCoalescingAssignment,
    /// `?.` / `?[]` (PowerShell 7).
    NullConditional,
    /// `a ? b : c` (PowerShell 7).
    Ternary,
    /// A character outside ASCII.
    NonAscii,
}

/// One problem [`check_ps51`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxProblem {
    /// What kind.
    pub kind: ProblemKind,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// A sentence for a test failure.
    pub message: String,
}

/// Classifies an ERROR region's text: which PowerShell 7 operator made 5.1's grammar fail.
fn ps7_operator(text: &str) -> Option<(ProblemKind, usize)> {
    let bytes = text.as_bytes();
    let mut in_single = false;
    let mut in_double = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if in_single {
            if c == b'\'' {
                in_single = false;
            }
        } else if in_double {
            if c == b'`' {
                i += 1;
            } else if c == b'"' {
                in_double = false;
            }
        } else {
            match c {
                b'\'' => in_single = true,
                b'"' => in_double = true,
                b'#' => {
                    while i < bytes.len() && bytes[i] != b'\n' {
                        i += 1;
                    }
                }
                b'?' => {
                    let next = bytes.get(i + 1).copied();
                    if next == Some(b'?') {
                        if bytes.get(i + 2) == Some(&b'=') {
                            return Some((ProblemKind::NullCoalescingAssignment, i));
                        }
                        return Some((ProblemKind::NullCoalescing, i));
                    }
                    if next == Some(b'.') || next == Some(b'[') {
                        return Some((ProblemKind::NullConditional, i));
                    }
                    let prev = if i > 0 { bytes[i - 1] } else { b' ' };
                    if prev.is_ascii_whitespace()
                        && next.is_none_or(|n| n.is_ascii_whitespace())
                        && text[i..].contains(':')
                    {
                        return Some((ProblemKind::Ternary, i));
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// The guard rail for scripts sent to Windows PowerShell 5.1: parse errors, PowerShell 7-only
/// syntax (`&&`, `||`, `??`, `??=`, `?.`, `?[]`, ternary), and non-ASCII characters.
pub fn check_ps51(text: &str) -> Vec<SyntaxProblem> {
    let mut out = Vec::new();
    for (n, line) in text.split('\n').enumerate() {
        if let Some((col, c)) = line.chars().enumerate().find(|(_, c)| !c.is_ascii()) {
            out.push(SyntaxProblem {
                kind: ProblemKind::NonAscii,
                line: n + 1,
                column: col + 1,
                message: format!("non-ASCII character {:?} (U+{:04X})", c, c as u32),
            });
        }
    }
    let Some(tree) = raw_parse(text) else {
        out.push(SyntaxProblem {
            kind: ProblemKind::Syntax,
            line: 1,
            column: 1,
            message: "the parser gave up".into(),
        });
        return out;
    };
    let source = Source {
        text: text.to_string(),
        tree,
    };
    let mut found = Vec::new();
    walk(&source.tree, |node, depth| {
        if depth > MAX_TREE_DEPTH {
            return false;
        }
        let kind = node.kind();
        if kind == "pipeline_chain_tail" {
            let p = source.position(node.start_byte(), 2);
            found.push(SyntaxProblem {
                kind: ProblemKind::PipelineChain,
                line: p.line,
                column: p.column,
                message: format!(
                    "pipeline chain `{}` is PowerShell 7 syntax",
                    source.node_text(node)
                ),
            });
        } else if node.is_missing() {
            let p = source.position(node.start_byte(), 1);
            found.push(SyntaxProblem {
                kind: ProblemKind::Syntax,
                line: p.line,
                column: p.column,
                message: format!("missing `{kind}`"),
            });
            return false;
        } else if node.is_error() {
            // Look at the error and the line it sits on for PowerShell 7's operators.
            let start = source.text[..node.start_byte()]
                .rfind('\n')
                .map(|i| i + 1)
                .unwrap_or(0);
            let end = source.text[node.end_byte()..]
                .find('\n')
                .map(|i| node.end_byte() + i)
                .unwrap_or(source.text.len());
            let region = source.text.get(start..end).unwrap_or("");
            let problem = match ps7_operator(region) {
                Some((kind, at)) => {
                    let p = source.position(start + at, 1);
                    let what = match kind {
                        ProblemKind::NullCoalescing => "null-coalescing `??`",
                        ProblemKind::NullCoalescingAssignment => "null-coalescing assignment `??=`",
                        ProblemKind::NullConditional => "null-conditional `?.`/`?[]`",
                        _ => "ternary `a ? b : c`",
                    };
                    SyntaxProblem {
                        kind,
                        line: p.line,
                        column: p.column,
                        message: format!("{what} is PowerShell 7 syntax"),
                    }
                }
                None => {
                    let (message, _, at) = error_message(&source, node);
                    let p = source.position(at, 1);
                    SyntaxProblem {
                        kind: ProblemKind::Syntax,
                        line: p.line,
                        column: p.column,
                        message,
                    }
                }
            };
            found.push(problem);
            return false;
        }
        true
    });
    found.dedup();
    out.extend(found);
    out.sort_by_key(|p| (p.line, p.column));
    out
}
