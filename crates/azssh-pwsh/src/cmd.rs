//! A small cmd.exe for SSH exec on emulated guests (OpenSSH's default shell on Windows):
//! `%VAR%` expansion, `&`/`&&`/`||`, the built-ins people type (`echo`, `type`, `set`, `ver`,
//! `cd`, `exit`), `powershell -Command/-EncodedCommand` through the interpreter, anything else
//! through the host, and cmd's own wording when a command is unknown or a line too long.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::host::{BoundArgs, Host, HostResult, RawArg};
use crate::interp::{Interpreter, Outcome};
use crate::value::Value;

/// cmd.exe's maximum command-line length.
pub const CMD_MAX_LINE: usize = 8191;

fn expand_env(host: &dyn Host, line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.find('%') {
            Some(j) if j > 0 && !after[..j].contains(' ') => match host.env_var(&after[..j]) {
                Some(v) => {
                    out.push_str(&v);
                    rest = &after[j + 1..];
                }
                None => {
                    out.push('%');
                    rest = after;
                }
            },
            _ => {
                out.push('%');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Splits a command line into words, keeping quoted parts together (quotes removed).
pub fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(cur);
    }
    words
}

/// Decodes `-EncodedCommand`'s base64 of UTF-16LE.
pub fn decode_encoded_command(b64: &str) -> Option<String> {
    let bytes = STANDARD.decode(b64.trim()).ok()?;
    if bytes.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|p| u16::from_le_bytes([p[0], p[1]]))
        .collect();
    String::from_utf16(&units).ok()
}

/// Runs `powershell.exe` arguments (after the program name).
fn powershell(host: &mut dyn Host, args: &[String], raw_rest: &str) -> Outcome {
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_ascii_lowercase();
        match a.as_str() {
            "-noprofile" | "-noninteractive" | "-nologo" | "-nop" | "-noni" => i += 1,
            "-executionpolicy" | "-ep" | "-inputformat" | "-outputformat" | "-windowstyle" => {
                i += 2
            }
            "-encodedcommand" | "-enc" | "-e" | "-ec" => {
                return match args.get(i + 1).and_then(|b| decode_encoded_command(b)) {
                    Some(script) => Interpreter::new(host).run_text(&script, &[]),
                    None => Outcome {
                        stdout: String::new(),
                        stderr: "Cannot process the command because the value specified with -EncodedCommand is not properly encoded. The value must be Base64 encoded.\r\n".into(),
                        exit_code: 1,
                    },
                };
            }
            "-command" | "-c" => {
                // The rest of the line, as typed, is the script.
                let lower = raw_rest.to_ascii_lowercase();
                let at = lower
                    .find(&format!("{} ", args[i].to_ascii_lowercase()))
                    .map(|p| p + args[i].len() + 1)
                    .unwrap_or(raw_rest.len());
                let script = raw_rest.get(at..).unwrap_or("").trim();
                let script = script
                    .strip_prefix('"')
                    .and_then(|s| s.strip_suffix('"'))
                    .unwrap_or(script);
                return Interpreter::new(host).run_text(script, &[]);
            }
            _ => {
                // `powershell Get-Date`: the rest is the command.
                let script = args[i..].join(" ");
                return Interpreter::new(host).run_text(&script, &[]);
            }
        }
    }
    Outcome::default()
}

