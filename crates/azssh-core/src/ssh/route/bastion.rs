//! The Azure Bastion data plane of a Standard/Premium bastion with native-client support
//! (BASTION.md §2, Microsoft's `azext_bastion/tunnel.py`): one TCP stream = one token POST +
//! one TLS WebSocket `wss://{dnsName}/webtunnelv2/{websocketToken}?X-Node-Id={nodeId}` carrying
//! the bytes as binary messages of at most 4096 bytes, then a token DELETE when it ends.
//!
//! Unlike `az network bastion tunnel`, which serves one local connection at a time
//! (Azure/azure-cli#24600), every stream opened here is independent: callers open as many as
//! they like at once, each with its own token and WebSocket. A WebSocket that drops fails only
//! its own stream, with an error naming the bastion (`BastionDropped`).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::{FutureExt, SinkExt, StreamExt};
use reqwest::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::error::RouteError;
use super::quick_ack::QuickAck;
use crate::secret::Secret;

/// Bastion rejects continuation frames (one independent client's report, BASTION.md §2.3), so
/// every read is sent as one whole binary message of at most this many bytes, as az does.
pub const MAX_MESSAGE: usize = 4096;
/// What the relay reads from the SSH side at once before cutting it into messages.
const RELAY_READ: usize = 64 * 1024;

/// Hands out a current ARM access token (the `aztoken` form field); called per stream so that a
/// long-lived tunnel outlives one token.
pub type ArmTokenFn =
    Arc<dyn Fn() -> BoxFuture<'static, Result<Secret<String>, String>> + Send + Sync>;

/// What the bastion connects the stream to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BastionTarget {
    /// A VM by ARM id: the usual case.
    Vm { resource_id: String },
    /// An address (IP connect, `enableIpConnect`): the id is the bastion's
    /// `.../providers/Microsoft.Network/bh-hostConnect/{ip}`.
    Ip { resource_id: String, ip: String },
}

impl BastionTarget {
    fn resource_id(&self) -> &str {
        match self {
            BastionTarget::Vm { resource_id } | BastionTarget::Ip { resource_id, .. } => {
                resource_id
            }
        }
    }
    /// The last segment of the id: the VM's name or the address, for messages.
    pub fn label(&self) -> &str {
        match self {
            BastionTarget::Vm { resource_id } => {
                resource_id.rsplit('/').next().unwrap_or(resource_id)
            }
            BastionTarget::Ip { ip, .. } => ip,
        }
    }
}

/// One bastion's data plane, shared by every stream through it. Cheap to clone.
#[derive(Clone)]
pub struct Bastion {
    inner: Arc<Inner>,
}

struct Inner {
    /// The bastion's name, for messages.
    name: String,
    /// `properties.dnsName`, `host` or `host:port`.
    dns_name: String,
    tokens: ArmTokenFn,
    tls: Arc<rustls::ClientConfig>,
    http: reqwest::Client,
    /// The last `authToken`/`nodeId` the bastion gave: sent back on the next token request,
    /// as `tunnel.py` does (`token` field, `X-Node-Id` header).
    last: Mutex<Option<(Secret<String>, String)>>,
}

impl std::fmt::Debug for Bastion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bastion")
            .field("name", &self.inner.name)
            .field("dns_name", &self.inner.dns_name)
            .finish_non_exhaustive()
    }
}

/// The answer to `POST /api/tokens`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenAnswer {
    auth_token: String,
    node_id: String,
    websocket_token: String,
}

