//! The SSH client against the real OpenSSH server: authentication (keys, agent), host-key
//! policy, exec, tunnels, SFTP and the connect errors users hit when an NSG or sshd is missing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use azssh::error::UserError;
use azssh::secret::Secret;
use azssh::ssh::known_hosts::HostKeyPolicy;
use azssh::ssh::shell::ShellIo;
use azssh::ssh::{
    ConnectOptions, ExecOptions, KnownHosts, LocalForward, Session, SshError, StrictHostKeyChecking,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::sshd::{self, Agent, Sshd};

/// Options that touch nothing of the user's own setup: no agent, no `~/.ssh/config`, a
/// known_hosts file trusting this sshd.
fn options(sshd: &Sshd, key: Option<&Path>) -> ConnectOptions {
    sshd.azssh_options(key)
}

async fn connect(o: ConnectOptions) -> Session {
    match Session::connect(o).await {
        Ok(s) => s,
        Err(e) => panic!("connect failed: {e} (hint: {:?})", e.hint()),
    }
}

async fn connect_err(o: ConnectOptions) -> SshError {
    match Session::connect(o).await {
        Ok(_) => panic!("connect should have failed"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn ed25519_key_auth_then_exec_keeps_exit_code_and_stderr_apart() {
    let Some(sshd) = sshd::start("ed25519_key_auth") else {
        return;
    };
    let session = connect(options(&sshd, Some(&sshd.ed25519_key))).await;
    let r = session
        .exec("echo out; echo err >&2; exit 3", ExecOptions::default())
        .await
        .expect("exec");
    assert_eq!(r.exit_code, Some(3));
    assert_eq!(r.stdout, b"out\n");
    assert_eq!(r.stderr, b"err\n");
    assert_eq!(r.signal, None);
    let ok = session
        .exec("true", ExecOptions::default())
        .await
        .expect("exec");
    assert!(ok.success());
    let killed = session
        .exec("kill -KILL $$", ExecOptions::default())
        .await
        .expect("exec");
    assert_eq!(
        (killed.exit_code, killed.signal.as_deref()),
        (None, Some("KILL"))
    );
}

#[tokio::test]
async fn rsa_pem_key_auth_signs_with_sha2() {
    // OpenSSH ≥ 8.8 refuses `ssh-rsa` (SHA-1) signatures: this passes only with rsa-sha2-*.
    let Some(sshd) = sshd::start("rsa_pem_key_auth") else {
        return;
    };
    let session = connect(options(&sshd, Some(&sshd.rsa_key))).await;
    let r = session
        .exec("whoami", ExecOptions::default())
        .await
        .expect("exec");
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), sshd.user);
}

#[tokio::test]
async fn encrypted_key_opens_with_its_passphrase_and_fails_clearly_without() {
    let Some(sshd) = sshd::start("encrypted_key") else {
        return;
    };
    let mut o = options(&sshd, Some(&sshd.encrypted_key));
    o.passphrase = Some(Secret::new(sshd::PASSPHRASE.to_string()));
    let session = connect(o).await;
    assert!(
        session
            .exec("true", ExecOptions::default())
            .await
            .expect("exec")
            .success()
    );

    let mut o = options(&sshd, Some(&sshd.encrypted_key));
    o.passphrase = Some(Secret::new("wrong".to_string()));
    let e = connect_err(o).await;
    assert_eq!(e.kind(), "ssh.auth_failed");
    assert!(e.to_string().contains("wrong passphrase"), "{e}");
    assert!(
        !e.to_string().contains("wrong\""),
        "the passphrase must not leak: {e}"
    );
}

#[tokio::test]
async fn agent_keys_are_offered_first() {
    let Some(sshd) = sshd::start("agent_auth") else {
        return;
    };
    let agent = Agent::start();
    agent.add(&sshd.ed25519_key);
    let mut o = options(&sshd, None);
    o.use_agent = true;
    o.agent_socket = Some(agent.socket.clone());
    let session = connect(o).await;
    assert!(
        session
            .exec("true", ExecOptions::default())
            .await
            .expect("exec")
            .success()
    );
}

#[tokio::test]
async fn auth_failure_lists_each_method_tried() {
    let Some(sshd) = sshd::start("auth_failure") else {
        return;
    };
    let agent = Agent::start();
    let mut o = options(&sshd, Some(&sshd.stranger_key));
    o.identity_files.push(sshd.dir.path().join("missing_key"));
    o.use_agent = true;
    o.agent_socket = Some(agent.socket.clone());
    o.password = Some(Secret::new("hunter2-not-the-password".to_string()));
    let e = connect_err(o).await;
    assert_eq!(e.kind(), "ssh.auth_failed");
    let msg = e.to_string();
    assert!(msg.contains("password (refused by the server)"), "{msg}");
    assert!(
        !format!("{msg} {e:?}").contains("hunter2"),
        "the password leaked: {msg}"
    );
    assert!(msg.contains("the agent holds no keys"), "{msg}");
    assert!(
        msg.contains("id_stranger` (refused by the server)"),
        "{msg}"
    );
    assert!(msg.contains("missing_key` (cannot read"), "{msg}");
    assert!(e.hint().unwrap_or_default().contains("azssh copy-key"));
}

fn policy(mode: StrictHostKeyChecking, file: PathBuf) -> HostKeyPolicy {
    HostKeyPolicy {
        mode,
        known_hosts: KnownHosts::single(file),
        ask: None,
    }
}

#[tokio::test]
async fn accept_new_writes_known_hosts_and_strict_then_trusts_it() {
    let Some(sshd) = sshd::start("accept_new") else {
        return;
    };
    let file = sshd.dir.path().join("learned").join("known_hosts");
    let mut o = options(&sshd, Some(&sshd.ed25519_key));
    o.host_keys = policy(StrictHostKeyChecking::AcceptNew, file.clone());
    connect(o.clone()).await;
    let written = std::fs::read_to_string(&file).expect("known_hosts written");
    assert_eq!(written, sshd.known_hosts_line());

    o.host_keys.mode = StrictHostKeyChecking::Yes;
    connect(o).await;
}

#[tokio::test]
async fn strict_yes_refuses_an_unknown_host() {
    let Some(sshd) = sshd::start("strict_unknown") else {
        return;
    };
    let file = sshd.dir.path().join("empty_known_hosts");
    let mut o = options(&sshd, Some(&sshd.ed25519_key));
    o.host_keys = policy(StrictHostKeyChecking::Yes, file.clone());
    let e = connect_err(o).await;
    assert_eq!(e.kind(), "ssh.unknown_host");
    assert!(e.to_string().contains("SHA256:"), "{e}");
    assert!(e.hint().unwrap_or_default().contains("pin_host_keys"));
    assert!(!file.exists(), "a refused key must not be written");
}

#[tokio::test]
async fn ask_mode_shows_the_fingerprint_and_honours_the_answer() {
    let Some(sshd) = sshd::start("ask_mode") else {
        return;
    };
    let file = sshd.dir.path().join("asked_known_hosts");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut o = options(&sshd, Some(&sshd.ed25519_key));
    o.host_keys = policy(StrictHostKeyChecking::Ask, file.clone());
    let record = seen.clone();
    o.host_keys.ask = Some(std::sync::Arc::new(move |q| {
        if let Ok(mut v) = record.lock() {
            v.push(q.fingerprint.clone());
        }
        false
    }));
    let e = connect_err(o.clone()).await;
    assert_eq!(e.kind(), "ssh.host_key_rejected");
    let fingerprints = seen.lock().map(|v| v.clone()).unwrap_or_default();
    assert_eq!(fingerprints.len(), 1);
    assert!(fingerprints[0].starts_with("SHA256:"));

    o.host_keys.ask = Some(std::sync::Arc::new(|_| true));
    connect(o).await;
    assert!(
        std::fs::read_to_string(&file)
            .expect("written")
            .contains("ssh-ed25519")
    );
}

#[tokio::test]
async fn changed_host_key_is_refused_even_with_accept_new() {
    let Some(sshd) = sshd::start("changed_host_key") else {
        return;
    };
    // Line 2 claims this host has a different ed25519 key.
    let stranger = std::fs::read_to_string(sshd.stranger_key.with_extension("pub")).expect("pub");
    let mut fields = stranger.split_whitespace();
    let (algo, body) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
    let file = sshd.dir.path().join("stale_known_hosts");
    std::fs::write(
        &file,
        format!("# old VM\n[127.0.0.1]:{} {algo} {body}\n", sshd.port),
    )
    .expect("write");
    let mut o = options(&sshd, Some(&sshd.ed25519_key));
    o.host_keys = policy(StrictHostKeyChecking::AcceptNew, file.clone());
    let e = connect_err(o).await;
    assert_eq!(e.kind(), "ssh.host_key_changed");
    let msg = e.to_string();
    assert!(
        msg.matches("SHA256:").count() == 2,
        "both fingerprints: {msg}"
    );
    assert!(
        msg.contains(&format!("{}:2", file.display())),
        "file:line: {msg}"
    );
    assert!(e.hint().unwrap_or_default().contains("remove line 2"));
}

#[tokio::test]
async fn connection_refused_hints_at_enable_ssh() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut o = ConnectOptions::new("127.0.0.1");
    o.port = Some(port);
    o.use_agent = false;
    let e = connect_err(o).await;
    assert_eq!(e.kind(), "ssh.connect_refused");
    assert!(e.hint().unwrap_or_default().contains("azssh enable-ssh"));
}

#[tokio::test]
async fn silent_listener_times_out_with_nsg_hint() {
    // Accepts TCP but never sends the SSH banner, like a half-dead sshd or a middlebox.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let mut o = ConnectOptions::new("127.0.0.1");
    o.port = Some(port);
    o.use_agent = false;
    o.connect_timeout = Duration::from_millis(300);
    let e = connect_err(o).await;
    assert_eq!(e.kind(), "ssh.connect_timeout");
    assert!(e.hint().unwrap_or_default().contains("azssh open-port"));
    hold.abort();
}

#[tokio::test]
async fn exec_timeout_and_parallel_execs_on_one_session() {
    let Some(sshd) = sshd::start("exec_timeout") else {
        return;
    };
    let session = connect(options(&sshd, Some(&sshd.ed25519_key))).await;
    let slow = ExecOptions {
        timeout: Some(Duration::from_millis(200)),
        ..ExecOptions::default()
    };
    let e = session
        .exec("sleep 30", slow)
        .await
        .expect_err("must time out");
    assert_eq!(e.kind(), "ssh.exec_timeout");

    let runs = (0..8).map(|i| {
        let s = &session;
        async move { s.exec(&format!("echo {i}"), ExecOptions::default()).await }
    });
    for (i, r) in futures::future::join_all(runs)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(r.expect("exec").stdout, format!("{i}\n").into_bytes());
    }
}

