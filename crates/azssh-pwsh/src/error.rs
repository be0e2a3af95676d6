//! Error records and their rendering in Windows PowerShell 5.1's console format.

use thiserror::Error;

/// Where an error happened in the script, for the `At line:N char:M` block.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The text of that line.
    pub line_text: String,
    /// Width of the `~~~` underline.
    pub width: usize,
}

/// A PowerShell ErrorRecord: what `$_` holds in `catch` and what the console prints.
#[derive(Debug, Clone, Error)]
#[error("{message}")]
pub struct ErrorRecord {
    /// `$_.Exception.Message`.
    pub message: String,
    /// The exception's .NET type name (`System.Management.Automation.RuntimeException`).
    pub exception_type: String,
    /// `$_.Exception.HResult`.
    pub hresult: i32,
    /// `$_.FullyQualifiedErrorId`.
    pub fqid: String,
    /// The CategoryInfo category (`ObjectNotFound`, `OperationStopped`, `NotSpecified`, ...).
    pub category: String,
    /// The CategoryInfo target (`(sshd:String)`).
    pub target: String,
    /// The CategoryInfo target's type name (`String`).
    pub target_type: String,
    /// The CategoryInfo activity (`[Get-Service]`), often the command name.
    pub activity: String,
    /// The command that failed (the `X : ` prefix), if a command.
    pub command: Option<String>,
    /// Where it happened.
    pub position: Option<Position>,
    /// The object thrown by `throw <object>` (`$_.TargetObject`).
    pub target_object: Option<Box<crate::value::Value>>,
    /// `$_.Exception.InnerException`: (.NET type, message, HResult), e.g. the
    /// FileNotFoundException inside a MethodInvocationException.
    pub inner: Option<(String, String, i32)>,
}

impl ErrorRecord {
    /// A RuntimeException, as `throw "message"` makes.
    pub fn runtime(message: impl Into<String>) -> Self {
        let message = message.into();
        ErrorRecord {
            fqid: message.clone(),
            target: message.clone(),
            target_type: "String".into(),
            message,
            exception_type: "System.Management.Automation.RuntimeException".into(),
            hresult: -2146233087,
            category: "OperationStopped".into(),
            activity: String::new(),
            command: None,
            position: None,
            target_object: None,
            inner: None,
        }
    }

    /// An error with an explicit id and category.
    pub fn new(
        message: impl Into<String>,
        exception_type: &str,
        fqid: &str,
        category: &str,
    ) -> Self {
        ErrorRecord {
            message: message.into(),
            exception_type: exception_type.into(),
            hresult: -2146233087,
            fqid: fqid.into(),
            category: category.into(),
            target: String::new(),
            target_type: String::new(),
            activity: String::new(),
            command: None,
            position: None,
            target_object: None,
            inner: None,
        }
    }

    /// The "term is not recognized" error, exactly as Windows PowerShell words it.
    pub fn not_recognized(name: &str) -> Self {
        let mut e = ErrorRecord::new(
            format!(
                "The term '{name}' is not recognized as the name of a cmdlet, function, script file, or operable program. Check the spelling of the name, or if a path was included, verify that the path is correct and try again."
            ),
            "System.Management.Automation.CommandNotFoundException",
            "CommandNotFoundException",
            "ObjectNotFound",
        );
        e.target = name.into();
        e.target_type = "String".into();
        e.command = Some(name.into());
        e.hresult = -2146233087;
        e
    }

    /// Builder: sets the target shown in CategoryInfo.
    pub fn with_target(mut self, target: &str, type_name: &str) -> Self {
        self.target = target.into();
        self.target_type = type_name.into();
        self
    }

    /// Builder: sets the HResult.
    pub fn with_hresult(mut self, hresult: i32) -> Self {
        self.hresult = hresult;
        self
    }

    /// Short exception name (`CommandNotFoundException`).
    pub fn exception_short(&self) -> &str {
        self.exception_type
            .rsplit('.')
            .next()
            .unwrap_or(&self.exception_type)
    }

    /// The console rendering (what lands in StdErr).
    pub fn render(&self, script_path: Option<&str>) -> String {
        let mut out = String::new();
        match &self.command {
            Some(c) => out.push_str(&format!("{c} : {}\r\n", self.message)),
            None => out.push_str(&format!("{}\r\n", self.message)),
        }
        if let Some(p) = &self.position {
            let at = match script_path {
                Some(s) => format!("At {s}:{} char:{}", p.line, p.column),
                None => format!("At line:{} char:{}", p.line, p.column),
            };
            out.push_str(&at);
            out.push_str("\r\n");
            out.push_str(&format!("+ {}\r\n", p.line_text.trim_end()));
            out.push_str(&format!(
                "+ {}{}\r\n",
                " ".repeat(p.column.saturating_sub(1)),
                "~".repeat(p.width.max(1))
            ));
        }
        let target = if self.target.is_empty() && self.target_type.is_empty() {
            ":".to_string()
        } else {
            format!("{}:{}", self.target, self.target_type)
        };
        out.push_str(&format!(
            "    + CategoryInfo          : {}: ({target}) [{}], {}\r\n",
            self.category,
            self.activity,
            self.exception_short()
        ));
        out.push_str(&format!(
            "    + FullyQualifiedErrorId : {}\r\n \r\n",
            self.fqid
        ));
        out
    }
}

/// A parse failure, rendered like Windows PowerShell's ParserError.
#[derive(Debug, Clone, Error, PartialEq)]
#[error("{}", self.render(None))]
pub struct ParseError {
    /// Each problem found (PowerShell lists them all).
    pub problems: Vec<ParseProblem>,
}

/// One parser error.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseProblem {
    /// Where.
    pub position: Position,
    /// The message (`Missing closing '}' in statement block or type definition.`).
    pub message: String,
    /// The error id (`MissingEndCurlyBrace`).
    pub id: String,
}

impl ParseError {
    /// The console rendering: `At line:1 char:5` … `+ CategoryInfo : ParserError`.
    pub fn render(&self, script_path: Option<&str>) -> String {
        let mut out = String::new();
        for p in &self.problems {
            let pos = &p.position;
            match script_path {
                Some(s) => out.push_str(&format!("At {s}:{} char:{}\r\n", pos.line, pos.column)),
                None => out.push_str(&format!("At line:{} char:{}\r\n", pos.line, pos.column)),
            }
            out.push_str(&format!("+ {}\r\n", pos.line_text.trim_end()));
            out.push_str(&format!(
                "+ {}~\r\n",
                " ".repeat(pos.column.saturating_sub(1))
            ));
            out.push_str(&p.message);
            out.push_str("\r\n");
        }
        let id = self
            .problems
            .first()
            .map(|p| p.id.as_str())
            .unwrap_or("UnexpectedToken");
        out.push_str("    + CategoryInfo          : ParserError: (:) [], ParentContainsErrorRecordException\r\n");
        out.push_str(&format!("    + FullyQualifiedErrorId : {id}\r\n \r\n"));
        out
    }
}
