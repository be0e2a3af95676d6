//! File transfer over the SFTP subsystem: upload and download of files and whole directories,
//! with Windows paths (`C:\x\y`, `C:/x/y`) mapped to the form Windows OpenSSH's sftp-server
//! expects (`/C:/x/y`). Transfers are pipelined: many reads or writes are in flight on one
//! handle, as OpenSSH's `sftp` keeps 64 requests outstanding; a download lands in a temporary
//! file beside its destination and is renamed into place only once complete.

use std::path::{Path, PathBuf};

use russh_sftp::client::{Config as SftpConfig, SftpSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::connect::Session;
use super::error::SshError;
use super::sftp_upload::{Uploader, open_local};
use super::sftp_wire::Failure;
use super::sftp_writeback::Writeback;

/// Local read/write size per call: a whole SFTP request's worth, so each call fills one
/// pipelined request (OpenSSH's sftp-server accepts up to 255 KiB per READ/WRITE,
/// `limits@openssh.com`).
const COPY_BUFFER: usize = 256 * 1024;

/// How the download pipeline is shaped (uploads go through `sftp_upload`). russh-sftp keeps up to `max_concurrent_*` requests in
/// flight on a handle (OpenSSH's `sftp -R` default is 64 of 32 KiB, 2 MiB); reads are sized by
/// the server's `limits@openssh.com` (255 KiB with OpenSSH) and writes by
/// `max_write_packet_len`. 32 KiB writes (russh-sftp's default) cost one request, one status
/// reply and one write(2) in sftp-server per 32 KiB; 255 KiB writes cut that eightfold. 16 of
/// either keeps ≥ 4 MiB in flight, more than sshd's 2 MiB session-channel window, so the pipe
/// never idles on acknowledgements.
pub(crate) fn sftp_config() -> SftpConfig {
    SftpConfig {
        // The largest message OpenSSH's sftp-server takes (SFTP_MAX_MSG_LENGTH, 256 KiB).
        max_packet_len: 256 * 1024,
        max_concurrent_reads: 16,
        max_concurrent_writes: 16,
        max_write_packet_len: 256 * 1024,
        // russh-sftp's default: one request's deadline, not the transfer's.
        request_timeout_secs: 10,
    }
}

/// How an upload ends each file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadOptions {
    /// Ask the server to flush each file to its disk (`fsync@openssh.com`, as `sftp -f` does)
    /// before reporting it done, so a reported upload survives the VM restarting (the default).
    /// `false` is what OpenSSH's `sftp` and `scp` do: the file is done once the server has
    /// acknowledged every write and closed it, and may still sit in its page cache.
    pub fsync: bool,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions { fsync: true }
    }
}

/// What a transfer moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transferred {
    pub files: u64,
    pub bytes: u64,
}

