//! Local port forwarding (`ssh -L [bind:]local:host:remote`): a listener whose every accepted
//! connection becomes a `direct-tcpip` channel, bridged without copies until either side
//! closes. Closing the tunnel stops the listener and every connection it carries.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures::FutureExt;
use russh::ChannelMsg;
use russh::client::Handle;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::connect::{ClientHandler, Session};
use super::error::SshError;

/// The first local read's size: 8 KiB (tokio's default) cost 10–25 % throughput.
const LOCAL_READ_MIN: usize = 64 * 1024;

/// The most one local read takes. Reads grow towards it while they fill their buffer: each
/// read of a loopback socket lets the kernel send a window update, and the application's
/// pending data then goes out in our process's time (Linux runs the loopback peer's
/// transmission in the context of the ACK's sender). 1 MiB reads cut the tunnel's CPU per GiB
/// pushed by a fifth against 64 KiB ones.
const LOCAL_READ_MAX: usize = 1024 * 1024;

/// Most bytes of already-received channel data written to the local socket at once.
const WRITE_BATCH: usize = 1024 * 1024;

/// Most packets per vectored write (Linux's `IOV_MAX` is 1024; a burst is far shorter).
const MAX_IOVECS: usize = 64;

/// `[bind:]local_port:remote_host:remote_port`, as `ssh -L` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalForward {
    /// Defaults to `127.0.0.1`: a tunnel to RDP must not be open to the LAN by accident.
    pub bind: String,
    /// 0 picks any free port.
    pub local_port: u16,
    pub remote_host: String,
    pub remote_port: u16,
}

impl LocalForward {
    pub fn new(local_port: u16, remote_host: impl Into<String>, remote_port: u16) -> Self {
        LocalForward {
            bind: "127.0.0.1".to_string(),
            local_port,
            remote_host: remote_host.into(),
            remote_port,
        }
    }

    /// Parses `3389:localhost:3389`, `0.0.0.0:8080:10.0.0.5:80`, `[::1]:0:[fe80::1]:22`.
    pub fn parse(spec: &str) -> Result<LocalForward, SshError> {
        let invalid = |reason: &str| SshError::InvalidForward {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let parts = split_fields(spec).ok_or_else(|| invalid("unbalanced `[`"))?;
        let (bind, local, host, remote) = match parts.as_slice() {
            [local, host, remote] => ("127.0.0.1".to_string(), local, host, remote),
            [bind, local, host, remote] => (bind.clone(), local, host, remote),
            _ => return Err(invalid("expected 3 or 4 `:`-separated fields")),
        };
        let port = |s: &str, what: &str| {
            s.parse::<u16>()
                .map_err(|_| invalid(&format!("{what} `{s}` is not a port number")))
        };
        let forward = LocalForward {
            bind: if bind.is_empty() || bind == "localhost" {
                "127.0.0.1".to_string()
            } else if bind == "*" {
                "0.0.0.0".to_string()
            } else {
                bind
            },
            local_port: port(local, "local port")?,
            remote_host: host.clone(),
            remote_port: port(remote, "remote port")?,
        };
        if forward.remote_host.is_empty() {
            return Err(invalid("the remote host is empty"));
        }
        if forward.remote_port == 0 {
            return Err(invalid("the remote port cannot be 0"));
        }
        Ok(forward)
    }
}

/// Splits on `:` outside `[...]`, dropping the brackets (IPv6 addresses).
fn split_fields(spec: &str) -> Option<Vec<String>> {
    let mut fields = vec![String::new()];
    let mut in_brackets = false;
    for c in spec.chars() {
        match c {
            '[' if !in_brackets => in_brackets = true,
            ']' if in_brackets => in_brackets = false,
            ':' if !in_brackets => fields.push(String::new()),
            c => fields.last_mut()?.push(c),
        }
    }
    (!in_brackets).then_some(fields)
}

/// A running forward. Dropping it stops it too; `close` also waits for the listener to end.
#[derive(Debug)]
pub struct Tunnel {
    local_addr: SocketAddr,
    spec: LocalForward,
    stop: CancellationToken,
    listener: Option<JoinHandle<()>>,
}

impl Tunnel {
    /// The port actually bound (useful when 0 was asked for).
    pub fn local_port(&self) -> u16 {
        self.local_addr.port()
    }
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
    pub fn spec(&self) -> &LocalForward {
        &self.spec
    }

