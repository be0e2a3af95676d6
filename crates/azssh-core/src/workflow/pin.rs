//! Pinning host keys read through the control plane into azssh's own `known_hosts`, keyed by
//! every address the VM answers on. A key that conflicts with a pinned one is never written
//! over silently: it is reported, and the SSH step refuses the host until the caller replaces
//! the pin on purpose (`replace: true`).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::WorkflowError;
use crate::azure::vm::Vm;
use crate::ssh::error::SshError;
use crate::ssh::keys::SshPublicKey;
use crate::ssh::known_hosts::{self, HostKeyStatus, KnownHosts};

/// The port the emulator's guests listen on instead of 22, when it is set.
pub use crate::ssh::connect::SSH_PORT_ENV;

/// The SSH port to use: `AZSSH_SSH_PORT` (the emulator) or `default`; a malformed value is an
/// error (`ssh_port_from_env`), as everywhere else it is read.
pub fn ssh_port(default: u16) -> Result<u16, SshError> {
    Ok(crate::ssh::connect::ssh_port_from_env()?.unwrap_or(default))
}

/// A pinned key that differs from the one already on file for that host.
#[derive(Debug, Clone, Serialize)]
pub struct Conflict {
    pub host: String,
    pub fingerprint: String,
    pub pinned: String,
    pub at: String,
}

/// What `pin_host_keys` did.
#[derive(Debug, Clone, Serialize)]
pub struct Pinned {
    pub known_hosts: PathBuf,
    pub hosts: Vec<String>,
    pub fingerprints: Vec<String>,
    pub added: usize,
    pub conflicts: Vec<Conflict>,
}

/// The VM's addresses, public first.
pub fn vm_addresses(vm: &Vm) -> Vec<String> {
    vm.public_ip
        .iter()
        .chain(vm.private_ip.iter())
        .filter(|s| !s.is_empty())
        .cloned()
        .collect()
}

/// Writes `keys` for every address in `hosts` at `port` into `file`.
pub fn pin_keys(
    file: &Path,
    hosts: &[String],
    port: u16,
    keys: &[SshPublicKey],
    replace: bool,
) -> Result<Pinned, WorkflowError> {
    if keys.is_empty() {
        return Err(WorkflowError::NoHostKeys);
    }
    if replace {
        for host in hosts {
            forget(file, host, port)?;
        }
    }
    let known = KnownHosts::single(file);
    let mut added = 0;
    let mut conflicts = Vec::new();
    for host in hosts {
        let mut fresh = Vec::new();
        for key in keys {
            match known.check(host, port, key.key())? {
                HostKeyStatus::Valid => {}
                HostKeyStatus::Unknown => fresh.push(key.key().clone()),
                // A revoked key stays refused even when Azure reports it: reported, not pinned.
                HostKeyStatus::Revoked { file, line } => conflicts.push(Conflict {
                    host: known_hosts::host_field(host, port),
                    fingerprint: key.fingerprint(),
                    pinned: "@revoked".to_string(),
                    at: format!("{}:{line}", file.display()),
                }),
                HostKeyStatus::Mismatch {
                    known: old,
                    file,
                    line,
                    ..
                } => conflicts.push(Conflict {
                    host: known_hosts::host_field(host, port),
                    fingerprint: key.fingerprint(),
                    pinned: known_hosts::fingerprint(&old),
                    at: format!("{}:{line}", file.display()),
                }),
            }
        }
        added += known_hosts::pin(host, port, &fresh, file)?;
    }
    Ok(Pinned {
        known_hosts: file.to_path_buf(),
        hosts: hosts
            .iter()
            .map(|h| known_hosts::host_field(h, port))
            .collect(),
        fingerprints: keys.iter().map(SshPublicKey::fingerprint).collect(),
        added,
        conflicts,
    })
}

/// Drops the plain (unhashed, unmarked) lines for `host:port`: the ones `pin` writes. Works on
/// bytes so other lines, even undecodable ones, are kept exactly as they were; a `@revoked`
/// line is never dropped, so `replace` cannot undo a revocation.
fn forget(file: &Path, host: &str, port: u16) -> Result<(), WorkflowError> {
    let err = |e: std::io::Error| SshError::KnownHosts {
        file: file.to_path_buf(),
        reason: e.to_string(),
    };
    let bytes = match crate::local_file::read_bytes(
        file,
        crate::local_file::cap::KNOWN_HOSTS,
        "known_hosts file",
    ) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(SshError::from(e).into()),
    };
    let field = known_hosts::host_field(host, port);
    let kept: Vec<&[u8]> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter(|l| {
            let hosts = l.split(|b| b.is_ascii_whitespace()).find(|f| !f.is_empty());
            hosts.is_none_or(|hosts| !hosts.split(|b| *b == b',').any(|h| h == field.as_bytes()))
        })
        .collect();
    let mut out = kept.join(&b'\n');
    if !out.is_empty() {
        out.push(b'\n');
    }
    std::fs::write(file, out).map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::UserError;

    const OLD: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJQnYzj9mKCCZE8M3eHtdm9nNOltS0LYhpqLqkyVKFA";

    fn new_key(dir: &Path) -> SshPublicKey {
        let path = dir.join("rebuilt");
        let k =
            crate::ssh::keys::generate_key(&path, crate::ssh::keys::KeyKind::Ed25519, "x").unwrap();
        SshPublicKey::parse(&k.public_line).unwrap()
    }

    #[test]
    fn pinning_twice_adds_nothing_and_a_changed_key_is_reported_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        let hosts = vec!["20.1.2.3".to_string(), "10.0.0.4".to_string()];
        let old = SshPublicKey::parse(OLD).unwrap();
        let first = pin_keys(&file, &hosts, 22, std::slice::from_ref(&old), false).unwrap();
        assert_eq!(first.added, 2);
        let again = pin_keys(&file, &hosts, 22, std::slice::from_ref(&old), false).unwrap();
        assert_eq!(again.added, 0);
        assert!(again.conflicts.is_empty());

        let rebuilt = new_key(dir.path());
        let changed = pin_keys(&file, &hosts, 22, std::slice::from_ref(&rebuilt), false).unwrap();
        assert_eq!(changed.added, 0);
        assert_eq!(changed.conflicts.len(), 2);
        let known = KnownHosts::single(&file);
        assert!(matches!(
            known.check("20.1.2.3", 22, rebuilt.key()).unwrap(),
            HostKeyStatus::Mismatch { .. }
        ));

        let replaced = pin_keys(&file, &hosts, 22, std::slice::from_ref(&rebuilt), true).unwrap();
        assert_eq!((replaced.added, replaced.conflicts.len()), (2, 0));
        assert_eq!(
            known.check("10.0.0.4", 22, rebuilt.key()).unwrap(),
            HostKeyStatus::Valid
        );
    }

    #[test]
    fn non_default_ports_use_the_bracket_form() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kh");
        let p = pin_keys(
            &file,
            &["127.77.0.5".into()],
            2222,
            &[SshPublicKey::parse(OLD).unwrap()],
            false,
        )
        .unwrap();
        assert_eq!(p.hosts, ["[127.77.0.5]:2222"]);
        assert!(
            std::fs::read_to_string(&file)
                .unwrap()
                .starts_with("[127.77.0.5]:2222 ssh-ed25519 ")
        );
    }

    #[test]
    fn no_keys_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = pin_keys(&dir.path().join("kh"), &["h".into()], 22, &[], false).unwrap_err();
        assert_eq!(err.kind(), "workflow.no_host_keys");
    }
}
