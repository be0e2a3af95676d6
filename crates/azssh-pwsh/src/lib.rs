//! `pwsh`: a Windows PowerShell 5.1 interpreter for a documented subset, parsed with the
//! `tree-sitter-powershell` grammar, for emulated Windows guests.
//!
//! - [`parse`] turns text into a [`Script`] or a [`ParseError`] worded like PowerShell's parser.
//! - [`check_ps51`] is the guard rail for scripts sent to Windows PowerShell 5.1.
//! - [`Interpreter`] runs a script against a [`Host`] (the machine: commands, files, env).
//! - [`run_cmd`] is a small cmd.exe for SSH exec (it hands `powershell ...` to the interpreter).
//!
//! See README.md for the exact subset.

// Errors are ErrorRecords, which carry everything PowerShell prints about an error; they are
// the rare path, so their size in `Result` is accepted rather than boxed at every call.
#![allow(clippy::result_large_err)]

mod cmd;
mod cmdlets;
mod dotnet;
mod error;
mod format;
mod host;
mod interp;
mod ops;
mod parse;
mod value;

pub use cmd::{decode_encoded_command, run_cmd, runcommand_params, split_words, CMD_MAX_LINE};
pub use error::{ErrorRecord, ParseError, ParseProblem, Position};
pub use format::{from_json, out_string, to_json};
pub use host::{
    parent_dir, path_key, BoundArgs, CommandOutput, FsError, Host, HostResult, ItemKind, RawArg,
    TestHost, COMMON_SWITCHES,
};
pub use interp::{Interpreter, Limits, Outcome};
pub use parse::{check_ps51, parse, ProblemKind, Script, SyntaxProblem, MAX_TREE_DEPTH};
pub use value::{decode_script_file, DateTime, Encoding, Hashtable, PsObject, Value};

/// Parses and runs `text` on `host` with RunCommand-style parameters: the one-call API.
pub fn run(host: &mut dyn Host, text: &str, args: &[(String, Value)]) -> Outcome {
    Interpreter::new(host).run_text(text, args)
}

#[cfg(test)]
mod tests;