    /// Stops accepting and closes every connection carried.
    pub async fn close(mut self) {
        self.stop.cancel();
        if let Some(task) = self.listener.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Session {
    /// Starts a local forward. Connections are accepted until the tunnel is closed or the
    /// session ends.
    pub async fn forward(&self, spec: LocalForward) -> Result<Tunnel, SshError> {
        let addr = format!("{}:{}", spec.bind, spec.local_port);
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|source| SshError::Listen {
                addr: addr.clone(),
                source,
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| SshError::io("cannot read the tunnel's local address", e))?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(accept_loop(
            listener,
            self.handle.clone(),
            spec.clone(),
            stop.clone(),
        ));
        tracing::debug!(%local_addr, host = %spec.remote_host, port = spec.remote_port, "tunnel listening");
        Ok(Tunnel {
            local_addr,
            spec,
            stop,
            listener: Some(task),
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    handle: Arc<Handle<ClientHandler>>,
    spec: LocalForward,
    stop: CancellationToken,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    connections.spawn(carry(socket, peer, handle.clone(), spec.clone(), stop.clone()));
                }
                Err(e) => tracing::debug!("tunnel accept failed: {e}"),
            },
            // Reap finished connections so a long-lived tunnel does not accumulate them.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
        if handle.is_closed() {
            break;
        }
    }
    stop.cancel();
    while connections.join_next().await.is_some() {}
}

/// One forwarded connection: open `direct-tcpip`, then copy both ways until both sides are
/// done (EOF is passed on, so half-closed protocols work) or the tunnel stops.
async fn carry(
    mut socket: TcpStream,
    peer: SocketAddr,
    handle: Arc<Handle<ClientHandler>>,
    spec: LocalForward,
    stop: CancellationToken,
) {
    let _ = socket.set_nodelay(true);
    let channel = match handle
        .channel_open_direct_tcpip(
            spec.remote_host.clone(),
            u32::from(spec.remote_port),
            peer.ip().to_string(),
            u32::from(peer.port()),
        )
        .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%peer, "the server refused to open the forward: {e}");
            return;
        }
    };
    let (mut from_remote, to_remote) = channel.split();
    let (mut local_read, mut local_write) = socket.split();
    // Local → remote: each read lands in its own `Bytes` handed to russh as is (`data_bytes`
    // cuts it into packets of the server's maximum size without copying). `Channel::data`
    // instead goes through `tokio::io::copy`, whose 8 KiB buffer made every packet 8 KiB:
    // 4× the packets (and per-packet work in sshd) of `ssh -L`'s 32 KiB.
    let up = async {
        let mut buf = BytesMut::new();
        let mut want = LOCAL_READ_MIN;
        loop {
            buf.reserve(want);
            let n = local_read
                .read_buf(&mut buf)
                .await
                .map_err(|e| SshError::io("forwarded connection", e))?;
            want = next_read_size(want, n);
            if n == 0 {
                // Half-close: the remote side still gets to answer.
                to_remote.eof().await?;
                return Ok::<_, SshError>(());
            }
            to_remote.data_bytes(buf.split().freeze()).await?;
        }
    };
    // Remote → local: the packets already queued are written together with one vectored
    // write (no copy), so a burst costs one syscall and one wakeup of the reader rather than
    // one per packet; ends when the server closes the channel.
    let down = async {
        let mut pending = VecDeque::new();
        let mut next = from_remote.wait().await;
        while let Some(msg) = next.take() {
            match msg {
                ChannelMsg::Data { data } => {
                    let mut queued = data.len();
                    pending.push_back(data);
                    // Take what russh has already received, without waiting for more.
                    while queued < WRITE_BATCH {
                        match from_remote.wait().now_or_never() {
                            Some(Some(ChannelMsg::Data { data })) => {
                                queued += data.len();
                                pending.push_back(data);
                            }
                            // Another message, or `Some(None)`: the channel is gone.
                            Some(other) => {
                                next = other;
                                break;
                            }
                            None => break,
                        }
                    }
                    write_all_vectored(&mut local_write, &mut pending)
                        .await
                        .map_err(|e| SshError::io("forwarded connection", e))?;
                    if next.is_some() {
                        // A message other than data came right after the batch (EOF, close,
                        // or the end of the channel): handle it in order.
                        continue;
                    }
                }
                ChannelMsg::Eof => {
                    let _ = local_write.shutdown().await;
                }
                ChannelMsg::Close => break,
                _ => {}
            }
            next = from_remote.wait().await;
        }
        Ok::<_, SshError>(())
    };
    tokio::pin!(up, down);
    let mut up_done = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            r = &mut up, if !up_done => {
                up_done = true;
                if let Err(e) = r {
                    tracing::debug!(%peer, "forwarded connection ended: {e}");
                    break;
                }
            }
            r = &mut down => {
                if let Err(e) = r {
                    tracing::debug!(%peer, "forwarded connection ended: {e}");
                }
                break;
            }
        }
    }
    let _ = to_remote.close().await;
}

