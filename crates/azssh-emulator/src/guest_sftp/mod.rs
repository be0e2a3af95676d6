//! The emulated guest's SFTP subsystem: a russh-sftp server over the per-VM sandbox directory,
//! with the path rules of Windows OpenSSH's `sftp-server`.
//!
//! The sandbox holds one folder per drive (`<root>/C` is `C:\`). Paths arrive in any of the
//! shapes Windows OpenSSH accepts: `/C:/Users/me/x`, `C:/Users/me/x`, `C:\Users\me\x`, or relative
//! to the user's profile `C:\Users\<user>`, which is where a session starts (Win32-OpenSSH's
//! `realpath(".")` answers `/C:/Users/<user>`). `/` is the virtual list of drives, as on Windows.
//! Drive-less absolute paths (`/Windows`) resolve on the system drive `C:`.
//!
//! Names match case-insensitively, like NTFS, so `c:/users/ME` finds `C:\Users\me`. `..` may not
//! climb above a drive root and the sandbox never follows a symbolic link, so nothing outside
//! `<root>` is reachable.

mod path;

use path::SYSTEM_DRIVE;
pub use path::{WindowsPath, host_path};

use std::collections::HashMap;
use std::io::{ErrorKind, SeekFrom};
use std::path::{Path, PathBuf};

use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode, Version,
};
use russh_sftp::server::StatusReply;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// The most a single SSH_FXP_READ returns; OpenSSH asks for 32 KiB at a time (up to 255 KiB with
/// the limits extension, which we do not advertise).
const MAX_READ: u32 = 256 * 1024;
/// Directory entries per SSH_FXP_NAME reply, so a big folder never exceeds a packet.
const READDIR_CHUNK: usize = 128;

fn io_status(e: std::io::Error) -> StatusReply {
    tracing::debug!(error = %e, "guest sftp: i/o error");
    let code = match e.kind() {
        ErrorKind::NotFound => StatusCode::NoSuchFile,
        ErrorKind::PermissionDenied => StatusCode::PermissionDenied,
        _ => StatusCode::Failure,
    };
    code.with_message(e.to_string())
}

fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".to_string(),
        language_tag: "en-US".to_string(),
    }
}

fn drive_attrs() -> FileAttributes {
    let mut attrs = FileAttributes::dummy();
    attrs.permissions = Some(0o40755);
    attrs
}

enum OpenHandle {
    File(OpenFile),
    /// Entries still to send; `None` once the listing has been exhausted.
    Dir(Vec<File>),
}

/// An open file and where its cursor is, so sequential reads and writes (what every client
/// sends) skip the seek, which costs a trip to the blocking pool with tokio's files.
struct OpenFile {
    file: tokio::fs::File,
    pos: u64,
}

impl OpenFile {
    async fn seek_to(&mut self, offset: u64) -> Result<(), StatusReply> {
        if self.pos != offset {
            self.file
                .seek(SeekFrom::Start(offset))
                .await
                .map_err(io_status)?;
            self.pos = offset;
        }
        Ok(())
    }
}

/// One SFTP session for `user` over the sandbox at `root`.
pub struct GuestSftp {
    root: PathBuf,
    home: WindowsPath,
    handles: HashMap<String, OpenHandle>,
    next_handle: u64,
}

impl GuestSftp {
    pub fn new(root: PathBuf, user: &str) -> Self {
        GuestSftp {
            root,
            home: WindowsPath::home(user),
            handles: HashMap::new(),
            next_handle: 0,
        }
    }

    async fn resolve(&self, path: &str) -> Result<(WindowsPath, PathBuf), StatusReply> {
        let win = WindowsPath::parse(path, &self.home)?;
        let host = host_path(&self.root, &win).await?;
        Ok((win, host))
    }

    fn insert(&mut self, handle: OpenHandle) -> String {
        self.next_handle += 1;
        let id = self.next_handle.to_string();
        self.handles.insert(id.clone(), handle);
        id
    }

    fn file(&mut self, handle: &str) -> Result<&mut OpenFile, StatusReply> {
        match self.handles.get_mut(handle) {
            Some(OpenHandle::File(f)) => Ok(f),
            _ => Err(StatusCode::Failure.with_message("invalid handle")),
        }
    }

    async fn list_drives(&self) -> Result<Vec<File>, StatusReply> {
        let mut out = Vec::new();
        let mut entries = tokio::fs::read_dir(&self.root).await.map_err(io_status)?;
        while let Some(entry) = entries.next_entry().await.map_err(io_status)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.len() == 1 && name.chars().all(|c| c.is_ascii_uppercase()) {
                out.push(File::new(format!("{name}:"), drive_attrs()));
            }
        }
        Ok(out)
    }

    async fn list_dir(host: &Path) -> Result<Vec<File>, StatusReply> {
        let mut out = Vec::new();
        let mut entries = tokio::fs::read_dir(host).await.map_err(io_status)?;
        while let Some(entry) = entries.next_entry().await.map_err(io_status)? {
            let Ok(meta) = entry.metadata().await else {
                continue;
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            out.push(File::new(name, FileAttributes::from(&meta)));
        }
        Ok(out)
    }

    async fn stat_path(&self, path: &str) -> Result<FileAttributes, StatusReply> {
        if WindowsPath::parse(path, &self.home)? == WindowsPath::Drives {
            return Ok(drive_attrs());
        }
        let (_, host) = self.resolve(path).await?;
        let meta = tokio::fs::metadata(&host).await.map_err(io_status)?;
        Ok(FileAttributes::from(&meta))
    }
}

