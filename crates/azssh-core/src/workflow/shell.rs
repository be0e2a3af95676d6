//! `set_default_shell`: the shell Windows OpenSSH runs commands with, set through RunCommand.

use super::error::WorkflowError;
use super::keys::run_script;
use crate::azure::client::ArmClient;
use crate::azure::vm::Vm;
use crate::windows::default_shell::{DefaultShellResult, Shell, default_shell_script};

/// Sets (or, for cmd, removes) `DefaultShell`; reports the previous and the new value.
pub async fn set_default_shell(
    arm: &ArmClient,
    vm: &Vm,
    shell: Shell,
) -> Result<DefaultShellResult, WorkflowError> {
    let out = run_script(arm, vm, &default_shell_script(shell)).await?;
    Ok(DefaultShellResult::parse(&out.stdout, &out.stderr)?)
}
