//! One Bastion tunnel: the WebSocket of one token, relaying one TCP stream to the VM
//! (BASTION.md §2.3): no header, no multiplexing; every read from the VM (at most 4096 bytes) is
//! one binary message, every binary message from the client is written to the VM as is. Client
//! messages above 4096 bytes are refused with close code 1009 (Microsoft's clients never send
//! more; an independent client reports Bastion rejects bigger or fragmented messages), text
//! messages with 1003. Either side ending closes both.
//!
//! Faults: a tunnel can be cut after a number of relayed bytes or after an idle period. The cut is
//! a TCP RST of the TLS connection with no Close frame, which is how a dropped Bastion session
//! looks to a client (Azure/azure-cli#28367: silent drops).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

/// The largest binary message either side sends (`tunnel.py` reads 4096 bytes at a time).
pub const MAX_MESSAGE: usize = 4096;

/// The accepted TCP connection of the data plane, which can be made to end in a RST: when
/// `reset` is set, dropping it sets SO_LINGER 0 first, so close sends RST instead of FIN.
pub struct ResettableStream {
    inner: TcpStream,
    reset: Arc<AtomicBool>,
}

impl ResettableStream {
    pub fn new(inner: TcpStream) -> (ResettableStream, Arc<AtomicBool>) {
        let reset = Arc::new(AtomicBool::new(false));
        (
            ResettableStream {
                inner,
                reset: reset.clone(),
            },
            reset,
        )
    }
}

impl Drop for ResettableStream {
    fn drop(&mut self) {
        if self.reset.load(Ordering::Relaxed) {
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Closed by either side.
    Closed,
    /// The VM could not be reached (close 1011).
    TargetFailed,
    /// Cut by an injected reset after this many bytes.
    Reset,
    /// Cut after being idle.
    IdleDrop,
    /// The session was deleted or the emulator stopped.
    Cancelled,
}

/// When to cut this tunnel.
#[derive(Debug, Clone, Copy, Default)]
pub struct TunnelFaults {
    /// Cut once this many bytes were relayed (both directions together).
    pub reset_after: Option<u64>,
    /// Cut after this long without traffic either way.
    pub idle: Option<Duration>,
}

/// Relays between the WebSocket and the VM's stream until one ends, a fault fires or `cancel`.
/// `reset` is the flag of the underlying [`ResettableStream`].
pub async fn relay<W, T>(
    mut ws: WebSocketStream<W>,
    target: T,
    faults: TunnelFaults,
    reset: &AtomicBool,
    cancel: CancellationToken,
) -> (Ending, u64)
where
    W: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    let (mut vm_rd, mut vm_wr) = tokio::io::split(target);
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut relayed: u64 = 0;
    let far_future = Duration::from_secs(365 * 24 * 3600);
    let idle = faults.idle.unwrap_or(far_future);
    let mut deadline = tokio::time::Instant::now() + idle;
    let ending = loop {
        if faults.reset_after.is_some_and(|k| relayed >= k) {
            break Ending::Reset;
        }
        tokio::select! {
            _ = cancel.cancelled() => break Ending::Cancelled,
            _ = tokio::time::sleep_until(deadline) => break Ending::IdleDrop,
            msg = ws.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    relayed += b.len() as u64;
                    if vm_wr.write_all(&b).await.is_err() {
                        close(&mut ws, CloseCode::Error, "The connection to the target was lost").await;
                        break Ending::TargetFailed;
                    }
                }
                Some(Ok(Message::Text(_))) => {
                    close(&mut ws, CloseCode::Unsupported, "Binary messages only").await;
                    break Ending::Closed;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) => {
                    // tungstenite queued the Close reply; send it so the client's close
                    // handshake completes.
                    let _ = ws.flush().await;
                    break Ending::Closed;
                }
                None => break Ending::Closed,
                Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(_))) => {
                    close(&mut ws, CloseCode::Size, "Messages are limited to 4096 bytes").await;
                    break Ending::Closed;
                }
                Some(Err(_)) => break Ending::Closed,
            },
            n = vm_rd.read(&mut buf) => match n {
                Ok(0) => {
                    close(&mut ws, CloseCode::Normal, "").await;
                    break Ending::Closed;
                }
                Ok(n) => {
                    relayed += n as u64;
                    if ws.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                        break Ending::Closed;
                    }
                }
                Err(_) => {
                    close(&mut ws, CloseCode::Error, "The connection to the target was lost").await;
                    break Ending::TargetFailed;
                }
            },
        }
        deadline = tokio::time::Instant::now() + idle;
    };
    if matches!(ending, Ending::Reset | Ending::IdleDrop) {
        reset.store(true, Ordering::Relaxed);
    } else if ending == Ending::Cancelled {
        close(&mut ws, CloseCode::Away, "Session ended").await;
    }
    let _ = vm_wr.shutdown().await;
    (ending, relayed)
}

/// Sends a Close frame and waits briefly for the peer's, so the client reads a clean close.
pub async fn close<W>(ws: &mut WebSocketStream<W>, code: CloseCode, reason: &str)
where
    W: AsyncRead + AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code,
        reason: reason.to_string().into(),
    };
    if ws.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(m)) = ws.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}
