//! Wire-level tests of the Bastion client against a local TLS server with its own CA that
//! speaks the data plane as BASTION.md describes it (token POST, WebSocket upgrade, DELETE).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::*;
use crate::error::UserError;

#[derive(Default)]
struct Log {
    token_posts: Vec<(HashMap<String, String>, Option<String>)>,
    deletes: Vec<(String, Option<String>)>,
    upgrades: Vec<String>,
    largest_message: usize,
}

struct Server {
    dns_name: String,
    ca: rustls_pki_types::CertificateDer<'static>,
    log: Arc<Mutex<Log>>,
}

#[derive(Clone, Copy)]
enum Mode {
    Echo,
    /// Refuse every token request as a bastion without native-client support does.
    TunnelingDisabled,
    /// Cut the 2nd WebSocket's TCP connection after its first message, without a Close frame.
    ResetSecond,
    /// Upgrade, then close at once with 1011: the VM behind the bastion refused the connection.
    TargetRefused,
}

async fn serve(mode: Mode) -> Server {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Log::default()));
    let (l, a) = (log.clone(), acceptor.clone());
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (l, a) = (l.clone(), a.clone());
            n += 1;
            let seq = n;
            tokio::spawn(async move {
                let Ok(tls) = a.accept(tcp).await else { return };
                handle(tls, l, mode, seq).await;
            });
        }
    });
    Server {
        dns_name: format!("localhost:{port}"),
        ca: ca.der().clone(),
        log,
    }
}

async fn handle(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    log: Arc<Mutex<Log>>,
    mode: Mode,
    _seq: usize,
) {
    let mut reader = BufReader::new(tls);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).await.unwrap();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let node = headers.get("x-node-id").cloned();
    // The body may already sit in the reader's buffer.
    let len: usize = headers
        .get("content-length")
        .map_or(0, |l| l.parse().unwrap());
    let mut body = vec![0; len];
    reader.read_exact(&mut body).await.unwrap();
    let mut tls = reader.into_inner();
    if method == "POST" && target == "/api/tokens" {
        let form: HashMap<String, String> = String::from_utf8(body)
            .unwrap()
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_string(), percent_decode(v))
            })
            .collect();
        assert_eq!(
            headers.get("content-type").map(String::as_str),
            Some("application/x-www-form-urlencoded")
        );
        let n = {
            let mut l = log.lock().unwrap();
            l.token_posts.push((form, node));
            l.token_posts.len()
        };
        let (status, body) = match mode {
            Mode::TunnelingDisabled => (
                "400 Bad Request",
                r#"{"message":"Tunneling is disabled"}"#.to_string(),
            ),
            _ => (
                "200 OK",
                format!(
                    r#"{{"authToken":"auth-{n}","nodeId":"node-7","websocketToken":"ws-{n}","username":"","dataSource":""}}"#
                ),
            ),
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(resp.as_bytes()).await.unwrap();
        let _ = tls.shutdown().await;
    } else if method == "DELETE" {
        let token = target.trim_start_matches("/api/tokens/").to_string();
        log.lock().unwrap().deletes.push((token, node));
        tls.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let _ = tls.shutdown().await;
    } else if method == "GET" && target.starts_with("/webtunnelv2/") {
        let key = headers["sec-websocket-key"].clone();
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        tls.write_all(resp.as_bytes()).await.unwrap();
        let nth = {
            let mut l = log.lock().unwrap();
            l.upgrades.push(target.to_string());
            l.upgrades.len()
        };
        let mut ws = WebSocketStream::from_raw_socket(tls, Role::Server, None).await;
        if matches!(mode, Mode::TargetRefused) {
            use tokio_tungstenite::tungstenite::protocol::CloseFrame;
            let _ = ws
                .close(Some(CloseFrame {
                    code: CloseCode::Error,
                    reason: "Failed to connect to the target".into(),
                }))
                .await;
            return;
        }
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Binary(b) = msg {
                {
                    let mut l = log.lock().unwrap();
                    l.largest_message = l.largest_message.max(b.len());
                }
                if matches!(mode, Mode::ResetSecond) && nth == 2 {
                    // Drop the connection mid-stream: no Close frame.
                    let (io, _) = ws.into_inner().into_inner();
                    let _ = io.set_zero_linger();
                    drop(io);
                    return;
                }
                if ws.send(Message::Binary(b)).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn client(server: &Server) -> Bastion {
    let tokens: ArmTokenFn =
        Arc::new(|| Box::pin(async { Ok(Secret::new("arm-token-xyz".to_string())) }));
    Bastion::new(
        "bst-test",
        &server.dns_name,
        tokens,
        vec![server.ca.clone()],
    )
    .unwrap()
}

fn vm_target() -> BastionTarget {
    BastionTarget::Vm {
        resource_id:
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/app"
                .into(),
    }
}

async fn round_trip(stream: &mut BastionStream, seed: u8, len: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
    let (mut r, mut w) = tokio::io::split(stream);
    let send = async {
        w.write_all(&data).await.unwrap();
    };
    let mut back = vec![0; len];
    let recv = async {
        r.read_exact(&mut back).await.unwrap();
    };
    tokio::join!(send, recv);
    assert_eq!(back, data, "seed {seed}");
    back
}

#[tokio::test]
async fn each_stream_gets_its_own_token_and_websocket_at_once() {
    let server = serve(Mode::Echo).await;
    let bastion = client(&server);
    let target = vm_target();
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(bastion.open(&target, 22).await.unwrap());
    }
    // All three carry data at the same time.
    let mut jobs = Vec::new();
    for (i, mut s) in streams.into_iter().enumerate() {
        jobs.push(tokio::spawn(async move {
            round_trip(&mut s, i as u8 + 3, 20_000).await;
            s
        }));
    }
    let mut open = Vec::new();
    for j in jobs {
        open.push(j.await.unwrap());
    }
    drop(open);
    // Deletes happen as each relay ends, each on a TLS connection of its own: waited for by
    // time (100 polls 20 ms apart, 2 s, are no safe bound on a loaded machine).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while server.log.lock().unwrap().deletes.len() < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let log = server.log.lock().unwrap();
    assert_eq!(log.token_posts.len(), 3);
    let (first, first_node) = &log.token_posts[0];
    assert_eq!(first["resourceId"], vm_target().resource_id());
    assert_eq!(first["protocol"], "tcptunnel");
    assert_eq!(first["workloadHostPort"], "22");
    assert_eq!(
        first["aztoken"], "arm-token-xyz",
        "the raw token, no `Bearer `"
    );
    assert!(
        !first.contains_key("token"),
        "no previous token on the first call"
    );
    assert_eq!(*first_node, None, "no node id before the bastion gave one");
    // Later requests carry the last authToken and the node id, as tunnel.py does.
    let (later, later_node) = &log.token_posts[2];
    assert!(later["token"].starts_with("auth-"));
    assert_eq!(later_node.as_deref(), Some("node-7"));
    assert_eq!(log.upgrades.len(), 3);
    assert!(log.upgrades[0].starts_with("/webtunnelv2/ws-1?X-Node-Id=node-7"));
    assert!(log.largest_message <= MAX_MESSAGE && log.largest_message > 0);
    let mut deleted: Vec<_> = log.deletes.iter().map(|(t, _)| t.clone()).collect();
    deleted.sort();
    assert_eq!(deleted, ["auth-1", "auth-2", "auth-3"]);
    assert!(
        log.deletes
            .iter()
            .all(|(_, n)| n.as_deref() == Some("node-7"))
    );
}

#[tokio::test]
async fn a_dropped_websocket_fails_its_stream_only() {
    let server = serve(Mode::ResetSecond).await;
    let bastion = client(&server);
    let target = vm_target();
    let mut good = bastion.open(&target, 22).await.unwrap();
    let mut bad = bastion.open(&target, 22).await.unwrap();
    bad.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 16];
    let err = bad.read(&mut buf).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("bastion `bst-test` connection to `app` dropped"),
        "{err}"
    );
    round_trip(&mut good, 5, 10_000).await;
    // And the bastion still opens new streams.
    let mut third = bastion.open(&target, 22).await.unwrap();
    round_trip(&mut third, 9, 5_000).await;
}

