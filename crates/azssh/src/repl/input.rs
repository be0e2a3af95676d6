//! A small Rhai lexer for the prompt: is the input complete (balanced brackets, closed strings
//! and comments), and where does the cursor sit — inside which string, inside which call and at
//! which argument. Completion, hints and the continuation prompt all read it; it never evaluates.

/// An open string literal at the end of the scanned text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenString {
    pub quote: char,
    /// Byte offset of the first character after the opening quote.
    pub content_start: usize,
}

/// The state of the text up to the cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Open brackets, outermost first: the bracket and its byte offset.
    pub open: Vec<(char, usize)>,
    pub string: Option<OpenString>,
    pub in_comment: bool,
    /// The text ends with `\`, Rhai's line continuation inside a `"` string.
    pub ends_with_backslash: bool,
    /// A closing bracket with no partner: the input can never become valid by adding lines.
    pub stray_close: bool,
    /// The last character of code (outside strings and comments) is a binary operator, `=`,
    /// `,` or `.`: `let x = 1 +` goes on on the next line.
    pub ends_with_operator: bool,
}

impl Scan {
    /// More lines are needed before this input can be evaluated.
    pub fn is_incomplete(&self) -> bool {
        // A `"` string may only span lines through a trailing `\`; a backtick string may.
        let open_string = self
            .string
            .is_some_and(|s| s.quote == '`' || self.ends_with_backslash);
        !self.stray_close
            && (!self.open.is_empty() || open_string || self.in_comment || self.ends_with_operator)
    }

    /// The innermost open `(` that is a call: its offset, for `callee` and `argument_index`.
    pub fn innermost_paren(&self) -> Option<usize> {
        self.open
            .iter()
            .rev()
            .find(|(c, _)| *c == '(')
            .map(|(_, at)| *at)
    }
}

/// Scans `text` (the whole input, or the part before the cursor).
pub fn scan(text: &str) -> Scan {
    let mut scan = Scan::default();
    // Backtick strings hold `${ ... }` code: the stack remembers whether a `{` opened an
    // interpolation, so its `}` resumes the string.
    let mut interpolation_depth: Vec<usize> = Vec::new();
    let bytes: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    // The last character of code, outside strings and comments.
    let mut last: Option<char> = None;
    while i < bytes.len() {
        let (at, c) = bytes[i];
        let next = bytes.get(i + 1).map(|(_, c)| *c);
        if scan.string.is_none()
            && !c.is_whitespace()
            && !(c == '/' && matches!(next, Some('/' | '*')))
        {
            last = Some(c);
        }
        if let Some(open) = scan.string {
            match c {
                '\\' if open.quote != '`' => i += 1,
                '$' if open.quote == '`' && next == Some('{') => {
                    scan.string = None;
                    scan.open.push(('{', at + 1));
                    interpolation_depth.push(scan.open.len());
                    i += 1;
                }
                c if c == open.quote => scan.string = None,
                // An unescaped line break ends a `"` string: the parser will say it is open.
                '\n' if open.quote != '`' => scan.string = None,
                _ => {}
            }
            i += 1;
            continue;
        }
        match c {
            '/' if next == Some('/') => {
                // A line comment runs to the end of the line.
                while i < bytes.len() && bytes[i].1 != '\n' {
                    i += 1;
                }
                continue;
            }
            '/' if next == Some('*') => {
                scan.in_comment = true;
                i += 2;
                while i < bytes.len() {
                    if bytes[i].1 == '*' && bytes.get(i + 1).map(|(_, c)| *c) == Some('/') {
                        scan.in_comment = false;
                        i += 1;
                        break;
                    }
                    i += 1;
                }
            }
            '"' | '`' | '\'' => {
                scan.string = Some(OpenString {
                    quote: c,
                    content_start: at + c.len_utf8(),
                })
            }
            '(' | '[' | '{' => scan.open.push((c, at)),
            ')' | ']' | '}' => {
                let want = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                match scan.open.last() {
                    Some((open, _)) if *open == want => {
                        let depth = scan.open.len();
                        scan.open.pop();
                        if c == '}' && interpolation_depth.last() == Some(&depth) {
                            interpolation_depth.pop();
                            // Back inside the backtick string the interpolation interrupted.
                            scan.string = Some(OpenString {
                                quote: '`',
                                content_start: at + 1,
                            });
                        }
                    }
                    _ => scan.stray_close = true,
                }
            }
            _ => {}
        }
        i += 1;
    }
    scan.ends_with_backslash = text.ends_with('\\');
    scan.ends_with_operator = scan.string.is_none()
        && !scan.in_comment
        && matches!(
            last,
            Some('=' | '+' | '-' | '*' | '/' | '%' | ',' | '.' | '|' | '&' | '<' | '>' | '!' | '^')
        );
    scan
}

