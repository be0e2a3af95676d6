//! The machine a script runs on: the [`Host`] trait the emulator's guest model implements,
//! the arguments host commands receive ([`BoundArgs`]), and an in-memory [`TestHost`].

use std::collections::{BTreeMap, HashMap};

use thiserror::Error;

use crate::error::ErrorRecord;
use crate::value::Value;

/// A filesystem failure, worded as .NET words it.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum FsError {
    /// The file is not there.
    #[error("Could not find file '{0}'.")]
    FileNotFound(String),
    /// A directory on the way is not there.
    #[error("Could not find a part of the path '{0}'.")]
    DirectoryNotFound(String),
    /// Access denied.
    #[error("Access to the path '{0}' is denied.")]
    AccessDenied(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// A file of this many bytes.
    File(u64),
    /// A directory.
    Directory,
}

/// One argument as written on the command line, before binding.
#[derive(Debug, Clone)]
pub enum RawArg {
    /// `-Name` (value `None`) or `-Name:value`.
    Param {
        /// The name without the dash, as typed.
        name: String,
        /// The value after a colon.
        value: Option<Value>,
    },
    /// A value.
    Value(Value),
}

/// Arguments bound for a command: named parameters, switches and positionals.
#[derive(Debug, Clone, Default)]
pub struct BoundArgs {
    /// As written (native commands see these as strings).
    pub raw: Vec<RawArg>,
    named: Vec<(String, Value)>,
    positional: Vec<Value>,
}

/// Switches (parameters without a value) common to the cmdlets scripts use.
pub const COMMON_SWITCHES: &[&str] = &[
    "Force",
    "Recurse",
    "Online",
    "Compress",
    "Unique",
    "Raw",
    "NoNewline",
    "PassThru",
    "Descending",
    "Sum",
    "Average",
    "Maximum",
    "Minimum",
    "AsHashtable",
    "Directory",
    "File",
    "Hidden",
    "NoTypeInformation",
    "Confirm",
    "WhatIf",
    "Verbose",
    "Debug",
    "CaseSensitive",
    "SimpleMatch",
    "Quiet",
    "List",
    "Append",
    "NoClobber",
    "AsString",
    "Leaf",
    "Parent",
    "IsValid",
    "All",
    "NoElement",
    "AsSecureString",
    "Wait",
    "NoProfile",
    "Resolve",
    "IsAbsolute",
    "Local",
    "EQ",
    "NE",
    "GT",
    "GE",
    "LT",
    "LE",
    "Like",
    "NotLike",
    "Match",
    "NotMatch",
    "Contains",
    "NotContains",
    "In",
    "NotIn",
    "CEQ",
    "CNE",
    "CLike",
    "CMatch",
    "Not",
    "Is",
    "IsNot",
    "AllowClobber",
    "Exclude",
];

fn name_matches(typed: &str, full: &str) -> bool {
    !typed.is_empty()
        && typed.len() <= full.len()
        && full
            .get(..typed.len())
            .is_some_and(|f| f.eq_ignore_ascii_case(typed))
}

impl BoundArgs {
    /// Binds raw arguments: `-X value` unless `X` is a switch (`switches`, plus
    /// [`COMMON_SWITCHES`]), `-X:value` always, anything else positional.
    pub fn bind(raw: Vec<RawArg>, switches: &[&str]) -> BoundArgs {
        let is_switch = |n: &str| {
            switches
                .iter()
                .chain(COMMON_SWITCHES)
                .any(|s| s.eq_ignore_ascii_case(n))
        };
        let mut named = Vec::new();
        let mut positional = Vec::new();
        let mut i = 0;
        while i < raw.len() {
            match &raw[i] {
                RawArg::Param {
                    name,
                    value: Some(v),
                } => named.push((name.clone(), v.clone())),
                RawArg::Param { name, value: None } => {
                    if is_switch(name) {
                        named.push((name.clone(), Value::Bool(true)));
                    } else if let Some(RawArg::Value(v)) = raw.get(i + 1) {
                        named.push((name.clone(), v.clone()));
                        i += 1;
                    } else {
                        named.push((name.clone(), Value::Bool(true)));
                    }
                }
                RawArg::Value(v) => positional.push(v.clone()),
            }
            i += 1;
        }
        BoundArgs {
            raw,
            named,
            positional,
        }
    }

