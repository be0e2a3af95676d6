//! The top-level error that knows its exit code, over the domains' shared contract
//! (`azssh_core::error`).

pub use azssh_core::error::{Diagnostic, UserError};

/// Exit codes fixed by DESIGN.md.
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const USAGE: i32 = 2;
}

/// The top-level error: knows its exit code and renders itself in one place (`output::print_error`).
#[derive(Debug)]
pub enum AppError {
    /// Bad flags, missing files, bad configuration: exit 2.
    Usage {
        message: String,
        hint: Option<String>,
    },
    /// The operation (script, workflow step, some VMs of a fleet) failed: exit 1.
    Failed(Box<Diagnostic>),
    /// Exit with this code and print nothing more: `azssh connect -- command` passes on the
    /// remote command's exit code, as `ssh` does.
    Exit(i32),
}

impl AppError {
    pub fn usage(message: impl Into<String>, hint: Option<String>) -> Self {
        AppError::Usage {
            message: message.into(),
            hint,
        }
    }

    /// A domain error met outside a script (e.g. by a subcommand) counts as a failure.
    pub fn failed<E: UserError + ?Sized>(err: &E) -> Self {
        AppError::Failed(Box::new(Diagnostic::plain(
            err.kind(),
            err.to_string(),
            err.hint(),
        )))
    }

    /// The emulator's errors have the same shape without implementing our trait: the judge never
    /// links the code it judges.
    #[cfg(feature = "emulator")]
    pub fn emulator(err: &azssh_emulator::EmulatorError) -> Self {
        AppError::Failed(Box::new(Diagnostic::plain(
            err.kind(),
            err.to_string(),
            err.hint(),
        )))
    }

    /// A domain error caused by what the user passed: exit 2.
    pub fn usage_from<E: UserError + ?Sized>(err: &E) -> Self {
        AppError::usage(err.to_string(), err.hint())
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Usage { .. } => exit::USAGE,
            AppError::Failed(_) => exit::FAILED,
            AppError::Exit(code) => *code,
        }
    }

    pub fn render(&self) -> String {
        match self {
            AppError::Usage { message, hint } => {
                let mut s = format!("error: {message}\n");
                if let Some(h) = hint {
                    s.push_str(&format!("hint: {h}\n"));
                }
                s
            }
            AppError::Failed(diag) => diag.render(),
            AppError::Exit(_) => String::new(),
        }
    }
}
