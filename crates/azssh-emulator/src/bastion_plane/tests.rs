//! Wire-level tests of the Bastion data plane, spoken to as a client does: TLS verified against
//! the emulator's CA (tokio-rustls), the token API over raw HTTP/1.1, and the tunnel through
//! tokio-tungstenite's client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::testing::Emu;
use crate::wire_client_tests;
use crate::{BastionSummary, VmSummary};

async fn emu() -> Emu {
    Emu::builder().vms(8).bastions(true).start().await
}

fn client_config(emu: &Emu) -> Arc<rustls::ClientConfig> {
    let plane = emu.handle.bastion_plane().expect("bastions are on");
    Arc::new(plane.client_config().expect("client config"))
}

async fn tls(emu: &Emu, dns: &str) -> TlsStream<TcpStream> {
    let addr: SocketAddr = dns.parse().expect("dnsName is host:port");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    TlsConnector::from(client_config(emu))
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .expect("TLS verified against AZSSH_CA_BUNDLE")
}

/// One HTTP/1.1 request on its own TLS connection to a Bastion host.
async fn https(
    emu: &Emu,
    dns: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    wire_client_tests::exchange(tls(emu, dns).await, dns, method, path, headers, body).await
}

/// A plain-HTTP ARM request to the emulator's Resource Manager endpoint.
async fn arm(emu: &Emu, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    wire_client_tests::arm(emu, method, path, &[], body).await
}

fn form(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.replace('%', "%25")
            .replace('&', "%26")
            .replace('+', "%2B")
            .replace('=', "%3D")
            .replace(' ', "+")
    };
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn vm_id(emu: &Emu, vm: &VmSummary) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines/{}",
        emu.handle.subscription_id(),
        vm.resource_group,
        vm.name
    )
}

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// `POST /api/tokens` as `tunnel.py` sends it.
async fn post_token(
    emu: &Emu,
    bastion: &BastionSummary,
    vm: &VmSummary,
    port: u16,
    node: Option<&str>,
) -> (u16, Value) {
    let token = emu.handle.token().expose().clone();
    let port = port.to_string();
    let body = form(&[
        ("resourceId", &vm_id(emu, vm)),
        ("protocol", "tcptunnel"),
        ("workloadHostPort", &port),
        ("aztoken", &token),
    ]);
    let mut headers = vec![FORM];
    if let Some(n) = node {
        headers.push(("X-Node-Id", n));
    }
    https(
        emu,
        &bastion.dns_name,
        "POST",
        "/api/tokens",
        &headers,
        &body,
    )
    .await
}

type Ws = WebSocketStream<TlsStream<TcpStream>>;

async fn open_ws(
    emu: &Emu,
    bastion: &BastionSummary,
    ws_token: &str,
    node: &str,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let url = format!(
        "wss://{}/webtunnelv2/{ws_token}?X-Node-Id={node}",
        bastion.dns_name
    );
    let stream = tls(emu, &bastion.dns_name).await;
    tokio_tungstenite::client_async(url, stream)
        .await
        .map(|(ws, _)| ws)
}

/// A token and its WebSocket to `vm:port` through `bastion`: (authToken, nodeId, ws).
async fn tunnel(
    emu: &Emu,
    bastion: &BastionSummary,
    vm: &VmSummary,
    port: u16,
) -> (String, String, Ws) {
    let (status, body) = post_token(emu, bastion, vm, port, None).await;
    assert_eq!(status, 200, "{body}");
    let auth = body["authToken"].as_str().expect("authToken").to_string();
    let node = body["nodeId"].as_str().expect("nodeId").to_string();
    let ws_token = body["websocketToken"].as_str().expect("websocketToken");
    let ws = open_ws(emu, bastion, ws_token, &node)
        .await
        .expect("websocket");
    (auth, node, ws)
}

