//! What the domain must tell the operator (a JIT policy bypassed on request, an operation Azure
//! may still complete after a cancel, a priority moved), without the domain printing: the product
//! installs its one printer as the sink; until then, and in tests, notices go to `tracing`.

use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
}

type Sink = fn(Level, &str);

static SINK: OnceLock<Sink> = OnceLock::new();

/// Installs the product's printer (first call wins).
pub fn set_sink(sink: Sink) {
    let _ = SINK.set(sink);
}

fn tell(level: Level, message: &str) {
    match (SINK.get(), level) {
        (Some(sink), _) => sink(level, message),
        (None, Level::Info) => tracing::info!("{message}"),
        (None, Level::Warn) => tracing::warn!("{message}"),
    }
}

/// Tells the operator `message` as information.
pub fn info(message: &str) {
    tell(Level::Info, message);
}

/// Tells the operator `message` as a warning.
pub fn warn(message: &str) {
    tell(Level::Warn, message);
}
