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

use futures::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter, ReadBuf};
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

/// How many bytes a direction takes from what is already waiting before it flushes: a bulk
/// transfer goes out as back-to-back messages in few TLS writes (and few write(2)s to the VM),
/// the way a streaming relay sends it, instead of one flushed TLS record per 4 KiB message.
/// Messages stay exactly as §2.3 says: one per VM read of at most 4096 bytes.
const FLUSH_BATCH: usize = 64 * 1024;

/// What handling one message or one VM read led to.
enum Step {
    /// Relayed (queued, not yet flushed) this many bytes.
    Relayed(usize),
    /// Nothing to relay (a ping, a pong).
    Nothing,
    /// The tunnel is over.
    End(Ending),
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
    let (mut vm_rd, vm_wr) = tokio::io::split(target);
    // Client messages are queued here and written to the VM together (see FLUSH_BATCH).
    let mut vm_wr = BufWriter::with_capacity(FLUSH_BATCH, vm_wr);
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut relayed: u64 = 0;
    // Bytes queued but not yet flushed, per direction.
    let (mut to_client, mut to_vm) = (0usize, 0usize);
    let far_future = Duration::from_secs(365 * 24 * 3600);
    let idle = faults.idle.unwrap_or(far_future);
    let mut deadline = tokio::time::Instant::now() + idle;
    let ending = loop {
        let cut = faults.reset_after.is_some_and(|k| relayed >= k);
        if cut {
            break Ending::Reset;
        }
        // Before waiting: take what is already here (without waiting for more), then flush.
        if to_client > 0 {
            if to_client < FLUSH_BATCH {
                let ready = vm_rd.read(&mut buf).now_or_never();
                if let Some(read) = ready {
                    match from_vm(read, &buf, &mut ws).await {
                        Step::Relayed(n) => {
                            relayed += n as u64;
                            to_client += n;
                            deadline = tokio::time::Instant::now() + idle;
                            continue;
                        }
                        Step::Nothing => continue,
                        Step::End(ending) => break ending,
                    }
                }
            }
            if ws.flush().await.is_err() {
                break Ending::Closed;
            }
            to_client = 0;
        }
        if to_vm > 0 {
            if to_vm < FLUSH_BATCH {
                let ready = ws.next().now_or_never();
                if let Some(msg) = ready {
                    match from_client(msg, &mut ws, &mut vm_wr).await {
                        Step::Relayed(n) => {
                            relayed += n as u64;
                            to_vm += n;
                            deadline = tokio::time::Instant::now() + idle;
                            continue;
                        }
                        Step::Nothing => continue,
                        Step::End(ending) => break ending,
                    }
                }
            }
            if vm_wr.flush().await.is_err() {
                close(
                    &mut ws,
                    CloseCode::Error,
                    "The connection to the target was lost",
                )
                .await;
                break Ending::TargetFailed;
            }
            to_vm = 0;
        }
        let step = tokio::select! {
            _ = cancel.cancelled() => Step::End(Ending::Cancelled),
            _ = tokio::time::sleep_until(deadline) => Step::End(Ending::IdleDrop),
            msg = ws.next() => match from_client(msg, &mut ws, &mut vm_wr).await {
                Step::Relayed(n) => {
                    to_vm += n;
                    Step::Relayed(n)
                }
                other => other,
            },
            read = vm_rd.read(&mut buf) => match from_vm(read, &buf, &mut ws).await {
                Step::Relayed(n) => {
                    to_client += n;
                    Step::Relayed(n)
                }
                other => other,
            },
        };
        match step {
            Step::Relayed(n) => relayed += n as u64,
            Step::Nothing => {}
            Step::End(ending) => break ending,
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

/// One message from the client: binary data is queued for the VM (flushed by the caller).
async fn from_client<W, V>(
    msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ws: &mut WebSocketStream<W>,
    vm_wr: &mut V,
) -> Step
where
    W: AsyncRead + AsyncWrite + Unpin,
    V: AsyncWrite + Unpin,
{
    match msg {
        Some(Ok(Message::Binary(b))) => {
            if vm_wr.write_all(&b).await.is_err() {
                close(
                    ws,
                    CloseCode::Error,
                    "The connection to the target was lost",
                )
                .await;
                return Step::End(Ending::TargetFailed);
            }
            Step::Relayed(b.len())
        }
        Some(Ok(Message::Text(_))) => {
            close(ws, CloseCode::Unsupported, "Binary messages only").await;
            Step::End(Ending::Closed)
        }
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Step::Nothing,
        Some(Ok(Message::Close(_))) => {
            // tungstenite queued the Close reply; send it so the client's close handshake
            // completes.
            let _ = ws.flush().await;
            Step::End(Ending::Closed)
        }
        None => Step::End(Ending::Closed),
        Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(_))) => {
            close(ws, CloseCode::Size, "Messages are limited to 4096 bytes").await;
            Step::End(Ending::Closed)
        }
        Some(Err(_)) => Step::End(Ending::Closed),
    }
}

/// One read from the VM: its bytes are queued as one binary message (flushed by the caller).
async fn from_vm<W>(read: io::Result<usize>, buf: &[u8], ws: &mut WebSocketStream<W>) -> Step
where
    W: AsyncRead + AsyncWrite + Unpin,
{
    match read {
        Ok(0) => {
            close(ws, CloseCode::Normal, "").await;
            Step::End(Ending::Closed)
        }
        Ok(n) => match ws.feed(Message::binary(buf[..n].to_vec())).await {
            Ok(()) => Step::Relayed(n),
            Err(_) => Step::End(Ending::Closed),
        },
        Err(_) => {
            close(
                ws,
                CloseCode::Error,
                "The connection to the target was lost",
            )
            .await;
            Step::End(Ending::TargetFailed)
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio_tungstenite::tungstenite::protocol::Role;

    /// The relay's side of the WebSocket, counting the writes that reach it.
    struct Counted {
        inner: tokio::io::DuplexStream,
        writes: Arc<AtomicUsize>,
    }

    impl AsyncRead for Counted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Counted {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let r = Pin::new(&mut self.inner).poll_write(cx, buf);
            if matches!(r, Poll::Ready(Ok(_))) {
                self.writes.fetch_add(1, Ordering::Relaxed);
            }
            r
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// A bulk stream from the VM goes out byte-exact in messages of at most 4096 bytes (§2.3), but
    /// in batches: far fewer writes than messages, not one flushed write per message. A bulk
    /// stream from the client reaches the VM byte-exact.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bulk_data_is_relayed_exactly_in_4096_byte_messages_with_batched_flushes() {
        let len = 4 * 1024 * 1024 + 123;
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4099) as u8).collect();
        let (client_io, relay_io) = tokio::io::duplex(1024 * 1024);
        let (vm_far, vm_near) = tokio::io::duplex(1024 * 1024);
        let writes = Arc::new(AtomicUsize::new(0));
        let counted = Counted {
            inner: relay_io,
            writes: writes.clone(),
        };
        let relay_ws = WebSocketStream::from_raw_socket(counted, Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let reset = Arc::new(AtomicBool::new(false));
        let relay_task = {
            let reset = reset.clone();
            tokio::spawn(async move {
                relay(
                    relay_ws,
                    vm_near,
                    TunnelFaults::default(),
                    &reset,
                    CancellationToken::new(),
                )
                .await
            })
        };
        let (_vm_rd, mut vm_wr) = tokio::io::split(vm_far);
        // Down: the VM writes everything at once, then ends its stream.
        let down = data.clone();
        let vm_writer = tokio::spawn(async move {
            vm_wr.write_all(&down).await.expect("vm write");
            vm_wr.shutdown().await.expect("vm shutdown");
        });
        let mut got = Vec::with_capacity(len);
        let mut messages = 0usize;
        while let Some(msg) = client.next().await {
            match msg.expect("message") {
                Message::Binary(b) => {
                    assert!(b.len() <= MAX_MESSAGE, "a {}-byte message", b.len());
                    messages += 1;
                    got.extend_from_slice(&b);
                }
                Message::Close(_) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        vm_writer.await.expect("join");
        assert!(got == data, "downstream bytes differ");
        let (ending, relayed) = relay_task.await.expect("join");
        assert_eq!(ending, Ending::Closed);
        assert_eq!(relayed, len as u64);
        let writes = writes.load(Ordering::Relaxed);
        assert!(
            writes * 4 < messages,
            "{writes} writes for {messages} messages: flushed per message"
        );

        // Up: a fresh relay, the client sends 4096-byte messages.
        let (client_io, relay_io) = tokio::io::duplex(1024 * 1024);
        let (vm_far, vm_near) = tokio::io::duplex(1024 * 1024);
        let relay_ws = WebSocketStream::from_raw_socket(relay_io, Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let relay_task = tokio::spawn(async move {
            let reset = AtomicBool::new(false);
            relay(
                relay_ws,
                vm_near,
                TunnelFaults::default(),
                &reset,
                CancellationToken::new(),
            )
            .await
        });
        let (mut vm_rd2, _vm_wr2) = tokio::io::split(vm_far);
        let up = data.clone();
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; up.len()];
            vm_rd2.read_exact(&mut got).await.expect("vm read");
            got == up
        });
        for piece in data.chunks(MAX_MESSAGE) {
            client
                .feed(Message::binary(piece.to_vec()))
                .await
                .expect("feed");
        }
        client.flush().await.expect("flush");
        assert!(reader.await.expect("join"), "upstream bytes differ");
        client.close(None).await.expect("close");
        let (ending, relayed) = relay_task.await.expect("join");
        assert_eq!(ending, Ending::Closed);
        assert_eq!(relayed, len as u64);
    }
}