/// Maps a Windows path to SFTP form: `C:\x\y` and `C:/x/y` become `/C:/x/y`. Anything else is
/// passed through (POSIX servers, or paths relative to the login directory).
pub fn to_sftp_path(path: &str) -> String {
    let b = path.as_bytes();
    let drive = b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':';
    if drive && (b.len() == 2 || b[2] == b'\\' || b[2] == b'/') {
        let rest = path[2..].replace('\\', "/");
        let rest = if rest.is_empty() {
            "/".to_string()
        } else {
            rest
        };
        return format!("/{}:{}", &path[..1], rest);
    }
    path.to_string()
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Refuses a directory entry name that would place a download anywhere but directly inside its
/// directory: a hostile server controls these names (the CVE-2019-6111 class, where `../x` or
/// `/etc/x` in a listing wrote outside the destination). Separators of either OS, a drive prefix
/// (`C:x` is relative to drive C's current directory on Windows), `.`/`..`, empty names and NUL
/// are all refused.
pub fn check_entry_name(dir: &str, name: &str) -> Result<(), SshError> {
    let b = name.as_bytes();
    let reason = if name.is_empty() {
        Some("an empty name")
    } else if name == "." || name == ".." {
        Some("a relative directory")
    } else if name.contains(['/', '\\']) {
        Some("a path separator (an absolute or nested path)")
    } else if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        Some("a drive letter")
    } else if name.contains('\0') {
        Some("a NUL byte")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(SshError::UnsafeEntryName {
            dir: dir.to_string(),
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Refuses to write through a symbolic link already in the destination: following it could
/// put the server's content anywhere the link points. A missing path is fine.
async fn refuse_symlink(path: &Path) -> Result<(), SshError> {
    match tokio::fs::symlink_metadata(path).await {
        Ok(meta) if meta.file_type().is_symlink() => Err(SshError::io(
            format!(
                "refusing to write through the symbolic link `{}`",
                path.display()
            ),
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the destination holds a symbolic link",
            ),
        )),
        _ => Ok(()),
    }
}

fn sftp_err(operation: &'static str, path: &str, e: impl std::fmt::Display) -> SshError {
    SshError::Sftp {
        operation,
        path: path.to_string(),
        reason: e.to_string(),
    }
}

impl Session {
    /// Opens the SFTP subsystem on a new channel.
    pub async fn sftp(&self) -> Result<SftpSession, SshError> {
        let channel = self.handle.channel_open_session().await?;
        channel.request_subsystem(true, "sftp").await?;
        SftpSession::new_with_config(channel.into_stream(), sftp_config())
            .await
            .map_err(|e| sftp_err("start", "sftp", e))
    }

    /// Copies a local file or directory (recursively) to `remote`, each file synced on the
    /// server before it counts as done (`UploadOptions::default`).
    pub async fn upload(&self, local: &Path, remote: &str) -> Result<Transferred, SshError> {
        self.upload_with(local, remote, UploadOptions::default())
            .await
    }

    /// Copies a local file or directory (recursively) to `remote`, through the upload pipeline
    /// of `sftp_upload` (its own framing: see there why).
    pub async fn upload_with(
        &self,
        local: &Path,
        remote: &str,
        options: UploadOptions,
    ) -> Result<Transferred, SshError> {
        let mut sftp = self.sftp_uploader(options.fsync).await?;
        let mut writeback = Writeback::new(self);
        let remote = to_sftp_path(remote);
        let mut total = Transferred::default();
        let result = upload_any(&mut sftp, &mut writeback, local, &remote, &mut total).await;
        writeback.end().await;
        sftp.end().await;
        result.map(|_| total)
    }

    /// A new SFTP session for `sftp_upload`'s framing.
    pub(crate) async fn sftp_uploader(&self, sync: bool) -> Result<Uploader, SshError> {
        let channel = self.handle.channel_open_session().await?;
        channel.request_subsystem(true, "sftp").await?;
        let (rd, wr) = channel.split();
        Uploader::start(rd, wr, sync)
            .await
            .map_err(|e| sftp_err("start", "sftp", e))
    }

    /// Copies a remote file or directory (recursively) to `local`.
    pub async fn download(&self, remote: &str, local: &Path) -> Result<Transferred, SshError> {
        let sftp = self.sftp().await?;
        let remote = to_sftp_path(remote);
        let mut total = Transferred::default();
        let result = download_any(&sftp, &remote, local, &mut total).await;
        let _ = sftp.close().await;
        result.map(|_| total)
    }
}

async fn upload_any(
    sftp: &mut Uploader,
    writeback: &mut Writeback<'_>,
    local: &Path,
    remote: &str,
    total: &mut Transferred,
) -> Result<(), SshError> {
    let meta = tokio::fs::metadata(local)
        .await
        .map_err(|e| SshError::io(format!("cannot read `{}`", local.display()), e))?;
    if !meta.is_dir() {
        return upload_file(sftp, writeback, local, remote, total).await;
    }
    // Iterative walk: recursion in async fns needs boxing, a stack does not.
    let mut pending = vec![(local.to_path_buf(), remote.to_string())];
    while let Some((dir, rdir)) = pending.pop() {
        if !sftp.exists(&rdir).await.unwrap_or(false) {
            sftp.mkdir(&rdir)
                .await
                .map_err(|e| sftp_err("mkdir", &rdir, e))?;
        }
        let mut entries = tokio::fs::read_dir(&dir)
            .await
            .map_err(|e| SshError::io(format!("cannot list `{}`", dir.display()), e))?;
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| SshError::io(format!("cannot list `{}`", dir.display()), e))?
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let target = join(&rdir, &name);
            let is_dir = entry
                .file_type()
                .await
                .map(|t| t.is_dir())
                .map_err(|e| SshError::io(format!("cannot read `{}`", path.display()), e))?;
            if is_dir {
                pending.push((path, target));
            } else {
                upload_file(sftp, writeback, &path, &target, total).await?;
            }
        }
    }
    Ok(())
}

async fn upload_file(
    sftp: &mut Uploader,
    writeback: &mut Writeback<'_>,
    local: &Path,
    remote: &str,
    total: &mut Transferred,
) -> Result<(), SshError> {
    let file = open_local(local)?;
    let bytes = sftp
        .upload_file(file, remote, writeback)
        .await
        .map_err(|e| match e {
            Failure::Local(e) => SshError::io(format!("cannot read `{}`", local.display()), e),
            Failure::Open(e) => sftp_err("create", remote, e),
            e => sftp_err("write", remote, e),
        })?;
    total.files += 1;
    total.bytes += bytes;
    Ok(())
}

async fn download_any(
    sftp: &SftpSession,
    remote: &str,
    local: &Path,
    total: &mut Transferred,
) -> Result<(), SshError> {
    let meta = sftp
        .metadata(remote)
        .await
        .map_err(|e| sftp_err("stat", remote, e))?;
    if !meta.is_dir() {
        return download_file(sftp, remote, local, total).await;
    }
    let mut pending: Vec<(String, PathBuf)> = vec![(remote.to_string(), local.to_path_buf())];
    let mut root = true;
    while let Some((rdir, dir)) = pending.pop() {
        // The destination itself is the operator's choice; below it, nothing is followed.
        if !root {
            refuse_symlink(&dir).await?;
        }
        root = false;
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| SshError::io(format!("cannot create `{}`", dir.display()), e))?;
        let entries = sftp
            .read_dir(rdir.as_str())
            .await
            .map_err(|e| sftp_err("list", &rdir, e))?;
        for entry in entries {
            let name = entry.file_name();
            let is_dir = entry.file_type().is_dir();
            // OpenSSH's sftp-server lists `.` and `..` as directories; skip those, as `sftp`
            // does, and judge every other name.
            if is_dir && (name == "." || name == "..") {
                continue;
            }
            check_entry_name(&rdir, &name)?;
            let source = join(&rdir, &name);
            let target = dir.join(&name);
            if is_dir {
                pending.push((source, target));
            } else {
                refuse_symlink(&target).await?;
                download_file(sftp, &source, &target, total).await?;
            }
        }
    }
    Ok(())
}

