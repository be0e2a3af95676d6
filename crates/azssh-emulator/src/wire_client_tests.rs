//! Test helper: HTTP/1.1 written by hand, as a client puts it on the wire, one request per
//! connection: to the emulator's Resource Manager endpoint, or over a caller's stream (the
//! Bastion tests' TLS). The emulator's tests speak to it this way so that nothing between the
//! test and the server (a client library's retries, headers or parsing) softens what it answers.

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::testing::Emu;

/// Sends one request on `stream` (`Connection: close`) and reads the whole answer: its status
/// and its JSON body (`Null` when there is none).
pub(crate) async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// One ARM request (`path` with its query, `api-version` included) with the emulator's token,
/// a JSON body if any, and `headers` besides.
pub(crate) async fn arm(
    emu: &Emu,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let endpoint = emu
        .handle
        .endpoint()
        .trim_start_matches("http://")
        .to_string();
    let stream = TcpStream::connect(&endpoint).await.expect("connect arm");
    let bearer = format!("Bearer {}", emu.handle.token().expose());
    let mut all = vec![
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    all.extend_from_slice(headers);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    exchange(stream, &endpoint, method, path, &all, &body).await
}
