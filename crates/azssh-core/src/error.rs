//! The error contract every domain shares: a kind, a lower-case message and an optional hint,
//! and the rendered form the interfaces print (`Diagnostic`).

/// Implemented by each domain's `thiserror` enum (`azure::AzureError`, `ssh::SshError`, ...), so
/// that scripts see `#{kind, message, hint}` and the CLI prints one message plus a `hint:` line.
pub trait UserError: std::error::Error + Send + Sync + 'static {
    /// A short stable identifier scripts can match on, e.g. `"azure.not_found"`, `"ssh.host_key_changed"`.
    fn kind(&self) -> &'static str;
    /// What the user can do about it, when we know.
    fn hint(&self) -> Option<String> {
        None
    }
}

/// One rendered error: where, what, and what to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub source_line: Option<String>,
    pub message: String,
    pub hint: Option<String>,
    pub kind: String,
    /// `in call to f (line:col)` notes, outermost first.
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn plain(kind: &str, message: impl Into<String>, hint: Option<String>) -> Self {
        Diagnostic {
            file: String::new(),
            line: None,
            column: None,
            source_line: None,
            message: message.into(),
            hint,
            kind: kind.into(),
            notes: Vec::new(),
        }
    }

    /// `file:line:col: error: message`, the source line, a caret, notes, `hint: ...`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let location = match (self.file.is_empty(), self.line, self.column) {
            (false, Some(l), Some(c)) => format!("{}:{l}:{c}: ", self.file),
            (false, Some(l), None) => format!("{}:{l}: ", self.file),
            (false, None, _) => format!("{}: ", self.file),
            (true, _, _) => String::new(),
        };
        out.push_str(&format!("{location}error: {}\n", self.message));
        if let (Some(src), Some(line)) = (&self.source_line, self.line) {
            let gutter = line.to_string();
            out.push_str(&format!("{gutter} | {src}\n"));
            if let Some(col) = self.column {
                let pad: String = src
                    .chars()
                    .take(col.saturating_sub(1))
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                out.push_str(&format!("{} | {pad}^\n", " ".repeat(gutter.len())));
            }
        }
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        if let Some(hint) = &self.hint {
            out.push_str(&format!("hint: {hint}\n"));
        }
        out
    }
}