#[tokio::test]
async fn exec_streams_output_as_it_arrives() {
    let Some(sshd) = sshd::start("exec_stream") else {
        return;
    };
    let session = connect(options(&sshd, Some(&sshd.ed25519_key))).await;
    let (tx, mut rx) = tokio::io::duplex(1 << 16);
    let opts = ExecOptions {
        stdout_to: Some(Box::new(tx)),
        ..ExecOptions::default()
    };
    let r = session.exec("printf 'a\\nb\\n'", opts).await.expect("exec");
    let mut streamed = Vec::new();
    rx.read_to_end(&mut streamed).await.expect("read");
    assert_eq!(streamed, r.stdout);
    assert_eq!(streamed, b"a\nb\n");
}

#[tokio::test]
async fn ssh_config_alias_supplies_host_port_user_and_key() {
    let Some(sshd) = sshd::start("ssh_config") else {
        return;
    };
    let config = sshd.dir.path().join("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host myvm\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n",
            sshd.port,
            sshd.user,
            sshd.ed25519_key.display()
        ),
    )
    .expect("write");
    let mut o = ConnectOptions::new("myvm");
    o.use_agent = false;
    o.ssh_config = Some(config);
    o.host_keys = policy(StrictHostKeyChecking::Yes, sshd.trusted_known_hosts());
    let session = connect(o).await;
    assert_eq!((session.host(), session.port()), ("127.0.0.1", sshd.port));
}