fn one_command(host: &mut dyn Host, line: &str) -> Outcome {
    let line = line.trim_start();
    let words = split_words(line);
    let Some(first) = words.first() else {
        return Outcome::default();
    };
    let name = first.to_ascii_lowercase();
    let rest = line.get(first.len()..).unwrap_or("").trim_start();
    let ok = |s: String| Outcome {
        stdout: s,
        stderr: String::new(),
        exit_code: 0,
    };
    match name.trim_end_matches(".exe") {
        "echo" => ok(format!("{rest}\r\n")),
        "echo." => ok("\r\n".into()),
        "ver" => {
            let (a, b, c, _) = host.os_version();
            ok(format!("\r\nMicrosoft Windows [Version {a}.{b}.{c}]\r\n"))
        }
        "cd" | "chdir" if rest.is_empty() => ok(format!("{}\r\n", host.cwd())),
        "set" if rest.is_empty() => {
            let mut vars = host.env_vars();
            vars.sort_by_key(|(k, _)| k.to_ascii_lowercase());
            ok(vars.iter().map(|(k, v)| format!("{k}={v}\r\n")).collect())
        }
        "set" => {
            if let Some((k, v)) = rest.split_once('=') {
                host.set_env_var(k.trim(), Some(v).filter(|v| !v.is_empty()));
                ok(String::new())
            } else {
                let prefix = rest.to_ascii_lowercase();
                let vars: String = host
                    .env_vars()
                    .iter()
                    .filter(|(k, _)| k.to_ascii_lowercase().starts_with(&prefix))
                    .map(|(k, v)| format!("{k}={v}\r\n"))
                    .collect();
                if vars.is_empty() {
                    Outcome {
                        stdout: String::new(),
                        stderr: format!("Environment variable {rest} not defined\r\n"),
                        exit_code: 1,
                    }
                } else {
                    ok(vars)
                }
            }
        }
        "type" => {
            let path = words.get(1).cloned().unwrap_or_default();
            match host.read_file(&crate::dotnet::full_path(host, &path)) {
                Ok(b) => ok(String::from_utf8_lossy(&b).into_owned()),
                Err(_) => Outcome {
                    stdout: String::new(),
                    stderr: "The system cannot find the file specified.\r\n".into(),
                    exit_code: 1,
                },
            }
        }
        "exit" => Outcome {
            exit_code: words
                .iter()
                .skip(1)
                .find(|w| !w.eq_ignore_ascii_case("/b"))
                .and_then(|w| w.parse().ok())
                .unwrap_or(0),
            ..Outcome::default()
        },
        "powershell" | "pwsh" => powershell(host, &words[1..], rest),
        _ => {
            let raw: Vec<RawArg> = words[1..]
                .iter()
                .map(|w| RawArg::Value(Value::Str(w.clone())))
                .collect();
            let args = BoundArgs::bind(raw, &[]);
            match host.command(first, &args, &[]) {
                HostResult::NotFound => Outcome {
                    stdout: String::new(),
                    stderr: format!("'{first}' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n"),
                    exit_code: 1,
                },
                HostResult::Error(e) => Outcome {
                    stdout: String::new(),
                    stderr: format!("{}\r\n", e.message),
                    exit_code: 1,
                },
                HostResult::Output(o) => Outcome {
                    stdout: o
                        .values
                        .iter()
                        .map(|v| format!("{}\r\n", v.to_str()))
                        .collect(),
                    stderr: o.stderr,
                    exit_code: o.exit_code.unwrap_or(0),
                },
            }
        }
    }
}

/// Runs a cmd.exe command line (`cmd /c <line>`, or an SSH exec request under the default
/// shell): `%VAR%` expansion, `a & b`, `a && b`, `a || b`.
pub fn run_cmd(host: &mut dyn Host, line: &str) -> Outcome {
    if line.len() > CMD_MAX_LINE {
        return Outcome {
            stdout: String::new(),
            stderr: "The command line is too long.\r\n".into(),
            exit_code: 1,
        };
    }
    let line = expand_env(host, line);
    // Split on &, &&, || outside quotes.
    let mut parts: Vec<(String, &str)> = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    let mut sep = "";
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            quoted = !quoted;
        }
        if !quoted && (c == '&' || (c == '|' && chars.get(i + 1) == Some(&'|'))) {
            let op = if chars.get(i + 1) == Some(&c) {
                i += 1;
                if c == '&' {
                    "&&"
                } else {
                    "||"
                }
            } else {
                "&"
            };
            parts.push((std::mem::take(&mut cur), sep));
            sep = op;
        } else {
            cur.push(c);
        }
        i += 1;
    }
    parts.push((cur, sep));
    let mut total = Outcome::default();
    for (cmd, sep) in parts {
        let run = match sep {
            "&&" => total.exit_code == 0,
            "||" => total.exit_code != 0,
            _ => true,
        };
        if !run {
            continue;
        }
        let o = one_command(host, &cmd);
        let exit_now = split_words(&cmd)
            .first()
            .is_some_and(|w| w.eq_ignore_ascii_case("exit"));
        total.stdout.push_str(&o.stdout);
        total.stderr.push_str(&o.stderr);
        total.exit_code = o.exit_code;
        if exit_now {
            break;
        }
    }
    total
}

/// How RunCommand hands parameters to a Windows script, per its documented known issue: the
/// agent's command line goes through cmd.exe unquoted, so `^` escapes the next character and
/// an unescaped `&` ends the PowerShell command: the parameter is cut there, later ones are
/// lost, and the rest of the line runs as another cmd.exe command (usually "not recognized").
/// Returns the parameters the script receives (as `-name value`) and the cmd.exe line that
/// runs after it, if any.
pub fn runcommand_params(params: &[(String, String)]) -> (Vec<(String, Value)>, Option<String>) {
    let mut bound = Vec::new();
    for (i, (name, value)) in params.iter().enumerate() {
        let mut v = String::new();
        let mut chars = value.chars();
        while let Some(c) = chars.next() {
            match c {
                '^' => {
                    if let Some(n) = chars.next() {
                        v.push(n);
                    }
                }
                '&' => {
                    bound.push((name.clone(), Value::Str(v)));
                    let mut rest: String = chars.collect();
                    for (n, later) in &params[i + 1..] {
                        rest.push_str(&format!(" -{n} {later}"));
                    }
                    return (bound, Some(rest.trim().to_string()));
                }
                other => v.push(other),
            }
        }
        bound.push((name.clone(), Value::Str(v)));
    }
    (bound, None)
}
