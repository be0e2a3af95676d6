//! The rustyline helper: Tab completion and the dimmed signature hint, both read from the
//! session's shared state (never the network); continuation is decided by the REPL loop with
//! `input::scan`, so it can show a continuation prompt.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

use crate::repl::input;
use crate::repl::session::{Shared, lock};
use crate::script::catalog::Catalog;

pub struct ReplHelper {
    shared: Arc<Mutex<Shared>>,
    color: bool,
}

impl ReplHelper {
    pub fn new(shared: Arc<Mutex<Shared>>, color: bool) -> Self {
        ReplHelper { shared, color }
    }
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, candidates) = lock(&self.shared).complete(line, pos);
        Ok((
            start,
            candidates
                .into_iter()
                .map(|c| Pair {
                    display: c.display,
                    replacement: c.replacement,
                })
                .collect(),
        ))
    }
}

impl Hinter for ReplHelper {
    type Hint = String;

    fn hint(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> Option<String> {
        if pos < line.len() || line.trim_start().starts_with(':') {
            return None;
        }
        signature_hint(&lock(&self.shared).catalog, line)
    }
}

/// The signatures of the function whose call the cursor is in (or whose name it ends), dimmed
/// after the input: `  parse_json(text: string) -> ?`.
pub fn signature_hint(catalog: &Catalog, before: &str) -> Option<String> {
    let scan = input::scan(before);
    let name = match scan.innermost_paren() {
        Some(paren) => input::callee(before, paren)?,
        None => {
            let word = before
                .rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .filter(|w| !w.is_empty())?;
            if scan.string.is_some() {
                return None;
            }
            word
        }
    };
    let overloads = catalog.overloads(name);
    if overloads.is_empty() {
        return None;
    }
    let list: Vec<&str> = overloads.iter().map(|f| f.signature.as_str()).collect();
    Some(format!("  {}", list.join("  |  ")))
}

impl Highlighter for ReplHelper {
    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        if self.color {
            Cow::Owned(format!("\x1b[2m{hint}\x1b[0m"))
        } else {
            Cow::Borrowed(hint)
        }
    }
}

/// Every line is accepted as typed: the loop asks for continuation lines itself.
impl Validator for ReplHelper {}

impl Helper for ReplHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let engine = rhai::Engine::new();
        let ast = engine.compile("fn add(a, b) { a + b }").unwrap();
        Catalog::from_engine(&engine, Some(&ast))
    }

    #[test]
    fn hint_shows_the_signature_of_the_open_call() {
        let c = catalog();
        assert_eq!(
            signature_hint(&c, "let x = add(1, ").as_deref(),
            Some("  add(a, b)")
        );
        assert_eq!(signature_hint(&c, "add").as_deref(), Some("  add(a, b)"));
        assert_eq!(signature_hint(&c, "let x = 1"), None);
    }
}