/// Echoes everything back until EOF, then closes.
async fn echo_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    port
}

fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Sends `data` through the tunnel and returns the SHA-256 of what came back.
async fn round_trip(port: u16, data: Vec<u8>) -> [u8; 32] {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut r, mut w) = s.split();
    let send = async {
        w.write_all(&data).await.expect("write");
        w.shutdown().await.expect("shutdown");
    };
    let recv = async {
        let mut back = Vec::with_capacity(data.len());
        r.read_to_end(&mut back).await.expect("read");
        back
    };
    let ((), back) = tokio::join!(send, recv);
    Sha256::digest(&back).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_carries_many_concurrent_connections_byte_exact() {
    let Some(sshd) = sshd::start("tunnel") else {
        return;
    };
    let echo = echo_server().await;
    let session = connect(options(&sshd, Some(&sshd.ed25519_key))).await;
    let tunnel = session
        .forward(LocalForward::parse(&format!("0:127.0.0.1:{echo}")).expect("spec"))
        .await
        .expect("forward");
    let port = tunnel.local_port();
    assert_ne!(port, 0);

    let mut jobs = Vec::new();
    for i in 0..32u64 {
        let data = payload(i, 128 * 1024 + i as usize);
        let want: [u8; 32] = Sha256::digest(&data).into();
        jobs.push(tokio::spawn(
            async move { (round_trip(port, data).await, want) },
        ));
    }
    // Large enough to cross many 2 MiB window adjustments; a debug build makes more slow.
    let big = payload(99, 16 * 1024 * 1024);
    let big_want: [u8; 32] = Sha256::digest(&big).into();
    assert_eq!(round_trip(port, big).await, big_want, "16 MiB payload");
    for job in jobs {
        let (got, want) = job.await.expect("join");
        assert_eq!(got, want);
    }

    tunnel.close().await;
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
    assert!(refused.is_err(), "a closed tunnel must stop listening");
}

