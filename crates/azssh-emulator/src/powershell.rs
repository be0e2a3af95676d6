//! The guest's PowerShell: interprets what azssh's builders emit and the doc's one-liners,
//! against the [`Guest`] model. Not a PowerShell engine.
//!
//! Two kinds of input are understood:
//! - azssh's framed blocks (`# azssh:begin NAME` … `# azssh:end NAME`), recognised by their
//!   documented names and parameters (`protocol`); the effect is applied by the matching
//!   `Guest::*_step`.
//! - single statements (`;`-separated, simple pipelines) for the commands people type:
//!   `Add-WindowsCapability`, `Get-WindowsCapability`, `Start/Stop/Restart-Service`,
//!   `Set-Service -StartupType`, `Get-Service`, `*-NetFirewallRule`, `Add-Content`, `>`/`>>`,
//!   `icacls`, `Get-Content`/`type`, `Test-Path`, `hostname`, `whoami`, `Write-Output`/`echo`.
//!
//! Anything else stops the script with a StdErr line naming the statement: the emulator never
//! pretends an unmodelled command worked.

use super::guest::{DefaultShell, Guest};
use protocol::{
    HOST_KEYS, KEY, PROLOGUE, RESULT_MARKER, RESULT_VERSION, SERVICE, SETUP,
    decode_encoded_command, ps_unquote_prefix,
};
use syntax::{Token, split_outside_quotes, tokenize};

/// What a script or command produced (RunCommand shows `stdout`/`stderr`; SSH exec also the
/// exit code): the same type the ARM side's guest seam uses.
pub use super::world::GuestOutput;

impl Guest {
    /// Runs a RunCommand `RunPowerShellScript` script (as SYSTEM, like Azure's agent).
    pub fn run_powershell(&mut self, script: &str) -> GuestOutput {
        Interpreter::new(self, None).run(script)
    }

    /// Runs an SSH exec request for `user` as the DefaultShell would: cmd-style built-ins, or
    /// `powershell -EncodedCommand <base64 UTF-16LE>` decoded and interpreted.
    pub fn exec(&mut self, user: &str, command_line: &str) -> GuestOutput {
        let line = command_line.trim();
        let mut words = line.split_whitespace();
        let typed = words.next().unwrap_or_default();
        let first = typed.to_ascii_lowercase();
        if first == "powershell" || first == "powershell.exe" {
            return self.exec_powershell(user, words.collect());
        }
        if self.default_shell() == DefaultShell::PowerShell {
            return Interpreter::new(self, Some(user)).run(line);
        }
        let rest = line.get(typed.len()..).unwrap_or_default().trim();
        match first.as_str() {
            "" => GuestOutput::default(),
            "hostname" => ok(format!("{}\r\n", self.computer_name())),
            "whoami" => ok(format!("{}\r\n", whoami(self, Some(user)))),
            "echo" => ok(format!("{rest}\r\n")),
            "type" => match self.file(rest.trim_matches('"')) {
                Some(f) => ok(String::from_utf8_lossy(&f.bytes).into_owned()),
                None => fail("The system cannot find the file specified.\r\n".into(), 1),
            },
            _ => fail(
                format!(
                    "'{typed}' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n"
                ),
                1,
            ),
        }
    }

    fn exec_powershell(&mut self, user: &str, args: Vec<&str>) -> GuestOutput {
        let mut i = 0;
        while i < args.len() {
            match args[i].to_ascii_lowercase().as_str() {
                "-noprofile" | "-noninteractive" | "-nologo" => i += 1,
                "-executionpolicy" => i += 2,
                "-encodedcommand" | "-enc" | "-e" if i + 1 < args.len() => {
                    return match decode_encoded_command(args[i + 1]) {
                        Ok(script) => Interpreter::new(self, Some(user)).run(&script),
                        Err(e) => fail(format!("{e}\r\n"), 1),
                    };
                }
                _ => break,
            }
        }
        fail(
            format!(
                "azssh emulator: cannot model `powershell {}`: only -EncodedCommand is supported\r\n",
                args.join(" ")
            ),
            1,
        )
    }
}

fn ok(stdout: String) -> GuestOutput {
    GuestOutput {
        stdout,
        ..Default::default()
    }
}

fn fail(stderr: String, exit_code: i32) -> GuestOutput {
    GuestOutput {
        stderr,
        exit_code,
        ..Default::default()
    }
}

fn whoami(guest: &Guest, user: Option<&str>) -> String {
    match user {
        Some(u) => format!("{}\\{}", guest.computer_name(), u).to_lowercase(),
        None => "nt authority\\system".into(),
    }
}

/// Why a statement did not complete.
enum StmtError {
    /// Not something the model knows: stop, say so.
    Unmodelled(String),
    /// A PowerShell error record: printed to StdErr; stops the script under `Stop`.
    Failed(String),
    /// `exit N`.
    Exit(i32),
}

fn unmodelled(what: &str) -> StmtError {
    StmtError::Unmodelled(what.chars().take(200).collect())
}