/// Admits `prefix` to `port` on the VM's NIC NSG through ARM, as `setup` would.
async fn allow(emu: &Emu, vm: &VmSummary, name: &str, prefix: &str, port: u16, priority: u16) {
    let path = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/networkSecurityGroups/{}-nsg/securityRules/{name}?api-version=2024-07-01",
        emu.handle.subscription_id(),
        vm.resource_group,
        vm.name
    );
    let body = json!({"properties": {
        "protocol": "Tcp", "sourceAddressPrefix": prefix, "sourcePortRange": "*",
        "destinationAddressPrefix": "*", "destinationPortRange": port.to_string(),
        "access": "Allow", "priority": priority, "direction": "Inbound",
    }});
    let (status, answer) = arm(emu, "PUT", &path, Some(body)).await;
    assert!(status == 201 || status == 200, "{status} {answer}");
    // The Network RP locks the NSG until the write completes; a second write meanwhile gets
    // 429 RetryableErrorDueToAnotherOperation, so wait for the rule as a client polls its LRO
    // (bounded by time: the operation's timer fires late on a loaded machine).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        let (status, rule) = arm(emu, "GET", &path, None).await;
        assert_eq!(status, 200, "{rule}");
        if rule["properties"]["provisioningState"] == "Succeeded" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("rule {name} never reached Succeeded within 60 s");
}

/// The X.224 Connection Request mstsc sends first ([MS-RDPBCGR] 2.2.1.1).
fn rdp_connection_request() -> Vec<u8> {
    let cookie = b"Cookie: mstshash=azureadmin\r\n";
    let neg = [0x01, 0x00, 0x08, 0x00, 0x03, 0x00, 0x00, 0x00];
    let li = 6 + cookie.len() + neg.len();
    let total = 4 + 1 + li;
    let mut out = vec![
        3,
        0,
        (total >> 8) as u8,
        total as u8,
        li as u8,
        0xE0,
        0,
        0,
        0,
        0,
        0,
    ];
    out.extend_from_slice(cookie);
    out.extend_from_slice(&neg);
    out
}

async fn next_binary(ws: &mut Ws) -> Option<Vec<u8>> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => return Some(b.to_vec()),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            _ => return None,
        }
    }
}