/// Splits input that holds several complete inputs (a paste, lines typed ahead) into those
/// inputs, in order, as if each had been typed and entered alone: a line ends an input once
/// everything so far is complete, unless the next line goes on with the same statement
/// (`.method()`, an operator, `else`, `catch`). A `:command` line is an input of its own.
pub fn split_inputs(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut inputs = Vec::new();
    let mut current = String::new();
    for (i, line) in lines.iter().enumerate() {
        if current.is_empty() && line.trim().is_empty() {
            continue;
        }
        if current.is_empty() && line.trim_start().starts_with(':') {
            inputs.push(line.to_string());
            continue;
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(line);
        let next = lines[i + 1..]
            .iter()
            .map(|l| l.trim_start())
            .find(|l| !l.is_empty());
        let goes_on = next.is_some_and(|n| {
            n.starts_with(['.', '?', '+', '*', '/', '%', '|', '&', '=', '>', '<'])
                || n.starts_with("else")
                || n.starts_with("catch")
        });
        if !scan(&current).is_incomplete() && !goes_on {
            inputs.push(std::mem::take(&mut current));
        }
    }
    if !current.trim().is_empty() {
        inputs.push(current);
    }
    inputs
}

/// The identifier (or `module::name`, or `.method`) just before byte `paren` in `text`.
pub fn callee(text: &str, paren: usize) -> Option<&str> {
    let head = text.get(..paren)?.trim_end();
    let start = head
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_alphanumeric() || *c == '_' || *c == ':')
        .last()
        .map(|(i, _)| i)?;
    let name = head[start..].trim_start_matches(':');
    (!name.is_empty()).then_some(name)
}

/// Which argument of the call opened at `paren` the byte `at` falls in (0-based), and the
/// complete arguments before it as raw text.
pub fn arguments(text: &str, paren: usize, at: usize) -> (usize, Vec<String>) {
    let inner = text.get(paren + 1..at).unwrap_or("");
    let mut args = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for c in inner.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '`' | '\'') => quote = Some(c),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']' | '}') => depth = depth.saturating_sub(1),
            (None, ',') if depth == 0 => {
                args.push(current.trim().to_string());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    (args.len(), args)
}

/// The text of a string literal argument such as `"rg-web"`, without its quotes.
pub fn string_literal(arg: &str) -> Option<&str> {
    let arg = arg.trim();
    let quote = arg.chars().next().filter(|c| *c == '"' || *c == '`')?;
    arg.strip_prefix(quote)?.strip_suffix(quote)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_input_is_complete() {
        for text in [
            "1 + 2",
            "fn f(a) { a * 2 }",
            "let s = \"a { b\";",
            "let t = `x ${1 + 2} y`;",
            "// comment with (",
            "/* closed */ 1",
            "let c = '(';",
            "let s = \"no closing quote",
            "let s = \"a\\\nb\";",
        ] {
            assert!(!scan(text).is_incomplete(), "{text}");
        }
    }

    #[test]
    fn open_brackets_strings_and_comments_continue() {
        for text in [
            "fn f(a) {",
            "let a = [1,",
            "print(",
            "let s = \"abc\\",
            "let t = `x ${ 1 +",
            "let t = `line one",
            "/* still",
        ] {
            assert!(scan(text).is_incomplete(), "{text}");
        }
    }

    #[test]
    fn a_trailing_operator_continues() {
        for text in [
            "let x = 1 +",
            "let x =",
            "call(a,",
            "v.",
            "let f = |x|",
            "a &&",
        ] {
            assert!(scan(text).is_incomplete(), "{text}");
        }
        for text in [
            "let x = 1 + 2;",
            "x // trailing +",
            "let s = \"a +\"",
            "f(|| 1)",
        ] {
            assert!(!scan(text).is_incomplete(), "{text}");
        }
    }

    #[test]
    fn pasted_text_splits_into_the_inputs_typed_one_by_one() {
        let pasted = "let x = 5;\nfn twice(n) {\n  n * 2\n}\n\ntwice(x)\n:vars\nlet v = [1, 2]\n  .map(|n| n + 1);\nif x > 1 {\n 1\n}\nelse {\n 2\n}\n";
        assert_eq!(
            split_inputs(pasted),
            vec![
                "let x = 5;",
                "fn twice(n) {\n  n * 2\n}",
                "twice(x)",
                ":vars",
                "let v = [1, 2]\n  .map(|n| n + 1);",
                "if x > 1 {\n 1\n}\nelse {\n 2\n}",
            ]
        );
    }

    #[test]
    fn a_stray_closing_bracket_is_left_to_the_parser() {
        assert!(!scan("1 + 2) {").is_incomplete());
    }

    #[test]
    fn finds_the_call_and_argument_under_the_cursor() {
        let text = "let v = vm(\"rg-web\", \"we";
        let s = scan(text);
        let paren = s.innermost_paren().unwrap();
        assert_eq!(callee(text, paren), Some("vm"));
        assert_eq!(s.string.unwrap().content_start, text.len() - 2);
        let (index, args) = arguments(text, paren, s.string.unwrap().content_start - 1);
        assert_eq!(index, 1);
        assert_eq!(string_literal(&args[0]), Some("rg-web"));
    }

    #[test]
    fn qualified_and_method_callees() {
        assert_eq!(callee("retry::retry(", 12), Some("retry::retry"));
        assert_eq!(callee("s.exec(", 6), Some("exec"));
        assert_eq!(callee("(", 0), None);
    }
}
