//! A hostile SFTP server (russh + russh-sftp, test-only) whose directory listings name entries
//! `../x`, `/abs/path`, `..\x`, `C:x`: a recursive download must refuse each of them and write
//! nothing outside its destination (the CVE-2019-6111 class).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azssh::error::UserError;
use azssh::secret::Secret;
use azssh::ssh::known_hosts::{self, HostKeyPolicy};
use azssh::ssh::{ConnectOptions, KnownHosts, Session, StrictHostKeyChecking};
use russh::keys::{Algorithm, PrivateKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, Session as ServerSession};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode, Version,
};
use russh_sftp::server::StatusReply;

/// What the file entries hold: a marker to look for wherever it may have landed.
const PAYLOAD: &[u8] = b"written by a hostile server\n";

/// The listing `/evil` answers with; the test changes it between downloads.
type Listing = Arc<Mutex<Vec<(String, bool)>>>;

fn attrs(dir: bool) -> FileAttributes {
    let mut a = FileAttributes::dummy();
    a.permissions = Some(if dir { 0o40755 } else { 0o100644 });
    a.size = Some(if dir { 0 } else { PAYLOAD.len() as u64 });
    a
}

fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".into(),
        language_tag: "en-US".into(),
    }
}

struct HostileSftp {
    listing: Listing,
    /// Directory handles already listed (the next readdir answers EOF).
    listed: HashMap<String, bool>,
    next: u32,
}

impl russh_sftp::server::Handler for HostileSftp {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        StatusCode::OpUnsupported.into()
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, Self::Error> {
        Ok(Version::new())
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        Ok(Name {
            id,
            files: vec![File::dummy(path)],
        })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        // Every path is a directory except the files it lists (which live one level down).
        let dir = path == "/evil" || path.matches('/').count() < 2 || path.ends_with("/up");
        Ok(Attrs {
            id,
            attrs: attrs(dir),
        })
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        self.stat(id, path).await
    }

    async fn opendir(&mut self, id: u32, _path: String) -> Result<Handle, Self::Error> {
        self.next += 1;
        let handle = format!("d{}", self.next);
        self.listed.insert(handle.clone(), false);
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        match self.listed.get_mut(&handle) {
            Some(done) if !*done => *done = true,
            _ => return Err(StatusCode::Eof.into()),
        }
        let mut files = vec![
            File::new(".", attrs(true)),
            File::new("..", attrs(true)),
            File::new("ok.txt", attrs(false)),
        ];
        let listing = self.listing.lock().map(|l| l.clone()).unwrap_or_default();
        files.extend(
            listing
                .into_iter()
                .map(|(name, dir)| File::new(name, attrs(dir))),
        );
        Ok(Name { id, files })
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        _pflags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        self.next += 1;
        // `broken.bin` serves its first chunk, then fails: a transfer cut half-way.
        let kind = if filename.ends_with("broken.bin") {
            "broken"
        } else {
            "f"
        };
        Ok(Handle {
            id,
            handle: format!("{kind}{}", self.next),
        })
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        _len: u32,
    ) -> Result<Data, Self::Error> {
        if handle.starts_with("broken") && offset > 0 {
            return Err(StatusCode::Failure.with_message("the disk went away".to_string()));
        }
        if offset >= PAYLOAD.len() as u64 {
            return Err(StatusCode::Eof.into());
        }
        Ok(Data {
            id,
            data: PAYLOAD[offset as usize..].to_vec(),
        })
    }

    async fn close(&mut self, id: u32, _handle: String) -> Result<Status, Self::Error> {
        Ok(ok(id))
    }
}

struct HostileSsh {
    listing: Listing,
    channels: HashMap<ChannelId, Channel<Msg>>,
}

impl russh::server::Handler for HostileSsh {
    type Error = russh::Error;

    async fn auth_password(&mut self, _user: &str, _password: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut ServerSession,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel_id: ChannelId,
        name: &str,
        session: &mut ServerSession,
    ) -> Result<(), Self::Error> {
        let channel = match (name, self.channels.remove(&channel_id)) {
            ("sftp", Some(channel)) => channel,
            _ => return session.channel_failure(channel_id),
        };
        session.channel_success(channel_id)?;
        let sftp = HostileSftp {
            listing: self.listing.clone(),
            listed: HashMap::new(),
            next: 0,
        };
        russh_sftp::server::run(channel.into_stream(), sftp).await;
        Ok(())
    }
}

/// Starts the server; returns its port and host key.
async fn start(listing: Listing) -> (u16, PrivateKey) {
    let host_key =
        PrivateKey::random(&mut russh::keys::key::safe_rng(), Algorithm::Ed25519).expect("key");
    let config = Arc::new(russh::server::Config {
        methods: MethodSet::from(&[MethodKind::Password][..]),
        keys: vec![host_key.clone()],
        auth_rejection_time: Duration::from_millis(10),
        auth_rejection_time_initial: Some(Duration::ZERO),
        ..Default::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = HostileSsh {
                listing: listing.clone(),
                channels: HashMap::new(),
            };
            let config = config.clone();
            tokio::spawn(async move {
                if let Ok(running) = russh::server::run_stream(config, stream, handler).await {
                    let _ = running.await;
                }
            });
        }
    });
    (port, host_key)
}

