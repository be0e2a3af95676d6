//! The guest's PowerShell: interprets what azssh's builders emit and the doc's one-liners,
//! against the [`Guest`] model. Not a PowerShell engine.
//!
//! Two kinds of input are understood:
//! - azssh's framed blocks (`# azssh:begin NAME` … `# azssh:end NAME`). A block is accepted
//!   only if it is byte for byte what `crate::windows` renders for the same parameters, and its
//!   effect is then applied by the matching `Guest::*_step`.
//! - single statements (`;`-separated, simple pipelines) for the commands people type:
//!   `Add-WindowsCapability`, `Get-WindowsCapability`, `Start/Stop/Restart-Service`,
//!   `Set-Service -StartupType`, `Get-Service`, `*-NetFirewallRule`, `Add-Content`, `>`/`>>`,
//!   `icacls`, `Get-Content`/`type`, `Test-Path`, `hostname`, `whoami`, `Write-Output`/`echo`.
//!
//! Anything else stops the script with a StdErr line naming the statement: the emulator never
//! pretends an unmodelled command worked.

use std::collections::BTreeMap;

use super::guest::{DefaultShell, Guest, StartupType, decode_text};
use crate::ssh::keys::SshPublicKey;
use crate::windows::authorized_keys::{self, KeyTarget, UserName};
use crate::windows::combined::{self, EPILOGUE, HOST_KEYS, KEY, PROLOGUE, RESULT_MARKER, SETUP};
use crate::windows::quote::{SINGLE_QUOTES, decode_encoded_command, ps_unquote_prefix};
use crate::windows::{host_keys, setup};

