//! The user's home directory and the paths OpenSSH reads under it, defined once: `~/.ssh`, the
//! default identities, and `~/` in paths typed by users (no shell expands them on the way in).

use std::path::PathBuf;

/// The private keys OpenSSH offers by default, in its order (`ssh(1)`, `-i`): the public halves
/// are the same names with `.pub`.
pub const DEFAULT_IDENTITIES: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];

/// The home directory (`$HOME`, else the password database).
pub fn home_dir() -> Option<PathBuf> {
    dirs::home_dir()
}

/// `~/.ssh`.
pub fn ssh_dir() -> Option<PathBuf> {
    home_dir().map(|h| h.join(".ssh"))
}

/// `~/x` (or `~\x`, as typed on Windows) → the home directory's `x`; anything else unchanged.
pub fn expand_home(path: &str) -> PathBuf {
    match (
        path.strip_prefix("~/").or(path.strip_prefix("~\\")),
        home_dir(),
    ) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
    }
}

/// `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`: the private keys OpenSSH offers by default, those
/// present.
pub fn default_identity_files() -> Vec<PathBuf> {
    let Some(dir) = ssh_dir() else {
        return Vec::new();
    };
    DEFAULT_IDENTITIES
        .iter()
        .map(|n| dir.join(n))
        .filter(|p| p.exists())
        .collect()
}

/// The first of `~/.ssh/id_ed25519.pub`, `id_ecdsa.pub`, `id_rsa.pub` that exists: the key a
/// workflow installs when none is named.
pub fn default_public_key() -> Option<PathBuf> {
    let dir = ssh_dir()?;
    DEFAULT_IDENTITIES
        .iter()
        .map(|n| dir.join(format!("{n}.pub")))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_home_takes_both_separators_and_leaves_other_paths() {
        let Some(home) = home_dir() else { return };
        assert_eq!(expand_home("~/a/b"), home.join("a/b"));
        assert_eq!(expand_home("~\\k.pub"), home.join("k.pub"));
        assert_eq!(expand_home("/etc/x"), PathBuf::from("/etc/x"));
        assert_eq!(expand_home("~user/x"), PathBuf::from("~user/x"));
    }
}
