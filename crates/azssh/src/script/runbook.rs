//! Runbooks by name: where `azssh run NAME` looks (`./NAME.rhai`, the directories of
//! `AZSSH_RUNBOOK_PATH`, `<config dir>/azssh/runbooks/`, then the bundled ones) and the header
//! that documents one (`//!` description, then `//! arg NAME: type — meaning (default)` lines).

use std::path::{Path, PathBuf};

use crate::script::bundled;

/// Where a runbook was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A file: `./NAME.rhai`, a directory of `AZSSH_RUNBOOK_PATH` or the config directory.
    File(PathBuf),
    /// Compiled into the binary.
    Bundled,
}

impl Origin {
    /// How `azssh runbooks` shows it: the path, or `bundled`.
    pub fn shown(&self) -> String {
        match self {
            Origin::File(p) => p.display().to_string(),
            Origin::Bundled => "bundled".into(),
        }
    }
}

/// One declared argument: `//! arg port: int — the SSH port (22)`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ArgSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub meaning: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// A runbook's documented header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// The first `//!` line.
    pub description: String,
    /// Further `//!` lines that are not `arg` lines.
    pub details: Vec<String>,
    pub args: Vec<ArgSpec>,
}

/// The `//!` lines at the top of `source` (blank and `//` lines between them are allowed).
pub fn header(source: &str) -> Header {
    let mut h = Header::default();
    for line in source.lines().map(str::trim) {
        if line.is_empty() || (line.starts_with("//") && !line.starts_with("//!")) {
            continue;
        }
        let Some(text) = line.strip_prefix("//!") else {
            break;
        };
        let text = text.trim();
        if h.description.is_empty() {
            h.description = text.to_string();
        } else if let Some(spec) = text.strip_prefix("arg ").and_then(parse_arg) {
            h.args.push(spec);
        } else if !text.is_empty() {
            h.details.push(text.to_string());
        }
    }
    h
}

/// `NAME: type — meaning (default)`; the dash may be `—` or `--`, the default is a trailing
/// parenthesis starting with `default`, or any trailing parenthesis.
fn parse_arg(text: &str) -> Option<ArgSpec> {
    let (name, rest) = text.split_once(':')?;
    let name = name.trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return None;
    }
    let (ty, meaning) = match rest.split_once('—').or_else(|| rest.split_once("--")) {
        Some((t, m)) => (t.trim(), m.trim()),
        None => (rest.trim(), ""),
    };
    let (meaning, default) = match meaning.rfind('(') {
        Some(open) if meaning.ends_with(')') => {
            let inner = meaning[open + 1..meaning.len() - 1].trim();
            let inner = inner
                .strip_prefix("default")
                .map(|d| d.trim_start_matches(':').trim())
                .unwrap_or(inner);
            (meaning[..open].trim(), Some(inner.to_string()))
        }
        _ => (meaning, None),
    };
    Some(ArgSpec {
        name: name.to_string(),
        ty: ty.to_string(),
        meaning: meaning.to_string(),
        default,
    })
}

/// The directories searched after `./`, in order: `AZSSH_RUNBOOK_PATH` (split as `PATH` is),
/// then `<config dir>/azssh/runbooks`.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("AZSSH_RUNBOOK_PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .filter(|d| !d.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    if let Some(config) = dirs::config_dir() {
        dirs.push(config.join("azssh").join("runbooks"));
    }
    dirs
}

/// Whether `spec` is a bare runbook name (no directory part) rather than a path.
pub fn is_name(spec: &str) -> bool {
    !spec.is_empty() && !spec.contains(['/', '\\']) && spec != "." && spec != ".."
}

/// Where the runbook `name` is: `./NAME.rhai`, the search directories, then bundled.
pub fn find(name: &str) -> Option<Origin> {
    if !is_name(name) {
        return None;
    }
    let file = format!("{}.rhai", name.strip_suffix(".rhai").unwrap_or(name));
    let local = Path::new(".").join(&file);
    if local.is_file() {
        return Some(Origin::File(local));
    }
    for dir in search_dirs() {
        let p = dir.join(&file);
        if p.is_file() {
            return Some(Origin::File(p));
        }
    }
    bundled::runbook(name).map(|_| Origin::Bundled)
}

/// One row of `azssh runbooks`.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    pub origin: Origin,
    pub source: String,
}

/// Every runbook reachable by name from the search directories and the bundled set, the first
/// of a name winning (as `find` picks it). `./` is not listed: it is whatever directory you are in.
pub fn list() -> Vec<Listed> {
    let mut out: Vec<Listed> = Vec::new();
    let mut push = |name: String, origin: Origin, source: String| {
        if !out.iter().any(|l| l.name == name) {
            out.push(Listed {
                name,
                origin,
                source,
            });
        }
    };
    for dir in search_dirs() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "rhai") && p.is_file())
            .collect();
        files.sort();
        for p in files {
            let Some(stem) = p.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let text = crate::local_file::read_text(&p, crate::local_file::cap::SCRIPT, "runbook")
                .unwrap_or_default();
            push(stem.to_string(), Origin::File(p.clone()), text);
        }
    }
    for (name, src) in bundled::RUNBOOKS {
        push((*name).to_string(), Origin::Bundled, (*src).to_string());
    }
    out
}

/// The `--arg` names a runbook does not declare; empty when it declares none (an undocumented
/// script takes whatever it is given).
pub fn undeclared<'a>(h: &Header, given: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    if h.args.is_empty() {
        return Vec::new();
    }
    given
        .into_iter()
        .filter(|k| !h.args.iter().any(|a| a.name == *k))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_reads_description_and_args() {
        let h = header(
            "//! Does a thing.\n//! More words.\n//! arg port: int — the SSH port (default 22)\n//! arg name: string -- the VM\nlet x = 1;\n//! arg late: int — not header\n",
        );
        assert_eq!(h.description, "Does a thing.");
        assert_eq!(h.details, vec!["More words."]);
        assert_eq!(h.args.len(), 2);
        assert_eq!(h.args[0].name, "port");
        assert_eq!(h.args[0].ty, "int");
        assert_eq!(h.args[0].meaning, "the SSH port");
        assert_eq!(h.args[0].default.as_deref(), Some("22"));
        assert_eq!(h.args[1].meaning, "the VM");
        assert_eq!(h.args[1].default, None);
    }

    #[test]
    fn every_bundled_runbook_declares_its_args() {
        for (name, src) in bundled::RUNBOOKS {
            let h = header(src);
            assert!(!h.description.is_empty(), "{name}");
            assert!(!h.args.is_empty(), "{name} declares no `//! arg` lines");
            // Every `ARGS.x` the runbook reads is declared.
            let mut rest = *src;
            while let Some(i) = rest.find("ARGS.") {
                rest = &rest[i + 5..];
                let key: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    h.args.iter().any(|a| a.name == key),
                    "{name} reads ARGS.{key} but does not declare it"
                );
            }
        }
    }

    #[test]
    fn undeclared_only_when_args_are_declared() {
        let h = header("//! x\n//! arg a: int — a\n");
        assert_eq!(undeclared(&h, ["a", "b"]), vec!["b"]);
        assert!(undeclared(&header("//! x\n"), ["b"]).is_empty());
    }

    #[test]
    fn names_are_not_paths() {
        assert!(is_name("setup-ssh"));
        assert!(!is_name("./x.rhai"));
        assert!(!is_name("dir/x"));
    }
}