    /// A named parameter's value; `name` is the full name, the script may have abbreviated it.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.named
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .or_else(|| self.named.iter().find(|(k, _)| name_matches(k, name)))
            .map(|(_, v)| v)
    }

    /// Whether a named parameter was given (with any value).
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// A switch: present and not `:$false`.
    pub fn switch(&self, name: &str) -> bool {
        self.get(name).is_some_and(Value::truthy)
    }

    /// A positional argument.
    pub fn positional(&self, i: usize) -> Option<&Value> {
        self.positional.get(i)
    }

    /// All positional arguments.
    pub fn positionals(&self) -> &[Value] {
        &self.positional
    }

    /// All named parameters as typed.
    pub fn named(&self) -> &[(String, Value)] {
        &self.named
    }

    /// The named parameter, else positional `pos`.
    pub fn get_or_pos(&self, name: &str, pos: usize) -> Option<&Value> {
        self.get(name).or_else(|| self.positional(pos))
    }

    /// As a string (`None` when absent).
    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(Value::to_str)
    }

    /// The named parameter or positional `pos`, as a string.
    pub fn string_or_pos(&self, name: &str, pos: usize) -> Option<String> {
        self.get_or_pos(name, pos).map(Value::to_str)
    }

    /// The arguments as a native program receives them.
    pub fn native_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        for a in &self.raw {
            match a {
                RawArg::Param { name, value: None } => out.push(format!("-{name}")),
                RawArg::Param {
                    name,
                    value: Some(v),
                } => out.push(format!("-{name}:{}", v.to_str())),
                RawArg::Value(v) => out.extend(v.enumerate().iter().map(Value::to_str)),
            }
        }
        out
    }
}

/// What a host command produced.
#[derive(Debug, Clone, Default)]
pub struct CommandOutput {
    /// Objects written to the pipeline.
    pub values: Vec<Value>,
    /// Non-terminating errors (subject to `-ErrorAction`).
    pub errors: Vec<ErrorRecord>,
    /// A native program's exit code (sets `$LASTEXITCODE`).
    pub exit_code: Option<i32>,
    /// Text a native program wrote to stderr (shown as is).
    pub stderr: String,
}

impl CommandOutput {
    /// Output of these values.
    pub fn values(values: Vec<Value>) -> Self {
        CommandOutput {
            values,
            ..Default::default()
        }
    }

    /// One value.
    pub fn one(value: impl Into<Value>) -> Self {
        Self::values(vec![value.into()])
    }

    /// Nothing.
    pub fn none() -> Self {
        Self::default()
    }

    /// A native program's result: stdout lines as strings, exit code.
    pub fn native(stdout: &str, stderr: &str, exit_code: i32) -> Self {
        let mut lines: Vec<Value> = stdout
            .split('\n')
            .map(|l| Value::Str(l.trim_end_matches('\r').to_string()))
            .collect();
        if stdout.ends_with('\n') || stdout.is_empty() {
            lines.pop();
        }
        CommandOutput {
            values: lines,
            errors: Vec::new(),
            exit_code: Some(exit_code),
            stderr: stderr.to_string(),
        }
    }

    /// A non-terminating error.
    pub fn error(e: ErrorRecord) -> Self {
        CommandOutput {
            errors: vec![e],
            ..Default::default()
        }
    }
}

/// The answer of [`Host::command`]. (Returned once per command, never stored: the size of
/// the error variant does not matter.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum HostResult {
    /// The host does not know this command: the interpreter reports "not recognized".
    NotFound,
    /// The command ran.
    Output(CommandOutput),
    /// The command failed with a terminating error.
    Error(ErrorRecord),
}

