//! Reading the guest's SSH host public keys through RunCommand, so azssh can pin them from the
//! control plane instead of trusting the first key the network offers.

use crate::ssh::keys::SshPublicKey;

use super::error::WindowsError;

/// The host-key step's PowerShell, framed as the block `host-keys`. Windows sshd generates its
/// host keys on first start, so this finds none before sshd has ever run.
pub(crate) fn block() -> String {
    r#"try {
    $r.host_keys = @(Get-ChildItem -LiteralPath (Join-Path $env:ProgramData 'ssh') -Filter 'ssh_host_*_key.pub' | Sort-Object Name | ForEach-Object { ([IO.File]::ReadAllText($_.FullName)).Trim() })
} catch {
    $r.host_keys_error = Limit $_.Exception.Message
}"#
    .to_string()
}

/// Parses and validates the host-key lines a guest reported. DSA host keys (older Windows
/// OpenSSH builds still generate one) are dropped: no client should pin them.
pub fn parse_host_keys(lines: &[String]) -> Result<Vec<SshPublicKey>, WindowsError> {
    let mut keys = Vec::new();
    for line in lines {
        if line.starts_with("ssh-dss ") {
            continue;
        }
        let key = SshPublicKey::parse(line).map_err(|e| WindowsError::MalformedResult {
            reason: format!("host key line: {e}"),
        })?;
        keys.push(key);
    }
    Ok(keys)
}