/// `G<len>`: sends `payload(7, len)` then closes at once. `P`: reads to EOF, then answers the
/// SHA-256 of what it read and closes.
async fn pull_push_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut op = [0u8; 1];
                if s.read_exact(&mut op).await.is_err() {
                    return;
                }
                if op[0] == b'G' {
                    let mut len = [0u8; 8];
                    if s.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let data = payload(7, u64::from_le_bytes(len) as usize);
                    let _ = s.write_all(&data).await;
                } else {
                    let mut got = Vec::new();
                    let _ = s.read_to_end(&mut got).await;
                    let _ = s.write_all(&Sha256::digest(&got)).await;
                }
            });
        }
    });
    port
}

/// Guards the bridge's batching both ways: data the server sends right before closing (its
/// EOF and close queued behind the last packets) all arrives before the local EOF, and data
/// pushed in reads larger than sshd's 32 KiB packets, then half-closed, arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_pull_before_close_and_push_before_half_close_are_byte_exact() {
    let Some(sshd) = sshd::start("tunnel pull push") else {
        return;
    };
    let server = pull_push_server().await;
    let session = connect(options(&sshd, Some(&sshd.ed25519_key))).await;
    let tunnel = session
        .forward(LocalForward::new(0, "127.0.0.1", server))
        .await
        .expect("forward");
    let port = tunnel.local_port();
    for len in [0usize, 1, 32 * 1024 - 1, 65_536 + 9, 8 * 1024 * 1024 + 5] {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let mut head = vec![b'G'];
        head.extend_from_slice(&(len as u64).to_le_bytes());
        s.write_all(&head).await.expect("head");
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.expect("pull");
        assert_eq!(got.len(), len, "pull of {len} bytes");
        assert!(got == payload(7, len), "pull of {len} bytes differs");

        let data = payload(len as u64 + 1, len);
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        s.write_all(b"P").await.expect("op");
        // One large write: the bridge reads it in chunks bigger than a packet.
        s.write_all(&data).await.expect("push");
        s.shutdown().await.expect("half-close");
        let mut digest = Vec::new();
        s.read_to_end(&mut digest).await.expect("digest");
        assert_eq!(
            digest,
            Sha256::digest(&data).to_vec(),
            "push of {len} bytes"
        );
    }
    tunnel.close().await;
}

