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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::guest::{ADMIN_KEYS_FILE, E_NO_UPDATE_SOURCE, GuestConfig, ServiceStatus};
    use super::*;
    use crate::error::UserError;
    use crate::windows::authorized_keys::{ADMINISTRATORS_SID, SYSTEM_SID};
    use crate::windows::{
        GuestScript, ScriptResult, encoded_command, install_key_script, setup_script,
    };

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJQnYzj9mKCCZE8M3eHtdm9nNOltS0LYhpqLqkyVKFA me@laptop";

    fn guest(build: u32) -> Guest {
        let mut config = GuestConfig::new(7, build, "VM-7", "azureuser");
        config.users = vec!["bob".into()];
        Guest::new(config)
    }

    fn key() -> SshPublicKey {
        SshPublicKey::parse(KEY).unwrap()
    }

    fn run(guest: &mut Guest, script: &str) -> ScriptResult {
        let out = guest.run_powershell(script);
        assert_eq!(out.exit_code, 0, "{out:?}");
        ScriptResult::parse(&out.stdout, &out.stderr).unwrap()
    }

    #[test]
    fn setup_script_leaves_sshd_running_automatic_with_the_firewall_rule_on() {
        let mut g = guest(17763);
        let state = run(&mut g, &setup_script()).setup_state().unwrap();
        assert!(state.changed);
        assert_eq!(
            (state.sshd.as_str(), state.startup.as_str(), state.firewall),
            ("Running", "Automatic", true)
        );
        assert!(g.sshd_running() && g.firewall_allows(22));
        assert_eq!(g.sshd().unwrap().startup, StartupType::Automatic);
        let again = run(&mut g, &setup_script()).setup_state().unwrap();
        assert!(!again.changed, "a second run must change nothing");
    }

    #[test]
    fn setup_recreates_a_missing_firewall_rule_and_enables_a_disabled_one() {
        let mut config = GuestConfig::new(1, 20348, "VM-1", "azureuser");
        config.firewall_rule_on_install = false;
        let mut g = Guest::new(config);
        assert!(run(&mut g, &setup_script()).setup_state().unwrap().firewall);
        let out = g.run_powershell("Disable-NetFirewallRule -Name 'OpenSSH-Server-In-TCP'");
        assert_eq!(out.exit_code, 0);
        assert!(!g.firewall_allows(22));
        assert!(run(&mut g, &setup_script()).setup_state().unwrap().changed);
        assert!(g.firewall_allows(22));
    }

    #[test]
    fn key_install_writes_utf8_without_bom_with_the_admin_acl_and_is_idempotent() {
        let mut g = guest(20348);
        let installed = run(
            &mut g,
            &install_key_script(&key(), &KeyTarget::Administrators),
        )
        .key_installed()
        .unwrap();
        assert!(installed.added && installed.admin);
        let file = g.file(ADMIN_KEYS_FILE).unwrap();
        assert_eq!(file.bytes, format!("{KEY}\r\n").into_bytes());
        assert!(!file.acl.inherited);
        let sids: Vec<&str> = file.acl.grants.keys().map(String::as_str).collect();
        assert_eq!(sids, [SYSTEM_SID, ADMINISTRATORS_SID]);
        assert!(g.is_authorized("azureuser", key().key()));
        let again = run(
            &mut g,
            &install_key_script(&key(), &KeyTarget::Administrators),
        )
        .key_installed()
        .unwrap();
        assert!(!again.added);
        assert_eq!(g.file(ADMIN_KEYS_FILE).unwrap().bytes.len(), KEY.len() + 2);
    }

    #[test]
    fn key_for_a_non_admin_goes_to_the_profile_and_for_an_admin_to_the_admin_file() {
        let mut g = guest(20348);
        let bob = KeyTarget::User(UserName::parse("bob").unwrap());
        let installed = run(&mut g, &install_key_script(&key(), &bob))
            .key_installed()
            .unwrap();
        assert_eq!(installed.path, r"C:\Users\bob\.ssh\authorized_keys");
        assert!(g.is_authorized("bob", key().key()));
        assert!(!g.is_authorized("azureuser", key().key()));
        let admin = KeyTarget::User(UserName::parse("AzureUser").unwrap());
        let installed = run(&mut g, &install_key_script(&key(), &admin))
            .key_installed()
            .unwrap();
        assert_eq!(installed.path, ADMIN_KEYS_FILE);
        assert!(g.is_authorized("azureuser", key().key()));
        let nobody = KeyTarget::User(UserName::parse("nobody").unwrap());
        let result = run(&mut g, &install_key_script(&key(), &nobody));
        assert_eq!(
            result.key_installed().unwrap_err().kind(),
            "windows.step_failed"
        );
    }

    #[test]
    fn doc_one_liner_with_utf8_encoding_writes_a_bom_that_azssh_repairs() {
        let mut g = guest(17763);
        run(&mut g, &setup_script());
        let doc = format!(
            "'{KEY}' | Add-Content 'C:\\ProgramData\\ssh\\administrators_authorized_keys' -Encoding UTF8;icacls.exe 'C:\\ProgramData\\ssh\\administrators_authorized_keys' /inheritance:r /grant 'Administrators:F' /grant 'SYSTEM:F'"
        );
        let out = g.run_powershell(&doc);
        assert_eq!(out.exit_code, 0, "{out:?}");
        assert!(out.stdout.contains("Successfully processed 1 files"));
        assert_eq!(
            &g.file(ADMIN_KEYS_FILE).unwrap().bytes[..3],
            &[0xEF, 0xBB, 0xBF]
        );
        assert!(
            !g.is_authorized("azureuser", key().key()),
            "sshd does not read a BOM file"
        );
        let fixed = run(
            &mut g,
            &install_key_script(&key(), &KeyTarget::Administrators),
        )
        .key_installed()
        .unwrap();
        assert!(fixed.repaired && !fixed.added);
        assert!(g.is_authorized("azureuser", key().key()));
    }

    #[test]
    fn redirect_append_writes_utf16_which_authorizes_nobody() {
        let mut g = guest(17763);
        run(&mut g, &setup_script());
        let out = g.run_powershell(&format!(
            "'{KEY}' >> C:\\ProgramData\\ssh\\administrators_authorized_keys"
        ));
        assert_eq!(out.exit_code, 0, "{out:?}");
        assert_eq!(&g.file(ADMIN_KEYS_FILE).unwrap().bytes[..2], &[0xFF, 0xFE]);
        g.run_powershell("icacls C:\\ProgramData\\ssh\\administrators_authorized_keys /inheritance:r /grant *S-1-5-32-544:F /grant *S-1-5-18:F");
        assert!(!g.is_authorized("azureuser", key().key()));
        assert!(
            run(
                &mut g,
                &install_key_script(&key(), &KeyTarget::Administrators)
            )
            .key_installed()
            .unwrap()
            .repaired
        );
        assert!(g.is_authorized("azureuser", key().key()));
    }

    #[test]
    fn localized_guest_refuses_english_group_names_but_not_sids() {
        let mut config = GuestConfig::new(3, 20348, "VM-DE", "azureuser");
        config.admin_group_name = "Administratoren".into();
        let mut g = Guest::new(config);
        run(&mut g, &setup_script());
        g.run_powershell(&format!(
            "'{KEY}' | Add-Content 'C:\\ProgramData\\ssh\\administrators_authorized_keys'"
        ));
        let out = g.run_powershell("icacls.exe 'C:\\ProgramData\\ssh\\administrators_authorized_keys' /inheritance:r /grant 'Administrators:F' /grant 'SYSTEM:F'");
        assert!(
            out.stderr.contains("No mapping between account names"),
            "{out:?}"
        );
        assert!(
            !g.is_authorized("azureuser", key().key()),
            "the ACL still inherits"
        );
        run(
            &mut g,
            &install_key_script(&key(), &KeyTarget::Administrators),
        )
        .key_installed()
        .unwrap();
        assert!(g.is_authorized("azureuser", key().key()));
    }

    #[test]
    fn combined_script_does_setup_key_and_host_keys_in_one_run() {
        let mut g = guest(26100);
        let script = GuestScript::new()
            .setup()
            .install_key(key(), KeyTarget::Administrators)
            .read_host_keys()
            .build();
        let result = run(&mut g, &script);
        assert!(result.setup_state().unwrap().changed);
        assert!(result.key_installed().unwrap().added);
        let host_keys = result.host_keys().unwrap();
        assert_eq!(host_keys.len(), 1);
        assert_eq!(
            host_keys[0].key().key_data(),
            g.host_keys()[0].public_key().key_data()
        );
        assert!(g.is_authorized("azureuser", key().key()));
    }

    #[test]
    fn capability_fails_on_2016_and_without_windows_update_with_the_right_errors() {
        let mut old = guest(14393);
        let err = run(&mut old, &setup_script()).setup_state().unwrap_err();
        assert_eq!(err.kind(), "windows.capability_unavailable");
        assert!(err.hint().unwrap().contains("WindowsOpenSSH"));
        assert!(!old.openssh_installed());

        let mut config = GuestConfig::new(4, 17763, "VM-4", "azureuser");
        config.capability_failure = Some(E_NO_UPDATE_SOURCE);
        let mut offline = Guest::new(config);
        let err = run(&mut offline, &setup_script())
            .setup_state()
            .unwrap_err();
        assert_eq!(err.kind(), "windows.capability_install");
        assert!(err.to_string().contains("0x800f0954"));
        assert!(!offline.openssh_installed());
        let out =
            offline.run_powershell("Add-WindowsCapability -Online -Name OpenSSH.Server~~~~0.0.1.0");
        assert_eq!(out.exit_code, 1);
        assert!(out.stderr.contains("0x800f0954"));
    }

    #[test]
    fn docs_capability_command_installs_but_leaves_sshd_stopped_and_manual() {
        let mut g = guest(17763);
        let out = g.run_powershell("Add-WindowsCapability -Online -Name OpenSSH.Server~~~~");
        assert_eq!(out.exit_code, 0, "{out:?}");
        assert!(out.stdout.contains("Online        : True"));
        let sshd = g.sshd().unwrap();
        assert_eq!(
            (sshd.status, sshd.startup),
            (ServiceStatus::Stopped, StartupType::Manual)
        );
        assert!(g.host_keys().is_empty(), "host keys appear on first start");
        let out = g.run_powershell(
            "Start-Service sshd; Set-Service -Name sshd -StartupType 'Automatic'\nGet-Service sshd",
        );
        assert!(out.stdout.contains("Running  sshd"), "{out:?}");
        assert_eq!(g.host_keys().len(), 1);
        let out = g.run_powershell("Get-WindowsCapability -Online -Name OpenSSH.Server*");
        assert!(out.stdout.contains("State : Installed"), "{out:?}");
    }

    #[test]
    fn unmodelled_statements_fail_loudly_and_stop_the_script() {
        let mut g = guest(17763);
        g.run_powershell("Add-WindowsCapability -Online -Name OpenSSH.Server~~~~");
        let out = g.run_powershell("Get-Process sshd; Start-Service sshd");
        assert_eq!(out.exit_code, 1);
        assert!(
            out.stderr
                .contains("cannot model the statement `Get-Process sshd`"),
            "{out:?}"
        );
        assert!(
            !g.sshd_running(),
            "nothing after the unmodelled statement ran"
        );
        for script in [
            "Invoke-Expression 'Start-Service sshd'",
            "Write-Output \"$(hostname)\"",
            "Start-Service ssh-agent",
            "Get-Service | Where-Object Name -eq sshd | Start-Service",
        ] {
            let out = g.run_powershell(script);
            assert_eq!(out.exit_code, 1, "{script}");
            assert!(out.stderr.contains("cannot model"), "{script}: {out:?}");
        }
        assert!(!g.sshd_running());
    }

    #[test]
    fn a_tampered_azssh_block_is_refused() {
        let mut g = guest(17763);
        let script = install_key_script(&key(), &KeyTarget::Administrators);
        let tampered = script.replace("$AzsshUser = ''", "$AzsshUser = ''; calc.exe");
        let out = g.run_powershell(&tampered);
        assert!(out.stderr.contains("block `key`"), "{out:?}");
        assert!(g.file(ADMIN_KEYS_FILE).is_none());
        let out = g.run_powershell(&script.replace("/inheritance:r", "/inheritance:e"));
        assert_eq!(out.exit_code, 1);
        assert!(g.file(ADMIN_KEYS_FILE).is_none());
    }

    #[test]
    fn ssh_exec_runs_cmd_builtins_and_encoded_powershell() {
        let mut g = guest(17763);
        assert_eq!(g.exec("azureuser", "hostname").stdout, "VM-7\r\n");
        assert_eq!(g.exec("azureuser", "whoami").stdout, "vm-7\\azureuser\r\n");
        assert_eq!(g.exec("azureuser", "echo hi there").stdout, "hi there\r\n");
        let line = format!(
            "powershell -NoProfile -NonInteractive -EncodedCommand {}",
            encoded_command("Write-Output 'it''s'; whoami")
        );
        let out = g.exec("azureuser", &line);
        assert_eq!(out.stdout, "it's\r\nvm-7\\azureuser\r\n", "{out:?}");
        let out = g.exec("azureuser", "notepad");
        assert_eq!(out.exit_code, 1);
        assert!(out.stderr.contains("is not recognized"));
        let out = g.exec("azureuser", "powershell -Command Get-Date");
        assert_eq!(out.exit_code, 1);
        g.set_default_shell(DefaultShell::PowerShell);
        assert_eq!(g.exec("azureuser", "Write-Output 'ps'").stdout, "ps\r\n");
    }

    #[test]
    fn error_action_stop_ends_the_script_at_the_first_error() {
        let mut g = guest(17763);
        let out = g.run_powershell("Start-Service sshd\nWrite-Output 'after'");
        assert_eq!(
            (out.exit_code, out.stdout.as_str()),
            (1, "after\r\n"),
            "continue by default"
        );
        let out = g.run_powershell(
            "$ErrorActionPreference = 'Stop'\nStart-Service sshd\nWrite-Output 'after'",
        );
        assert_eq!((out.exit_code, out.stdout.as_str()), (1, ""));
        assert!(out.stderr.contains("Cannot find any service"));
        assert_eq!(
            g.exec("azureuser", "exit").exit_code,
            1,
            "cmd has no exit built-in here"
        );
        assert_eq!(g.run_powershell("exit 3").exit_code, 3);
    }
}