/// The machine under the script. The interpreter implements the language and the cmdlets
/// that only need these primitives (files, environment); the host implements everything that
/// is machine state (services, capabilities, firewall, users, ACLs, registry, native exes).
pub trait Host {
    /// Runs a command the script did not define and the interpreter does not implement.
    /// `name` is as typed (`Get-Service`, `icacls.exe`, `sc.exe`); `input` is the pipeline
    /// input. Return [`HostResult::NotFound`] for an unknown command.
    fn command(&mut self, name: &str, args: &BoundArgs, input: &[Value]) -> HostResult;

    /// Extra switch parameters of a host command (so `-Online` does not swallow the next word).
    fn switches(&self, _command: &str) -> &[&'static str] {
        &[]
    }

    /// Calls a method on an object the host made (`$id.Translate(...)`); `None` if unknown.
    fn call_method(
        &mut self,
        _target: &Value,
        _method: &str,
        _args: &[Value],
    ) -> Option<Result<Value, ErrorRecord>> {
        None
    }

    /// The ProductVersion of an executable (`(Get-Item x.exe).VersionInfo.ProductVersion`).
    fn file_version(&self, _path: &str) -> Option<String> {
        None
    }

    /// A file's bytes.
    fn read_file(&self, path: &str) -> Result<Vec<u8>, FsError>;
    /// Creates or replaces a file (its directory must exist).
    fn write_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), FsError>;
    /// Creates a directory and its parents.
    fn create_dir(&mut self, path: &str) -> Result<(), FsError>;
    /// Removes a file or directory (`recurse` for a non-empty directory).
    fn remove(&mut self, path: &str, recurse: bool) -> Result<(), FsError>;
    /// What `path` names, if anything.
    fn item(&self, path: &str) -> Option<ItemKind>;
    /// A file's last write time in UTC (`LastWriteTimeUtc`); `None` when the host keeps none.
    fn modified(&self, _path: &str) -> Option<crate::value::DateTime> {
        None
    }
    /// Sets a file's last write time (`[IO.File]::SetLastWriteTimeUtc`).
    fn set_modified(&mut self, path: &str, _when: crate::value::DateTime) -> Result<(), FsError> {
        Err(FsError::Other(format!(
            "this host keeps no file times for '{path}'"
        )))
    }
    /// Full paths of a directory's entries.
    fn list_dir(&self, path: &str) -> Result<Vec<String>, FsError>;
    /// An environment variable.
    fn env_var(&self, name: &str) -> Option<String>;
    /// Sets (or with `None` removes) an environment variable.
    fn set_env_var(&mut self, name: &str, value: Option<&str>);
    /// All environment variables (for `Get-ChildItem env:`).
    fn env_vars(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// The computer name (`[Environment]::MachineName`, `hostname`).
    fn computer_name(&self) -> String {
        self.env_var("COMPUTERNAME")
            .unwrap_or_else(|| "WIN-VM".into())
    }
    /// `[Environment]::OSVersion.Version` (major, minor, build, revision).
    fn os_version(&self) -> (i64, i64, i64, i64) {
        (10, 0, 20348, 0)
    }
    /// The working directory.
    fn cwd(&self) -> String {
        "C:\\Windows\\system32".into()
    }
    /// The script's file name for `At <path>:N char:M` (RunCommand runs a `.ps1`); `None` gives
    /// `At line:N char:M`.
    fn script_path(&self) -> Option<String> {
        None
    }
}

/// Normalises a Windows path for comparisons: backslashes, no trailing separator, lowercase.
pub fn path_key(path: &str) -> String {
    let p = path.replace('/', "\\");
    let p = p.trim_end_matches('\\');
    let p = if p.len() == 2 && p.ends_with(':') {
        format!("{p}\\")
    } else {
        p.to_string()
    };
    p.to_ascii_lowercase()
}

/// The parent directory of a Windows path (`C:\a\b` → `C:\a`, `C:\a` → `C:\`).
pub fn parent_dir(path: &str) -> Option<String> {
    let p = path.replace('/', "\\");
    let p = p.trim_end_matches('\\');
    let i = p.rfind('\\')?;
    let parent = &p[..i];
    if parent.len() == 2 && parent.ends_with(':') {
        Some(format!("{parent}\\"))
    } else if parent.is_empty() {
        None
    } else {
        Some(parent.to_string())
    }
}

