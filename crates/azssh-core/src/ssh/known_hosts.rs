//! Host-key verification against OpenSSH `known_hosts` files: a small service that answers
//! `Valid | Mismatch | Unknown`, the `StrictHostKeyChecking`-like policy on top, and `pin`.
//!
//! We parse the files ourselves rather than use russh's helper because a refusal must name the
//! file *and line* holding the old key, one malformed line must not make a whole file unusable,
//! and entries may carry `*`/`?` patterns and `!` negations.
//!
//! Markers follow OpenSSH's `hostfile.c`: a `@revoked` line whose hosts match refuses its key in
//! every mode (before any plain line could accept it), and `@cert-authority` lines hold CA keys,
//! never host keys, so they neither accept nor contradict a plain key.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::{HashAlg, PublicKey};
use sha1::Sha1;

use super::error::SshError;
use crate::local_file::cap;

/// What the known-hosts files say about a host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyStatus {
    /// A line for this host holds exactly this key.
    Valid,
    /// The host is known with a key of the same type, and it is not this one.
    Mismatch {
        known: Box<PublicKey>,
        received: Box<PublicKey>,
        file: PathBuf,
        line: usize,
    },
    /// No line holds a key of this type for this host.
    Unknown,
    /// A `@revoked` line for this host holds exactly this key: refused whatever the mode.
    Revoked { file: PathBuf, line: usize },
}

/// What to do with a host whose key is not known (`StrictHostKeyChecking`). A changed key is
/// refused in every mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StrictHostKeyChecking {
    /// Refuse unknown hosts: the default for non-interactive runs.
    #[default]
    Yes,
    /// Trust an unknown host on first use and write its key down.
    AcceptNew,
    /// Ask (through [`HostKeyPolicy::ask`]) showing the SHA256 fingerprint; write it if accepted.
    Ask,
}

impl std::str::FromStr for StrictHostKeyChecking {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "yes" | "true" | "strict" => Ok(Self::Yes),
            "accept-new" => Ok(Self::AcceptNew),
            "ask" => Ok(Self::Ask),
            other => Err(format!(
                "unknown host key checking mode `{other}` (use `yes`, `accept-new` or `ask`)"
            )),
        }
    }
}

/// The environment variable behind `--strict-host-keys`.
pub const STRICT_HOST_KEYS_ENV: &str = "AZSSH_STRICT_HOST_KEYS";

/// clap's parser for `--strict-host-keys` / `AZSSH_STRICT_HOST_KEYS`: an unknown value (notably
/// OpenSSH's `no`, which azssh does not offer) is a usage error naming both, not a script error
/// deep inside the first connection.
pub fn parse_strict_arg(value: &str) -> Result<String, String> {
    match value.parse::<StrictHostKeyChecking>() {
        Ok(_) => Ok(value.to_string()),
        Err(_) => Err(format!(
            "`{value}` is not a host key checking mode; `--strict-host-keys` and \
             `{STRICT_HOST_KEYS_ENV}` accept `yes`, `accept-new` or `ask` (azssh never turns \
             host key checking off)"
        )),
    }
}

/// The question put to the user in `Ask` mode.
#[derive(Debug, Clone)]
pub struct HostKeyQuestion {
    pub host: String,
    pub port: u16,
    pub algorithm: String,
    /// `SHA256:…`, as `ssh` prints it.
    pub fingerprint: String,
}

/// Answers a [`HostKeyQuestion`]; `true` trusts the key. Called on a blocking thread, so it
/// may read a terminal.
pub type AskHostKey = Arc<dyn Fn(&HostKeyQuestion) -> bool + Send + Sync>;

/// The files read, the file written, and the mode.
#[derive(Clone)]
pub struct HostKeyPolicy {
    pub mode: StrictHostKeyChecking,
    pub known_hosts: KnownHosts,
    pub ask: Option<AskHostKey>,
}

impl fmt::Debug for HostKeyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostKeyPolicy")
            .field("mode", &self.mode)
            .field("known_hosts", &self.known_hosts)
            .field("ask", &self.ask.is_some())
            .finish()
    }
}