/// Sizes around the pipeline's request size (OpenSSH's sftp-server serves 255 KiB per READ,
/// `limits@openssh.com`; writes go out in requests of up to 256 KiB less the header), more than
/// the requests in flight at once, and the empty file.
#[tokio::test]
async fn sftp_pipelined_transfers_are_byte_exact_at_odd_and_empty_sizes() {
    let Some(sshd) = sshd::start("sftp pipelined") else {
        return;
    };
    let session = connect(options(&sshd, Some(&sshd.ed25519_key))).await;
    let local = tempfile::tempdir().expect("tmp");
    let remote = tempfile::tempdir().expect("tmp");
    let chunk = 255 * 1024;
    for (i, len) in [
        0,
        1,
        chunk - 1,
        chunk + 1,
        17 * chunk + 7,
        9 * 1024 * 1024 + 13,
    ]
    .into_iter()
    .enumerate()
    {
        let data = payload(100 + i as u64, len);
        let src = local.path().join(format!("src-{i}"));
        std::fs::write(&src, &data).expect("write");
        let up = remote.path().join(format!("up-{i}"));
        let moved = session
            .upload(&src, &up.to_string_lossy())
            .await
            .expect("upload");
        assert_eq!((moved.files, moved.bytes), (1, len as u64), "upload {len}");
        let back_dir = local.path().join(format!("back-{i}"));
        std::fs::create_dir_all(&back_dir).expect("mkdir");
        let back = back_dir.join("copy");
        let moved = session
            .download(&up.to_string_lossy(), &back)
            .await
            .expect("download");
        assert_eq!(
            (moved.files, moved.bytes),
            (1, len as u64),
            "download {len}"
        );
        let digest = |b: &[u8]| format!("{:x}", Sha256::digest(b));
        assert_eq!(
            digest(&std::fs::read(&up).expect("read up")),
            digest(&data),
            "upload of {len} bytes"
        );
        assert_eq!(
            digest(&std::fs::read(&back).expect("read back")),
            digest(&data),
            "download of {len} bytes"
        );
        // Only the finished file: its temporary twin was renamed, not copied.
        let names: Vec<_> = std::fs::read_dir(&back_dir)
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["copy".to_string()], "{len}");
    }
}

/// A write the server refuses in the middle of the pipeline (`/dev/full`: every write fails with
/// ENOSPC, SSH_FX_FAILURE) fails the upload as a write of that path with the server's status,
/// after the writes still in flight were answered (the CLOSE that follows gets its own reply, not
/// a stale one: no protocol error); a missing directory fails the create. The session uploads
/// byte-exact afterwards.
#[tokio::test]
async fn sftp_upload_reports_refused_writes_in_order_and_the_session_goes_on() {
    let Some(sshd) = sshd::start("sftp refused write") else {
        return;
    };
    let session = connect(options(&sshd, Some(&sshd.ed25519_key))).await;
    let local = tempfile::tempdir().expect("tmp");
    let src = local.path().join("big");
    let data = payload(77, 5 * 1024 * 1024 + 3);
    std::fs::write(&src, &data).expect("write");

    let e = session
        .upload(&src, "/dev/full")
        .await
        .expect_err("/dev/full takes no bytes");
    assert_eq!(e.kind(), "ssh.sftp");
    let text = e.to_string();
    assert!(text.contains("write `/dev/full`"), "{text}");
    assert!(text.contains("failure"), "{text}");
    assert!(!text.contains("protocol"), "{text}");

    let e = session
        .upload(&src, "/definitely/not/here/x")
        .await
        .expect_err("no such directory");
    assert_eq!(e.kind(), "ssh.sftp");
    assert!(
        e.to_string().contains("create `/definitely/not/here/x`"),
        "{e}"
    );

    let remote = tempfile::tempdir().expect("tmp");
    let up = remote.path().join("after");
    let moved = session
        .upload(&src, &up.to_string_lossy())
        .await
        .expect("upload after failures");
    assert_eq!((moved.files, moved.bytes), (1, data.len() as u64));
    assert!(std::fs::read(&up).expect("read") == data, "byte-exact");
}

#[tokio::test]
async fn sftp_round_trips_a_file_and_a_directory() {
    let Some(sshd) = sshd::start("sftp") else {
        return;
    };
    let session = connect(options(&sshd, Some(&sshd.ed25519_key))).await;
    let local = tempfile::tempdir().expect("tmp");
    let tree = local.path().join("tree");
    std::fs::create_dir_all(tree.join("sub").join("deeper")).expect("mkdir");
    std::fs::write(tree.join("a.txt"), b"alpha").expect("write");
    std::fs::write(
        tree.join("sub").join("b.bin"),
        payload(1, 3 * 1024 * 1024 + 7),
    )
    .expect("write");
    std::fs::write(tree.join("sub").join("deeper").join("empty"), b"").expect("write");

    // sshd runs on this machine, so the "remote" side is another temp dir here.
    let remote = tempfile::tempdir().expect("tmp");
    let remote_tree = remote.path().join("uploaded");
    let up = session
        .upload(&tree, &remote_tree.to_string_lossy())
        .await
        .expect("upload dir");
    assert_eq!(up.files, 3);
    let back = local.path().join("back");
    let down = session
        .download(&remote_tree.to_string_lossy(), &back)
        .await
        .expect("download dir");
    assert_eq!(down, up);
    for rel in ["a.txt", "sub/b.bin", "sub/deeper/empty"] {
        assert_eq!(
            std::fs::read(tree.join(rel)).expect("orig"),
            std::fs::read(back.join(rel)).expect("copy"),
            "{rel}"
        );
    }

    let single = remote.path().join("single.txt");
    session
        .upload(&tree.join("a.txt"), &single.to_string_lossy())
        .await
        .expect("upload file");
    let copy = local.path().join("single.txt");
    session
        .download(&single.to_string_lossy(), &copy)
        .await
        .expect("download file");
    assert_eq!(std::fs::read(copy).expect("read"), b"alpha");

    let e = session
        .download("/definitely/not/here", &local.path().join("x"))
        .await
        .expect_err("missing file");
    assert_eq!(e.kind(), "ssh.sftp");
}

