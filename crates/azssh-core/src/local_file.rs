//! Reading the operator's files (known_hosts, keys, targets, journals, scripts) with a bounded
//! reader: a regular file below a documented size cap, or one clear error.
//!
//! `--known-hosts /dev/zero` once read until the machine's memory ran out; a FIFO blocks for
//! ever. Every file azssh reads on the operator's machine goes through here.

use crate::error::kind;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Size caps, documented in the README's security section.
pub mod cap {
    /// known_hosts files: OpenSSH's own are rarely over a few hundred KiB.
    pub const KNOWN_HOSTS: u64 = 16 * 1024 * 1024;
    /// Private and public key files.
    pub const KEY: u64 = 1024 * 1024;
    /// `--targets` files (one resource id per line; 100k VMs fit easily).
    pub const TARGETS: u64 = 64 * 1024 * 1024;
    /// Fleet journals.
    pub const JOURNAL: u64 = 512 * 1024 * 1024;
    /// Scripts and modules.
    pub const SCRIPT: u64 = 16 * 1024 * 1024;
    /// `~/.ssh/config` and similar small configuration files.
    pub const CONFIG: u64 = 4 * 1024 * 1024;
}

#[derive(Debug, thiserror::Error)]
pub enum LocalFileError {
    #[error("cannot read {what} '{path}': {reason}")]
    Unreadable {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{what} '{path}' is not a regular file")]
    NotRegular { what: &'static str, path: PathBuf },
    #[error("{what} '{path}' is larger than {cap} bytes")]
    TooLarge {
        what: &'static str,
        path: PathBuf,
        cap: u64,
    },
    #[error("{what} '{path}' is not UTF-8 text")]
    NotUtf8 { what: &'static str, path: PathBuf },
}

impl LocalFileError {
    /// Whether the file simply does not exist (callers that treat "absent" as "empty" need this).
    pub fn is_not_found(&self) -> bool {
        matches!(self, LocalFileError::Unreadable { reason, .. } if reason == NOT_FOUND)
    }
}

const NOT_FOUND: &str = "no such file or directory";

impl crate::error::UserError for LocalFileError {
    fn kind(&self) -> &'static str {
        kind::io::FILE
    }
    fn hint(&self) -> Option<String> {
        Some(match self {
            LocalFileError::Unreadable { .. } => "check the path and its permissions".into(),
            LocalFileError::NotRegular { .. } => {
                "give the path of a regular file (not a device, FIFO or directory)".into()
            }
            LocalFileError::TooLarge { .. } => {
                "this is far larger than such a file can be; check you named the right file".into()
            }
            LocalFileError::NotUtf8 { .. } => "save the file as UTF-8".into(),
        })
    }
}

/// Reads at most `cap` bytes of the regular file at `path`; `what` names it in errors
/// ("known_hosts file", "private key", ...).
pub fn read_bytes(path: &Path, cap: u64, what: &'static str) -> Result<Vec<u8>, LocalFileError> {
    let unreadable = |e: std::io::Error| LocalFileError::Unreadable {
        what,
        path: path.to_path_buf(),
        reason: if e.kind() == std::io::ErrorKind::NotFound {
            NOT_FOUND.into()
        } else {
            e.to_string().to_lowercase()
        },
    };
    // `/dev/null` is how OpenSSH users say "none" (`-F /dev/null`, `UserKnownHostsFile=/dev/null`):
    // always empty, never blocking, so it reads as an empty file rather than "not regular".
    if path == Path::new("/dev/null") {
        return Ok(Vec::new());
    }
    // Check the type before opening: opening a FIFO for reading blocks until a writer appears.
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if !meta.is_file() {
        return Err(LocalFileError::NotRegular {
            what,
            path: path.to_path_buf(),
        });
    }
    if meta.len() > cap {
        return Err(LocalFileError::TooLarge {
            what,
            path: path.to_path_buf(),
            cap,
        });
    }
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // `take(cap + 1)`: the file may grow between `metadata` and the read.
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > cap {
        return Err(LocalFileError::TooLarge {
            what,
            path: path.to_path_buf(),
            cap,
        });
    }
    Ok(bytes)
}

/// [`read_bytes`] as UTF-8 text; a leading UTF-8 byte-order mark (Notepad's default) is dropped.
pub fn read_text(path: &Path, cap: u64, what: &'static str) -> Result<String, LocalFileError> {
    let bytes = read_bytes(path, cap, what)?;
    let mut text = String::from_utf8(bytes).map_err(|_| LocalFileError::NotUtf8 {
        what,
        path: path.to_path_buf(),
    })?;
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_zero_is_refused_not_read() {
        let err = read_bytes(Path::new("/dev/zero"), cap::KNOWN_HOSTS, "known_hosts file")
            .expect_err("refused");
        assert!(matches!(err, LocalFileError::NotRegular { .. }), "{err}");
    }

    #[test]
    fn dev_null_reads_as_an_empty_file_as_openssh_users_expect() {
        let text = read_text(Path::new("/dev/null"), cap::CONFIG, "ssh config").expect("empty");
        assert!(text.is_empty());
    }

    #[test]
    fn files_over_the_cap_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("big");
        std::fs::write(&p, vec![b'a'; 11]).expect("write");
        let err = read_bytes(&p, 10, "key").expect_err("too large");
        assert!(err.to_string().contains("larger than 10 bytes"), "{err}");
        assert_eq!(read_bytes(&p, 11, "key").expect("fits").len(), 11);
    }

    #[test]
    fn bom_is_dropped_and_missing_files_are_recognised() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("s.rhai");
        std::fs::write(&p, "\u{feff}let x = 1;").expect("write");
        assert_eq!(read_text(&p, 100, "script").expect("read"), "let x = 1;");
        let missing = read_text(&dir.path().join("nope"), 100, "script").expect_err("missing");
        assert!(missing.is_not_found());
    }
}