/// What ends the WebSocket: the close code, or `None` when the connection was cut without one.
async fn ending(ws: &mut Ws) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => return Some(f.code),
            Ok(Some(Ok(Message::Close(None)))) => return Some(CloseCode::Status),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_)) | None) => return None,
            Err(_) => panic!("the WebSocket neither closed nor failed"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_flow_reaches_rdp_only_once_the_nsg_admits_the_bastion_subnet() {
    let emu = emu().await;
    let vm = emu.private_vm();
    let bastion = emu.bastion_tagged("bastion-ok");
    assert!(bastion.dns_name.starts_with("127.0.0.1:"), "{bastion:?}");

    // The VM's NSG ends in deny-all: the token is issued, the tunnel cannot reach the VM.
    let (_, _, mut ws) = tunnel(&emu, &bastion, &vm, 3389).await;
    assert_eq!(ending(&mut ws).await, Some(CloseCode::Error));

    // A rule for another prefix does not help: the NSG sees the bastion's subnet as source.
    allow(&emu, &vm, "allow-corp-rdp", "192.168.0.0/16", 3389, 200).await;
    let (_, _, mut ws) = tunnel(&emu, &bastion, &vm, 3389).await;
    assert_eq!(ending(&mut ws).await, Some(CloseCode::Error));

    let prefix = bastion.subnet_prefix.clone().expect("AzureBastionSubnet");
    allow(&emu, &vm, "allow-bastion-rdp", &prefix, 3389, 210).await;
    let (auth, node, mut ws) = tunnel(&emu, &bastion, &vm, 3389).await;
    ws.send(Message::binary(rdp_connection_request()))
        .await
        .expect("send");
    let confirm = next_binary(&mut ws)
        .await
        .expect("X.224 Connection Confirm");
    assert_eq!(confirm[5], 0xD0, "{confirm:02x?}");
    assert!(confirm.len() <= 4096);

    // DELETE ends the session (and its tunnel); a second DELETE finds nothing.
    let path = format!("/api/tokens/{auth}");
    let (status, _) = https(
        &emu,
        &bastion.dns_name,
        "DELETE",
        &path,
        &[("X-Node-Id", &node)],
        "",
    )
    .await;
    assert_eq!(status, 204);
    assert!(ending(&mut ws).await.is_some());
    let (status, body) = https(
        &emu,
        &bastion.dns_name,
        "DELETE",
        &path,
        &[("X-Node-Id", &node)],
        "",
    )
    .await;
    assert_eq!(status, 404);
    assert!(body["message"].is_string(), "{body}");
    let stats = emu.handle.stats();
    assert_eq!(stats.requests.get("bastion.token.post"), Some(&3));
    assert_eq!(stats.requests.get("bastion.token.delete"), Some(&2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_tokens_are_single_use_and_bound_to_their_node() {
    let emu = emu().await;
    let vm = emu.peered_private_vm();
    let bastion = emu.bastion_tagged("bastion-peered");
    let (status, body) = post_token(&emu, &bastion, &vm, 3389, None).await;
    assert_eq!(status, 200, "{body}");
    for key in ["authToken", "nodeId", "websocketToken"] {
        assert!(
            body[key].as_str().is_some_and(|s| !s.is_empty()),
            "{key}: {body}"
        );
    }
    let node = body["nodeId"].as_str().expect("node");
    let ws_token = body["websocketToken"].as_str().expect("token");

    // Wrong node: refused, and the token stays usable on its own node.
    let wrong = open_ws(
        &emu,
        &bastion,
        ws_token,
        "00000000-0000-0000-0000-000000000000",
    )
    .await;
    assert!(
        matches!(wrong, Err(tokio_tungstenite::tungstenite::Error::Http(ref r)) if r.status() == 401),
        "{wrong:?}"
    );
    let first = open_ws(&emu, &bastion, ws_token, node).await;
    assert!(first.is_ok(), "{first:?}");
    let second = open_ws(&emu, &bastion, ws_token, node).await;
    match second {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), 401);
            let body: Value =
                serde_json::from_slice(r.body().as_deref().unwrap_or(b"null")).expect("json body");
            assert!(
                body["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("already used")),
                "{body}"
            );
        }
        other => panic!("a used websocket token was accepted again: {other:?}"),
    }

    // The next POST names the node it knows; an unknown node id is refused.
    let (status, again) = post_token(&emu, &bastion, &vm, 3389, Some(node)).await;
    assert_eq!(status, 200);
    assert_eq!(again["nodeId"].as_str(), Some(node));
    assert_ne!(again["websocketToken"], body["websocketToken"]);
    let (status, _) = post_token(&emu, &bastion, &vm, 3389, Some("not-a-node")).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bastions_without_native_client_support_refuse_with_azures_messages() {
    let emu = emu().await;
    let refuse = async |bastion: &str, vm: &str| {
        let b = emu.bastion_tagged(bastion);
        let v = emu.private_vm_tagged(vm);
        post_token(&emu, &b, &v, 22, None).await
    };
    for (b, v) in [
        ("bastion-basic", "private-basic-bastion"),
        ("bastion-no-tunneling", "private-no-tunneling"),
    ] {
        let (status, body) = refuse(b, v).await;
        assert_eq!(status, 400, "{b}");
        assert_eq!(body, json!({"message": "Tunneling is disabled"}), "{b}");
    }

    // Developer: only `/api/connection`, which cannot reach a Windows VM.
    let dev = emu.bastion_tagged("bastion-developer");
    let win = emu.private_vm_tagged("private-developer-bastion");
    let (status, _) = post_token(&emu, &dev, &win, 22, None).await;
    assert_eq!(status, 404);
    let body = json!({
        "resourceId": vm_id(&emu, &win), "bastionResourceId": dev.id, "vmPort": 22,
        "azToken": emu.handle.token().expose(), "connectionType": "nativeclient",
    })
    .to_string();
    let (status, answer) = https(
        &emu,
        &dev.dns_name,
        "POST",
        "/api/connection",
        &[("Content-Type", "application/json")],
        &body,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("Linux")),
        "{answer}"
    );

    // A working bastion still refuses a VM outside its VNet and its peers, and a bad aztoken.
    let ok = emu.bastion_tagged("bastion-ok");
    let far = emu.private_vm_tagged("private-basic-bastion");
    let (status, answer) = post_token(&emu, &ok, &far, 22, None).await;
    assert_eq!(status, 403, "{answer}");
    let near = emu.private_vm();
    let body = form(&[
        ("resourceId", &vm_id(&emu, &near)),
        ("protocol", "tcptunnel"),
        ("workloadHostPort", "22"),
        ("aztoken", "not-the-arm-token"),
    ]);
    let (status, answer) = https(&emu, &ok.dns_name, "POST", "/api/tokens", &[FORM], &body).await;
    assert_eq!(status, 401);
    assert!(answer["message"].is_string());
    // JSON instead of the form `tunnel.py` posts is refused with a clear message.
    let json_body = json!({"resourceId": vm_id(&emu, &near), "protocol": "tcptunnel", "workloadHostPort": 22, "aztoken": emu.handle.token().expose()}).to_string();
    let (status, answer) = https(
        &emu,
        &ok.dns_name,
        "POST",
        "/api/tokens",
        &[("Content-Type", "application/json")],
        &json_body,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("x-www-form-urlencoded")),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_against_the_exported_ca_bundle() {
    let emu = emu().await;
    let env = emu.env();
    let bundle = env
        .iter()
        .find(|(k, _)| k == "AZSSH_CA_BUNDLE")
        .map(|(_, v)| v.clone())
        .expect("AZSSH_CA_BUNDLE exported");
    let pem = std::fs::read_to_string(&bundle).expect("bundle readable");
    assert!(pem.contains("BEGIN CERTIFICATE"));
    assert!(
        env.iter()
            .any(|(k, v)| k == "AZSSH_PRIVATE_NET" && v == "10.0.0.0/9=127.128.0.0/9")
    );

    // A client that trusts only the bundle file's certificate connects...
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(&bundle).expect("pem") {
        roots.add(cert.expect("cert")).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(super::ca::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let bastion = emu.bastion_tagged("bastion-ok");
    let addr: SocketAddr = bastion.dns_name.parse().expect("addr");
    let ok = TlsConnector::from(Arc::new(config))
        .connect(
            ServerName::IpAddress(addr.ip().into()),
            TcpStream::connect(addr).await.expect("tcp"),
        )
        .await;
    assert!(ok.is_ok(), "{:?}", ok.err());

    // ...one with only the public web roots does not.
    let empty = rustls::ClientConfig::builder_with_provider(super::ca::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let refused = TlsConnector::from(Arc::new(empty))
        .connect(
            ServerName::IpAddress(addr.ip().into()),
            TcpStream::connect(addr).await.expect("tcp"),
        )
        .await;
    assert!(refused.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_22_reaches_the_guest_sshd_with_its_host_key_from_the_bastion_subnet() {
    let emu = emu().await;
    let vm = emu.private_vm();
    let bastion = emu.bastion_tagged("bastion-ok");
    let guest = emu
        .handle
        .guest(&vm.resource_group, &vm.name)
        .expect("guest");
    guest.install_openssh_extension().expect("sshd installed");
    let prefix = bastion.subnet_prefix.clone().expect("prefix");
    allow(&emu, &vm, "allow-bastion-ssh", &prefix, 22, 200).await;

    let (_, _, mut ws) = tunnel(&emu, &bastion, &vm, 22).await;
    let banner = next_binary(&mut ws).await.expect("ssh banner");
    assert!(
        banner.starts_with(b"SSH-2.0-OpenSSH_for_Windows"),
        "{}",
        String::from_utf8_lossy(&banner)
    );

    // A real SSH handshake through the tunnel, through a local relay the way a client pumps it
    // (4096-byte binary messages), presents the guest's host key.
    let (status, body) = post_token(&emu, &bastion, &vm, 22, None).await;
    assert_eq!(status, 200);
    let ws = open_ws(
        &emu,
        &bastion,
        body["websocketToken"].as_str().expect("t"),
        body["nodeId"].as_str().expect("n"),
    )
    .await
    .expect("ws");
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    tokio::spawn(pump(ws, theirs));
    struct Check(
        russh::keys::PublicKey,
        tokio::sync::mpsc::UnboundedSender<bool>,
    );
    impl russh::client::Handler for Check {
        type Error = russh::Error;
        async fn check_server_key(
            &mut self,
            key: &russh::keys::PublicKeyOrCertificate,
        ) -> Result<bool, Self::Error> {
            let same = matches!(key, russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } if key == &self.0);
            let _ = self.1.send(same);
            Ok(same)
        }
    }
    let shared = emu
        .guests()
        .shared(&vm.resource_group, &vm.name)
        .expect("shared guest");
    let expected = shared.host_key().public_key().clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let config = Arc::new(russh::client::Config::default());
    let session = russh::client::connect_stream(config, ours, Check(expected, tx)).await;
    assert!(session.is_ok(), "{:?}", session.err());
    assert_eq!(
        rx.recv().await,
        Some(true),
        "host key through the bastion differs"
    );
}

/// The client side of a tunnel: local bytes → binary messages of at most 4096 bytes, messages →
/// local bytes.
async fn pump(ws: Ws, local: tokio::io::DuplexStream) {
    let (mut tx, mut rx) = ws.split();
    let (mut rd, mut wr) = tokio::io::split(local);
    let up = async move {
        let mut buf = vec![0u8; 4096];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = tx.close().await;
    };
    let down = async move {
        while let Some(Ok(m)) = rx.next().await {
            let Message::Binary(b) = m else {
                if matches!(m, Message::Close(_)) {
                    break;
                }
                continue;
            };
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    tokio::join!(up, down);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_4096_bytes_and_text_messages_are_refused() {
    let emu = emu().await;
    let vm = emu.private_vm();
    let bastion = emu.bastion_tagged("bastion-ok");
    allow(
        &emu,
        &vm,
        "allow-bastion-rdp",
        bastion.subnet_prefix.as_deref().expect("p"),
        3389,
        200,
    )
    .await;
    let (_, _, mut ws) = tunnel(&emu, &bastion, &vm, 3389).await;
    ws.send(Message::binary(vec![0u8; 4097]))
        .await
        .expect("send");
    assert_eq!(ending(&mut ws).await, Some(CloseCode::Size));
    let (_, _, mut ws) = tunnel(&emu, &bastion, &vm, 3389).await;
    ws.send(Message::text("hello")).await.expect("send");
    assert_eq!(ending(&mut ws).await, Some(CloseCode::Unsupported));
}

/// The count of an injected data-plane fault once it is there: the relay counts it just after
/// it cuts the connection, so a client that saw the cut may look a moment too early.
async fn fault_count(emu: &Emu, kind: &str) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = emu.handle.stats().faults.get(kind).copied().unwrap_or(0);
        if n > 0 || tokio::time::Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_nine_parallel_tunnels_is_reset_mid_stream_and_the_others_finish() {
    let emu = emu().await;
    let vm = emu.private_vm();
    let bastion = emu.bastion_tagged("bastion-ok");
    allow(
        &emu,
        &vm,
        "allow-bastion-rdp",
        bastion.subnet_prefix.as_deref().expect("p"),
        3389,
        200,
    )
    .await;
    let faults = emu.handle.bastion_faults().expect("bastions on");
    faults.reset_websocket(5, 40_000);
    let mut tasks = Vec::new();
    for _ in 0..9 {
        let (_, _, mut ws) = tunnel(&emu, &bastion, &vm, 3389).await;
        tasks.push(tokio::spawn(async move {
            ws.send(Message::binary(rdp_connection_request()))
                .await
                .map_err(|e| e.to_string())?;
            next_binary(&mut ws).await.ok_or("no confirm")?;
            // 100 KiB to the RDP listener, in 4096-byte messages.
            for _ in 0..25 {
                ws.send(Message::binary(vec![0x5a; 4096]))
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            ws.close(None).await.map_err(|e| e.to_string())?;
            match ending(&mut ws).await {
                Some(_) => Ok(()),
                None => Err("cut without a close frame".to_string()),
            }
        }));
    }
    let mut failed = 0;
    for t in tasks {
        if t.await.expect("task").is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 1, "exactly the armed WebSocket must fail");
    assert_eq!(faults.websockets_opened(), 9);
    assert_eq!(fault_count(&emu, "ws_reset").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tunnel_is_dropped_without_a_close_frame() {
    let emu = emu().await;
    let vm = emu.private_vm();
    let bastion = emu.bastion_tagged("bastion-ok");
    allow(
        &emu,
        &vm,
        "allow-bastion-rdp",
        bastion.subnet_prefix.as_deref().expect("p"),
        3389,
        200,
    )
    .await;
    let faults = emu.handle.bastion_faults().expect("bastions on");
    // Long enough that the tunnel is not dropped before the test speaks on it (the idle clock
    // starts at the upgrade; a loaded machine can stall the test for a few hundred ms).
    faults.idle_timeout(Some(Duration::from_secs(2)));
    let (_, _, mut ws) = tunnel(&emu, &bastion, &vm, 3389).await;
    ws.send(Message::binary(rdp_connection_request()))
        .await
        .expect("send");
    assert!(next_binary(&mut ws).await.is_some());
    assert_eq!(
        ending(&mut ws).await,
        None,
        "an idle drop sends no Close frame"
    );
    assert_eq!(fault_count(&emu, "ws_idle_drop").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arm_and_resource_graph_show_bastions_and_peerings() {
    let emu = emu().await;
    let sub = emu.handle.subscription_id().to_string();
    let ok = emu.bastion_tagged("bastion-ok");
    let (status, b) = arm(
        &emu,
        "GET",
        &format!("{}?api-version=2024-07-01", ok.id),
        None,
    )
    .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["sku"]["name"], "Standard");
    assert_eq!(b["properties"]["enableTunneling"], true);
    assert_eq!(b["properties"]["dnsName"], ok.dns_name.as_str());
    assert_eq!(b["tags"]["emulator-variant"], "bastion-ok");
    let (status, e) = arm(
        &emu,
        "GET",
        &format!("{}?api-version=2099-01-01", ok.id),
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(e["error"]["code"], "NoRegisteredProviderFound");
    let (status, all) = arm(
        &emu,
        "GET",
        &format!(
            "/subscriptions/{sub}/providers/Microsoft.Network/bastionHosts?api-version=2024-07-01"
        ),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(all["value"].as_array().map(Vec::len), Some(5));
    let (status, rg) = arm(&emu, "GET", &format!("/subscriptions/{sub}/resourceGroups/{}/providers/Microsoft.Network/bastionHosts?api-version=2024-07-01", ok.resource_group), None).await;
    assert_eq!(status, 200);
    assert_eq!(rg["value"].as_array().map(Vec::len), Some(1));

    // The VM's VNet, found the way `az ssh vm --bastion` does: NIC → subnet → VNet.
    let vm = emu.peered_private_vm();
    let (_, nic) = arm(&emu, "GET", &format!("/subscriptions/{sub}/resourceGroups/{}/providers/Microsoft.Network/networkInterfaces/{}-nic?api-version=2024-07-01", vm.resource_group, vm.name), None).await;
    let subnet = nic["properties"]["ipConfigurations"][0]["properties"]["subnet"]["id"]
        .as_str()
        .expect("subnet")
        .to_string();
    let vnet_id = subnet.split("/subnets/").next().expect("vnet").to_string();
    let (status, vnet) = arm(
        &emu,
        "GET",
        &format!("{vnet_id}?api-version=2024-07-01"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{vnet}");
    let remote =
        vnet["properties"]["virtualNetworkPeerings"][0]["properties"]["remoteVirtualNetwork"]["id"]
            .as_str()
            .expect("peering")
            .to_string();

    let query = |q: String| json!({"subscriptions": [sub.clone()], "query": q});
    let (status, own) = arm(&emu, "POST", "/providers/Microsoft.ResourceGraph/resources?api-version=2022-10-01", Some(query(format!(
        "resources | where type =~ 'microsoft.network/bastionhosts' and properties.ipConfigurations[0].properties.subnet.id startswith '{vnet_id}/'"
    )))).await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(own["count"], 0, "no bastion in the spoke itself");
    let (_, peered) = arm(&emu, "POST", "/providers/Microsoft.ResourceGraph/resources?api-version=2022-10-01", Some(query(format!(
        "resources | where type =~ 'microsoft.network/bastionhosts' and properties.ipConfigurations[0].properties.subnet.id startswith '{remote}/' | project id, name, sku, properties"
    )))).await;
    assert_eq!(peered["count"], 1, "{peered}");
    assert_eq!(peered["data"][0]["sku"]["name"], "Premium");
    assert_eq!(peered["data"][0]["properties"]["enableTunneling"], true);
}

/// A real OpenSSH sshd on loopback playing a jump host inside the VNet: its `direct-tcpip` to the
/// VM's private image arrives from 127.0.0.1, which the NSG sees as a host of the VNet
/// (`10.a.15.254`), so the deny-all NSG refuses it until a rule admits the VNet's subnet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_openssh_jump_host_reaches_the_private_image_as_a_vnet_host() {
    const SSHD: &str = "/usr/sbin/sshd";
    if !std::path::Path::new(SSHD).exists() {
        if std::env::var("AZSSH_REQUIRE_SSHD").as_deref() == Ok("1") {
            panic!("sshd not found at {SSHD} and AZSSH_REQUIRE_SSHD=1");
        }
        let _ = writeln_stderr("SKIPPED: sshd not found (jump host test)");
        return;
    }
    let emu = emu().await;
    let vm = emu.private_vm();
    let guest = emu
        .handle
        .guest(&vm.resource_group, &vm.name)
        .expect("guest");
    guest.install_openssh_extension().expect("sshd installed");
    let image = emu.private_address(vm.private_ip).expect("private image");
    let port = emu.guests().ssh_port();
    let jump = Jump::start();

    let before = jump
        .forward_within(image, port, Duration::from_secs(5))
        .await;
    assert!(
        !before.contains("SSH-2.0"),
        "the deny-all NSG let the jump host in: {before}"
    );
    allow(&emu, &vm, "allow-vnet-ssh", "10.0.0.0/20", 22, 200).await;
    let after = jump
        .forward_within(image, port, Duration::from_secs(60))
        .await;
    assert!(after.contains("SSH-2.0-OpenSSH_for_Windows"), "{after}");
}

fn writeln_stderr(line: &str) -> std::io::Result<()> {
    use std::io::Write;
    writeln!(std::io::stderr(), "{line}")
}

/// sshd on 127.0.0.1 with its own host key; one client key authorized.
struct Jump {
    dir: tempfile::TempDir,
    port: u16,
    child: std::process::Child,
}

impl Jump {
    fn start() -> Jump {
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        for (name, _) in [("host", ()), ("client", ())] {
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(d.join(name))
                .output()
                .expect("ssh-keygen");
            assert!(out.status.success());
        }
        std::fs::copy(d.join("client.pub"), d.join("authorized_keys")).expect("authorized_keys");
        let _ = std::fs::create_dir_all("/run/sshd");
        for _ in 0..10 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("free port");
            let config = format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host\nPidFile none\nUsePAM no\nStrictModes no\nAuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin yes\nAllowTcpForwarding yes\nLogLevel ERROR\n",
                d = d.display()
            );
            std::fs::write(d.join("sshd_config"), config).expect("config");
            let mut child = Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(d.join("sshd_config"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn sshd");
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    let host = std::fs::read_to_string(d.join("host.pub")).expect("host key");
                    let mut f = host.split_whitespace();
                    let line = format!(
                        "[127.0.0.1]:{port} {} {}\n",
                        f.next().expect("algo"),
                        f.next().expect("key")
                    );
                    std::fs::write(d.join("known_hosts"), line).expect("known_hosts");
                    return Jump { dir, port, child };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("the jump sshd did not start");
    }

    /// `ssh -W image:port` through the jump host, host key verified; the first line that came
    /// back within `wait` (a refusal ends sooner; a banner on a loaded machine may take longer
    /// than the 5 s this used to allow, as ssh's key exchange is CPU work).
    async fn forward_within(&self, image: std::net::Ipv4Addr, port: u16, wait: Duration) -> String {
        let d = self.dir.path();
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        let mut child = tokio::process::Command::new("ssh")
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
            ])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                d.join("known_hosts").display()
            ))
            .arg("-i")
            .arg(d.join("client"))
            .args([
                "-p",
                &self.port.to_string(),
                "-W",
                &format!("{image}:{port}"),
            ])
            .arg(format!("{user}@127.0.0.1"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn ssh");
        let mut out = child.stdout.take().expect("stdout");
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        let _ = tokio::time::timeout(wait, async {
            while let Ok(n) = out.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                if got.contains(&b'\n') {
                    break;
                }
            }
        })
        .await;
        let _ = child.kill().await;
        String::from_utf8_lossy(&got).into_owned()
    }
}

impl Drop for Jump {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
