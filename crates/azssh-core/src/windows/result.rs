//! Reading a guest script's `AZSSH-RESULT:` line into typed results.

use serde::{Deserialize, Serialize};

use super::authorized_keys::{KeyInstallResult, KeyInstalled};
use super::combined::RESULT_MARKER;
use super::error::WindowsError;
use super::host_keys::parse_host_keys;
use super::setup::{SetupResult, SshdState};
use crate::ssh::keys::SshPublicKey;

/// Everything a guest script reports; steps that did not run are `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScriptResult {
    pub v: u32,
    pub setup: Option<SetupResult>,
    pub key: Option<KeyInstallResult>,
    pub host_keys: Option<Vec<String>>,
    pub host_keys_error: Option<String>,
    /// The read-only inspection, as the guest reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inspect: Option<serde_json::Value>,
}

impl ScriptResult {
    /// Finds the last marker line in `stdout` and parses it. `stderr` goes into the error when
    /// there is no result, since that is where PowerShell explains why.
    pub fn parse(stdout: &str, stderr: &str) -> Result<Self, WindowsError> {
        let line = stdout
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix(RESULT_MARKER))
            .ok_or_else(|| WindowsError::NoResult {
                stderr: stderr.to_string(),
            })?;
        serde_json::from_str(line).map_err(|e| WindowsError::MalformedResult {
            reason: e.to_string(),
        })
    }

    /// The setup step's outcome.
    pub fn setup_state(&self) -> Result<SshdState, WindowsError> {
        self.setup
            .clone()
            .ok_or(WindowsError::MissingStep { step: "setup" })?
            .into_state()
    }

    /// The key step's outcome.
    pub fn key_installed(&self) -> Result<KeyInstalled, WindowsError> {
        self.key
            .clone()
            .ok_or(WindowsError::MissingStep { step: "key" })?
            .into_installed()
    }

    /// The host keys, parsed and validated.
    pub fn host_keys(&self) -> Result<Vec<SshPublicKey>, WindowsError> {
        if let Some(message) = &self.host_keys_error {
            return Err(WindowsError::StepFailed {
                step: "host-key read",
                message: message.clone(),
            });
        }
        let lines = self
            .host_keys
            .as_ref()
            .ok_or(WindowsError::MissingStep { step: "host-keys" })?;
        parse_host_keys(lines)
    }
}

/// Finds the last `AZSSH-RESULT:` line in `stdout` and parses it as `T`: for scripts whose
/// result has another shape than [`ScriptResult`] (key files, audit, repair).
pub fn parse_line<T: serde::de::DeserializeOwned>(
    stdout: &str,
    stderr: &str,
) -> Result<T, WindowsError> {
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix(RESULT_MARKER))
        .ok_or_else(|| WindowsError::NoResult {
            stderr: stderr.to_string(),
        })?;
    serde_json::from_str(line).map_err(|e| WindowsError::MalformedResult {
        reason: e.to_string(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::error::UserError;

    #[test]
    fn result_line_is_found_among_other_output() {
        let stdout = "WARNING: something\r\nAZSSH-RESULT:{\"v\":1,\"host_keys\":[\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJQnYzj9mKCCZE8M3eHtdm9nNOltS0LYhpqLqkyVKFA\"]}\r\n";
        let result = ScriptResult::parse(stdout, "").unwrap();
        assert_eq!(result.host_keys().unwrap().len(), 1);
        assert_eq!(
            result.setup_state().unwrap_err().kind(),
            "windows.missing_step"
        );
    }

    #[test]
    fn missing_or_broken_result_lines_are_clear_errors() {
        let err = ScriptResult::parse("hello", "Access is denied.").unwrap_err();
        assert_eq!(err.kind(), "windows.no_result");
        assert!(err.to_string().contains("Access is denied."));
        assert!(err.hint().unwrap().contains("4096"));
        let err = ScriptResult::parse("AZSSH-RESULT:{\"v\":", "").unwrap_err();
        assert_eq!(err.kind(), "windows.malformed_result");
    }

    #[test]
    fn worst_case_result_fits_runcommand_output_tail() {
        // Four RSA-4096-sized host keys and every step error at its 200-char limit.
        let long_key = format!("ssh-rsa {}", "A".repeat(716));
        let result = ScriptResult {
            v: 1,
            setup: Some(SetupResult {
                error: Some("e".repeat(200)),
                code: Some("0x800f0954".into()),
                ..Default::default()
            }),
            key: Some(KeyInstallResult {
                error: Some("e".repeat(200)),
                path: Some(r"C:\Users\aaaaaaaaaaaaaaaaaaaa\.ssh\authorized_keys".into()),
                sids: vec!["S-1-5-21-1111111111-2222222222-3333333333-1001".into(); 3],
                ..Default::default()
            }),
            host_keys: Some(vec![long_key; 4]),
            host_keys_error: None,
            inspect: None,
        };
        let line = format!("{RESULT_MARKER}{}", serde_json::to_string(&result).unwrap());
        assert!(line.len() < 4096, "{}", line.len());
    }
}
