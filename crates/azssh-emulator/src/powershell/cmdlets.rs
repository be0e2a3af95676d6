//! The single statements the guest understands: OpenSSH capability and service cmdlets,
//! firewall rules, file writes with Windows PowerShell 5.1's encodings, `icacls`, and a few
//! read-only commands. Each is matched by name and checked parameters; anything else is
//! unmodelled.

use super::super::guest::{FIRST_CAPABILITY_BUILD, StartupType, decode_text};
use super::protocol::CAPABILITY;
use super::syntax::{Args, Token};
use super::{Interpreter, StmtError, unmodelled, whoami};

impl Interpreter<'_> {
    pub(super) fn command(
        &mut self,
        statement: &str,
        tokens: &[Token],
    ) -> Result<String, StmtError> {
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
        if !known_parameters(&name, &args) {
            return Err(unmodelled(statement));
        }
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
                if guest.os_build() >= FIRST_CAPABILITY_BUILD {
                    for (cap, installed) in [
                        ("OpenSSH.Client~~~~0.0.1.0", true),
                        (CAPABILITY, guest.capability_installed()),
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

    /// The two filters people use in the docs: `Get-WindowsCapability -Online | Where-Object
    /// Name -like 'OpenSSH*'` and `Get-Service sshd | Select-Object Status` (ARM's example).
    pub(super) fn filtered(
        &mut self,
        statement: &str,
        producer: &[Token],
        filter: &[Token],
    ) -> Result<String, StmtError> {
        let producer_name = producer.first().map(|t| t.text().to_ascii_lowercase());
        let filter: Vec<String> = filter
            .iter()
            .map(|t| t.text().to_ascii_lowercase())
            .collect();
        match (producer_name.as_deref(), filter.as_slice()) {
            (Some("get-windowscapability"), [_, name, like, pattern])
                if name == "name" && like == "-like" =>
            {
                let mut tokens = producer.to_vec();
                tokens.push(Token::Word("-Name".into()));
                tokens.push(Token::Quoted(pattern.clone()));
                self.command(statement, &tokens)
            }
            (Some("get-service"), [_, property])
                if property == "status" || property == "starttype" =>
            {
                self.command(statement, producer)?;
                let sshd = self.guest.sshd().ok_or_else(|| unmodelled(statement))?;
                let (header, value) = if property == "status" {
                    ("Status", format!("{:?}", sshd.status))
                } else {
                    ("StartType", format!("{:?}", sshd.startup))
                };
                let rule = "-".repeat(header.len());
                Ok(format!("\r\n{header}\r\n{rule}\r\n{value}\r\n\r\n"))
            }
            _ => Err(unmodelled(statement)),
        }
    }

    pub(super) fn pipe_into(
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
        if !known_parameters(&name, &args) {
            return Err(unmodelled(statement));
        }
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
            self.native_exit = Some(2);
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
                    // ERROR_NONE_MAPPED
                    self.native_exit = Some(1332);
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
        self.native_exit = Some(0);
        Ok(format!(
            "processed file: {path}\r\nSuccessfully processed 1 files; Failed processing 0 files\r\n"
        ))
    }
}

/// Real cmdlets reject parameters they do not have; the model refuses any it does not know,
/// so a typo never "works" here and fails on Windows.
fn known_parameters(cmdlet: &str, args: &Args) -> bool {
    let allowed: &[&str] = match cmdlet {
        "add-windowscapability" | "get-windowscapability" => &["online", "name"],
        "start-service" | "stop-service" | "restart-service" | "get-service" => &["name", "force"],
        "set-service" => &["name", "startuptype"],
        "get-netfirewallrule" | "enable-netfirewallrule" | "disable-netfirewallrule" => &["name"],
        "new-netfirewallrule" => &[
            "name",
            "displayname",
            "enabled",
            "direction",
            "protocol",
            "action",
            "localport",
        ],
        "get-content" | "type" | "cat" | "test-path" => &["path", "literalpath"],
        "add-content" | "set-content" => &["path", "value", "encoding"],
        "out-file" => &["filepath", "encoding", "append"],
        "write-output" | "echo" | "write-host" | "hostname" | "whoami" => &[],
        // Native tools and plain output take no PowerShell parameters worth checking.
        _ => return true,
    };
    const COMMON: [&str; 2] = ["erroraction", "warningaction"];
    args.named
        .keys()
        .all(|k| allowed.contains(&k.as_str()) || COMMON.contains(&k.as_str()))
}

fn expect_openssh_capability(statement: &str, args: &Args) -> Result<(), StmtError> {
    let name = args.named("name").unwrap_or_default();
    if args.has("online") && (name == CAPABILITY || name == "OpenSSH.Server~~~~") {
        Ok(())
    } else {
        Err(unmodelled(statement))
    }
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
