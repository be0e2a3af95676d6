//! The guest sshd through russh: exec, forwarding to the RDP port, and SFTP.

use super::*;

/// A russh client that pins the guest's host key.
struct PinnedHost(PublicKey);

impl russh::client::Handler for PinnedHost {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(matches!(server_public_key,
            PublicKeyOrCertificate::PublicKey { key, .. } if key.key_data() == self.0.key_data()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn russh_client_round_trip_exec_forward_and_sftp() {
    let fx = Fixture::start(true);
    let config = Arc::new(russh::client::Config::default());
    let handler = PinnedHost(fx.guest.host_key.public_key().clone());
    let mut session = russh::client::connect(config, fx.handle.local_addr(), handler)
        .await
        .expect("connect");
    let auth = session
        .authenticate_publickey(
            USER,
            PrivateKeyWithHashAlg::new(Arc::new(fx.client_key.clone()), None),
        )
        .await
        .expect("auth");
    assert!(auth.success());

    // Exec: stdout, stderr and exit status arrive on the channel.
    let mut channel = session.channel_open_session().await.expect("session");
    channel.exec(true, "nslookup").await.expect("exec");
    let (mut stdout, mut stderr, mut status) = (Vec::new(), Vec::new(), None);
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => stdout.extend_from_slice(&data),
            ChannelMsg::ExtendedData { data, ext: 1 } => stderr.extend_from_slice(&data),
            ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            _ => {}
        }
    }
    assert_eq!(status, Some(1));
    assert!(stdout.is_empty());
    assert!(String::from_utf8_lossy(&stderr).contains("'nslookup' is not recognized"));

    // Forward to 3389 reaches the RDP listener; anything else is refused.
    let channel = session
        .channel_open_direct_tcpip("127.0.0.1", 3389, "127.0.0.1", 50000)
        .await
        .expect("forward to rdp");
    let mut stream = channel.into_stream();
    let probe = probe_rdp(&mut stream).await.expect("rdp probe");
    assert_eq!(probe.security(), "tls");
    drop(stream);
    let refused = session
        .channel_open_direct_tcpip("10.0.0.4", 445, "127.0.0.1", 50001)
        .await;
    assert!(refused.is_err(), "forwards other than RDP are refused");

    // SFTP through russh-sftp's client: write with a Windows path, read it back.
    let channel = session.channel_open_session().await.expect("sftp session");
    channel
        .request_subsystem(true, "sftp")
        .await
        .expect("subsystem");
    let sftp = russh_sftp::client::SftpSession::new(channel.into_stream())
        .await
        .expect("sftp");
    assert_eq!(
        sftp.canonicalize(".").await.expect("realpath"),
        format!("/C:/Users/{USER}")
    );
    sftp.write("C:\\Users\\azureuser\\hello.txt", b"hi from russh")
        .await
        .expect_err("write needs an existing file");
    sftp.create("C:/Users/azureuser/hello.txt")
        .await
        .expect("create");
    sftp.write("/C:/Users/azureuser/hello.txt", b"hi from russh")
        .await
        .expect("write");
    assert_eq!(
        sftp.read("C:/Users/azureuser/hello.txt")
            .await
            .expect("read"),
        b"hi from russh"
    );
    assert_eq!(
        std::fs::read(fx.sandbox().join("C/Users/azureuser/hello.txt")).expect("on disk"),
        b"hi from russh"
    );
    session
        .disconnect(russh::Disconnect::ByApplication, "", "en")
        .await
        .expect("disconnect");
}