impl Bastion {
    /// `extra_roots`: certificates trusted beside the system's (`AZSSH_CA_BUNDLE`).
    pub fn new(
        name: &str,
        dns_name: &str,
        tokens: ArmTokenFn,
        extra_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
    ) -> Result<Bastion, RouteError> {
        let unreachable = |reason: String| RouteError::BastionUnreachable {
            bastion: name.to_string(),
            host: dns_name.to_string(),
            reason,
        };
        let dns = dns_name.trim().trim_end_matches('/');
        // The ARM token travels to this host: it must be a bare host name, nothing that could
        // redirect it to a path or another origin.
        if dns.is_empty()
            || dns.contains(['/', '@', '?', '#', ' '])
            || reqwest::Url::parse(&format!("https://{dns}/")).is_err()
        {
            return Err(unreachable("its `dnsName` is not a host name".to_string()));
        }
        let tls = crate::tls::client_config(extra_roots.clone())
            .map_err(|e| unreachable(e.to_string()))?;
        let mut certs = Vec::new();
        for der in &extra_roots {
            certs.push(
                reqwest::Certificate::from_der(der.as_ref())
                    .map_err(|e| unreachable(e.to_string()))?,
            );
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("azssh/", env!("CARGO_PKG_VERSION")))
            .tls_certs_merge(certs)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(15))
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Bastion {
            inner: Arc::new(Inner {
                name: name.to_string(),
                dns_name: dns.to_string(),
                tokens,
                tls,
                http,
                last: Mutex::new(None),
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Opens one stream to `target`'s `port`: token, WebSocket, and a task relaying between them
    /// until either side ends, which then deletes the token.
    pub async fn open(
        &self,
        target: &BastionTarget,
        port: u16,
    ) -> Result<BastionStream, RouteError> {
        let token = self.request_token(target, port).await?;
        let ws = match self.websocket(&token).await {
            Ok(ws) => ws,
            Err(e) => {
                self.delete_token(&token).await;
                return Err(e);
            }
        };
        let (mine, theirs) = tokio::io::duplex(256 * 1024);
        let failure = Arc::new(Mutex::new(None));
        let relay = Relay {
            bastion: self.clone(),
            target: target.label().to_string(),
            failure: failure.clone(),
        };
        tokio::spawn(relay.run(ws, theirs, token));
        Ok(BastionStream { io: mine, failure })
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.inner.dns_name)
    }

    async fn request_token(
        &self,
        target: &BastionTarget,
        port: u16,
    ) -> Result<TokenAnswer, RouteError> {
        let refused = |status: u16, message: String| RouteError::BastionRefused {
            bastion: self.inner.name.clone(),
            target: target.label().to_string(),
            status,
            message,
        };
        let aztoken = (self.inner.tokens)().await.map_err(|e| refused(401, e))?;
        let last = self.inner.last.lock().ok().and_then(|l| l.clone());
        let mut form = vec![
            ("resourceId", target.resource_id().to_string()),
            ("protocol", "tcptunnel".to_string()),
            ("workloadHostPort", port.to_string()),
            ("aztoken", aztoken.expose().clone()),
        ];
        if let BastionTarget::Ip { ip, .. } = target {
            form.push(("hostname", ip.clone()));
        }
        let mut req = self.inner.http.post(self.url("/api/tokens"));
        if let Some((token, node)) = &last {
            form.push(("token", token.expose().clone()));
            req = req.header("X-Node-Id", node);
        }
        let resp = req
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form_body(&form))
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| self.unreachable(&e))?;
        if status != StatusCode::OK {
            return Err(refused(status.as_u16(), error_message(&body)));
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| refused(200, format!("unexpected answer to the token request: {e}")))?;
        if let Ok(mut l) = self.inner.last.lock() {
            *l = Some((
                Secret::new(answer.auth_token.clone()),
                answer.node_id.clone(),
            ));
        }
        Ok(answer)
    }

