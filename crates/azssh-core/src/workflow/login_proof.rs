//! The login proof shared by `setup_ssh` and `rotate_key`: a fresh SSH session that may only use
//! the one identity file given (no agent, no default keys) and must find the host in azssh's own
//! `known_hosts` (strict checking), running `whoami` and `hostname`. Both commands exist in cmd
//! and in PowerShell, so the proof holds whatever `DefaultShell` the guest has.

use std::path::Path;

use serde_json::Value;

use super::error::WorkflowError;
use crate::ssh::connect::{ConnectOptions, Session};
use crate::ssh::exec::ExecOptions;
use crate::ssh::known_hosts::{HostKeyPolicy, KnownHosts, StrictHostKeyChecking};
use crate::windows::UserName;

/// The commands a proof runs, in order.
pub const PROOF_COMMANDS: [&str; 2] = ["whoami", "hostname"];

/// Options that log in as `user` with exactly `identity`, the host checked strictly against
/// `known_hosts` alone. Callers add a route (Bastion, jump hosts) when there is one.
pub fn identity_only_options(
    host: &str,
    port: u16,
    user: &UserName,
    identity: &Path,
    known_hosts: &Path,
) -> ConnectOptions {
    let mut opts = ConnectOptions::new(host);
    opts.port = Some(port);
    opts.user = Some(user.as_str().to_string());
    opts.identity_files = vec![identity.to_path_buf()];
    opts.use_agent = false;
    opts.host_keys = HostKeyPolicy {
        mode: StrictHostKeyChecking::Yes,
        known_hosts: KnownHosts::single(known_hosts),
        ask: None,
    };
    opts
}

/// Connects with `opts` and runs [`PROOF_COMMANDS`]; their trimmed outputs by command name.
/// A command that fails ends the proof with its exit code and stderr.
pub async fn prove_login(
    opts: ConnectOptions,
) -> Result<serde_json::Map<String, Value>, WorkflowError> {
    let session = Session::connect(opts).await?;
    let mut out = serde_json::Map::new();
    for command in PROOF_COMMANDS {
        let r = match session.exec(command, ExecOptions::default()).await {
            Ok(r) => r,
            Err(e) => {
                let _ = session.close().await;
                return Err(e.into());
            }
        };
        if !r.success() {
            let _ = session.close().await;
            return Err(WorkflowError::CheckFailed {
                command: command.into(),
                code: r
                    .exit_code
                    .map_or("without a status".into(), |c| c.to_string()),
                stderr: String::from_utf8_lossy(&r.stderr).trim().to_string(),
            });
        }
        let text = String::from_utf8_lossy(&r.stdout).trim().to_string();
        out.insert(command.into(), Value::String(text));
    }
    let _ = session.close().await;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_proof_uses_only_the_given_key_and_checks_the_host_strictly() {
        let user = UserName::parse("azureuser").unwrap();
        let opts = identity_only_options(
            "127.77.0.4",
            2222,
            &user,
            Path::new("/k/id_ed25519"),
            Path::new("/k/known_hosts"),
        );
        assert_eq!(opts.port, Some(2222));
        assert_eq!(opts.user.as_deref(), Some("azureuser"));
        assert_eq!(opts.identity_files, [Path::new("/k/id_ed25519")]);
        assert!(!opts.use_agent, "an agent key would prove nothing");
        assert_eq!(opts.host_keys.mode, StrictHostKeyChecking::Yes);
        assert_eq!(PROOF_COMMANDS, ["whoami", "hostname"]);
    }
}