/// The next local read's size after one that asked for `want` and got `got` bytes: doubled
/// while bulk data fills the reads, halved when they come back a quarter full, so a bulk
/// transfer reads 1 MiB at a time and interactive traffic (RDP input, a shell) keeps 64 KiB
/// buffers rather than holding 1 MiB for every keystroke.
fn next_read_size(want: usize, got: usize) -> usize {
    if got >= want {
        (want * 2).min(LOCAL_READ_MAX)
    } else if got < want / 4 {
        (want / 2).max(LOCAL_READ_MIN)
    } else {
        want
    }
}

/// Writes every queued buffer, several per `writev(2)`, leaving `bufs` empty.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    w: &mut W,
    bufs: &mut VecDeque<Bytes>,
) -> std::io::Result<()> {
    while !bufs.is_empty() {
        let mut written = {
            let slices: Vec<IoSlice<'_>> = bufs
                .iter()
                .take(MAX_IOVECS)
                .map(|b| IoSlice::new(b))
                .collect();
            w.write_vectored(&slices).await?
        };
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let Some(front) = bufs.front_mut() else { break };
            if front.len() <= written {
                written -= front.len();
                bufs.pop_front();
            } else {
                front.advance(written);
                written = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that takes at most 5 bytes per write, so every buffer boundary is crossed by a
    /// partial write.
    struct Trickle(Vec<u8>);

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = buf.len().min(5);
            self.0.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(5 - n);
                self.0.extend_from_slice(&b[..take]);
                n += take;
                if n == 5 {
                    break;
                }
            }
            std::task::Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn vectored_writes_keep_order_across_partial_writes() {
        let parts: Vec<Vec<u8>> = (0..200u32)
            .map(|i| (0..(i % 13)).map(|j| (i * 7 + j) as u8).collect())
            .collect();
        let mut queue: VecDeque<Bytes> = parts.iter().cloned().map(Bytes::from).collect();
        let mut out = Trickle(Vec::new());
        write_all_vectored(&mut out, &mut queue)
            .await
            .expect("write");
        assert!(queue.is_empty());
        assert_eq!(out.0, parts.concat());
    }

    #[test]
    fn local_reads_grow_for_bulk_and_shrink_for_interactive_traffic() {
        let mut want = LOCAL_READ_MIN;
        let mut seen = vec![want];
        for _ in 0..6 {
            want = next_read_size(want, want);
            seen.push(want);
        }
        assert_eq!(seen.last(), Some(&LOCAL_READ_MAX), "{seen:?}");
        assert!(seen.windows(2).all(|w| w[1] >= w[0]), "{seen:?}");
        // Half full: keep the size; a keystroke: shrink back to the floor, no further.
        assert_eq!(
            next_read_size(LOCAL_READ_MAX, LOCAL_READ_MAX / 2),
            LOCAL_READ_MAX
        );
        for _ in 0..6 {
            want = next_read_size(want, 3);
        }
        assert_eq!(want, LOCAL_READ_MIN);
    }

    #[test]
    fn parses_ssh_dash_l_forms() {
        assert_eq!(
            LocalForward::parse("3389:localhost:3389").expect("parse"),
            LocalForward::new(3389, "localhost", 3389)
        );
        let f = LocalForward::parse("0.0.0.0:0:10.0.0.5:80").expect("parse");
        assert_eq!((f.bind.as_str(), f.local_port), ("0.0.0.0", 0));
        let f = LocalForward::parse("[::1]:8080:[fe80::1]:22").expect("parse");
        assert_eq!(
            (f.bind.as_str(), f.remote_host.as_str()),
            ("::1", "fe80::1")
        );
        assert_eq!(
            LocalForward::parse("*:1:h:2").expect("parse").bind,
            "0.0.0.0"
        );
    }

    #[test]
    fn rejects_bad_specs_with_a_reason() {
        for bad in ["3389", "a:h:1", "1:h:70000", "1::2", "1:h:0", "[::1:1:h:2"] {
            let err = LocalForward::parse(bad).expect_err(bad);
            assert_eq!(crate::error::UserError::kind(&err), "ssh.invalid_forward");
        }
    }
}
