//! Windows path rules for the guest's SFTP server: parsing every spelling Windows OpenSSH accepts
//! and mapping the result into the sandbox directory (see the parent module's docs).

use std::path::{Path, PathBuf};

use russh_sftp::protocol::StatusCode;
use russh_sftp::server::StatusReply;

/// The drive a session starts on and where drive-less absolute paths land.
pub(super) const SYSTEM_DRIVE: char = 'C';

/// A place in the guest's file namespace, already normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowsPath {
    /// `/`: the list of drives.
    Drives,
    /// A drive letter (upper case) and the components under its root.
    OnDrive { drive: char, parts: Vec<String> },
}

impl WindowsPath {
    /// The user's profile folder, `C:\Users\<user>`.
    pub fn home(user: &str) -> Self {
        WindowsPath::OnDrive {
            drive: SYSTEM_DRIVE,
            parts: vec!["Users".to_string(), user.to_string()],
        }
    }

    /// Parses `input` as Windows OpenSSH does, relative paths against `cwd`.
    pub fn parse(input: &str, cwd: &WindowsPath) -> Result<Self, StatusReply> {
        let slashed = input.replace('\\', "/");
        let mut rest = slashed.as_str();
        // "/C:/x" is how sftp clients spell "C:/x" once they have seen realpath's answer.
        if let Some(stripped) = rest.strip_prefix('/')
            && starts_with_drive(stripped)
        {
            rest = stripped;
        }
        let (mut drive, mut parts) = if starts_with_drive(rest) {
            let letter = rest.chars().next().unwrap_or(SYSTEM_DRIVE);
            rest = &rest[2..];
            (Some(letter.to_ascii_uppercase()), Vec::new())
        } else if let Some(stripped) = rest.strip_prefix('/') {
            rest = stripped;
            (None, Vec::new())
        } else {
            match cwd {
                WindowsPath::Drives => (None, Vec::new()),
                WindowsPath::OnDrive { drive, parts } => (Some(*drive), parts.clone()),
            }
        };
        for part in rest.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(StatusCode::PermissionDenied
                            .with_message(format!("`{input}` climbs above the drive root")));
                    }
                }
                // OpenSSH's sftp client makes `C:/Temp` absolute by prefixing its working
                // directory (`/C:/Users/me/C:/Temp`). A drive can only start a path on Windows
                // (`:` is not allowed in names), so a drive component restarts from that root,
                // as joining an absolute path does in Win32 path APIs.
                name if starts_with_drive(name) && name.len() == 2 => {
                    drive = name.chars().next().map(|c| c.to_ascii_uppercase());
                    parts.clear();
                }
                name => {
                    if name.contains([':', '<', '>', '"', '|', '?', '*', '\0']) {
                        return Err(StatusCode::Failure.with_message(format!(
                            "the filename, directory name, or volume label syntax is incorrect: `{input}`"
                        )));
                    }
                    drive.get_or_insert(SYSTEM_DRIVE);
                    parts.push(name.to_string());
                }
            }
        }
        Ok(match drive {
            None => WindowsPath::Drives,
            Some(drive) => WindowsPath::OnDrive { drive, parts },
        })
    }

    /// The form Windows OpenSSH reports back: `/C:/Users/me`, or `/` for the drive list.
    pub fn to_sftp_string(&self) -> String {
        match self {
            WindowsPath::Drives => "/".to_string(),
            WindowsPath::OnDrive { drive, parts } => {
                let mut s = format!("/{drive}:");
                if parts.is_empty() {
                    s.push('/');
                }
                for part in parts {
                    s.push('/');
                    s.push_str(part);
                }
                s
            }
        }
    }
}

fn starts_with_drive(s: &str) -> bool {
    let mut chars = s.chars();
    // `C:x` is drive-relative on Windows; with no per-drive working directory it means `C:/x`.
    matches!((chars.next(), chars.next()), (Some(letter), Some(':')) if letter.is_ascii_alphabetic())
}