type Handler = Box<dyn FnMut(&BoundArgs, &[Value]) -> HostResult>;
type MethodHandler = Box<dyn FnMut(&Value, &[Value]) -> Option<Result<Value, ErrorRecord>>>;

/// An in-memory Windows machine for tests: files and directories keyed case-insensitively,
/// environment variables, and commands registered as closures.
#[derive(Default)]
pub struct TestHost {
    /// Files: key [`path_key`] → (path as created, bytes).
    pub files: BTreeMap<String, (String, Vec<u8>)>,
    /// Directories: key → path as created.
    pub dirs: BTreeMap<String, String>,
    /// Environment: uppercase name → (name, value).
    pub env: BTreeMap<String, (String, String)>,
    commands: HashMap<String, Handler>,
    methods: HashMap<String, MethodHandler>,
    /// ProductVersion of executables, by [`path_key`].
    pub versions: BTreeMap<String, String>,
    /// Every command the host was asked for, with its native-style arguments.
    pub calls: Vec<(String, Vec<String>)>,
}

impl std::fmt::Debug for TestHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestHost")
            .field("files", &self.files.keys().collect::<Vec<_>>())
            .field("dirs", &self.dirs.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl TestHost {
    /// A machine with `C:\`, `C:\Windows`, `C:\ProgramData`, `C:\Users` and the usual
    /// environment (`ProgramData`, `SystemRoot`, `COMPUTERNAME`=`WIN-VM`, `USERNAME`).
    pub fn new() -> Self {
        let mut h = TestHost::default();
        for d in [
            "C:\\",
            "C:\\Windows",
            "C:\\Windows\\System32",
            "C:\\ProgramData",
            "C:\\Users",
            "C:\\Windows\\Temp",
        ] {
            h.dirs.insert(path_key(d), d.to_string());
        }
        for (k, v) in [
            ("ProgramData", "C:\\ProgramData"),
            ("SystemRoot", "C:\\Windows"),
            ("windir", "C:\\Windows"),
            ("COMPUTERNAME", "WIN-VM"),
            ("USERNAME", "SYSTEM"),
            ("TEMP", "C:\\Windows\\Temp"),
            ("ProgramFiles", "C:\\Program Files"),
        ] {
            h.env
                .insert(k.to_ascii_uppercase(), (k.to_string(), v.to_string()));
        }
        h
    }

    /// Registers a command.
    pub fn on(
        &mut self,
        name: &str,
        f: impl FnMut(&BoundArgs, &[Value]) -> HostResult + 'static,
    ) -> &mut Self {
        self.commands.insert(name.to_ascii_lowercase(), Box::new(f));
        self
    }

    /// Registers a method host objects answer (`Translate`, ...).
    pub fn on_method(
        &mut self,
        name: &str,
        f: impl FnMut(&Value, &[Value]) -> Option<Result<Value, ErrorRecord>> + 'static,
    ) -> &mut Self {
        self.methods.insert(name.to_ascii_lowercase(), Box::new(f));
        self
    }

    /// Adds a file (and its directories).
    pub fn add_file(&mut self, path: &str, bytes: &[u8]) -> &mut Self {
        if let Some(p) = parent_dir(path) {
            let _ = self.create_dir(&p);
        }
        self.files
            .insert(path_key(path), (path.to_string(), bytes.to_vec()));
        self
    }

    /// A file's bytes.
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        self.files.get(&path_key(path)).map(|(_, b)| b.as_slice())
    }
}

impl Host for TestHost {
    fn command(&mut self, name: &str, args: &BoundArgs, input: &[Value]) -> HostResult {
        self.calls.push((name.to_string(), args.native_args()));
        let key = name.to_ascii_lowercase();
        let key = match self.commands.contains_key(&key) {
            true => key,
            false => key.trim_end_matches(".exe").to_string(),
        };
        match self.commands.get_mut(&key) {
            Some(f) => f(args, input),
            None => HostResult::NotFound,
        }
    }

    fn call_method(
        &mut self,
        target: &Value,
        method: &str,
        args: &[Value],
    ) -> Option<Result<Value, ErrorRecord>> {
        let f = self.methods.get_mut(&method.to_ascii_lowercase())?;
        f(target, args)
    }