/// What a script or command produced. RunCommand shows `stdout`/`stderr`; SSH exec also the
/// exit code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestOutput {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
}

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
        let first = words.next().unwrap_or_default().to_ascii_lowercase();
        if first == "powershell" || first == "powershell.exe" {
            return self.exec_powershell(user, words.collect());
        }
        if self.default_shell() == DefaultShell::PowerShell {
            return Interpreter::new(self, Some(user)).run(line);
        }
        let rest = line.get(first.len()..).unwrap_or_default().trim();
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
                    "'{first}' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n"
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
        let expected = match name {
            PROLOGUE => combined::prologue(),
            SETUP => setup::block(),
            HOST_KEYS => host_keys::block(),
            EPILOGUE => combined::epilogue(),
            KEY => {
                let (key, target) = key_params(body)?;
                authorized_keys::block(&key, &target)
            }
            _ => return Err(unmodelled(&format!("# azssh:begin {name}"))),
        };
        if body != expected {
            return Err(unmodelled(&format!(
                "block `{name}` (it differs from the one azssh emits)"
            )));
        }
        if name == PROLOGUE {
            self.stop_on_error = true;
            let mut r = serde_json::Map::new();
            r.insert("v".into(), combined::RESULT_VERSION.into());
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
                r.insert("setup".into(), self.guest.setup_step());
            }
            KEY => {
                let (key, target) = key_params(body)?;
                let user = match &target {
                    KeyTarget::Administrators => "",
                    KeyTarget::User(u) => u.as_str(),
                };
                r.insert("key".into(), self.guest.key_step(user, &key.to_line()));
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
        for statement in split_outside_quotes(line, ';')? {
            let statement = statement.trim();
            if !statement.is_empty() {
                self.statement(statement)?;
            }
        }
        Ok(())
    }

    fn statement(&mut self, statement: &str) -> Result<(), StmtError> {
        let (quiet, rest) = match statement.strip_prefix("$null") {
            Some(r) if r.trim_start().starts_with('=') => (true, r.trim_start()[1..].trim()),
            _ => (false, statement),
        };
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

    fn command(&mut self, statement: &str, tokens: &[Token]) -> Result<String, StmtError> {
        if let Some(i) = tokens
            .iter()
            .position(|t| matches!(t, Token::Word(w) if w == ">" || w == ">>"))
        {
            let append = matches!(&tokens[i], Token::Word(w) if w == ">>");
            let ([Token::Quoted(v) | Token::Word(v)], [target]) = (&tokens[..i], &tokens[i + 1..])
            else {
                return Err(unmodelled(statement));
            };
            // Windows PowerShell 5.1 redirects through Out-File, whose default is UTF-16LE.
            return self.write_text(target.text(), &format!("{v}\r\n"), Some("unicode"), append);
        }
        let Some((name, args)) = tokens.split_first() else {
            return Ok(String::new());
        };
        let args = Args::parse(args);
        let name = name.text().to_ascii_lowercase();
        let guest = &mut *self.guest;
        match name.as_str() {
            "add-windowscapability" => {
                expect_openssh_capability(statement, &args)?;
                guest.add_capability().map_err(|e| {
                    StmtError::Failed(format!("Add-WindowsCapability : {}", e.message))
                })?;
                Ok(
                    "\r\nPath          :\r\nOnline        : True\r\nRestartNeeded : False\r\n\r\n"
                        .into(),
                )
            }
            "get-windowscapability" => {
                let pattern = args.named("name").ok_or_else(|| unmodelled(statement))?;
                let mut out = String::new();
                if guest.os_build() >= super::guest::FIRST_CAPABILITY_BUILD {
                    for (cap, installed) in [
                        ("OpenSSH.Client~~~~0.0.1.0", true),
                        (setup::CAPABILITY, guest.capability_installed()),
                    ] {
                        if wildcard_match(pattern, cap) {
                            let state = if installed { "Installed" } else { "NotPresent" };
                            out.push_str(&format!("Name  : {cap}\r\nState : {state}\r\n\r\n"));
                        }
                    }
                }
                Ok(out)
            }
            "start-service" | "stop-service" | "restart-service" | "set-service"
            | "get-service" => {
                let service = args
                    .named("name")
                    .or(args.positional.first().map(String::as_str));
                if !service.is_some_and(|s| s.eq_ignore_ascii_case("sshd")) {
                    return Err(unmodelled(statement));
                }
                let failed = |m: String| StmtError::Failed(format!("{}: {m}", tokens[0].text()));
                match name.as_str() {
                    "start-service" => guest.start_sshd().map_err(failed)?,
                    "stop-service" => guest.stop_sshd().map_err(failed)?,
                    "restart-service" => {
                        guest.stop_sshd().map_err(failed)?;
                        guest.start_sshd().map_err(failed)?
                    }
                    "set-service" => {
                        let startup = match args
                            .named("startuptype")
                            .map(str::to_ascii_lowercase)
                            .as_deref()
                        {
                            Some("automatic") => StartupType::Automatic,
                            Some("manual") => StartupType::Manual,
                            Some("disabled") => StartupType::Disabled,
                            _ => return Err(unmodelled(statement)),
                        };
                        guest.set_startup(startup).map_err(failed)?
                    }
                    _ => {
                        let sshd = guest.sshd().ok_or_else(|| {
                            failed("Cannot find any service with service name 'sshd'.".into())
                        })?;
                        return Ok(format!(
                            "\r\nStatus   Name               DisplayName\r\n------   ----               -----------\r\n{:<8} sshd               OpenSSH SSH Server\r\n\r\n",
                            format!("{:?}", sshd.status)
                        ));
                    }
                };
                Ok(String::new())
            }
            "get-netfirewallrule"
            | "enable-netfirewallrule"
            | "disable-netfirewallrule"
            | "new-netfirewallrule" => self.firewall(statement, &name, &args),
            "hostname" => Ok(format!("{}\r\n", guest.computer_name())),
            "whoami" => Ok(format!("{}\r\n", whoami(guest, self.user))),
            "write-output" | "echo" | "write-host" => {
                Ok(format!("{}\r\n", args.positional.join(" ")))
            }
            "get-content" | "type" | "cat" => {
                let path = args
                    .named("path")
                    .or(args.positional.first().map(String::as_str))
                    .ok_or_else(|| unmodelled(statement))?;
                let file = guest.file(path).ok_or_else(|| {
                    StmtError::Failed(format!(
                        "Get-Content : Cannot find path '{path}' because it does not exist."
                    ))
                })?;
                let text = decode_text(&file.bytes);
                Ok(text.lines().map(|l| format!("{l}\r\n")).collect())
            }
            "test-path" => {
                let path = args
                    .named("literalpath")
                    .or(args.named("path"))
                    .or(args.positional.first().map(String::as_str))
                    .ok_or_else(|| unmodelled(statement))?;
                let exists = guest.file(path).is_some() || guest.dir_exists(path);
                Ok(format!("{}\r\n", if exists { "True" } else { "False" }))
            }
            "add-content" | "set-content" => {
                let value = args
                    .named("value")
                    .ok_or_else(|| unmodelled(statement))?
                    .to_string();
                self.content(statement, &name, &value, &args)
            }
            "icacls" | "icacls.exe" => Ok(self.icacls(statement, &args)?),
            "exit" => Err(StmtError::Exit(
                args.positional
                    .first()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0),
            )),
            _ => Err(unmodelled(statement)),
        }
    }

    fn pipe_into(
        &mut self,
        statement: &str,
        value: &str,
        sink: &[Token],
    ) -> Result<String, StmtError> {
        let Some((name, args)) = sink.split_first() else {
            return Err(unmodelled(statement));
        };
        let name = name.text().to_ascii_lowercase();
        let args = Args::parse(args);
        match name.as_str() {
            "add-content" | "set-content" => self.content(statement, &name, value, &args),
            "out-file" => {
                let path = args
                    .named("filepath")
                    .or(args.positional.first().map(String::as_str))
                    .ok_or_else(|| unmodelled(statement))?
                    .to_string();
                let enc = args
                    .named("encoding")
                    .map(str::to_string)
                    .unwrap_or_else(|| "unicode".into());
                self.write_text(
                    &path,
                    &format!("{value}\r\n"),
                    Some(&enc),
                    args.has("append"),
                )
            }
            _ => Err(unmodelled(statement)),
        }
    }

    /// `Add-Content`/`Set-Content` in Windows PowerShell 5.1: the default encoding is the ANSI
    /// code page, and `-Encoding UTF8` writes a BOM into a new file (the doc's pitfall).
    fn content(
        &mut self,
        statement: &str,
        name: &str,
        value: &str,
        args: &Args,
    ) -> Result<String, StmtError> {
        let path = args
            .named("path")
            .or(args.positional.first().map(String::as_str))
            .ok_or_else(|| unmodelled(statement))?
            .to_string();
        let encoding = args.named("encoding").map(str::to_string);
        self.write_text(
            &path,
            &format!("{value}\r\n"),
            encoding.as_deref(),
            name == "add-content",
        )
    }

    fn write_text(
        &mut self,
        path: &str,
        text: &str,
        encoding: Option<&str>,
        append: bool,
    ) -> Result<String, StmtError> {
        let new_file = !append || self.guest.file(path).is_none_or(|f| f.bytes.is_empty());
        let mut bytes = Vec::new();
        match encoding.map(str::to_ascii_lowercase).as_deref() {
            None | Some("ascii" | "default" | "oem") => bytes.extend(
                text.chars()
                    .map(|c| if c.is_ascii() { c as u8 } else { b'?' }),
            ),
            Some("utf8") => {
                if new_file {
                    bytes.extend([0xEF, 0xBB, 0xBF]);
                }
                bytes.extend(text.as_bytes());
            }
            Some("unicode") => {
                if new_file {
                    bytes.extend([0xFF, 0xFE]);
                }
                bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
            }
            Some(other) => return Err(unmodelled(&format!("-Encoding {other}"))),
        }
        self.guest
            .write_file(path, &bytes, append)
            .map_err(StmtError::Failed)?;
        Ok(String::new())
    }

    fn firewall(&mut self, statement: &str, name: &str, args: &Args) -> Result<String, StmtError> {
        let rule = args
            .named("name")
            .ok_or_else(|| unmodelled(statement))?
            .to_string();
        let guest = &mut *self.guest;
        let missing = || {
            StmtError::Failed(format!(
                "{name} : No MSFT_NetFirewallRule objects found with property 'Name' equal to '{rule}'."
            ))
        };
        match name {
            "get-netfirewallrule" => match guest.firewall_rule(&rule) {
                Some(r) => Ok(format!(
                    "\r\nName        : {}\r\nDisplayName : {}\r\nEnabled     : {}\r\nDirection   : Inbound\r\nAction      : Allow\r\n\r\n",
                    r.name,
                    r.display_name,
                    if r.enabled { "True" } else { "False" }
                )),
                None if args
                    .named("erroraction")
                    .is_some_and(|a| a.eq_ignore_ascii_case("SilentlyContinue")) =>
                {
                    Ok(String::new())
                }
                None => Err(missing()),
            },
            "enable-netfirewallrule" | "disable-netfirewallrule" => {
                guest
                    .set_firewall_enabled(&rule, name.starts_with("enable"))
                    .ok_or_else(missing)?;
                Ok(String::new())
            }
            _ => {
                let expect = [
                    ("direction", "inbound"),
                    ("action", "allow"),
                    ("protocol", "tcp"),
                    ("enabled", "true"),
                ];
                if expect
                    .iter()
                    .any(|(k, v)| args.named(k).is_some_and(|a| !a.eq_ignore_ascii_case(v)))
                {
                    return Err(unmodelled(statement));
                }
                let port = args
                    .named("localport")
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| unmodelled(statement))?;
                let display = args.named("displayname").unwrap_or(&rule).to_string();
                if !guest.add_firewall_rule(&rule, &display, port) {
                    return Err(StmtError::Failed(
                        "New-NetFirewallRule : Cannot create a file when that file already exists."
                            .into(),
                    ));
                }
                Ok(format!(
                    "\r\nName        : {rule}\r\nDisplayName : {display}\r\nEnabled     : True\r\n\r\n"
                ))
            }
        }
    }

    /// `icacls PATH [/inheritance:r|d|e] [/grant[:r] ACCOUNT:PERM]...`. Like the real tool it
    /// resolves every account before changing anything and reports failures in its exit code,
    /// not as a PowerShell error.
    fn icacls(&mut self, statement: &str, args: &Args) -> Result<String, StmtError> {
        let raw: Vec<&str> = args.raw.iter().map(String::as_str).collect();
        let (path, options) = raw.split_first().ok_or_else(|| unmodelled(statement))?;
        let mut inheritance = None;
        let mut grants = Vec::new();
        let mut i = 0;
        while i < options.len() {
            let opt = options[i].to_ascii_lowercase();
            match opt.as_str() {
                "/inheritance:r" | "/inheritance:d" | "/inheritance:e" => {
                    inheritance = opt.chars().last()
                }
                "/grant" | "/grant:r" if i + 1 < options.len() => {
                    let (account, perm) = options[i + 1]
                        .rsplit_once(':')
                        .ok_or_else(|| unmodelled(statement))?;
                    grants.push((account.to_string(), perm.to_string()));
                    i += 1;
                }
                _ => return Err(unmodelled(statement)),
            }
            i += 1;
        }
        let guest = &mut *self.guest;
        if guest.file(path).is_none() {
            self.out.stderr.push_str(&format!(
                "{path}: The system cannot find the file specified.\r\n"
            ));
            return Ok("Successfully processed 0 files; Failed processing 1 files\r\n".into());
        }
        let mut resolved = Vec::new();
        for (account, perm) in grants {
            match guest.resolve_account(&account) {
                Some(sid) => resolved.push((sid, perm)),
                None => {
                    self.out.stderr.push_str(&format!(
                        "{account}: No mapping between account names and security IDs was done.\r\n"
                    ));
                    return Ok(
                        "Successfully processed 0 files; Failed processing 1 files\r\n".into(),
                    );
                }
            }
        }
        let inherited_sids = guest
            .file(path)
            .map(|f| guest.effective_sids(f))
            .unwrap_or_default();
        let Some(file) = guest.file_mut(path) else {
            return Err(unmodelled(statement));
        };
        match inheritance {
            Some('r') => file.acl.inherited = false,
            Some('d') => {
                for sid in inherited_sids {
                    file.acl.grants.entry(sid).or_insert_with(|| "RX".into());
                }
                file.acl.inherited = false;
            }
            Some('e') => file.acl.inherited = true,
            _ => {}
        }
        for (sid, perm) in resolved {
            file.acl.grants.insert(sid, perm);
        }
        Ok(format!(
            "processed file: {path}\r\nSuccessfully processed 1 files; Failed processing 0 files\r\n"
        ))
    }
}