    async fn websocket(
        &self,
        token: &TokenAnswer,
    ) -> Result<
        tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<QuickAck>>,
        RouteError,
    > {
        let fail = |reason: String| RouteError::BastionUnreachable {
            bastion: self.inner.name.clone(),
            host: self.inner.dns_name.clone(),
            reason,
        };
        let url = format!(
            "wss://{}/webtunnelv2/{}?X-Node-Id={}",
            self.inner.dns_name,
            form_escape(&token.websocket_token),
            form_escape(&token.node_id)
        );
        let parsed = reqwest::Url::parse(&url).map_err(|e| fail(e.to_string()))?;
        let host = parsed.host_str().unwrap_or_default().to_string();
        let port = parsed.port().unwrap_or(443);
        let tcp = tokio::time::timeout(
            std::time::Duration::from_secs(15),
            TcpStream::connect((host.trim_matches(['[', ']']), port)),
        )
        .await
        .map_err(|_| fail("connect timed out".into()))?
        .map_err(|e| fail(e.to_string()))?;
        // Every SSH handshake step is a small write: Nagle would add a round trip to each.
        let _ = tcp.set_nodelay(true);
        let server_name =
            rustls_pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                .map_err(|e| fail(e.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(self.inner.tls.clone())
            .connect(server_name, QuickAck::new(tcp))
            .await
            .map_err(|e| fail(format!("TLS: {e}")))?;
        let (ws, _) = tokio_tungstenite::client_async(url.as_str(), tls)
            .await
            .map_err(|e| match e {
                tokio_tungstenite::tungstenite::Error::Http(resp) => {
                    let body = resp.body().as_deref().unwrap_or_default();
                    RouteError::BastionRefused {
                        bastion: self.inner.name.clone(),
                        target: "the WebSocket".into(),
                        status: resp.status().as_u16(),
                        message: error_message(body),
                    }
                }
                // The URL holds the single-use WebSocket token: never in a message.
                other => fail(
                    format!("WebSocket: {other}")
                        .replace(token.websocket_token.as_str(), "<token>"),
                ),
            })?;
        Ok(ws)
    }

    /// `DELETE /api/tokens/{authToken}`; 200/204 done, 404 already gone; failures only logged
    /// (the stream is over either way, and the bastion expires tokens itself).
    async fn delete_token(&self, token: &TokenAnswer) {
        let url = self.url(&format!("/api/tokens/{}", form_escape(&token.auth_token)));
        let result = self
            .inner
            .http
            .delete(url)
            .header("X-Node-Id", &token.node_id)
            .send()
            .await;
        match result {
            Ok(r) if r.status().is_success() || r.status() == StatusCode::NOT_FOUND => {}
            Ok(r) => tracing::debug!(status = %r.status(), "bastion token delete refused"),
            Err(e) => tracing::debug!("bastion token delete failed: {}", e.without_url()),
        }
    }

    fn unreachable(&self, e: &reqwest::Error) -> RouteError {
        // Without the URL: the path could carry a token. With the causes: "error sending
        // request" alone says nothing.
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            reason.push_str(&format!(": {s}"));
            source = s.source();
        }
        if let Some(url) = e.url() {
            reason = reason.replace(&format!(" for url ({})", url.as_str()), "");
        }
        RouteError::BastionUnreachable {
            bastion: self.inner.name.clone(),
            host: self.inner.dns_name.clone(),
            reason: crate::secret::scrub(&reason).into_owned(),
        }
    }
}

/// `{"message": "..."}`, Bastion's error body; else the text itself, cut short.
fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        message: String,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => b.message,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                "no reason given".to_string()
            } else {
                text.chars().take(300).collect()
            }
        }
    }
}