impl Default for HostKeyPolicy {
    fn default() -> Self {
        HostKeyPolicy {
            mode: StrictHostKeyChecking::Yes,
            known_hosts: KnownHosts::user_default(),
            ask: None,
        }
    }
}

/// A set of `known_hosts` files: all are read, new keys go to `write_to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownHosts {
    pub read: Vec<PathBuf>,
    pub write_to: PathBuf,
}

/// azssh's own pinned-keys file: `<config dir>/azssh/known_hosts`.
pub fn azssh_known_hosts_path() -> PathBuf {
    dirs::config_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("azssh")
        .join("known_hosts")
}

impl KnownHosts {
    /// `~/.ssh/known_hosts` and azssh's own file, writing to azssh's own file: keys azssh
    /// learns (accept-new, or pinned through Azure) stay in a file azssh owns rather than
    /// being appended to the user's OpenSSH file behind their back.
    pub fn user_default() -> Self {
        let own = azssh_known_hosts_path();
        let mut read = Vec::new();
        if let Some(dir) = crate::home::ssh_dir() {
            read.push(dir.join("known_hosts"));
        }
        read.push(own.clone());
        KnownHosts {
            read,
            write_to: own,
        }
    }

    /// One file, read and written (tests, `--known-hosts FILE`).
    pub fn single(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        KnownHosts {
            read: vec![path.clone()],
            write_to: path,
        }
    }