impl russh_sftp::server::Handler for GuestSftp {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        tracing::debug!("guest sftp: unsupported request");
        StatusCode::OpUnsupported.into()
    }

    async fn init(
        &mut self,
        version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, Self::Error> {
        tracing::debug!(version, "guest sftp: init");
        // A Windows user's profile exists once they have logged on; create it on first use
        // (through `host_path`, so an existing `users` folder is reused whatever its case).
        let _ = tokio::fs::create_dir_all(self.root.join(SYSTEM_DRIVE.to_string())).await;
        if let Ok(home) = host_path(&self.root, &self.home).await {
            let _ = tokio::fs::create_dir_all(home).await;
        }
        Ok(Version::new())
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let win = WindowsPath::parse(&path, &self.home)?;
        Ok(Name {
            id,
            files: vec![File::dummy(win.to_sftp_string())],
        })
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let (_, host) = self.resolve(&filename).await?;
        let options = tokio::fs::OpenOptions::from(std::fs::OpenOptions::from(pflags));
        let file = options.open(&host).await.map_err(io_status)?;
        let handle = self.insert(OpenHandle::File(OpenFile { file, pos: 0 }));
        Ok(Handle { id, handle })
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        match self.handles.remove(&handle) {
            Some(OpenHandle::File(mut f)) => f.file.flush().await.map_err(io_status)?,
            Some(OpenHandle::Dir(_)) => {}
            None => return Err(StatusCode::Failure.with_message("invalid handle")),
        }
        Ok(ok(id))
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, Self::Error> {
        let file = self.file(&handle)?;
        file.seek_to(offset).await?;
        let mut data = vec![0u8; len.min(MAX_READ) as usize];
        let mut filled = 0;
        while filled < data.len() {
            let n = file
                .file
                .read(&mut data[filled..])
                .await
                .map_err(io_status)?;
            file.pos += n as u64;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            return Err(StatusCode::Eof.into());
        }
        data.truncate(filled);
        Ok(Data { id, data })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        let file = self.file(&handle)?;
        file.seek_to(offset).await?;
        file.file.write_all(&data).await.map_err(io_status)?;
        file.pos += data.len() as u64;
        Ok(ok(id))
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let attrs = self.stat_path(&path).await?;
        Ok(Attrs { id, attrs })
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        // The sandbox refuses links, so lstat and stat agree.
        let attrs = self.stat_path(&path).await?;
        Ok(Attrs { id, attrs })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let meta = self
            .file(&handle)?
            .file
            .metadata()
            .await
            .map_err(io_status)?;
        Ok(Attrs {
            id,
            attrs: FileAttributes::from(&meta),
        })
    }

    async fn setstat(
        &mut self,
        id: u32,
        path: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        let (_, host) = self.resolve(&path).await?;
        if let Some(size) = attrs.size {
            let file = tokio::fs::OpenOptions::new()
                .write(true)
                .open(&host)
                .await
                .map_err(io_status)?;
            file.set_len(size).await.map_err(io_status)?;
        } else {
            tokio::fs::metadata(&host).await.map_err(io_status)?;
        }
        // Windows maps POSIX modes onto a read-only bit at most; owners and times are accepted
        // and left alone, as `sftp put -p` must not fail on them.
        Ok(ok(id))
    }

    async fn fsetstat(
        &mut self,
        id: u32,
        handle: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        let file = self.file(&handle)?;
        if let Some(size) = attrs.size {
            file.file.set_len(size).await.map_err(io_status)?;
        }
        Ok(ok(id))
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let entries = if WindowsPath::parse(&path, &self.home)? == WindowsPath::Drives {
            self.list_drives().await?
        } else {
            let (_, host) = self.resolve(&path).await?;
            Self::list_dir(&host).await?
        };
        let handle = self.insert(OpenHandle::Dir(entries));
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        let Some(OpenHandle::Dir(entries)) = self.handles.get_mut(&handle) else {
            return Err(StatusCode::Failure.with_message("invalid handle"));
        };
        if entries.is_empty() {
            return Err(StatusCode::Eof.into());
        }
        let take = entries.len().min(READDIR_CHUNK);
        let files = entries.drain(..take).collect();
        Ok(Name { id, files })
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        let (_, host) = self.resolve(&filename).await?;
        tokio::fs::remove_file(&host).await.map_err(io_status)?;
        Ok(ok(id))
    }

    async fn mkdir(
        &mut self,
        id: u32,
        path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        let (_, host) = self.resolve(&path).await?;
        tokio::fs::create_dir(&host).await.map_err(io_status)?;
        Ok(ok(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Result<Status, Self::Error> {
        let (_, host) = self.resolve(&path).await?;
        tokio::fs::remove_dir(&host).await.map_err(io_status)?;
        Ok(ok(id))
    }

    async fn rename(
        &mut self,
        id: u32,
        oldpath: String,
        newpath: String,
    ) -> Result<Status, Self::Error> {
        let (_, from) = self.resolve(&oldpath).await?;
        let (_, to) = self.resolve(&newpath).await?;
        // SFTP v3 rename (and Windows MoveFile) fail when the target exists; POSIX would replace.
        if tokio::fs::try_exists(&to).await.unwrap_or(false) {
            return Err(StatusCode::Failure.with_message(format!("`{newpath}` already exists")));
        }
        tokio::fs::rename(&from, &to).await.map_err(io_status)?;
        Ok(ok(id))
    }
}
