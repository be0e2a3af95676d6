//! Where the REPL keeps its history: `$XDG_STATE_HOME/azssh/history`, else the platform's state
//! directory, else `~/.local/state/azssh/history`. One file shared by every session.

use std::path::{Path, PathBuf};

pub fn path() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = xdg
        .or_else(dirs::state_dir)
        .or_else(|| dirs::home_dir().map(|h| h.join(".local").join("state")))?;
    Some(in_dir(&base))
}

fn in_dir(base: &Path) -> PathBuf {
    base.join("azssh").join("history")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_lives_under_azssh() {
        assert_eq!(in_dir(Path::new("/s")), PathBuf::from("/s/azssh/history"));
    }
}
