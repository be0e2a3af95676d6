//! User authentication in OpenSSH's order: agent keys, then key files, then password. Every
//! attempt is recorded so that a final failure says what was tried and why each failed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::{AuthResult, Handle};
use russh::keys::agent::client::AgentClient;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};

use super::connect::ClientHandler;
use super::decrypted_keys::{DECRYPTED_KEYS, DecryptedKeys, FileStamp, PassphraseDigest};
use super::error::{AuthAttempt, SshError, WRONG_PASSPHRASE};
use super::known_hosts::fingerprint;
use crate::secret::Secret;

/// Asks the user for a secret (the argument is the prompt, e.g. "passphrase for key `…`: ");
/// `None` when the user declines. Called on a blocking thread, so it may read a terminal.
pub type PromptSecret = Arc<dyn Fn(&str) -> Option<Secret<String>> + Send + Sync>;

/// Environment variable holding the passphrase of encrypted keys in unattended runs.
pub const PASSPHRASE_ENV: &str = "AZSSH_KEY_PASSPHRASE";

pub(crate) struct Credentials {
    pub identity_files: Vec<PathBuf>,
    pub password: Option<Secret<String>>,
    pub passphrase: Option<Secret<String>>,
    pub prompt: Option<PromptSecret>,
    pub use_agent: bool,
    /// `None`: `SSH_AUTH_SOCK`.
    pub agent_socket: Option<PathBuf>,
}

pub use crate::home::default_identity_files;

pub(crate) async fn authenticate(
    handle: &mut Handle<ClientHandler>,
    host: &str,
    user: &str,
    creds: &Credentials,
) -> Result<(), SshError> {
    let mut attempts = Vec::new();
    match try_all(handle, host, user, creds, &mut attempts).await {
        Ok(true) => return Ok(()),
        Ok(false) => {}
        // sshd drops the connection after `MaxAuthTries` (6 by default) failed attempts, and
        // every key offered counts: report what was tried rather than a bare disconnect.
        Err(SshError::Disconnected) => attempts.push(AuthAttempt {
            method: "next method".to_string(),
            outcome: "the server closed the connection (too many keys offered? sshd's \
                      `MaxAuthTries` counts each one)"
                .to_string(),
        }),
        Err(e) => return Err(e),
    }
    Err(SshError::AuthFailed {
        user: user.to_string(),
        host: host.to_string(),
        attempts,
    })
}

/// OpenSSH's order: agent keys, identity files, then password. `Ok(true)` once one succeeds.
async fn try_all(
    handle: &mut Handle<ClientHandler>,
    host: &str,
    user: &str,
    creds: &Credentials,
    attempts: &mut Vec<AuthAttempt>,
) -> Result<bool, SshError> {
    if creds.use_agent && try_agent(handle, user, creds, attempts).await? {
        return Ok(true);
    }
    for path in &creds.identity_files {
        if try_key_file(handle, user, path, creds, attempts).await? {
            return Ok(true);
        }
    }
    try_password(handle, user, host, creds, attempts).await
}

fn outcome(result: &AuthResult) -> String {
    match result {
        AuthResult::Success => "accepted".to_string(),
        AuthResult::Failure {
            partial_success: true,
            ..
        } => "accepted, but the server wants another method too".to_string(),
        AuthResult::Failure { .. } => "refused by the server".to_string(),
    }
}