fn options(port: u16, host_key: &PrivateKey, dir: &Path) -> ConnectOptions {
    let kh = dir.join("known_hosts");
    known_hosts::pin("127.0.0.1", port, &[host_key.public_key().clone()], &kh).expect("pin");
    let mut o = ConnectOptions::new("127.0.0.1");
    o.port = Some(port);
    o.user = Some("victim".into());
    o.password = Some(Secret::new("x".into()));
    o.use_agent = false;
    o.ssh_config = Some(dir.join("no_ssh_config"));
    o.host_keys = HostKeyPolicy {
        mode: StrictHostKeyChecking::Yes,
        known_hosts: KnownHosts::single(kh),
        ask: None,
    };
    o
}

/// Every file under `root`, so a test can say exactly what a download wrote.
fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("list").flatten() {
            let path = entry.path();
            if entry.file_type().expect("type").is_dir() {
                pending.push(path);
            } else {
                out.push(
                    path.strip_prefix(root)
                        .expect("under root")
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn hostile_sftp_server_cannot_write_outside_destination() {
    let listing: Listing = Arc::new(Mutex::new(Vec::new()));
    let (port, host_key) = start(listing.clone()).await;
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("operator");
    let outside = root.join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    let abs = outside.join("abs").to_string_lossy().into_owned();
    let session = Session::connect(options(port, &host_key, tmp.path()))
        .await
        .expect("connect");

    // The honest listing downloads (`.` and `..` directories skipped, as sftp does).
    let dest = root.join("clean");
    let moved = session.download("/evil", &dest).await.expect("download");
    assert_eq!(
        (moved.files, files_under(&dest)),
        (1, vec!["ok.txt".into()])
    );

    // (`.` and `..` never reach us: russh-sftp's `read_dir` drops them whatever their type.)
    let hostile: [(&str, bool); 8] = [
        ("../x", false),
        ("../up", true),
        (abs.as_str(), false),
        ("..\\x", false),
        ("C:x", false),
        ("c:\\Windows\\x", false),
        ("sub/../../x", false),
        ("", false),
    ];
    for (i, (name, dir)) in hostile.iter().enumerate() {
        *listing.lock().expect("lock") = vec![(name.to_string(), *dir)];
        let dest = root.join(format!("dest{i}"));
        let err = session
            .download("/evil", &dest)
            .await
            .expect_err(&format!("`{name}` must be refused"));
        assert_eq!(err.kind(), "ssh.sftp_unsafe_name", "{name}: {err}");
        assert!(
            err.to_string().contains(&format!("{name:?}")),
            "the error names the entry: {err}"
        );
        assert!(err.hint().unwrap_or_default().contains("outside"), "{err}");
    }
    // Nothing anywhere but the honest copies inside each destination.
    let mut expected = vec!["clean/ok.txt".to_string()];
    expected.extend((0..hostile.len()).map(|i| format!("dest{i}/ok.txt")));
    expected.sort();
    assert_eq!(files_under(&root), expected);

    // A symbolic link already in the destination is not written through.
    #[cfg(unix)]
    {
        let dest = root.join("linked");
        std::fs::create_dir_all(&dest).expect("mkdir");
        let target = outside.join("target");
        std::os::unix::fs::symlink(&target, dest.join("ok.txt")).expect("symlink");
        *listing.lock().expect("lock") = Vec::new();
        let err = session
            .download("/evil", &dest)
            .await
            .expect_err("a symlink must not be followed");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(!target.exists(), "nothing written through the link");
    }
}

#[tokio::test]
async fn download_cut_half_way_leaves_no_file_that_looks_complete() {
    let (port, host_key) = start(Arc::new(Mutex::new(Vec::new()))).await;
    let tmp = tempfile::tempdir().expect("tmp");
    let dest = tmp.path().join("dest");
    std::fs::create_dir_all(&dest).expect("mkdir");
    let session = Session::connect(options(port, &host_key, tmp.path()))
        .await
        .expect("connect");
    let target = dest.join("broken.bin");
    let err = session
        .download("/evil/broken.bin", &target)
        .await
        .expect_err("the server failed half-way");
    assert_eq!(err.kind(), "ssh.sftp", "{err}");
    // Neither the destination nor the temporary file it was being written to remains.
    assert!(!target.exists(), "a partial file was left as if complete");
    assert_eq!(files_under(&dest), Vec::<String>::new());
    // The same file, complete, lands in place.
    let ok = dest.join("ok.txt");
    session
        .download("/evil/ok.txt", &ok)
        .await
        .expect("download");
    assert_eq!(std::fs::read(&ok).expect("read"), PAYLOAD);
    assert_eq!(files_under(&dest), vec!["ok.txt".to_string()]);
}
