//! The guest's shells: RunCommand's `RunPowerShellScript` and SSH exec, both running what they
//! are sent through the `azssh-pwsh` interpreter (Windows PowerShell 5.1's grammar and
//! semantics for a documented subset) against the [`Guest`] model. Nothing is recognised by
//! name: azssh's `# azssh:begin` frames are comments to PowerShell like any other.
//!
//! How Azure and Windows run things, copied here:
//! - RunCommand (`RunPowerShellScript`) runs the script as SYSTEM with `powershell.exe -File`;
//!   its parameters reach the script as `-name value` on that command line, which passes through
//!   cmd.exe (`^` escapes, an unescaped `&` ends the value and starts a cmd.exe command: the
//!   documented known issue); a parse error is the script's StdErr, not an API error.
//! - SSH exec hands the command line to the registry's `DefaultShell`: cmd.exe (`/c`, with its
//!   8191-character limit) unless it names `powershell.exe`, which then runs it with `-c`.

use super::guest::host::GuestHost;
use super::guest::{DefaultShell, Guest};

/// What a script or command produced (RunCommand shows `stdout`/`stderr`; SSH exec also the
/// exit code): the same type the ARM side's guest seam uses.
pub use super::world::GuestOutput;

fn output(o: pwsh::Outcome) -> GuestOutput {
    GuestOutput {
        stdout: o.stdout,
        stderr: o.stderr,
        exit_code: o.exit_code,
    }
}

impl Guest {
    /// Runs a RunCommand `RunPowerShellScript` script as SYSTEM, without parameters.
    pub fn run_powershell(&mut self, script: &str) -> GuestOutput {
        self.run_powershell_with(script, &[])
    }

    /// Runs a RunCommand script with its `parameters` (name, value), passed as Azure passes
    /// them: `-name value` on the `powershell.exe -File` command line, through cmd.exe.
    pub fn run_powershell_with(
        &mut self,
        script: &str,
        params: &[(String, String)],
    ) -> GuestOutput {
        let (args, rest) = pwsh::runcommand_params(params);
        let mut host = GuestHost::new(self, None);
        let mut out = pwsh::run(&mut host, script, &args);
        if let Some(line) = rest {
            // What followed an unescaped `&` runs as a cmd.exe command after the script.
            let cmd = pwsh::run_cmd(&mut host, &line);
            out.stdout.push_str(&cmd.stdout);
            out.stderr.push_str(&cmd.stderr);
        }
        output(out)
    }

    /// Runs an SSH exec request for `user` through the DefaultShell.
    pub fn exec(&mut self, user: &str, command_line: &str) -> GuestOutput {
        let shell = self.default_shell();
        let mut host = GuestHost::new(self, Some(user));
        match shell {
            DefaultShell::Cmd => output(pwsh::run_cmd(&mut host, command_line)),
            DefaultShell::PowerShell => output(pwsh::run(&mut host, command_line, &[])),
        }
    }
}