async fn try_agent(
    handle: &mut Handle<ClientHandler>,
    user: &str,
    creds: &Credentials,
    attempts: &mut Vec<AuthAttempt>,
) -> Result<bool, SshError> {
    let socket = match &creds.agent_socket {
        Some(p) => p.clone(),
        None => match std::env::var_os("SSH_AUTH_SOCK") {
            Some(p) => PathBuf::from(p),
            // No agent is the common case on servers; not worth listing as an attempt.
            None => return Ok(false),
        },
    };
    let mut agent = match AgentClient::connect_uds(&socket).await {
        Ok(a) => a,
        Err(e) => {
            attempts.push(AuthAttempt {
                method: format!("agent `{}`", socket.display()),
                outcome: format!("cannot connect: {e}"),
            });
            return Ok(false);
        }
    };
    let identities = agent.request_identities().await.unwrap_or_default();
    if identities.is_empty() {
        attempts.push(AuthAttempt {
            method: format!("agent `{}`", socket.display()),
            outcome: "the agent holds no keys".to_string(),
        });
    }
    for identity in identities {
        let key = identity.public_key().into_owned();
        let method = format!("agent key {}", fingerprint(&key));
        let hash = if key.algorithm().is_rsa() {
            handle.best_supported_rsa_hash().await?.flatten()
        } else {
            None
        };
        match handle
            .authenticate_publickey_with(user, key, hash, &mut agent)
            .await
        {
            Ok(AuthResult::Success) => return Ok(true),
            Ok(r) => attempts.push(AuthAttempt {
                method,
                outcome: outcome(&r),
            }),
            Err(e) => attempts.push(AuthAttempt {
                method,
                outcome: format!("agent could not sign: {e}"),
            }),
        }
    }
    Ok(false)
}

async fn try_key_file(
    handle: &mut Handle<ClientHandler>,
    user: &str,
    path: &Path,
    creds: &Credentials,
    attempts: &mut Vec<AuthAttempt>,
) -> Result<bool, SshError> {
    let method = format!("publickey `{}`", path.display());
    // OpenSSH refuses a key others can read ("UNPROTECTED PRIVATE KEY FILE"); so do we, and
    // loudly: a silently skipped key would only surface as a puzzling authentication failure.
    check_private_key_mode(path)?;
    let key = match load_key(path, creds).await {
        Ok(k) => k,
        Err(reason) => {
            attempts.push(AuthAttempt {
                method,
                outcome: reason,
            });
            return Ok(false);
        }
    };
    // OpenSSH ≥ 8.8 refuses SHA-1 `ssh-rsa` signatures: ask the server (server-sig-algs)
    // which of rsa-sha2-512/256 it takes.
    let hash = if key.algorithm().is_rsa() {
        handle.best_supported_rsa_hash().await?.flatten()
    } else {
        None
    };
    let result = handle
        .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, hash))
        .await?;
    if result.success() {
        return Ok(true);
    }
    attempts.push(AuthAttempt {
        method,
        outcome: outcome(&result),
    });
    Ok(false)
}

/// Loads a private key (OpenSSH or PEM), decrypting it with the given passphrase,
/// `AZSSH_KEY_PASSPHRASE`, or the prompt, in that order; an encrypted key is decrypted once per
/// process (`decrypted_keys`). The error is the reason shown to the user.
async fn load_key(path: &Path, creds: &Credentials) -> Result<Arc<PrivateKey>, String> {
    load_key_with(&DECRYPTED_KEYS, path, creds).await
}

async fn load_key_with(
    decrypted: &DecryptedKeys,
    path: &Path,
    creds: &Credentials,
) -> Result<Arc<PrivateKey>, String> {
    // Stamped before reading: a file replaced meanwhile gets a new stamp next time.
    let stamp = FileStamp::of(path);
    // Through the bounded reader: `-i /dev/zero` must not read for ever.
    let text = crate::local_file::read_text(path, crate::local_file::cap::KEY, "private key")
        .map_err(|e| e.to_string())?;
    match russh::keys::decode_secret_key(&text, None) {
        Ok(k) => return Ok(Arc::new(k)),
        Err(russh::keys::Error::KeyIsEncrypted) => {}
        Err(e) => return Err(format!("not a usable private key: {e}")),
    }
    // A passphrase given up front (option, then environment); else the prompt, asked only when
    // the key is not already decrypted.
    let given = creds
        .passphrase
        .clone()
        .or_else(|| std::env::var(PASSPHRASE_ENV).ok().map(Secret::new));
    let digest = given.as_ref().map(PassphraseDigest::of);
    decrypted
        .get_or_decrypt(path, stamp, digest, || {
            decrypt_key(path, &text, given, creds)
        })
        .await
}