    /// Whether any file holds a plain (not `@revoked`/`@cert-authority`) entry for `host:port`,
    /// matched as OpenSSH matches (hashed names, wildcards, `[host]:port`).
    pub fn has_host(&self, host: &str, port: u16) -> Result<bool, SshError> {
        for file in self
            .read
            .iter()
            .chain(std::iter::once(&self.write_to).filter(|w| !self.read.contains(w)))
        {
            if read_entries(file, host, port)?
                .iter()
                .any(|e| e.marker == Marker::None)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Looks `host:port`'s key up in every file. A matching `@revoked` line anywhere wins
    /// (OpenSSH checks revocation before accepting); then an exact match anywhere; otherwise the
    /// first same-type entry with a different key is a mismatch, as in OpenSSH.
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> Result<HostKeyStatus, SshError> {
        let mut entries = Vec::new();
        for file in self.read.iter().chain(
            // The write target is read too, even when a caller forgot to list it.
            std::iter::once(&self.write_to).filter(|w| !self.read.contains(w)),
        ) {
            for entry in read_entries(file, host, port)? {
                entries.push((file, entry));
            }
        }
        if let Some((file, entry)) = entries
            .iter()
            .find(|(_, e)| e.marker == Marker::Revoked && e.key.key_data() == key.key_data())
        {
            return Ok(HostKeyStatus::Revoked {
                file: (*file).clone(),
                line: entry.line,
            });
        }
        let plain = || entries.iter().filter(|(_, e)| e.marker == Marker::None);
        if plain().any(|(_, e)| e.key.key_data() == key.key_data()) {
            return Ok(HostKeyStatus::Valid);
        }
        Ok(plain()
            .find(|(_, e)| e.key.algorithm() == key.algorithm())
            .map(|(file, e)| HostKeyStatus::Mismatch {
                known: Box::new(e.key.clone()),
                received: Box::new(key.clone()),
                file: (*file).clone(),
                line: e.line,
            })
            .unwrap_or(HostKeyStatus::Unknown))
    }
}

/// `SHA256:…` as OpenSSH prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The host field OpenSSH writes: the bare name on port 22, `[host]:port` otherwise.
pub fn host_field(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Writes `host:port`'s keys to `file` (created with its directory), skipping keys already
/// there. Returns how many lines were added. Comments are dropped: a key's identity is its
/// type and body.
pub fn pin(host: &str, port: u16, keys: &[PublicKey], file: &Path) -> Result<usize, SshError> {
    let err = |reason: String| SshError::KnownHosts {
        file: file.to_path_buf(),
        reason,
    };
    let existing = read_entries(file, host, port)?;
    let mut lines = String::new();
    for key in keys {
        let same = |e: &&Entry| e.key.key_data() == key.key_data();
        if let Some(revoked) = existing
            .iter()
            .filter(same)
            .find(|e| e.marker == Marker::Revoked)
        {
            // Pinning next to a `@revoked` line would be harmless (revocation wins on read), but
            // it would look like trust to whoever reads the file.
            return Err(SshError::HostKeyRevoked {
                host: host_field(host, port),
                fingerprint: fingerprint(key),
                file: file.to_path_buf(),
                line: revoked.line,
            });
        }
        if existing
            .iter()
            .filter(same)
            .any(|e| e.marker == Marker::None)
        {
            continue;
        }
        let mut bare = key.clone();
        bare.set_comment("");
        let text = bare.to_openssh().map_err(|e| err(e.to_string()))?;
        lines.push_str(&format!("{} {}\n", host_field(host, port), text.trim()));
    }
    if lines.is_empty() {
        return Ok(0);
    }
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    let needs_newline = match crate::local_file::read_bytes(file, cap::KNOWN_HOSTS, WHAT) {
        Ok(b) => !b.is_empty() && !b.ends_with(b"\n"),
        Err(e) if e.is_not_found() => false,
        Err(e) => return Err(e.into()),
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .map_err(|e| err(e.to_string()))?;
    if needs_newline {
        lines.insert(0, '\n');
    }
    f.write_all(lines.as_bytes())
        .map_err(|e| err(e.to_string()))?;
    tracing::debug!(host, port, file = %file.display(), "pinned host keys");
    Ok(lines.lines().filter(|l| !l.is_empty()).count())
}

/// Decides on a received key according to the policy: `Ok(())` to continue the handshake.
pub(crate) async fn verify(
    policy: &HostKeyPolicy,
    host: &str,
    port: u16,
    key: &PublicKey,
) -> Result<(), SshError> {
    let shown = host_field(host, port);
    match policy.known_hosts.check(host, port, key)? {
        HostKeyStatus::Valid => Ok(()),
        HostKeyStatus::Revoked { file, line } => Err(SshError::HostKeyRevoked {
            host: shown,
            fingerprint: fingerprint(key),
            file,
            line,
        }),
        HostKeyStatus::Mismatch {
            known, file, line, ..
        } => Err(SshError::HostKeyChanged {
            host: shown,
            known: fingerprint(&known),
            received: fingerprint(key),
            file,
            line,
        }),
        HostKeyStatus::Unknown => {
            let fp = fingerprint(key);
            let accepted = match policy.mode {
                StrictHostKeyChecking::Yes => {
                    return Err(SshError::UnknownHost {
                        host: shown,
                        fingerprint: fp,
                    });
                }
                StrictHostKeyChecking::AcceptNew => true,
                StrictHostKeyChecking::Ask => {
                    let Some(ask) = policy.ask.clone() else {
                        return Err(SshError::UnknownHost {
                            host: shown,
                            fingerprint: fp,
                        });
                    };
                    let question = HostKeyQuestion {
                        host: host.to_string(),
                        port,
                        algorithm: key.algorithm().to_string(),
                        fingerprint: fp.clone(),
                    };
                    tokio::task::spawn_blocking(move || ask(&question))
                        .await
                        .unwrap_or(false)
                }
            };
            if !accepted {
                return Err(SshError::HostKeyRejected {
                    host: shown,
                    fingerprint: fp,
                });
            }
            pin(
                host,
                port,
                std::slice::from_ref(key),
                &policy.known_hosts.write_to,
            )?;
            Ok(())
        }
    }
}

/// The `@` marker a line starts with, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

/// A line naming the host asked about.
struct Entry {
    line: usize,
    marker: Marker,
    key: PublicKey,
}

/// Whether a line's host field names `name` (`host_field`; `lower` is it lower-cased). OpenSSH
/// semantics: comma-separated patterns, hashed `|1|salt|hmac` entries, `*`/`?` wildcards
/// (case-insensitive), and a matching `!pattern` vetoes the line.
fn hosts_match(hosts: &str, name: &str, lower: &str) -> bool {
    let mut matched = false;
    for pattern in hosts.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        let hit = if let Some(hashed) = pattern.strip_prefix("|1|") {
            hashed_matches(hashed, name)
        } else if pattern.contains(['*', '?']) {
            wildcard_match(&pattern.to_ascii_lowercase(), lower)
        } else {
            pattern.eq_ignore_ascii_case(lower)
        };
        if hit && negated {
            return false;
        }
        matched |= hit;
    }
    matched
}

fn hashed_matches(salt_and_hash: &str, name: &str) -> bool {
    let Some((salt, hash)) = salt_and_hash.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (BASE64.decode(salt), BASE64.decode(hash)) else {
        return false;
    };
    let Ok(mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt) else {
        return false;
    };
    mac.chain_update(name.as_bytes())
        .verify_slice(&hash)
        .is_ok()
}

/// `*` matches any run, `?` one character (OpenSSH `match_pattern`).
pub(crate) fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

const WHAT: &str = "known_hosts file";

/// Parses a file through the bounded reader (`--known-hosts /dev/zero` is a clear error, not
/// an unbounded read); a missing file is empty. Like OpenSSH, an undecodable line (bad base64,
/// an unknown key type, a byte that is not UTF-8, an unknown `@` marker) is skipped with a
/// warning naming `file:line`: one bad line must not block every connection.
///
/// Only the lines naming `host:port` are kept, and only their keys decoded (OpenSSH's
/// `hostkeys_foreach` matches the host field first too): a fleet's file holds a line per key
/// of every VM, and decoding all of them for each of 500 connections is 500 × the file.
fn read_entries(file: &Path, host: &str, port: u16) -> Result<Vec<Entry>, SshError> {
    let name = host_field(host, port);
    let lower = name.to_ascii_lowercase();
    let bytes = match crate::local_file::read_bytes(file, cap::KNOWN_HOSTS, WHAT) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let skip = |line: usize, why: &dyn fmt::Display| {
        tracing::warn!(
            "skipping line {}:{line} of known_hosts: {why}",
            file.display()
        );
    };
    let mut entries = Vec::new();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let Ok(text) = std::str::from_utf8(raw) else {
            skip(i + 1, &"not UTF-8 text");
            continue;
        };
        let line = text.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let marker = match line.strip_prefix('@') {
            None => Marker::None,
            Some(_) => match fields.next() {
                Some("@revoked") => Marker::Revoked,
                Some("@cert-authority") => Marker::CertAuthority,
                Some(other) => {
                    skip(i + 1, &format_args!("unknown marker `{other}`"));
                    continue;
                }
                None => continue,
            },
        };
        let (Some(hosts), Some(algo), Some(body)) = (fields.next(), fields.next(), fields.next())
        else {
            skip(i + 1, &"expected `hosts key-type base64-key`");
            continue;
        };
        if !hosts_match(hosts, &name, &lower) {
            continue;
        }
        match PublicKey::from_openssh(&format!("{algo} {body}")) {
            Ok(key) => entries.push(Entry {
                line: i + 1,
                marker,
                key,
            }),
            Err(e) => skip(i + 1, &format_args!("undecodable key: {e}")),
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED1: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const ED2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILIG2T/B0l0gaqj3puu510tu9N1OkQ4znY3LYuEm5zCF";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).expect("test key")
    }

    fn hashed(name: &str) -> String {
        let salt = [7u8; 20];
        let mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt)
            .expect("hmac")
            .chain_update(name.as_bytes())
            .finalize()
            .into_bytes();
        format!("|1|{}|{}", BASE64.encode(salt), BASE64.encode(mac))
    }

    #[test]
    fn plain_hashed_and_bracketed_entries_match() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("known_hosts");
        let text = format!(
            "# comment\n\ngarbage line\n[10.0.0.4]:2222 {ED1}\n{} {ED2}\n*.example.com,!bad.example.com {ED1}\n",
            hashed("vm1.contoso.net")
        );
        std::fs::write(&path, text).expect("write");
        let kh = KnownHosts::single(&path);
        assert_eq!(
            kh.check("10.0.0.4", 2222, &key(ED1)).expect("check"),
            HostKeyStatus::Valid
        );
        assert_eq!(
            kh.check("10.0.0.4", 22, &key(ED1)).expect("check"),
            HostKeyStatus::Unknown
        );
        assert_eq!(
            kh.check("vm1.contoso.net", 22, &key(ED2)).expect("check"),
            HostKeyStatus::Valid
        );
        assert_eq!(
            kh.check("a.example.com", 22, &key(ED1)).expect("check"),
            HostKeyStatus::Valid
        );
        assert_eq!(
            kh.check("bad.example.com", 22, &key(ED1)).expect("check"),
            HostKeyStatus::Unknown
        );
    }

    /// Lines are matched on their host field before their key is decoded (a fleet's file has
    /// a line per key of every VM): the answer, the line a mismatch names and case-insensitive
    /// names must be as before.
    #[test]
    fn host_field_is_matched_before_the_key_in_a_fleet_sized_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("known_hosts");
        let mut text = String::new();
        for i in 0..300 {
            text.push_str(&format!("[127.77.1.{i}]:2222 {ED2}\n"));
        }
        // Line 301: upper case, as some tools write names.
        text.push_str(&format!("[WEB01.Contoso.NET]:2222 {ED1}\n"));
        std::fs::write(&path, text).expect("write");
        let kh = KnownHosts::single(&path);
        assert_eq!(
            kh.check("web01.contoso.net", 2222, &key(ED1))
                .expect("check"),
            HostKeyStatus::Valid
        );
        assert_eq!(
            kh.check("127.77.1.299", 2222, &key(ED2)).expect("check"),
            HostKeyStatus::Valid
        );
        match kh
            .check("web01.contoso.net", 2222, &key(ED2))
            .expect("check")
        {
            HostKeyStatus::Mismatch { line, .. } => assert_eq!(line, 301),
            other => panic!("expected a mismatch, got {other:?}"),
        }
        assert!(kh.has_host("WEB01.contoso.net", 2222).expect("has"));
        assert!(!kh.has_host("web02.contoso.net", 2222).expect("has"));
    }