#[tokio::test]
async fn shell_runs_on_a_pty_of_the_requested_size() {
    let Some(sshd) = sshd::start("shell") else {
        return;
    };
    let session = connect(options(&sshd, Some(&sshd.ed25519_key))).await;
    let (keys, input) = tokio::sync::mpsc::channel(4);
    let (_resize_tx, resize) = tokio::sync::mpsc::channel(1);
    keys.send(b"stty size; echo marker-$((6*7)); exit 7\n".to_vec())
        .await
        .expect("send");
    let mut screen = Vec::new();
    let io = ShellIo {
        term: "dumb".to_string(),
        size: (120, 33),
        input,
        resize,
        output: &mut screen,
    };
    let code = session.shell_with(io).await.expect("shell");
    let screen = String::from_utf8_lossy(&screen);
    assert_eq!(code, Some(7), "{screen}");
    assert!(
        screen.contains("33 120"),
        "the PTY has the requested size: {screen}"
    );
    assert!(screen.contains("marker-42"), "{screen}");
}

#[tokio::test]
async fn keys_pinned_ahead_of_time_are_trusted_under_strict_yes() {
    // The workflow reads a VM's host keys through Azure's control plane and pins them before
    // the first connection, so strict checking never has to trust on first use.
    let Some(sshd) = sshd::start("pinned_keys") else {
        return;
    };
    let host_key = std::fs::read_to_string(&sshd.host_key_pub).expect("host key");
    let key = russh::keys::PublicKey::from_openssh(host_key.trim()).expect("parse");
    let file = sshd.dir.path().join("pinned").join("known_hosts");
    let added = azssh::ssh::known_hosts::pin("127.0.0.1", sshd.port, &[key], &file).expect("pin");
    assert_eq!(added, 1);
    let mut o = options(&sshd, Some(&sshd.ed25519_key));
    o.host_keys = policy(StrictHostKeyChecking::Yes, file);
    connect(o).await;
}