/// `application/x-www-form-urlencoded`, as Python's `requests` encodes a dict.
fn form_body(fields: &[(&str, String)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", form_escape(k), form_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn form_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Carries one WebSocket to and from the local end of a duplex pipe.
struct Relay {
    bastion: Bastion,
    target: String,
    failure: Arc<Mutex<Option<String>>>,
}

impl Relay {
    async fn run<S>(
        self,
        ws: tokio_tungstenite::WebSocketStream<S>,
        local: DuplexStream,
        token: TokenAnswer,
    ) where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (mut sink, mut stream) = ws.split();
        let (mut rd, mut wr) = tokio::io::split(local);
        // Up: whatever the SSH side has written (up to RELAY_READ at once), cut into whole
        // messages of at most 4096 bytes as Bastion wants them, queued with `feed` and flushed
        // once: `send` per message would flush the TLS stream, one TLS record and one write(2)
        // per 4 KiB.
        let up = async {
            let mut buf = bytes::BytesMut::zeroed(RELAY_READ);
            loop {
                let n = rd.read(&mut buf).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    // WebSocket has no half-close: the stream is over (as in tunnel.py).
                    let _ = sink.send(Message::Close(None)).await;
                    return Ok::<_, String>(());
                }
                // One copy of what was read, then messages that share it.
                let read = bytes::Bytes::copy_from_slice(&buf[..n]);
                let mut at = 0;
                while at < n {
                    let end = (at + MAX_MESSAGE).min(n);
                    sink.feed(Message::Binary(read.slice(at..end)))
                        .await
                        .map_err(|e| e.to_string())?;
                    at = end;
                }
                sink.flush().await.map_err(|e| e.to_string())?;
            }
        };
        // Down: each message is at most 4096 bytes; what has already arrived (up to RELAY_READ)
        // goes to the SSH side in one write rather than one wake-up of its reader per message.
        let down = async {
            let mut out = bytes::BytesMut::with_capacity(RELAY_READ);
            let mut next = stream.next().await;
            let ended = loop {
                let Some(msg) = next else { break Ok(()) };
                match msg.map_err(|e| e.to_string()) {
                    Ok(Message::Binary(b)) => out.extend_from_slice(&b),
                    Ok(Message::Text(t)) => out.extend_from_slice(t.as_bytes()),
                    Ok(Message::Close(Some(frame)))
                        if !matches!(
                            frame.code,
                            CloseCode::Normal | CloseCode::Away | CloseCode::Status
                        ) =>
                    {
                        // A TCP connect failure behind Bastion: the upgrade succeeds, then the
                        // WebSocket closes with 1011.
                        break Err(format!(
                            "the VM refused the connection through the bastion (WebSocket close {}: {})",
                            u16::from(frame.code),
                            frame.reason
                        ));
                    }
                    Ok(Message::Close(_)) => break Ok(()),
                    Ok(_) => {}
                    Err(e) => break Err(e),
                }
                if out.len() < RELAY_READ
                    && let Some(ready) = stream.next().now_or_never()
                {
                    next = ready;
                    continue;
                }
                if !out.is_empty() {
                    if wr.write_all(&out).await.is_err() {
                        // The local side is gone: nothing to report to it.
                        return Ok(());
                    }
                    out.clear();
                }
                next = stream.next().await;
            };
            // What arrived before the end is delivered before it.
            if !out.is_empty() && wr.write_all(&out).await.is_err() {
                return Ok(());
            }
            ended?;
            let _ = wr.shutdown().await;
            Ok::<_, String>(())
        };
        let outcome = tokio::select! {
            r = up => r,
            r = down => r,
        };
        if let Err(reason) = outcome {
            let err = RouteError::BastionDropped {
                bastion: self.bastion.name().to_string(),
                target: self.target.clone(),
                reason,
            };
            crate::notice::warn(&err.to_string());
            if let Ok(mut f) = self.failure.lock() {
                *f = Some(err.to_string());
            }
        }
        self.bastion.delete_token(&token).await;
    }
}

/// The local end of one Bastion stream: read and write it like a socket. When the WebSocket
/// dropped, reads and writes fail with an error saying so instead of a bare end of stream.
pub struct BastionStream {
    io: DuplexStream,
    failure: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for BastionStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BastionStream")
    }
}

impl BastionStream {
    fn failure(&self) -> Option<io::Error> {
        let f = self.failure.lock().ok()?.clone()?;
        Some(io::Error::new(io::ErrorKind::ConnectionReset, f))
    }
}

impl AsyncRead for BastionStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before => match self.failure() {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Ready(Ok(())),
            },
            other => other,
        }
    }
}

impl AsyncWrite for BastionStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, data) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.failure().unwrap_or(e))),
            other => other,
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[path = "bastion_tests.rs"]
mod tests;
