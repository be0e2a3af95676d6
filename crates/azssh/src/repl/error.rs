//! Errors of the REPL itself (its terminal, history, meta commands), as opposed to errors of the
//! code typed into it, which are `Diagnostic`s.

use crate::error::UserError;
use azssh_core::error::kind;

#[derive(Debug, thiserror::Error)]
pub enum ReplError {
    #[error("cannot use the terminal: {0}")]
    Terminal(String),
    #[error("unknown command `{0}`")]
    UnknownCommand(String),
    #[error("`{0}` needs a file name")]
    MissingArgument(String),
    #[error("cannot write `{path}`: {reason}")]
    Write { path: String, reason: String },
    #[error("the evaluation stopped unexpectedly")]
    EvaluationLost,
}

impl UserError for ReplError {
    fn kind(&self) -> &'static str {
        match self {
            ReplError::Terminal(_) => kind::repl::TERMINAL,
            ReplError::UnknownCommand(_) => kind::repl::UNKNOWN_COMMAND,
            ReplError::MissingArgument(_) => kind::repl::MISSING_ARGUMENT,
            ReplError::Write { .. } => kind::repl::WRITE,
            ReplError::EvaluationLost => "internal",
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            ReplError::Terminal(_) => {
                Some("run `azssh repl` in a terminal, or use `azssh run FILE` for scripts".into())
            }
            ReplError::UnknownCommand(_) => Some("`:help` lists the commands".into()),
            ReplError::MissingArgument(c) => Some(format!("write `{c} FILE`")),
            ReplError::Write { .. } => Some("check the path and its permissions".into()),
            ReplError::EvaluationLost => Some("this is a bug in azssh; please report it".into()),
        }
    }
}