fn expect_openssh_capability(statement: &str, args: &Args) -> Result<(), StmtError> {
    let name = args.named("name").unwrap_or_default();
    if args.has("online") && (name == setup::CAPABILITY || name == "OpenSSH.Server~~~~") {
        Ok(())
    } else {
        Err(unmodelled(statement))
    }
}

/// The two parameter lines of a `key` block, parsed back and re-validated.
fn key_params(body: &str) -> Result<(SshPublicKey, KeyTarget), StmtError> {
    let bad = || unmodelled("block `key` (its parameters are not what azssh emits)");
    let mut lines = body.lines();
    let literal = |line: Option<&str>, prefix: &str| {
        let (value, rest) = ps_unquote_prefix(line?.strip_prefix(prefix)?)?;
        rest.is_empty().then_some(value)
    };
    let user = literal(lines.next(), "$AzsshUser = ").ok_or_else(bad)?;
    let key = literal(lines.next(), "$AzsshKey = ").ok_or_else(bad)?;
    let key = SshPublicKey::parse(&key).map_err(|_| bad())?;
    let target = if user.is_empty() {
        KeyTarget::Administrators
    } else {
        KeyTarget::User(UserName::parse(&user).map_err(|_| bad())?)
    };
    Ok((key, target))
}

/// `Get-WindowsCapability -Name` patterns: `*` only, case-insensitive.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    fn matches(p: &[u8], t: &[u8]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) => (0..=t.len()).any(|i| matches(rest, &t[i..])),
            Some((c, rest)) => {
                t.first().is_some_and(|x| x.eq_ignore_ascii_case(c)) && matches(rest, &t[1..])
            }
        }
    }
    matches(pattern.as_bytes(), text.as_bytes())
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
}