    #[test]
    fn changed_key_reports_file_and_line() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, format!("# c\n[h]:2200 {ED1}\n")).expect("write");
        let status = KnownHosts::single(&path)
            .check("h", 2200, &key(ED2))
            .expect("check");
        match status {
            HostKeyStatus::Mismatch { file, line, .. } => {
                assert_eq!(file, path);
                assert_eq!(line, 2);
            }
            other => panic!("expected mismatch, got {other:?}"),
        }
    }

    #[test]
    fn pin_writes_once_and_check_then_finds_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("sub").join("known_hosts");
        let keys = [key(ED1), key(ED2)];
        assert_eq!(pin("20.1.2.3", 22, &keys, &path).expect("pin"), 2);
        assert_eq!(pin("20.1.2.3", 22, &keys, &path).expect("pin"), 0);
        let kh = KnownHosts::single(&path);
        assert_eq!(
            kh.check("20.1.2.3", 22, &key(ED2)).expect("check"),
            HostKeyStatus::Valid
        );
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.starts_with("20.1.2.3 ssh-ed25519 "), "{text}");
    }

    #[test]
    fn revoked_lines_win_in_plain_hashed_and_wildcard_form() {
        let dir = tempfile::tempdir().expect("tmp");
        for hosts in [
            "vm1".to_string(),
            hashed("vm1"),
            "v?1,!other".into(),
            "*".into(),
        ] {
            let path = dir.path().join("kh");
            std::fs::write(&path, format!("vm1 {ED1}\n@revoked {hosts} {ED1}\n")).expect("w");
            let kh = KnownHosts::single(&path);
            assert_eq!(
                kh.check("vm1", 22, &key(ED1)).expect("check"),
                HostKeyStatus::Revoked {
                    file: path.clone(),
                    line: 2
                },
                "{hosts}"
            );
            // Another key of the host is not affected, and `pin` refuses the revoked one.
            assert_eq!(
                kh.check("vm1", 22, &key(ED2)).expect("check"),
                HostKeyStatus::Mismatch {
                    known: Box::new(key(ED1)),
                    received: Box::new(key(ED2)),
                    file: path.clone(),
                    line: 1
                }
            );
            let err = pin("vm1", 22, &[key(ED1)], &path).expect_err("revoked");
            assert_eq!(crate::error::UserError::kind(&err), "ssh.host_key_revoked");
        }
    }

    #[test]
    fn cert_authority_lines_are_not_host_keys() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("kh");
        std::fs::write(&path, format!("@cert-authority * {ED1}\n")).expect("w");
        let kh = KnownHosts::single(&path);
        // Neither trusted nor a conflicting "known" key for the host.
        assert_eq!(
            kh.check("vm1", 22, &key(ED1)).expect("check"),
            HostKeyStatus::Unknown
        );
        assert_eq!(
            kh.check("vm1", 22, &key(ED2)).expect("check"),
            HostKeyStatus::Unknown
        );
    }

    #[test]
    fn has_host_matches_as_openssh_and_ignores_markers() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("kh");
        std::fs::write(
            &path,
            format!(
                "@cert-authority vm9 {ED1}\n@revoked vm8 {ED1}\n[vm1]:2222 {ED2}\nweb* {ED1}\n"
            ),
        )
        .expect("w");
        let kh = KnownHosts::single(&path);
        assert!(kh.has_host("vm1", 2222).expect("read"));
        assert!(!kh.has_host("vm1", 22).expect("read"));
        assert!(kh.has_host("web01", 22).expect("read"));
        assert!(!kh.has_host("vm9", 22).expect("read"));
        assert!(!kh.has_host("vm8", 22).expect("read"));
    }

    #[test]
    fn undecodable_lines_are_skipped_not_fatal() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("kh");
        let mut bytes =
            b"\xff\xfe binary\nvm1 ssh-ed25519 %%%\nvm1 ssh-nope AAAA\n@bogus vm1 x\n".to_vec();
        bytes.extend_from_slice(format!("vm1 {ED1}\n").as_bytes());
        std::fs::write(&path, bytes).expect("w");
        assert_eq!(
            KnownHosts::single(&path)
                .check("vm1", 22, &key(ED1))
                .expect("check"),
            HostKeyStatus::Valid
        );
    }

    #[test]
    fn dev_zero_known_hosts_is_a_file_error() {
        let err = KnownHosts::single("/dev/zero")
            .check("vm1", 22, &key(ED1))
            .expect_err("not a regular file");
        assert_eq!(crate::error::UserError::kind(&err), "io.file");
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn strict_arg_refuses_no_naming_the_variable() {
        let err = parse_strict_arg("no").expect_err("no");
        assert!(
            err.contains(STRICT_HOST_KEYS_ENV) && err.contains("accept-new"),
            "{err}"
        );
        assert_eq!(parse_strict_arg("accept-new").as_deref(), Ok("accept-new"));
    }

    #[test]
    fn wildcards_follow_openssh() {
        assert!(wildcard_match("*.azure.com", "vm.azure.com"));
        assert!(wildcard_match("vm?", "vm1"));
        assert!(!wildcard_match("vm?", "vm12"));
        assert!(wildcard_match("*", ""));
    }

    #[test]
    fn mode_parses_from_script_strings() {
        assert_eq!("accept-new".parse(), Ok(StrictHostKeyChecking::AcceptNew));
        assert!("maybe".parse::<StrictHostKeyChecking>().is_err());
    }
}
