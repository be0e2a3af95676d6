//! The error contract every domain shares: a kind, a lower-case message and an optional hint,
//! and the top-level error that knows its exit code.

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

/// Exit codes fixed by DESIGN.md.
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const USAGE: i32 = 2;
}
