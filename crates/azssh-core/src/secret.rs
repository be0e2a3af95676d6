//! `Secret<T>`: a value (token, password, passphrase) whose `Debug` and `Display` print `<secret>`,
//! and the process-wide registry of live secret values that `scrub` replaces by `<redacted>` at
//! every place text leaves the process (output, logs, errors, journals).
//!
//! Formatting guards only the `Secret` itself: once a script holds the token (`env(...)`) or a
//! value lands in an error message, only its text is left, so the choke points also scrub by
//! value, whatever key or sentence it hides in.

use std::borrow::Cow;
use std::fmt;
use std::sync::RwLock;

/// What replaces a secret value in any text that leaves the process.
pub const REDACTED: &str = "<redacted>";

/// Shorter values are not scrubbed: replacing `admin` or `22` everywhere would garble output
/// and tell an observer the value anyway. Azure requires 12+ characters for a Windows VM's
/// admin password and its tokens are hundreds of characters, so 8 loses nothing real.
pub const MIN_SCRUB_LEN: usize = 8;

/// A process lives for one command; a fleet run refreshes its token about hourly. The cap only
/// bounds a pathological loop creating secrets.
const MAX_REGISTERED: usize = 4096;

/// Environment variables whose value is a credential whenever set (`azssh` reads them itself,
/// and a script can read them with `env()`).
pub const SECRET_ENV_VARS: [&str; 3] = [
    "AZSSH_ACCESS_TOKEN",
    "AZSSH_KEY_PASSPHRASE",
    "AZURE_CLIENT_SECRET",
];

static REGISTRY: RwLock<Vec<String>> = RwLock::new(Vec::new());

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T: AsRef<str>> Secret<T> {
    /// Wraps `value` and registers it, so `scrub` hides it from every output from now on.
    pub fn new(value: T) -> Self {
        register(value.as_ref());
        Secret(value)
    }
}

impl<T> Secret<T> {
    /// The only way to the value: grep for `expose` to audit where secrets go.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// Adds `value` to the values `scrub` replaces (surrounding whitespace ignored; short values
/// skipped, see `MIN_SCRUB_LEN`). Its JSON-escaped spelling is registered too: a password with
/// `"` or `\` appears escaped in `-o json` output and in the journal.
pub fn register(value: &str) {
    let value = value.trim();
    if value.chars().count() < MIN_SCRUB_LEN {
        return;
    }
    let mut forms = vec![value.to_string()];
    if let Ok(quoted) = serde_json::to_string(value) {
        let escaped = &quoted[1..quoted.len() - 1];
        if escaped != value {
            forms.push(escaped.to_string());
        }
    }
    let mut reg = match REGISTRY.write() {
        Ok(r) => r,
        Err(poisoned) => poisoned.into_inner(),
    };
    for form in forms {
        if !reg.contains(&form) && reg.len() < MAX_REGISTERED {
            reg.push(form);
        }
    }
    // Longest first, so a secret that contains another is replaced whole.
    reg.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// Registers the value of every credential variable in `SECRET_ENV_VARS` that is set.
pub fn register_env(env: &dyn Fn(&str) -> Option<String>) {
    for name in SECRET_ENV_VARS {
        if let Some(v) = env(name) {
            register(&v);
        }
    }
}

/// `text` with every registered secret value replaced by `<redacted>`; borrowed when there is
/// nothing to replace (the common case costs one substring search per secret).
pub fn scrub(text: &str) -> Cow<'_, str> {
    let reg = match REGISTRY.read() {
        Ok(r) => r,
        Err(poisoned) => poisoned.into_inner(),
    };
    let mut out: Cow<'_, str> = Cow::Borrowed(text);
    for secret in reg.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_formats_its_value() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s:?} {s}"), "<secret> <secret>");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn registered_values_are_scrubbed_anywhere_in_text() {
        let _s = Secret::new("eyJ0eXAiOiJKV1Qi.unit-test-token".to_string());
        assert_eq!(
            scrub("error: bad eyJ0eXAiOiJKV1Qi.unit-test-token here"),
            "error: bad <redacted> here"
        );
        assert!(matches!(scrub("nothing to hide"), Cow::Borrowed(_)));
    }

    #[test]
    fn short_values_are_not_registered() {
        register("admin12");
        assert_eq!(scrub("user admin12"), "user admin12");
    }

    #[test]
    fn json_escaped_spelling_is_scrubbed_too() {
        register("pa\"ss\\word-unit");
        let json = serde_json::to_string(&serde_json::json!({"x": "pa\"ss\\word-unit"}))
            .unwrap_or_default();
        assert_eq!(scrub(&json), r#"{"x":"<redacted>"}"#);
    }
}
