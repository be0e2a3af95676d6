//! Just enough PowerShell syntax for single statements: single-quoted literals (with the
//! Unicode look-alike quotes), plain double-quoted strings, words, `;`/`|` splitting, and
//! `-Name value` arguments. Anything that would expand or evaluate is refused.

use std::collections::BTreeMap;

use super::protocol::{SINGLE_QUOTES, ps_unquote_prefix};
use super::{StmtError, unmodelled};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Token {
    Word(String),
    Quoted(String),
}

impl Token {
    pub(super) fn text(&self) -> &str {
        match self {
            Token::Word(s) | Token::Quoted(s) => s,
        }
    }
}

/// Splits on `sep` outside quotes. Double-quoted strings that would expand (`$`, backtick)
/// are not modelled.
pub(super) fn split_outside_quotes(text: &str, sep: char) -> Result<Vec<&str>, StmtError> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut rest = text;
    let mut offset = 0;
    while let Some(c) = rest.chars().next() {
        if SINGLE_QUOTES.contains(&c) {
            let (_, after) = ps_unquote_prefix(rest).ok_or_else(|| unmodelled(text))?;
            offset += rest.len() - after.len();
            rest = after;
            continue;
        }
        if c == '"' {
            let end = rest[1..].find('"').ok_or_else(|| unmodelled(text))? + 2;
            offset += end;
            rest = &rest[end..];
            continue;
        }
        if c == sep {
            parts.push(&text[start..offset]);
            start = offset + c.len_utf8();
        }
        offset += c.len_utf8();
        rest = &rest[c.len_utf8()..];
    }
    parts.push(&text[start..]);
    Ok(parts)
}

pub(super) fn tokenize(text: &str) -> Result<Vec<Token>, StmtError> {
    let mut tokens = Vec::new();
    let mut rest = text.trim_start();
    while let Some(c) = rest.chars().next() {
        if SINGLE_QUOTES.contains(&c) {
            let (value, after) = ps_unquote_prefix(rest).ok_or_else(|| unmodelled(text))?;
            tokens.push(Token::Quoted(value));
            rest = after;
        } else if c == '"' {
            let end = rest[1..].find('"').ok_or_else(|| unmodelled(text))? + 1;
            let value = &rest[1..end];
            if value.contains(['$', '`']) {
                return Err(unmodelled(text));
            }
            tokens.push(Token::Quoted(value.to_string()));
            rest = &rest[end + 1..];
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let word = &rest[..end];
            if word.contains(['$', '`', '(', ')', '{', '}', '@']) {
                return Err(unmodelled(text));
            }
            tokens.push(Token::Word(word.to_string()));
            rest = &rest[end..];
        }
        rest = rest.trim_start();
    }
    Ok(tokens)
}

/// A cmdlet's arguments: `-Name value` pairs, switches, and positional values.
pub(super) struct Args {
    pub(super) named: BTreeMap<String, Option<String>>,
    pub(super) positional: Vec<String>,
    /// Every argument as given, for native tools such as icacls.
    pub(super) raw: Vec<String>,
}

const SWITCHES: [&str; 5] = ["online", "force", "append", "nonewline", "passthru"];

impl Args {
    pub(super) fn parse(tokens: &[Token]) -> Args {
        let mut args = Args {
            named: BTreeMap::new(),
            positional: Vec::new(),
            raw: tokens.iter().map(|t| t.text().to_string()).collect(),
        };
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                Token::Word(w) if w.starts_with('-') && w.len() > 1 => {
                    let name = w[1..].trim_end_matches(':').to_ascii_lowercase();
                    let takes_value = !SWITCHES.contains(&name.as_str()) && i + 1 < tokens.len();
                    let value = takes_value.then(|| tokens[i + 1].text().to_string());
                    i += usize::from(takes_value);
                    args.named.insert(name, value);
                }
                t => args.positional.push(t.text().to_string()),
            }
            i += 1;
        }
        args
    }

    pub(super) fn named(&self, name: &str) -> Option<&str> {
        self.named.get(name)?.as_deref()
    }

    pub(super) fn has(&self, name: &str) -> bool {
        self.named.contains_key(name)
    }
}