/// Copies one remote file to `local` through a temporary file in the same directory (created
/// exclusively, never through an existing path), renamed over `local` only when every byte
/// arrived: a transfer that fails half-way leaves nothing that looks like the finished file,
/// and the temporary file is removed.
async fn download_file(
    sftp: &SftpSession,
    remote: &str,
    local: &Path,
    total: &mut Transferred,
) -> Result<(), SshError> {
    let mut input = sftp
        .open(remote)
        .await
        .map_err(|e| sftp_err("open", remote, e))?;
    let cannot_write = |e| SshError::io(format!("cannot write `{}`", local.display()), e);
    let (file, part) = partial_file(local)?.into_parts();
    let mut out = tokio::fs::File::from_std(file);
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut bytes = 0u64;
    loop {
        let n = input
            .read(&mut buf)
            .await
            .map_err(|e| sftp_err("read", remote, e))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).await.map_err(cannot_write)?;
        bytes += n as u64;
    }
    out.flush().await.map_err(cannot_write)?;
    drop(out);
    // The handle is read-only: its close status carries nothing we need to wait for.
    drop(input);
    // `persist` is rename(2): atomic, and it replaces `local` itself, never what a link there
    // points to (`refuse_symlink` has already refused links below the destination).
    part.persist(local).map_err(|e| cannot_write(e.error))?;
    total.files += 1;
    total.bytes += bytes;
    Ok(())
}

/// `.NAME.XXXXXX.part` beside `local`, created with `O_EXCL` and the mode `File::create` would
/// give (0666 less the umask); removed when dropped unless persisted.
fn partial_file(local: &Path) -> Result<tempfile::NamedTempFile, SshError> {
    let dir = match local.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = local
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".part");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder
        .tempfile_in(dir)
        .map_err(|e| SshError::io(format!("cannot create `{}`", local.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_paths_map_to_sftp_form() {
        assert_eq!(
            to_sftp_path(r"C:\ProgramData\ssh\sshd_config"),
            "/C:/ProgramData/ssh/sshd_config"
        );
        assert_eq!(to_sftp_path("C:/Users/az/x.txt"), "/C:/Users/az/x.txt");
        assert_eq!(to_sftp_path("d:"), "/d:/");
        assert_eq!(to_sftp_path("/home/az/x"), "/home/az/x");
        assert_eq!(to_sftp_path("relative/x"), "relative/x");
        assert_eq!(to_sftp_path("ab:c"), "ab:c");
    }

    #[test]
    fn entry_names_that_leave_the_directory_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "..\\x",
            "/abs/path",
            "\\abs",
            "a/b",
            "C:x",
            "c:",
            "a\0b",
        ] {
            let err = check_entry_name("/C:/logs", bad).expect_err(bad);
            assert_eq!(crate::error::UserError::kind(&err), "ssh.sftp_unsafe_name");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        for good in ["x", ".hidden", "..x", "a..b", "ab:c", "report 1.txt", "é"] {
            check_entry_name("/C:/logs", good).expect(good);
        }
    }
}