#[tokio::test]
async fn tunneling_disabled_is_refused_with_the_fix() {
    let server = serve(Mode::TunnelingDisabled).await;
    let err = client(&server).open(&vm_target(), 22).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "bastion `bst-test` refused the tunnel to `app` (HTTP 400): Tunneling is disabled"
    );
    assert!(err.hint().unwrap().contains("--enable-tunneling true"));
}

#[tokio::test]
async fn a_server_outside_the_trusted_roots_is_refused() {
    let server = serve(Mode::Echo).await;
    let tokens: ArmTokenFn = Arc::new(|| Box::pin(async { Ok(Secret::new("t".to_string())) }));
    let untrusting = Bastion::new("bst-test", &server.dns_name, tokens, Vec::new()).unwrap();
    let err = untrusting.open(&vm_target(), 22).await.unwrap_err();
    assert_eq!(err.kind(), "route.bastion_refused");
    assert!(
        server.log.lock().unwrap().token_posts.is_empty(),
        "the ARM token never left"
    );
}

#[test]
fn a_dns_name_that_is_not_a_host_is_refused() {
    let tokens: ArmTokenFn = Arc::new(|| Box::pin(async { Ok(Secret::new("t".to_string())) }));
    for bad in ["evil.com/path", "user@evil.com", "", "a b"] {
        assert!(
            Bastion::new("b", bad, tokens.clone(), Vec::new()).is_err(),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn a_vm_that_refuses_behind_the_bastion_is_named() {
    let server = serve(Mode::TargetRefused).await;
    let mut stream = client(&server).open(&vm_target(), 22).await.unwrap();
    let mut buf = [0u8; 8];
    let err = stream.read(&mut buf).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("the VM refused the connection through the bastion") && text.contains("1011"),
        "{text}"
    );
}
