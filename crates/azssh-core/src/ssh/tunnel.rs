//! Local port forwarding (`ssh -L [bind:]local:host:remote`): a listener whose every accepted
//! connection becomes a `direct-tcpip` channel, bridged with 64 KiB buffers until either side
//! closes. Closing the tunnel stops the listener and every connection it carries.

use std::net::SocketAddr;
use std::sync::Arc;

use russh::ChannelMsg;
use russh::client::Handle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::connect::{ClientHandler, Session};
use super::error::SshError;

/// Bridge buffer per direction: 8 KiB (tokio's default) costs 10–25 % throughput.
const BRIDGE_BUFFER: usize = 64 * 1024;

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
    // Local → remote: 64 KiB reads, each sent as channel data (russh cuts packets).
    let up = async {
        let mut buf = vec![0u8; BRIDGE_BUFFER];
        loop {
            let n = local_read
                .read(&mut buf)
                .await
                .map_err(|e| SshError::io("forwarded connection", e))?;
            if n == 0 {
                // Half-close: the remote side still gets to answer.
                to_remote.eof().await?;
                return Ok::<_, SshError>(());
            }
            to_remote.data(&buf[..n]).await?;
        }
    };
    // Remote → local: each packet written as it is, with no intermediate copy; ends when the
    // server closes the channel.
    let down = async {
        while let Some(msg) = from_remote.wait().await {
            match msg {
                ChannelMsg::Data { data } => local_write
                    .write_all(&data)
                    .await
                    .map_err(|e| SshError::io("forwarded connection", e))?,
                ChannelMsg::Eof => {
                    let _ = local_write.shutdown().await;
                }
                ChannelMsg::Close => break,
                _ => {}
            }
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

#[cfg(test)]
mod tests {
    use super::*;

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