/// Maps a Windows path to the file in the sandbox, matching each component case-insensitively
/// and refusing symbolic links (a link could point out of the sandbox).
pub async fn host_path(root: &Path, path: &WindowsPath) -> Result<PathBuf, StatusReply> {
    let WindowsPath::OnDrive { drive, parts } = path else {
        return Err(StatusCode::Failure.with_message("`/` is the list of drives, not a folder"));
    };
    let mut host = root.join(drive.to_string());
    if !tokio::fs::try_exists(&host).await.unwrap_or(false) {
        return Err(StatusCode::NoSuchFile.with_message(format!(
            "the system cannot find the drive specified: `{drive}:`"
        )));
    }
    for part in parts {
        let exact = host.join(part);
        host = match tokio::fs::symlink_metadata(&exact).await {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(StatusCode::PermissionDenied.with_message("links are not followed"));
            }
            Ok(_) => exact,
            Err(_) => match find_case_insensitive(&host, part).await {
                Some(found) => found,
                // Not there: the caller may be about to create it.
                None => exact,
            },
        };
    }
    Ok(host)
}

async fn find_case_insensitive(dir: &Path, name: &str) -> Option<PathBuf> {
    let wanted = name.to_lowercase();
    let mut entries = tokio::fs::read_dir(dir).await.ok()?;
    while let Ok(Some(entry)) = entries.next_entry().await {
        if entry.file_name().to_string_lossy().to_lowercase() == wanted {
            let is_link = entry.file_type().await.ok()?.is_symlink();
            return (!is_link).then(|| entry.path());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<WindowsPath, StatusReply> {
        WindowsPath::parse(s, &WindowsPath::home("azureuser"))
    }

    fn on_c(parts: &[&str]) -> WindowsPath {
        WindowsPath::OnDrive {
            drive: 'C',
            parts: parts.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn drive_paths_in_every_spelling_agree() {
        for spelling in ["/C:/x/y", "C:/x/y", "c:\\x\\y", "/c:/x//./y", "C:x/y"] {
            assert_eq!(
                parse(spelling).expect(spelling),
                on_c(&["x", "y"]),
                "{spelling}"
            );
        }
    }

    #[test]
    fn a_drive_inside_a_path_restarts_from_that_drive() {
        // What OpenSSH's sftp sends for `put x C:/Temp/x` while in the profile folder.
        assert_eq!(
            parse("/C:/Users/azureuser/C:/Temp/x").expect("parse"),
            on_c(&["Temp", "x"])
        );
        assert_eq!(
            parse("/C:/Users/azureuser/d:/x").expect("parse"),
            WindowsPath::OnDrive {
                drive: 'D',
                parts: vec!["x".to_string()]
            }
        );
    }

    #[test]
    fn relative_paths_start_in_the_profile() {
        assert_eq!(parse(".").expect("dot"), on_c(&["Users", "azureuser"]));
        assert_eq!(
            parse("notes.txt").expect("file"),
            on_c(&["Users", "azureuser", "notes.txt"])
        );
        assert_eq!(parse("..").expect("up"), on_c(&["Users"]));
    }

    #[test]
    fn slash_is_the_drive_list_and_drive_less_paths_land_on_c() {
        assert_eq!(parse("/").expect("root"), WindowsPath::Drives);
        assert_eq!(parse("/Windows").expect("windows"), on_c(&["Windows"]));
        assert_eq!(WindowsPath::Drives.to_sftp_string(), "/");
        assert_eq!(on_c(&[]).to_sftp_string(), "/C:/");
        assert_eq!(on_c(&["Users", "me"]).to_sftp_string(), "/C:/Users/me");
    }

    #[test]
    fn dot_dot_cannot_escape_the_drive_root() {
        let err = parse("C:/x/../../etc/passwd").expect_err("escape refused");
        assert_eq!(err.status_code, StatusCode::PermissionDenied);
        assert!(parse("/C:/..").is_err());
        assert_eq!(parse("C:/x/../y").expect("inside"), on_c(&["y"]));
    }

    #[test]
    fn reserved_characters_are_refused() {
        assert!(parse("C:/a/b:c").is_err());
        assert!(parse("C:/a?").is_err());
    }

    #[tokio::test]
    async fn host_path_matches_case_insensitively_and_refuses_links() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("C/Users/Me")).expect("mkdir");
        let found = host_path(root.path(), &parse("c:/users/ME/new.txt").expect("parse"))
            .await
            .expect("resolves");
        assert_eq!(found, root.path().join("C/Users/Me/new.txt"));

        std::os::unix::fs::symlink("/etc", root.path().join("C/etc")).expect("symlink");
        let err = host_path(root.path(), &parse("C:/etc/passwd").expect("parse"))
            .await
            .expect_err("link refused");
        assert_eq!(err.status_code, StatusCode::PermissionDenied);

        let err = host_path(root.path(), &parse("D:/x").expect("parse"))
            .await
            .expect_err("no drive D");
        assert_eq!(err.status_code, StatusCode::NoSuchFile);
    }
}