/// The server's host key as `algo body`, for hand-written known_hosts lines.
fn host_key_fields(sshd: &Sshd) -> String {
    let line = sshd.known_hosts_line();
    line.split_whitespace()
        .skip(1)
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn revoked_host_key_refused_in_every_mode() {
    let Some(sshd) = sshd::start("revoked_every_mode") else {
        return;
    };
    let key = host_key_fields(&sshd);
    // A plain line trusts the key too: revocation must win over it, as in OpenSSH.
    let cases = [
        format!(
            "{}@revoked [127.0.0.1]:{} {key}\n",
            sshd.known_hosts_line(),
            sshd.port
        ),
        format!("@revoked * {key}\n"),
        format!("@revoked [127.0.0.?]:*,other {key}\n"),
    ];
    for (i, text) in cases.iter().enumerate() {
        for mode in [
            StrictHostKeyChecking::Yes,
            StrictHostKeyChecking::AcceptNew,
            StrictHostKeyChecking::Ask,
        ] {
            let file = sshd.dir.path().join(format!("revoked_{i}_{mode:?}"));
            std::fs::write(&file, text).expect("write");
            let mut o = options(&sshd, Some(&sshd.ed25519_key));
            o.host_keys = policy(mode, file.clone());
            o.host_keys.ask = Some(std::sync::Arc::new(|_| true));
            let e = connect_err(o).await;
            assert_eq!(e.kind(), "ssh.host_key_revoked", "case {i} {mode:?}: {e}");
            assert!(e.to_string().contains("revoked host key"), "{e}");
            assert_eq!(
                std::fs::read_to_string(&file).expect("read"),
                *text,
                "nothing written"
            );
        }
    }
}

#[tokio::test]
async fn accept_new_never_pins_a_revoked_key() {
    let Some(sshd) = sshd::start("accept_new_revoked") else {
        return;
    };
    // The revocation sits in ~/.ssh/known_hosts; accept-new writes to azssh's own file.
    let user_file = sshd.dir.path().join("user_known_hosts");
    let own = sshd.dir.path().join("azssh_known_hosts");
    std::fs::write(
        &user_file,
        format!("@revoked * {}\n", host_key_fields(&sshd)),
    )
    .expect("w");
    let mut o = options(&sshd, Some(&sshd.ed25519_key));
    o.host_keys = HostKeyPolicy {
        mode: StrictHostKeyChecking::AcceptNew,
        known_hosts: KnownHosts {
            read: vec![user_file, own.clone()],
            write_to: own.clone(),
        },
        ask: None,
    };
    let e = connect_err(o).await;
    assert_eq!(e.kind(), "ssh.host_key_revoked", "{e}");
    assert!(!own.exists(), "a revoked key must never be pinned");
}

#[tokio::test]
async fn undecodable_known_hosts_line_is_skipped() {
    let Some(sshd) = sshd::start("undecodable_line") else {
        return;
    };
    let file = sshd.dir.path().join("messy_known_hosts");
    let mut bytes =
        b"bad\xff\xfe line\nhost ssh-ed25519 !!notbase64!!\nhost ssh-foo AAAA\n".to_vec();
    bytes.extend_from_slice(sshd.known_hosts_line().as_bytes());
    std::fs::write(&file, bytes).expect("write");
    let mut o = options(&sshd, Some(&sshd.ed25519_key));
    o.host_keys = policy(StrictHostKeyChecking::Yes, file);
    connect(o).await;
}

#[tokio::test]
async fn known_hosts_dev_zero_is_a_clear_error() {
    let Some(sshd) = sshd::start("dev_zero") else {
        return;
    };
    let mut o = options(&sshd, Some(&sshd.ed25519_key));
    o.host_keys = policy(StrictHostKeyChecking::AcceptNew, PathBuf::from("/dev/zero"));
    let e = connect_err(o).await;
    assert_eq!(e.kind(), "io.file", "{e}");
    assert!(e.to_string().contains("not a regular file"), "{e}");
    // And a missing file is still just empty.
    let mut o = options(&sshd, Some(&sshd.ed25519_key));
    o.host_keys = policy(
        StrictHostKeyChecking::AcceptNew,
        sshd.dir.path().join("absent").join("known_hosts"),
    );
    connect(o).await;
}

#[cfg(unix)]
#[tokio::test]
async fn group_readable_private_key_refused() {
    use std::os::unix::fs::PermissionsExt;
    let Some(sshd) = sshd::start("group_readable_key") else {
        return;
    };
    let key = sshd.dir.path().join("shared_key");
    std::fs::copy(&sshd.ed25519_key, &key).expect("copy");
    for mode in [0o640, 0o604, 0o660] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let e = connect_err(options(&sshd, Some(&key))).await;
        assert_eq!(e.kind(), "ssh.key_permissions", "{mode:o}: {e}");
        assert!(e.to_string().contains("readable by others"), "{e}");
        assert_eq!(
            e.hint().unwrap_or_default(),
            format!("run `chmod 600 {}`", key.display())
        );
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    connect(options(&sshd, Some(&key))).await;
}

#[tokio::test]
async fn wrong_passphrase_hints_at_passphrase() {
    let Some(sshd) = sshd::start("wrong_passphrase") else {
        return;
    };
    let mut o = options(&sshd, Some(&sshd.encrypted_key));
    o.passphrase = Some(Secret::new("not it".to_string()));
    let e = connect_err(o).await;
    assert_eq!(e.kind(), "ssh.auth_failed");
    let hint = e.hint().unwrap_or_default();
    assert!(hint.contains("passphrase"), "{hint}");
    assert!(hint.contains("AZSSH_KEY_PASSPHRASE"), "{hint}");
    assert!(!format!("{e} {hint}").contains("not it"), "no leak");
}
