//! The REPL's own commands, typed after a `:` (`:help`, `:load FILE`, `:vars`...): parsing,
//! the help texts, and their completion.

use std::path::PathBuf;

use crate::repl::error::ReplError;
use crate::script::catalog::Catalog;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meta {
    Help(Option<String>),
    Load(PathBuf),
    Vars,
    Reset,
    Save(PathBuf),
    Quit,
}

/// Every meta command with its argument and what it does (the `:help` overview).
pub const COMMANDS: &[(&str, &str, &str)] = &[
    (
        ":help",
        "[NAME]",
        "this overview, or the doc of a function, a module (`retry`, `retry::retry`) or `ARGS`",
    ),
    (
        ":load",
        "FILE",
        "run a script file in this session (its variables and functions stay)",
    ),
    (":vars", "", "list the session's variables with their types"),
    (":reset", "", "forget every variable, function and import"),
    (
        ":save",
        "FILE",
        "write what you typed this session as a script",
    ),
    (":quit", "", "leave (Ctrl-D does too)"),
];

/// Parses a line starting with `:`.
pub fn parse(line: &str) -> Result<Meta, ReplError> {
    let line = line.trim();
    let (command, arg) = match line.split_once(char::is_whitespace) {
        Some((c, a)) => (c, a.trim()),
        None => (line, ""),
    };
    let needs_file = |what: &str| {
        if arg.is_empty() {
            Err(ReplError::MissingArgument(what.to_string()))
        } else {
            Ok(PathBuf::from(arg))
        }
    };
    match command {
        ":help" | ":h" | ":?" => Ok(Meta::Help((!arg.is_empty()).then(|| arg.to_string()))),
        ":load" | ":l" => needs_file(":load").map(Meta::Load),
        ":save" => needs_file(":save").map(Meta::Save),
        ":vars" | ":v" => Ok(Meta::Vars),
        ":reset" => Ok(Meta::Reset),
        ":quit" | ":q" | ":exit" => Ok(Meta::Quit),
        other => Err(ReplError::UnknownCommand(other.to_string())),
    }
}

pub fn overview() -> String {
    let mut out = String::from(
        "Type Rhai statements; each result is printed. Variables, functions and imports stay for the session.\n\
         Tab completes functions, methods after `.`, map keys, VM names inside vm(\"...\"), paths and commands.\n\
         An open `{`, `(`, `[` or string continues on the next line. Ctrl-C cancels a running call or\n\
         clears the line; Ctrl-R searches history; Ctrl-D leaves.\n\ncommands:\n",
    );
    for (name, arg, what) in COMMANDS {
        out.push_str(&format!("  {:<14} {what}\n", format!("{name} {arg}")));
    }
    out.push_str("\n`azssh docs` prints the whole function reference.");
    out
}

/// Signatures and doc comment of `name`, or `None` when nothing by that name exists.
pub fn help_for(catalog: &Catalog, name: &str) -> Option<String> {
    let name = name.trim().trim_end_matches("()");
    let overloads = catalog.overloads(name);
    if overloads.is_empty() {
        return None;
    }
    let mut out = String::new();
    for f in &overloads {
        out.push_str(&f.signature);
        out.push('\n');
    }
    if let Some(doc) = overloads.iter().map(|f| &f.doc).find(|d| !d.is_empty()) {
        out.push('\n');
        out.push_str(doc);
        out.push('\n');
    }
    Some(out.trim_end().to_string())
}

/// Names of meta commands starting with `prefix`.
pub fn commands_starting(prefix: &str) -> Vec<&'static str> {
    COMMANDS
        .iter()
        .map(|(name, ..)| *name)
        .filter(|n| n.starts_with(prefix))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_and_arguments() {
        assert_eq!(parse(":help").unwrap(), Meta::Help(None));
        assert_eq!(
            parse(":help sleep").unwrap(),
            Meta::Help(Some("sleep".into()))
        );
        assert_eq!(
            parse(":load  a b.rhai ").unwrap(),
            Meta::Load("a b.rhai".into())
        );
        assert_eq!(parse(":q").unwrap(), Meta::Quit);
    }

    #[test]
    fn missing_file_and_unknown_command_are_errors() {
        assert!(matches!(parse(":save"), Err(ReplError::MissingArgument(_))));
        assert!(matches!(
            parse(":frobnicate"),
            Err(ReplError::UnknownCommand(_))
        ));
    }

    #[test]
    fn overview_lists_every_command() {
        let text = overview();
        for (name, ..) in COMMANDS {
            assert!(text.contains(name), "{name}");
        }
    }
}
