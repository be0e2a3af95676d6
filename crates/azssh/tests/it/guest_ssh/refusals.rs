//! Every way the guest turns a connection away, and listeners that follow the sshd service.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_when_sshd_is_not_running() {
    let fx = Fixture::start(true);
    fx.guest.running.store(false, Ordering::SeqCst);
    let mut cmd = fx.ssh(&fx.key_path());
    cmd.arg("hostname");
    let (code, stdout, stderr) = output(cmd).await;
    assert_eq!(code, 255, "{stderr}");
    assert_eq!(stdout, "");
    assert!(fx.guest.commands.lock().expect("lock").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_with_connection_refused_once_the_listener_is_shut_down() {
    let fx = Fixture::start(true);
    fx.handle.shutdown();
    // The accept loop stops asynchronously; a refusal shows up once it has (waited for by
    // time: 100 tries 20 ms apart, 2 s, are no safe bound on a loaded machine).
    let mut refused = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        match tokio::net::TcpStream::connect(fx.handle.local_addr()).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                refused = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(refused, "a stopped sshd refuses connections");
    let mut cmd = fx.ssh(&fx.key_path());
    cmd.arg("hostname");
    let (code, _, stderr) = output(cmd).await;
    assert_eq!(code, 255);
    assert!(stderr.contains("Connection refused"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_when_the_nsg_does_not_admit_the_caller() {
    let fx = Fixture::start(false);
    let mut cmd = fx.ssh(&fx.key_path());
    cmd.arg("hostname");
    let (code, stdout, stderr) = output(cmd).await;
    assert_eq!(code, 255, "{stderr}");
    assert_eq!(stdout, "");
    assert!(
        stderr.contains("reset") || stderr.contains("closed"),
        "{stderr}"
    );
    assert_eq!(fx.admitted.lock().expect("lock").len(), 1);
    assert!(fx.guest.commands.lock().expect("lock").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_when_the_key_is_not_authorized() {
    let fx = Fixture::start(true);
    let stranger = fx.dir.path().join("stranger");
    write_private_key(&stranger, &new_key());
    let mut cmd = fx.ssh(&stranger);
    cmd.arg("hostname");
    let (code, _, stderr) = output(cmd).await;
    assert_eq!(code, 255);
    assert!(stderr.contains("Permission denied (publickey)"), "{stderr}");
    assert!(fx.guest.commands.lock().expect("lock").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_listens_only_while_sshd_runs() {
    let fx = Fixture::start(true);
    let guest: Arc<dyn GuestAccess> = fx.guest.clone();
    let admit: Admission = Arc::new(|_, _| true);
    let switch = GuestSshSwitch::new(SocketAddr::from((Ipv4Addr::new(127, 77, 0, 6), 0)));

    fx.guest.running.store(false, Ordering::SeqCst);
    assert!(!switch.sync(&guest, &admit).expect("sync"));
    assert_eq!(switch.local_addr(), None);

    fx.guest.running.store(true, Ordering::SeqCst);
    assert!(switch.sync(&guest, &admit).expect("sync"));
    let addr = switch.local_addr().expect("listening");
    assert_eq!(addr.ip(), IpAddr::V4(Ipv4Addr::new(127, 77, 0, 6)));
    tokio::net::TcpStream::connect(addr)
        .await
        .expect("sshd answers while running");

    fx.guest.running.store(false, Ordering::SeqCst);
    assert!(!switch.sync(&guest, &admit).expect("sync"));
    // Stopping is asynchronous too: waited for by time, as above.
    let mut refused = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        match tokio::net::TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                refused = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(refused, "a stopped sshd refuses connections");
}
