//! Passphrase-protected private keys, decrypted once per process. A fleet run connects to
//! hundreds of VMs with the same `-i` key; OpenSSH's key format derives the cipher key with
//! bcrypt-pbkdf (16 rounds by default, a noticeable fraction of a second each time), and a key
//! whose passphrase is asked for interactively must not be asked for once per VM. The decrypted
//! key is held behind an `Arc`, never serialised or logged (russh's `PrivateKey` has no
//! `Display`, and its `Debug` is never used here); ssh-key zeroizes the private scalars when the
//! last `Arc` is dropped. An entry is only reused while the file on disk is unchanged (same
//! length and modification time), so a key replaced on disk is read and decrypted again. A
//! passphrase given explicitly (option or `AZSSH_KEY_PASSPHRASE`) must match the one that
//! decrypted the entry, else the key is decrypted again (and a wrong one fails as it always
//! did); only a prompted passphrase is not asked again.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use russh::keys::PrivateKey;
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// What an entry remembers of the passphrase that decrypted it: a SHA-256 digest, compared,
/// never shown.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct PassphraseDigest([u8; 32]);

impl PassphraseDigest {
    pub(crate) fn of(passphrase: &Secret<String>) -> PassphraseDigest {
        let mut h = Sha256::new();
        h.update(b"azssh key passphrase\0");
        h.update(passphrase.expose().as_bytes());
        PassphraseDigest(h.finalize().into())
    }
}

/// What identifies one version of a key file: its length and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    len: u64,
    modified: SystemTime,
}

impl FileStamp {
    /// The stamp of `path` now; `None` when the file system cannot say (then nothing is cached).
    pub(crate) fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            len: meta.len(),
            modified: meta.modified().ok()?,
        })
    }
}

struct Entry {
    stamp: FileStamp,
    passphrase: PassphraseDigest,
    key: Arc<PrivateKey>,
}

/// Decrypted keys by canonical path.
#[derive(Default)]
pub(crate) struct DecryptedKeys {
    // A tokio mutex held across the decryption: concurrent connects of a fleet run wait for the
    // first one's decryption (and its passphrase prompt) instead of each decrypting or asking.
    entries: tokio::sync::Mutex<HashMap<PathBuf, Entry>>,
    decryptions: AtomicUsize,
}

/// The process's decrypted keys.
pub(crate) static DECRYPTED_KEYS: LazyLock<DecryptedKeys> = LazyLock::new(DecryptedKeys::default);

impl DecryptedKeys {
    /// The key decrypted earlier from the same version of `path` (with the same passphrase when
    /// one is `given`), or `decrypt()`'s result (the key and the passphrase that opened it),
    /// kept when it succeeds and `stamp` (taken before the file was read) is known.
    pub(crate) async fn get_or_decrypt<F, Fut>(
        &self,
        path: &Path,
        stamp: Option<FileStamp>,
        given: Option<PassphraseDigest>,
        decrypt: F,
    ) -> Result<Arc<PrivateKey>, String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(PrivateKey, PassphraseDigest), String>>,
    {
        let id = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let mut entries = self.entries.lock().await;
        if let (Some(stamp), Some(entry)) = (stamp, entries.get(&id))
            && entry.stamp == stamp
            && given.is_none_or(|g| g == entry.passphrase)
        {
            return Ok(entry.key.clone());
        }
        self.decryptions.fetch_add(1, Ordering::Relaxed);
        let (key, passphrase) = decrypt().await?;
        let key = Arc::new(key);
        match stamp {
            Some(stamp) => {
                entries.insert(
                    id,
                    Entry {
                        stamp,
                        passphrase,
                        key: key.clone(),
                    },
                );
            }
            // The file cannot be stamped: whatever was held for it may be stale.
            None => {
                entries.remove(&id);
            }
        }
        Ok(key)
    }

    /// How many decryptions ran (a test's view of the cache).
    #[cfg(test)]
    pub(crate) fn decryptions(&self) -> usize {
        self.decryptions.load(Ordering::Relaxed)
    }
}
