//! The runbooks (`scripts/*.rhai`) and stdlib modules (`stdlib/*.rhai`) compiled into the binary.

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// A bundled runbook's source by name (`enable-ssh`, with or without `.rhai`).
pub fn runbook(name: &str) -> Option<&'static str> {
    let name = name.strip_suffix(".rhai").unwrap_or(name);
    RUNBOOKS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

pub fn stdlib(name: &str) -> Option<&'static str> {
    STDLIB.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The first `//!` line of a script: its one-line description.
pub fn description(source: &str) -> String {
    source
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("//!"))
        .map(|l| l.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bundled_file_has_a_description() {
        for (name, src) in RUNBOOKS.iter().chain(STDLIB) {
            assert!(
                !description(src).is_empty(),
                "{name} lacks a leading `//!` line"
            );
        }
    }

    #[test]
    fn runbook_lookup_accepts_extension() {
        if let Some((name, _)) = RUNBOOKS.first() {
            assert!(runbook(&format!("{name}.rhai")).is_some());
        }
        assert!(runbook("no-such-runbook").is_none());
    }
}