    fn file_version(&self, path: &str) -> Option<String> {
        self.versions.get(&path_key(path)).cloned()
    }

    fn read_file(&self, path: &str) -> Result<Vec<u8>, FsError> {
        match self.files.get(&path_key(path)) {
            Some((_, b)) => Ok(b.clone()),
            None => Err(FsError::FileNotFound(path.to_string())),
        }
    }

    fn write_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        let parent = parent_dir(path).unwrap_or_default();
        if !self.dirs.contains_key(&path_key(&parent)) {
            return Err(FsError::DirectoryNotFound(path.to_string()));
        }
        if self.dirs.contains_key(&path_key(path)) {
            return Err(FsError::AccessDenied(path.to_string()));
        }
        let key = path_key(path);
        let shown = self
            .files
            .get(&key)
            .map(|(p, _)| p.clone())
            .unwrap_or_else(|| path.to_string());
        self.files.insert(key, (shown, bytes.to_vec()));
        Ok(())
    }

    fn create_dir(&mut self, path: &str) -> Result<(), FsError> {
        if self.files.contains_key(&path_key(path)) {
            return Err(FsError::Other(format!(
                "An item with the specified name {path} already exists."
            )));
        }
        let mut p = Some(path.trim_end_matches(['\\', '/']).to_string());
        while let Some(d) = p {
            self.dirs.entry(path_key(&d)).or_insert_with(|| d.clone());
            p = parent_dir(&d);
        }
        Ok(())
    }

    fn remove(&mut self, path: &str, recurse: bool) -> Result<(), FsError> {
        let key = path_key(path);
        if self.files.remove(&key).is_some() {
            return Ok(());
        }
        if self.dirs.contains_key(&key) {
            let prefix = format!("{}\\", key.trim_end_matches('\\'));
            let has_children = self.files.keys().any(|k| k.starts_with(&prefix))
                || self.dirs.keys().any(|k| k.starts_with(&prefix));
            if has_children && !recurse {
                return Err(FsError::Other(format!(
                    "The item at {path} has children and the Recurse parameter was not specified."
                )));
            }
            self.files.retain(|k, _| !k.starts_with(&prefix));
            self.dirs
                .retain(|k, _| !k.starts_with(&prefix) && *k != key);
            return Ok(());
        }
        Err(FsError::FileNotFound(path.to_string()))
    }

    fn item(&self, path: &str) -> Option<ItemKind> {
        let key = path_key(path);
        if let Some((_, b)) = self.files.get(&key) {
            return Some(ItemKind::File(b.len() as u64));
        }
        self.dirs.get(&key).map(|_| ItemKind::Directory)
    }

    fn list_dir(&self, path: &str) -> Result<Vec<String>, FsError> {
        let key = path_key(path);
        if !self.dirs.contains_key(&key) {
            return Err(FsError::DirectoryNotFound(path.to_string()));
        }
        let prefix = format!("{}\\", key.trim_end_matches('\\'));
        let direct = |k: &String| {
            k.len() > prefix.len() && k.starts_with(&prefix) && !k[prefix.len()..].contains('\\')
        };
        let mut out: Vec<String> = self
            .dirs
            .iter()
            .filter(|(k, _)| direct(k))
            .map(|(_, p)| p.clone())
            .collect();
        out.extend(
            self.files
                .iter()
                .filter(|(k, _)| direct(k))
                .map(|(_, (p, _))| p.clone()),
        );
        Ok(out)
    }

    fn env_var(&self, name: &str) -> Option<String> {
        self.env
            .get(&name.to_ascii_uppercase())
            .map(|(_, v)| v.clone())
    }

    fn set_env_var(&mut self, name: &str, value: Option<&str>) {
        match value {
            Some(v) => {
                self.env
                    .insert(name.to_ascii_uppercase(), (name.into(), v.into()));
            }
            None => {
                self.env.remove(&name.to_ascii_uppercase());
            }
        }
    }

    fn env_vars(&self) -> Vec<(String, String)> {
        self.env.values().cloned().collect()
    }
}