struct Interpreter<'g> {
    guest: &'g mut Guest,
    user: Option<&'g str>,
    out: GuestOutput,
    stop_on_error: bool,
    result: Option<serde_json::Map<String, serde_json::Value>>,
    had_error: bool,
    /// `$?`: whether the last statement succeeded.
    last_ok: bool,
    /// `$LASTEXITCODE`: the last native program's exit code.
    last_exit_code: Option<i32>,
    /// Set by a native program during the current statement (its exit code decides `$?`).
    native_exit: Option<i32>,
    /// `$azsshOk`/`$azsshCode` captured by the exit-code trailer's first line.
    trailer: Option<(bool, Option<i32>)>,
}

impl<'g> Interpreter<'g> {
    fn new(guest: &'g mut Guest, user: Option<&'g str>) -> Self {
        Interpreter {
            guest,
            user,
            out: GuestOutput::default(),
            stop_on_error: false,
            result: None,
            had_error: false,
            last_ok: true,
            last_exit_code: None,
            native_exit: None,
            trailer: None,
        }
    }

    fn run(mut self, script: &str) -> GuestOutput {
        let script = script.replace("\r\n", "\n");
        let lines: Vec<&str> = script.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i].trim();
            i += 1;
            let outcome = if let Some(name) = line.strip_prefix("# azssh:begin ") {
                let end = format!("# azssh:end {name}");
                match lines[i..].iter().position(|l| l.trim() == end) {
                    Some(n) => {
                        let body = lines[i..i + n].join("\n");
                        i += n + 1;
                        self.last_ok = true;
                        self.block(name, &body)
                    }
                    None => Err(unmodelled(&format!("unterminated block `{name}`"))),
                }
            } else if line.is_empty() || line.starts_with('#') {
                Ok(())
            } else {
                self.line(line)
            };
            match outcome {
                Ok(()) => {}
                Err(StmtError::Exit(code)) => {
                    self.out.exit_code = code;
                    return self.out;
                }
                Err(StmtError::Unmodelled(what)) => {
                    self.out.stderr.push_str(&format!(
                        "azssh emulator: cannot model the statement `{what}`; the emulated guest \
                         understands azssh's script blocks and a few documented commands only\r\n"
                    ));
                    self.out.exit_code = 1;
                    return self.out;
                }
                Err(StmtError::Failed(message)) => {
                    self.out.stderr.push_str(&format!("{message}\r\n"));
                    self.had_error = true;
                    if self.stop_on_error {
                        self.out.exit_code = 1;
                        return self.out;
                    }
                }
            }
        }
        self.out.exit_code = i32::from(self.had_error);
        self.out
    }

    // ----- azssh's blocks -----

    fn block(&mut self, name: &str, body: &str) -> Result<(), StmtError> {
        if !protocol::BLOCKS.contains(&name) {
            return Err(unmodelled(&format!("# azssh:begin {name}")));
        }
        if name == KEY {
            key_params(body)?;
        }
        if name == PROLOGUE {
            self.stop_on_error = true;
            let mut r = serde_json::Map::new();
            r.insert("v".into(), RESULT_VERSION.into());
            self.result = Some(r);
            return Ok(());
        }
        let Some(mut r) = self.result.take() else {
            return Err(StmtError::Failed(
                "The property cannot be found on this object. Verify that the property exists and can be set.".into(),
            ));
        };
        match name {
            SETUP => {
                r.insert("setup".into(), self.guest.setup_step(true));
            }
            SERVICE => {
                r.insert("setup".into(), self.guest.setup_step(false));
            }
            KEY => {
                let (key, user) = key_params(body)?;
                r.insert("key".into(), self.guest.key_step(&user, &key));
            }
            HOST_KEYS => match self.guest.host_keys_step() {
                Ok(keys) => {
                    r.insert("host_keys".into(), keys.into());
                }
                Err(e) => {
                    r.insert("host_keys_error".into(), e.into());
                }
            },
            _ => {
                let json = serde_json::Value::Object(r.clone()).to_string();
                self.out
                    .stdout
                    .push_str(&format!("{RESULT_MARKER}{json}\r\n"));
            }
        }
        self.result = Some(r);
        Ok(())
    }

    // ----- single statements -----

    fn line(&mut self, line: &str) -> Result<(), StmtError> {
        if self.exit_trailer(line) {
            return Ok(());
        }
        for statement in split_outside_quotes(line, ';')? {
            let statement = statement.trim();
            if statement.is_empty() {
                continue;
            }
            self.native_exit = None;
            match self.statement(statement) {
                Ok(()) => {
                    self.last_ok = self.native_exit.is_none_or(|code| code == 0);
                    if self.native_exit.is_some() {
                        self.last_exit_code = self.native_exit;
                    }
                }
                // Without `Stop`, an error record does not end the line's other statements.
                Err(StmtError::Failed(message)) if !self.stop_on_error => {
                    self.out.stderr.push_str(&format!("{message}\r\n"));
                    self.had_error = true;
                    self.last_ok = false;
                }
                Err(e) => {
                    self.last_ok = false;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The two lines `azure::run_command` appends to every RunCommand script to learn its exit
    /// status (the action API reports none):
    /// `$azsshOk = $?; $azsshCode = $LASTEXITCODE` and
    /// `if ($azsshOk) { $azsshCode = 0 } elseif (-not $azsshCode) { $azsshCode = 1 }; Write-Output ('AZSSH-EXIT-<hex>:' + $azsshCode)`.
    fn exit_trailer(&mut self, line: &str) -> bool {
        if line == "$azsshOk = $?; $azsshCode = $LASTEXITCODE" {
            self.trailer = Some((self.last_ok, self.last_exit_code));
            return true;
        }
        let marker = line
            .strip_prefix("if ($azsshOk) { $azsshCode = 0 } elseif (-not $azsshCode) { $azsshCode = 1 }; Write-Output ('")
            .and_then(|rest| rest.strip_suffix(":' + $azsshCode)"))
            .filter(|m| {
                m.strip_prefix("AZSSH-EXIT-")
                    .is_some_and(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()))
            });
        let (Some(marker), Some((ok, code))) = (marker, self.trailer) else {
            return false;
        };
        let code = match (ok, code) {
            (true, _) => 0,
            (false, Some(code)) if code != 0 => code,
            (false, _) => 1,
        };
        self.out.stdout.push_str(&format!("{marker}:{code}\r\n"));
        self.last_ok = true;
        true
    }

    fn statement(&mut self, statement: &str) -> Result<(), StmtError> {
        let (quiet, rest) = match statement.strip_prefix("$null") {
            Some(r) if r.trim_start().starts_with('=') => (true, r.trim_start()[1..].trim()),
            _ => (false, statement),
        };
        if rest.is_empty() {
            return Err(unmodelled(statement));
        }
        if let Some(var) = rest.strip_prefix('$') {
            return self.assignment(statement, var);
        }
        let mut stages = split_outside_quotes(rest, '|')?;
        let mut quiet = quiet;
        if stages.len() > 1
            && stages
                .last()
                .is_some_and(|s| s.trim().eq_ignore_ascii_case("Out-Null"))
        {
            stages.pop();
            quiet = true;
        }
        let output = match stages.as_slice() {
            [single] => self.command(statement, &tokenize(single)?)?,
            [producer, filter] if is_filter(filter) => {
                self.filtered(statement, &tokenize(producer)?, &tokenize(filter)?)?
            }
            [value, sink] => {
                let value = tokenize(value)?;
                let [Token::Quoted(v) | Token::Word(v)] = value.as_slice() else {
                    return Err(unmodelled(statement));
                };
                self.pipe_into(statement, v, &tokenize(sink)?)?
            }
            _ => return Err(unmodelled(statement)),
        };
        if !quiet {
            self.out.stdout.push_str(&output);
        }
        Ok(())
    }

    fn assignment(&mut self, statement: &str, var: &str) -> Result<(), StmtError> {
        let (name, value) = var.split_once('=').ok_or_else(|| unmodelled(statement))?;
        let value = tokenize(value.trim())?;
        let [Token::Quoted(value)] = value.as_slice() else {
            return Err(unmodelled(statement));
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "erroractionpreference" => self.stop_on_error = value.eq_ignore_ascii_case("Stop"),
            "progresspreference" | "confirmpreference" => {}
            _ => return Err(unmodelled(statement)),
        }
        Ok(())
    }
}

fn is_filter(stage: &str) -> bool {
    let name = stage.split_whitespace().next().unwrap_or_default();
    ["where-object", "select-object"].contains(&name.to_ascii_lowercase().as_str())
}

/// The two parameter lines of a `key` block (`$AzsshUser = '...'`, `$AzsshKey = '...'`), read
/// back: the user ("" for the administrators' file) and the key re-serialised as OpenSSH writes
/// it (type, base64 body, comment).
fn key_params(body: &str) -> Result<(String, String), StmtError> {
    let bad = || unmodelled("block `key` (its parameters are not what azssh emits)");
    let mut lines = body.lines();
    let literal = |line: Option<&str>, prefix: &str| {
        let (value, rest) = ps_unquote_prefix(line?.strip_prefix(prefix)?)?;
        rest.is_empty().then_some(value)
    };
    let user = literal(lines.next(), "$AzsshUser = ").ok_or_else(bad)?;
    let key = literal(lines.next(), "$AzsshKey = ").ok_or_else(bad)?;
    let key = russh::keys::PublicKey::from_openssh(key.trim()).map_err(|_| bad())?;
    let line = key.to_openssh().map_err(|_| bad())?;
    let valid_user = user.len() <= 20
        && !user
            .chars()
            .any(|c| c.is_control() || "\\/\"[]:;|=,+*?<>@".contains(c));
    if !valid_user {
        return Err(bad());
    }
    Ok((line, user))
}

mod cmdlets;
pub mod protocol;
mod syntax;
