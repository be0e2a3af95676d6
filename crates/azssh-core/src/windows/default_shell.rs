//! Setting the shell Windows OpenSSH runs sessions and commands with: the registry value
//! `HKLM:\SOFTWARE\OpenSSH\DefaultShell` (MicrosoftDocs/windowsserverdocs
//! `OpenSSH_Server_Configuration.md`). cmd.exe is the default when the value is absent, so
//! `cmd` removes the value rather than naming cmd.exe. PowerShell 7 (`pwsh`) must be installed:
//! sshd cannot start a shell that is not there, so the block refuses instead.

use serde::{Deserialize, Serialize};

use super::combined::{EPILOGUE, PROLOGUE, epilogue, frame, prologue};
use super::error::WindowsError;

/// Block name of the default-shell step.
pub const DEFAULT_SHELL: &str = "default-shell";

/// Windows PowerShell 5.1, the documented `DefaultShell` value.
pub const POWERSHELL_EXE: &str = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe";
/// PowerShell 7's default install path.
pub const PWSH_EXE: &str = r"C:\Program Files\PowerShell\7\pwsh.exe";

/// The shells `set_default_shell` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shell {
    Cmd,
    PowerShell,
    Pwsh,
}

impl std::str::FromStr for Shell {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cmd" | "cmd.exe" => Ok(Shell::Cmd),
            "powershell" | "powershell.exe" => Ok(Shell::PowerShell),
            "pwsh" | "pwsh.exe" => Ok(Shell::Pwsh),
            other => Err(format!(
                "unknown shell `{}`: use `powershell`, `pwsh` or `cmd`",
                other.chars().take(40).collect::<String>()
            )),
        }
    }
}

impl Shell {
    /// The registry value, or `None` for cmd (the value removed).
    pub fn path(self) -> Option<&'static str> {
        match self {
            Shell::Cmd => None,
            Shell::PowerShell => Some(POWERSHELL_EXE),
            Shell::Pwsh => Some(PWSH_EXE),
        }
    }
}

pub(crate) fn block(shell: Shell) -> String {
    let path = shell.path().unwrap_or("");
    // Windows PowerShell 5.1 ships with every Windows Server azssh supports; PowerShell 7 is an
    // install of its own, so only its path is checked.
    let check = if shell == Shell::Pwsh {
        "$true"
    } else {
        "$false"
    };
    format!(
        r#"$AzsshShell = '{path}'
$AzsshCheck = {check}
$d = [ordered]@{{ changed = $false }}
try {{
    $key = 'HKLM:\SOFTWARE\OpenSSH'
    if (-not (Test-Path -Path $key)) {{ $null = New-Item -Path $key -Force }}
    $old = Get-ItemProperty -Path $key -Name DefaultShell -ErrorAction SilentlyContinue
    $d.previous = ''
    if ($old) {{ $d.previous = [string]$old.DefaultShell }}
    if ($AzsshShell -eq '') {{
        if ($old) {{
            Remove-ItemProperty -Path $key -Name DefaultShell
            $d.changed = $true
        }}
    }} else {{
        if ($AzsshCheck -and -not (Test-Path -LiteralPath $AzsshShell)) {{ throw ($AzsshShell + ' does not exist on this VM') }}
        if ($d.previous -ne $AzsshShell) {{
            $null = New-ItemProperty -Path $key -Name DefaultShell -Value $AzsshShell -PropertyType String -Force
            $d.changed = $true
        }}
    }}
    $now = Get-ItemProperty -Path $key -Name DefaultShell -ErrorAction SilentlyContinue
    $d.shell = ''
    if ($now) {{ $d.shell = [string]$now.DefaultShell }}
}} catch {{
    $d.error = Limit $_.Exception.Message
}}
$r.default_shell = $d"#
    )
}

/// The whole script.
pub fn default_shell_script(shell: Shell) -> String {
    let mut script = frame(PROLOGUE, &prologue());
    script.push_str(&frame(DEFAULT_SHELL, &block(shell)));
    script.push_str(&frame(EPILOGUE, &epilogue()));
    script
}

/// What the block reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DefaultShellResult {
    #[serde(default)]
    pub changed: bool,
    #[serde(default)]
    pub previous: String,
    /// The value now set (empty: none, so cmd.exe).
    #[serde(default)]
    pub shell: String,
    pub error: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    default_shell: Option<DefaultShellResult>,
}

impl DefaultShellResult {
    pub fn parse(stdout: &str, stderr: &str) -> Result<Self, WindowsError> {
        let e: Envelope = super::result::parse_line(stdout, stderr)?;
        let d = e.default_shell.ok_or(WindowsError::MissingStep {
            step: DEFAULT_SHELL,
        })?;
        if let Some(message) = d.error.clone() {
            return Err(WindowsError::StepFailed {
                step: "default shell",
                message,
            });
        }
        Ok(d)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn shells_parse_and_scripts_are_ps51() {
        assert_eq!("PowerShell".parse::<Shell>(), Ok(Shell::PowerShell));
        assert_eq!("pwsh".parse::<Shell>(), Ok(Shell::Pwsh));
        assert_eq!("cmd".parse::<Shell>(), Ok(Shell::Cmd));
        assert!("bash".parse::<Shell>().is_err());
        for s in [Shell::Cmd, Shell::PowerShell, Shell::Pwsh] {
            let script = default_shell_script(s);
            assert!(pwsh::check_ps51(&script).is_empty());
            assert!(script.is_ascii());
        }
    }
}