async fn decrypt_key(
    path: &Path,
    text: &str,
    given: Option<Secret<String>>,
    creds: &Credentials,
) -> Result<(PrivateKey, PassphraseDigest), String> {
    let passphrase = match given {
        Some(p) => Some(p),
        None => match creds.prompt.clone() {
            Some(prompt) => {
                let question = format!("passphrase for key `{}`: ", path.display());
                tokio::task::spawn_blocking(move || prompt(&question))
                    .await
                    .ok()
                    .flatten()
            }
            None => None,
        },
    };
    let Some(passphrase) = passphrase else {
        return Err(format!(
            "key is encrypted and no passphrase was given (set `{PASSPHRASE_ENV}`)"
        ));
    };
    // A wrong passphrase surfaces as a generic decryption error (the padding or checksum of
    // the decrypted block does not verify), not as a distinct variant.
    let key = russh::keys::decode_secret_key(text, Some(passphrase.expose())).map_err(|e| {
        tracing::debug!(path = %path.display(), "cannot decrypt key: {e}");
        format!("{WRONG_PASSPHRASE} (or a damaged key)")
    })?;
    Ok((key, PassphraseDigest::of(&passphrase)))
}

/// Refuses a private key file whose mode gives group or others any access (`mode & 0o077`,
/// OpenSSH's `sshkey_perm_ok`). A missing file is left to the loader to report.
pub(crate) fn check_private_key_mode(path: &Path) -> Result<(), SshError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if meta.is_file() && mode & 0o077 != 0 {
                return Err(SshError::KeyPermissions {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

async fn try_password(
    handle: &mut Handle<ClientHandler>,
    user: &str,
    host: &str,
    creds: &Credentials,
    attempts: &mut Vec<AuthAttempt>,
) -> Result<bool, SshError> {
    let password = match (&creds.password, &creds.prompt) {
        (Some(p), _) => p.clone(),
        (None, Some(prompt)) => {
            let prompt = prompt.clone();
            let question = format!("password for `{user}@{host}`: ");
            match tokio::task::spawn_blocking(move || prompt(&question))
                .await
                .ok()
                .flatten()
            {
                Some(p) => p,
                None => return Ok(false),
            }
        }
        (None, None) => return Ok(false),
    };
    let result = handle
        .authenticate_password(user, password.expose().as_str())
        .await?;
    if result.success() {
        return Ok(true);
    }
    attempts.push(AuthAttempt {
        method: "password".to_string(),
        outcome: outcome(&result),
    });
    Ok(false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use russh::keys::ssh_key::LineEnding;
    use russh::keys::{Algorithm, PublicKey};

    fn creds(passphrase: &str) -> Credentials {
        Credentials {
            identity_files: Vec::new(),
            password: None,
            passphrase: Some(Secret::new(passphrase.to_string())),
            prompt: None,
            use_agent: false,
            agent_socket: None,
        }
    }

    /// A new ed25519 key encrypted with `passphrase` at `path`; its public half.
    fn write_encrypted_key(path: &Path, passphrase: &str) -> PublicKey {
        let mut rng = russh::keys::key::safe_rng();
        let key = PrivateKey::random(&mut rng, Algorithm::Ed25519).unwrap();
        let encrypted = key.encrypt(&mut rng, passphrase).unwrap();
        let text = encrypted.to_openssh(LineEnding::LF).unwrap();
        std::fs::write(path, text.as_bytes()).unwrap();
        key.public_key().clone()
    }

    #[tokio::test]
    async fn a_second_connect_with_the_same_encrypted_key_does_not_decrypt_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_ed25519");
        let public = write_encrypted_key(&path, "correct horse");
        let cache = DecryptedKeys::default();
        let first = load_key_with(&cache, &path, &creds("correct horse"))
            .await
            .unwrap();
        let second = load_key_with(&cache, &path, &creds("correct horse"))
            .await
            .unwrap();
        assert_eq!(cache.decryptions(), 1, "decrypted once for two connects");
        assert!(
            Arc::ptr_eq(&first, &second),
            "the one decrypted key is shared"
        );
        assert_eq!(first.public_key(), &public);
    }

    #[tokio::test]
    async fn an_encrypted_key_replaced_on_disk_is_read_and_decrypted_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_ed25519");
        write_encrypted_key(&path, "pw one");
        let cache = DecryptedKeys::default();
        load_key_with(&cache, &path, &creds("pw one"))
            .await
            .unwrap();
        // Another key of the same type: the same length, so only the time tells them apart;
        // set it explicitly, as file systems with coarse timestamps would not move it.
        let public = write_encrypted_key(&path, "pw two");
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        let reloaded = load_key_with(&cache, &path, &creds("pw two"))
            .await
            .unwrap();
        assert_eq!(cache.decryptions(), 2);
        assert_eq!(
            reloaded.public_key(),
            &public,
            "the new key, not the cached one"
        );
    }

    #[tokio::test]
    async fn a_wrong_passphrase_is_not_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_ed25519");
        write_encrypted_key(&path, "s3cret-right");
        let cache = DecryptedKeys::default();
        let wrong = load_key_with(&cache, &path, &creds("s3cret-typo"))
            .await
            .unwrap_err();
        assert!(wrong.contains(WRONG_PASSPHRASE), "{wrong}");
        assert!(
            !wrong.contains("s3cret"),
            "no passphrase in the reason: {wrong}"
        );
        load_key_with(&cache, &path, &creds("s3cret-right"))
            .await
            .unwrap();
        load_key_with(&cache, &path, &creds("s3cret-right"))
            .await
            .unwrap();
        assert_eq!(cache.decryptions(), 2, "the failed try and one success");
    }

    #[tokio::test]
    async fn a_wrong_passphrase_fails_even_after_the_key_was_opened_with_the_right_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_ed25519");
        write_encrypted_key(&path, "s3cret-right");
        let cache = DecryptedKeys::default();
        load_key_with(&cache, &path, &creds("s3cret-right"))
            .await
            .unwrap();
        let wrong = load_key_with(&cache, &path, &creds("s3cret-typo"))
            .await
            .unwrap_err();
        assert!(wrong.contains(WRONG_PASSPHRASE), "{wrong}");
    }

    #[tokio::test]
    async fn a_prompted_passphrase_is_asked_once_for_many_connects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_ed25519");
        write_encrypted_key(&path, "s3cret-typed");
        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = asked.clone();
        let prompt: PromptSecret = Arc::new(move |_question: &str| {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Some(Secret::new("s3cret-typed".to_string()))
        });
        let mut c = creds("unused");
        c.passphrase = None;
        c.prompt = Some(prompt);
        // Without the environment variable, which would take the prompt's place.
        if std::env::var_os(PASSPHRASE_ENV).is_some() {
            return;
        }
        let cache = DecryptedKeys::default();
        for _ in 0..5 {
            load_key_with(&cache, &path, &c).await.unwrap();
        }
        assert_eq!(asked.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(cache.decryptions(), 1);
    }

    #[tokio::test]
    async fn an_unencrypted_key_is_loaded_without_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_ed25519");
        let mut rng = russh::keys::key::safe_rng();
        let key = PrivateKey::random(&mut rng, Algorithm::Ed25519).unwrap();
        std::fs::write(&path, key.to_openssh(LineEnding::LF).unwrap().as_bytes()).unwrap();
        let cache = DecryptedKeys::default();
        let loaded = load_key_with(&cache, &path, &creds("unused"))
            .await
            .unwrap();
        assert_eq!(loaded.public_key(), key.public_key());
        assert_eq!(cache.decryptions(), 0);
    }
}
