//! `QuickAck`: the TCP stream under an SSH session, acknowledging what it receives at once.
//!
//! Linux may hold an ACK back (delayed ACK, the longer while it takes the connection for
//! interactive: "pingpong" mode) and send it when the reader next drains the socket or the
//! delayed-ACK timer fires. A bulk sender waits on those ACKs. Pulling through a tunnel from
//! OpenSSH's sshd on loopback under BBR, its tail-loss probes retransmitted 20–85 segments per GiB
//! that were never lost, and sshd, whose one core bounds the transfer, spent 1.3× the CPU per GiB
//! it spends serving `ssh -L` (`benches/tunnel.rs`). Re-arming `TCP_QUICKACK` after each read
//! brought sshd's cost level with `ssh -L`'s and the pull from 0.82–1.16× to 1.04–1.13× of it in 1
//! GiB A/B runs. Raising `net.ipv4.tcp_pingpong_thresh` instead did not: it is the pending ACK sent
//! at once that counts. The option is not sticky (tcp(7): "subsequent operation of the TCP protocol
//! will once again enter/leave quickack mode"), hence once per read that returned data: one
//! `setsockopt`, about 2 % of the client's CPU samples on a pull (`perf`), sending the ACK
//! included.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A connected TCP stream that re-arms `TCP_QUICKACK` after every read that returned data
/// (Linux and Android; elsewhere a plain pass-through).
#[derive(Debug)]
pub struct QuickAck(TcpStream);

impl QuickAck {
    pub fn new(tcp: TcpStream) -> QuickAck {
        QuickAck(tcp)
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn rearm(tcp: &TcpStream) {
    // A failure only means the kernel keeps its own ACK timing.
    let _ = tcp.set_quickack(true);
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn rearm(_: &TcpStream) {}

impl AsyncRead for QuickAck {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let tcp = &mut self.get_mut().0;
        let before = buf.filled().len();
        let polled = Pin::new(&mut *tcp).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            rearm(tcp);
        }
        polled
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (QuickAck, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (
            QuickAck::new(client.expect("connect")),
            accepted.expect("accept").0,
        )
    }

    #[tokio::test]
    async fn carries_bytes_both_ways() {
        let (mut ours, mut theirs) = pair().await;
        theirs.write_all(b"from sshd").await.expect("write");
        let mut got = [0u8; 9];
        ours.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"from sshd");
        ours.write_all(b"to sshd").await.expect("write");
        let mut got = [0u8; 7];
        theirs.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"to sshd");
    }

    /// The guard: a read must leave the socket out of delayed-ACK ("pingpong") mode, which is
    /// what `TCP_QUICKACK` reads back as false.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[tokio::test]
    async fn a_read_rearms_quickack() {
        let (mut ours, mut theirs) = pair().await;
        ours.0.set_quickack(false).expect("enter pingpong mode");
        assert!(!ours.0.quickack().expect("getsockopt"));
        theirs.write_all(b"x").await.expect("write");
        let mut got = [0u8; 1];
        ours.read_exact(&mut got).await.expect("read");
        assert!(ours.0.quickack().expect("getsockopt"));
    }
}