impl Token {
    fn text(&self) -> &str {
        match self {
            Token::Word(s) | Token::Quoted(s) => s,
        }
    }
}

/// Splits on `sep` outside quotes. Double-quoted strings that would expand (`$`, backtick)
/// are not modelled.
fn split_outside_quotes(text: &str, sep: char) -> Result<Vec<&str>, StmtError> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut rest = text;
    let mut offset = 0;
    while let Some(c) = rest.chars().next() {
        if SINGLE_QUOTES.contains(&c) {
            let (_, after) = ps_unquote_prefix(rest).ok_or_else(|| unmodelled(text))?;
            offset += rest.len() - after.len();
            rest = after;
            continue;
        }
        if c == '"' {
            let end = rest[1..].find('"').ok_or_else(|| unmodelled(text))? + 2;
            offset += end;
            rest = &rest[end..];
            continue;
        }
        if c == sep {
            parts.push(&text[start..offset]);
            start = offset + c.len_utf8();
        }
        offset += c.len_utf8();
        rest = &rest[c.len_utf8()..];
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn tokenize(text: &str) -> Result<Vec<Token>, StmtError> {
    let mut tokens = Vec::new();
    let mut rest = text.trim_start();
    while let Some(c) = rest.chars().next() {
        if SINGLE_QUOTES.contains(&c) {
            let (value, after) = ps_unquote_prefix(rest).ok_or_else(|| unmodelled(text))?;
            tokens.push(Token::Quoted(value));
            rest = after;
        } else if c == '"' {
            let end = rest[1..].find('"').ok_or_else(|| unmodelled(text))? + 1;
            let value = &rest[1..end];
            if value.contains(['$', '`']) {
                return Err(unmodelled(text));
            }
            tokens.push(Token::Quoted(value.to_string()));
            rest = &rest[end + 1..];
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let word = &rest[..end];
            if word.contains(['$', '`', '(', ')', '{', '}', '@']) {
                return Err(unmodelled(text));
            }
            tokens.push(Token::Word(word.to_string()));
            rest = &rest[end..];
        }
        rest = rest.trim_start();
    }
    Ok(tokens)
}

/// A cmdlet's arguments: `-Name value` pairs, switches, and positional values.
struct Args {
    named: BTreeMap<String, Option<String>>,
    positional: Vec<String>,
    /// Every argument as given, for native tools such as icacls.
    raw: Vec<String>,
}

const SWITCHES: [&str; 5] = ["online", "force", "append", "nonewline", "passthru"];

impl Args {
    fn parse(tokens: &[Token]) -> Args {
        let mut args = Args {
            named: BTreeMap::new(),
            positional: Vec::new(),
            raw: tokens.iter().map(|t| t.text().to_string()).collect(),
        };
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                Token::Word(w) if w.starts_with('-') && w.len() > 1 => {
                    let name = w[1..].trim_end_matches(':').to_ascii_lowercase();
                    let takes_value = !SWITCHES.contains(&name.as_str()) && i + 1 < tokens.len();
                    let value = takes_value.then(|| tokens[i + 1].text().to_string());
                    i += usize::from(takes_value);
                    args.named.insert(name, value);
                }
                t => args.positional.push(t.text().to_string()),
            }
            i += 1;
        }
        args
    }

    fn named(&self, name: &str) -> Option<&str> {
        self.named.get(name)?.as_deref()
    }

    fn has(&self, name: &str) -> bool {
        self.named.contains_key(name)
    }
}
