//! The upload side of SFTP (protocol version 3, draft-ietf-secsh-filexfer-02, as OpenSSH's
//! sftp-server speaks it) framed here rather than through russh-sftp: the local file is read on a
//! blocking thread straight into the SSH_FXP_WRITE packet that carries it, and each packet goes
//! to the channel whole (`data_bytes`, cut into SSH packets without another copy), with up to
//! `IN_FLIGHT` writes outstanding (fewer on a short path: see `IN_FLIGHT_MIN`). russh-sftp
//! copies every write twice more (into its request, then 32 KiB at a time into the channel) and
//! sends through two more tasks; on a 2-core machine that CPU is what kept uploads behind
//! OpenSSH's `sftp`.
//!
//! Only what an upload needs: INIT, STAT, MKDIR, OPEN, WRITE, CLOSE and the `limits@openssh.com`
//! and `fsync@openssh.com` extensions (packets in `sftp_wire`). Requests other than WRITE go one
//! at a time.

use std::collections::VecDeque;
use std::io::Read;
use std::path::Path;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use russh::client::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};

use super::error::SshError;
use super::sftp_wire::{
    Failure, Reply, SSH_FX_NO_SUCH_FILE, SSH_FXF_CREAT, SSH_FXF_TRUNC, SSH_FXF_WRITE,
    SSH_FXP_ATTRS, SSH_FXP_CLOSE, SSH_FXP_EXTENDED, SSH_FXP_EXTENDED_REPLY, SSH_FXP_HANDLE,
    SSH_FXP_INIT, SSH_FXP_MKDIR, SSH_FXP_OPEN, SSH_FXP_STAT, SSH_FXP_VERSION, SSH_FXP_WRITE,
    get_string, get_u32, get_u64, packet, protocol, put_string, write_header_len,
};
use super::sftp_writeback::{self as writeback, Writeback};

/// The most data one WRITE carries: OpenSSH's sftp-server takes 255 KiB (`limits@openssh.com`
/// max-write-length 261120, its SFTP_MAX_MSG_LENGTH of 256 KiB less 1 KiB); servers that
/// announce less get what they announce. Servers without the extension get this too, as they
/// did from russh-sftp (whose writes were up to 256 KiB less the header).
const MAX_WRITE: usize = 255 * 1024;
/// The largest reply accepted (OpenSSH's SFTP_MAX_MSG_LENGTH).
const MAX_REPLY: usize = 256 * 1024;
/// The most writes outstanding on one handle: 16 × 255 KiB is 4 MiB, twice sshd's 2 MiB
/// session-channel window, so on a long path the window, not acknowledgements, paces the
/// upload. Measured against OpenSSH's own shape (`sftp`'s 64 × 32 KiB, and 32 × 64 KiB) on one
/// 2-core machine: no faster, and 20-40% more client CPU for the same server CPU (one request,
/// reply and write(2) per 32 KiB). Replies are read while each write is sent
/// (`send_draining`), so however many arrive they never fill russh's per-channel queue.
const IN_FLIGHT: usize = 16;
/// The fewest: on a short path (loopback, a LAN, a VNet) the upload keeps only as many writes
/// outstanding as cover one round trip, plus `SPARE`. Whatever the window lets in beyond what
/// sftp-server has taken waits in sshd's channel buffer, which sshd grows, packs and frees as it
/// goes (realloc, page faults, memmove and zeroing: a quarter of sshd's CPU in a profile of a
/// 16-deep upload). Measured on loopback, 256 MiB: 4 deep instead of 16 cut sshd's and
/// sftp-server's CPU from 0.40 to 0.25 s and raised throughput 1.3-1.8×.
const IN_FLIGHT_MIN: usize = 4;
/// Writes beyond one round trip's worth, so sftp-server always finds the next one waiting.
const SPARE: usize = 3;
/// The rate a round trip is sized for (bytes a second): a fast path inside a datacenter.
const PATH_RATE: f64 = 1e9;
/// How long the server may stay silent (no reply, no window to send in) before the upload is
/// abandoned. russh-sftp allowed 10 s per request; an fsync of a large file on a slow disk can
/// take longer than that, and a stalled server still fails in bounded time.
const SILENCE: std::time::Duration = std::time::Duration::from_secs(60);
/// Chunks the reading thread may be ahead of the pipeline.
const READ_AHEAD: usize = 4;

/// Writes to keep outstanding for a round trip of `rtt` with `write_len`-byte writes: one round
/// trip's worth at `PATH_RATE` plus `SPARE`, within `IN_FLIGHT_MIN..=IN_FLIGHT`.
fn in_flight_for(rtt: std::time::Duration, write_len: usize) -> usize {
    let per_trip = rtt.as_secs_f64() * PATH_RATE / write_len.max(1) as f64;
    // `as` saturates: an unmeasured (endless) round trip asks for the most.
    (per_trip.ceil() as usize)
        .saturating_add(SPARE)
        .clamp(IN_FLIGHT_MIN, IN_FLIGHT)
}

fn silent() -> Failure {
    Failure::Protocol(format!(
        "the server did not answer for {} s",
        SILENCE.as_secs()
    ))
}

/// What the server announced in SSH_FXP_VERSION that an upload uses.
#[derive(Debug, Default, Clone, Copy)]
struct Features {
    limits: bool,
    fsync: bool,
}

/// An SFTP session for uploads on one SSH channel.
pub(crate) struct Uploader {
    rd: ChannelReadHalf,
    wr: ChannelWriteHalf<Msg>,
    inbuf: BytesMut,
    /// The server ended the channel (seen while a write was being sent).
    ended: bool,
    next_id: u32,
    fsync: bool,
    write_len: usize,
    /// The shortest round trip seen for a single request (`limits@openssh.com`, OPEN).
    rtt: std::time::Duration,
}

impl Uploader {
    /// Sends INIT on a channel already running the `sftp` subsystem and reads the version and
    /// limits. `sync`: fsync each file before closing it, when the server offers that.
    pub(crate) async fn start(
        rd: ChannelReadHalf,
        wr: ChannelWriteHalf<Msg>,
        sync: bool,
    ) -> Result<Self, Failure> {
        let mut up = Uploader {
            rd,
            wr,
            inbuf: BytesMut::with_capacity(64 * 1024),
            ended: false,
            next_id: 1,
            fsync: false,
            write_len: MAX_WRITE,
            rtt: std::time::Duration::MAX,
        };
        let mut init = BytesMut::with_capacity(9);
        init.put_u32(5);
        init.put_u8(SSH_FXP_INIT);
        init.put_u32(3);
        up.send(init.freeze()).await?;
        let (kind, mut body) = up.recv_raw().await?;
        if kind != SSH_FXP_VERSION {
            return Err(protocol("expected SSH_FXP_VERSION"));
        }
        let version = get_u32(&mut body)?;
        if version < 3 {
            return Err(Failure::Protocol(format!(
                "the server speaks SFTP version {version}; version 3 is needed"
            )));
        }
        let mut features = Features::default();
        while body.has_remaining() {
            let name = get_string(&mut body)?;
            let data = get_string(&mut body)?;
            match &name[..] {
                b"limits@openssh.com" => features.limits = true,
                b"fsync@openssh.com" => features.fsync = data.as_ref() == b"1",
                _ => {}
            }
        }
        up.fsync = features.fsync && sync;
        if features.limits {
            let id = up.id();
            up.send(packet(SSH_FXP_EXTENDED, id, |b| {
                put_string(b, b"limits@openssh.com")
            }))
            .await?;
            let asked = std::time::Instant::now();
            let mut reply = up.reply(id).await?;
            up.rtt = up.rtt.min(asked.elapsed());
            if reply.kind == SSH_FXP_EXTENDED_REPLY {
                let max_packet = get_u64(&mut reply.body)?;
                let _max_read = get_u64(&mut reply.body)?;
                let max_write = get_u64(&mut reply.body)?;
                if max_write > 0 {
                    up.write_len = up.write_len.min(max_write as usize);
                }
                // A whole WRITE (header with a handle of up to 256 bytes) within the packet limit.
                if max_packet > 0 {
                    let room = (max_packet as usize).saturating_sub(4 + 1 + 4 + 4 + 256 + 8 + 4);
                    up.write_len = up.write_len.min(room.max(1024));
                }
            }
        }
        Ok(up)
    }

    /// Ends the session: EOF then CLOSE on the channel, as OpenSSH's `sftp` does on exit.
    pub(crate) async fn end(self) {
        let _ = self.wr.eof().await;
        let _ = self.wr.close().await;
    }

    fn id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    async fn send(&self, packet: Bytes) -> Result<(), Failure> {
        match tokio::time::timeout(SILENCE, self.wr.data_bytes(packet)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure::Protocol(format!(
                "the SFTP channel is closed: {e}"
            ))),
            Err(_) => Err(silent()),
        }
    }

    /// Sends a WRITE while taking in whatever the server sends meanwhile. russh hands a
    /// channel's incoming messages (replies, and a `WindowAdjusted` note for every
    /// SSH_MSG_CHANNEL_WINDOW_ADJUST) to a bounded queue, and its session loop stops to wait when
    /// that queue is full; a send waiting for window while nobody empties the queue would wait
    /// for a WINDOW_ADJUST the loop no longer reads. Replies are kept in `inbuf` for `recv`.
    async fn send_draining(&mut self, packet: Bytes) -> Result<(), Failure> {
        let send = self.wr.data_bytes(packet);
        tokio::pin!(send);
        let silence = tokio::time::sleep(SILENCE);
        tokio::pin!(silence);
        loop {
            tokio::select! {
                sent = &mut send => {
                    return sent.map_err(|e| {
                        Failure::Protocol(format!("the SFTP channel is closed: {e}"))
                    });
                }
                msg = self.rd.wait(), if !self.ended => match msg {
                    Some(ChannelMsg::Data { data }) => self.inbuf.extend_from_slice(&data),
                    // No window will come from a server that has gone: stop waiting for it.
                    Some(ChannelMsg::Eof | ChannelMsg::Close) | None => {
                        self.ended = true;
                        return Err(Failure::Protocol(
                            "the server closed the SFTP channel".to_string(),
                        ));
                    }
                    Some(_) => {}
                },
                () = &mut silence => return Err(silent()),
            }
        }
    }

    /// The next whole packet from the server: type and the payload after it.
    async fn recv_raw(&mut self) -> Result<(u8, Bytes), Failure> {
        loop {
            if self.inbuf.len() >= 4 {
                let len = u32::from_be_bytes([
                    self.inbuf[0],
                    self.inbuf[1],
                    self.inbuf[2],
                    self.inbuf[3],
                ]) as usize;
                if len == 0 || len > MAX_REPLY {
                    return Err(protocol("a reply has an impossible length"));
                }
                if self.inbuf.len() >= 4 + len {
                    self.inbuf.advance(4);
                    let mut body = self.inbuf.split_to(len).freeze();
                    let kind = body.get_u8();
                    return Ok((kind, body));
                }
            }
            if self.ended {
                return Err(Failure::Protocol(
                    "the server closed the SFTP channel".to_string(),
                ));
            }
            let msg = tokio::time::timeout(SILENCE, self.rd.wait())
                .await
                .map_err(|_| silent())?;
            match msg {
                Some(ChannelMsg::Data { data }) => self.inbuf.extend_from_slice(&data),
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => {
                    return Err(Failure::Protocol(
                        "the server closed the SFTP channel".to_string(),
                    ));
                }
                // Stderr of the subsystem, exit status, window changes: nothing for SFTP.
                Some(_) => {}
            }
        }
    }

    async fn recv(&mut self) -> Result<Reply, Failure> {
        let (kind, mut body) = self.recv_raw().await?;
        let id = get_u32(&mut body)?;
        Ok(Reply { kind, id, body })
    }

    /// The reply to the one request outstanding.
    async fn reply(&mut self, id: u32) -> Result<Reply, Failure> {
        let reply = self.recv().await?;
        if reply.id != id {
            return Err(protocol("a reply answers a request that was not made"));
        }
        Ok(reply)
    }

    /// Whether `path` exists (STAT: no such file is `false`, other failures are errors).
    pub(crate) async fn exists(&mut self, path: &str) -> Result<bool, Failure> {
        let id = self.id();
        self.send(packet(SSH_FXP_STAT, id, |b| put_string(b, path.as_bytes())))
            .await?;
        let reply = self.reply(id).await?;
        if reply.kind == SSH_FXP_ATTRS {
            return Ok(true);
        }
        match reply.status() {
            Ok(()) => Err(protocol("STAT answered with a bare status")),
            Err(Failure::Status { code, .. }) if code == SSH_FX_NO_SUCH_FILE => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn mkdir(&mut self, path: &str) -> Result<(), Failure> {
        let id = self.id();
        self.send(packet(SSH_FXP_MKDIR, id, |b| {
            put_string(b, path.as_bytes());
            b.put_u32(0); // no attributes: the server's default mode
        }))
        .await?;
        self.reply(id).await?.status()
    }

    /// Opens `path` for writing (created or truncated, as `sftp put` does).
    async fn open_write(&mut self, path: &str) -> Result<Bytes, Failure> {
        self.open(path, SSH_FXF_WRITE | SSH_FXF_CREAT | SSH_FXF_TRUNC)
            .await
    }

    /// Opens the existing file `path` for writing without changing it (no create, no
    /// truncate): a handle to fsync it through. Write access because Windows' FlushFileBuffers,
    /// behind Win32-OpenSSH's fsync, needs it.
    pub(crate) async fn open_to_flush(&mut self, path: &str) -> Result<Bytes, Failure> {
        self.open(path, SSH_FXF_WRITE).await
    }

    async fn open(&mut self, path: &str, flags: u32) -> Result<Bytes, Failure> {
        let id = self.id();
        self.send(packet(SSH_FXP_OPEN, id, |b| {
            put_string(b, path.as_bytes());
            b.put_u32(flags);
            b.put_u32(0);
        }))
        .await?;
        let asked = std::time::Instant::now();
        let mut reply = self.reply(id).await?;
        self.rtt = self.rtt.min(asked.elapsed());
        if reply.kind == SSH_FXP_HANDLE {
            return get_string(&mut reply.body);
        }
        reply.status()?;
        Err(protocol("OPEN answered with a bare status"))
    }

    pub(crate) async fn close_handle(&mut self, handle: &Bytes) -> Result<(), Failure> {
        let id = self.id();
        self.send(packet(SSH_FXP_CLOSE, id, |b| put_string(b, handle)))
            .await?;
        self.reply(id).await?.status()
    }

    /// Whether files are synced: asked for, and the server offers `fsync@openssh.com`.
    pub(crate) fn syncs(&self) -> bool {
        self.fsync
    }

    /// `fsync@openssh.com` when the server has it: the upload is on the server's disk before it
    /// is reported done.
    pub(crate) async fn fsync_handle(&mut self, handle: &Bytes) -> Result<(), Failure> {
        if !self.fsync {
            return Ok(());
        }
        let id = self.id();
        self.send(packet(SSH_FXP_EXTENDED, id, |b| {
            put_string(b, b"fsync@openssh.com");
            put_string(b, handle);
        }))
        .await?;
        self.reply(id).await?.status()
    }

    /// Copies the local file `local` to `remote` (created or truncated); returns the bytes
    /// written. The handle is closed whatever happens; the first failure in file order is the
    /// one reported, after every outstanding write has been answered. A synced upload of a
    /// large file also runs `writeback`, which flushes the file from a second session while
    /// this one writes; the final fsync here is what makes the upload durable either way.
    pub(crate) async fn upload_file(
        &mut self,
        local: std::fs::File,
        remote: &str,
        writeback: &mut Writeback<'_>,
    ) -> Result<u64, Failure> {
        let size = local.metadata().map(|m| m.len()).unwrap_or(0);
        let handle = self
            .open_write(remote)
            .await
            .map_err(|e| Failure::Open(e.to_string()))?;
        let result = if self.fsync && writeback::worth_it(size) {
            let (acked, seen) = tokio::sync::watch::channel(0u64);
            let written = async {
                match self.write_all(local, &handle, Some(acked)).await {
                    Ok(bytes) => self.fsync_handle(&handle).await.map(|()| bytes),
                    Err(e) => Err(e),
                }
            };
            tokio::join!(written, writeback.run(remote, size, seen)).0
        } else {
            match self.write_all(local, &handle, None).await {
                Ok(bytes) => self.fsync_handle(&handle).await.map(|()| bytes),
                Err(e) => Err(e),
            }
        };
        // CLOSE's status can carry a late write error (e.g. a full disk on some filesystems).
        let closed = self.close_handle(&handle).await;
        let bytes = result?;
        closed?;
        Ok(bytes)
    }

    /// Writes the whole file through the pipeline; `acked`, when given, is told how many bytes
    /// the server has acknowledged so far (and is dropped on return).
    async fn write_all(
        &mut self,
        local: std::fs::File,
        handle: &Bytes,
        acked: Option<tokio::sync::watch::Sender<u64>>,
    ) -> Result<u64, Failure> {
        let header = write_header_len(handle);
        let (tx, mut chunks) = tokio::sync::mpsc::channel(READ_AHEAD);
        // Packets the server has answered go back to the reader to be filled again: a fresh
        // 255 KiB buffer per write costs the allocator's page faults and zeroing on every
        // chunk, a CPU pass over the data as large as the read itself.
        let (spare, spares) = std::sync::mpsc::channel::<BytesMut>();
        let reader = {
            let handle = handle.clone();
            let chunk = self.write_len;
            tokio::task::spawn_blocking(move || read_chunks(local, &handle, chunk, &tx, &spares))
        };
        // (id, offset, length, packet) of each write not yet answered, oldest first.
        let mut in_flight: VecDeque<(u32, u64, u64, Bytes)> = VecDeque::with_capacity(IN_FLIGHT);
        let depth = in_flight_for(self.rtt, self.write_len);
        let mut acknowledged = 0u64;
        // The failure at the lowest offset so far.
        let mut failed: Option<(u64, Failure)> = None;
        let mut bytes = 0u64;
        let mut eof = false;
        loop {
            while !eof && failed.is_none() && in_flight.len() < depth {
                match chunks.recv().await {
                    Some(Ok((offset, mut chunk))) => {
                        let id = self.id();
                        chunk[5..9].copy_from_slice(&id.to_be_bytes());
                        let len = (chunk.len() - header) as u64;
                        bytes += len;
                        let packet = chunk.freeze();
                        if let Err(e) = self.send_draining(packet.clone()).await {
                            failed = Some((offset, e));
                            break;
                        }
                        in_flight.push_back((id, offset, len, packet));
                    }
                    Some(Err(e)) => {
                        failed = Some((bytes, Failure::Local(e)));
                    }
                    None => eof = true,
                }
            }
            if in_flight.is_empty() {
                break;
            }
            // A dead channel answers nothing: stop waiting.
            if matches!(failed, Some((_, Failure::Protocol(_)))) {
                break;
            }
            let reply = match self.recv().await {
                Ok(r) => r,
                Err(e) => {
                    failed = Some((0, e));
                    break;
                }
            };
            let Some(at) = in_flight.iter().position(|(id, ..)| *id == reply.id) else {
                failed = Some((0, protocol("a reply answers a request that was not made")));
                break;
            };
            let Some((_, offset, len, packet)) = in_flight.remove(at) else {
                break;
            };
            // Answered, so russh has long encrypted and let go of it: the buffer is ours alone.
            if let Ok(buf) = packet.try_into_mut() {
                let _ = spare.send(buf);
            }
            match reply.status() {
                Ok(()) => {
                    acknowledged += len;
                    if let Some(acked) = &acked {
                        acked.send_replace(acknowledged);
                    }
                }
                Err(e) if failed.as_ref().is_none_or(|(first, _)| offset < *first) => {
                    failed = Some((offset, e));
                }
                Err(_) => {}
            }
        }
        // Ends the reading thread if it is still ahead of us.
        drop(chunks);
        let _ = reader.await;
        match failed {
            Some((_, e)) => Err(e),
            None => Ok(bytes),
        }
    }
}

/// Reads `local` in `chunk`-byte pieces, each straight into a WRITE packet for `handle` (id left
/// 0, set when sent), and passes them on until the end of the file or until nobody listens.
/// Buffers come from `spares` when it has one.
fn read_chunks(
    mut local: std::fs::File,
    handle: &[u8],
    chunk: usize,
    tx: &tokio::sync::mpsc::Sender<std::io::Result<(u64, BytesMut)>>,
    spares: &std::sync::mpsc::Receiver<BytesMut>,
) {
    let header = write_header_len(handle);
    let mut offset = 0u64;
    loop {
        // A whole-chunk packet sent earlier is overwritten in full (header and data) below.
        let mut buf = match spares.try_recv() {
            Ok(b) if b.len() == header + chunk => b,
            _ => BytesMut::zeroed(header + chunk),
        };
        let mut filled = 0;
        // Fill the whole chunk (a short read is not the end of a regular file).
        let read = loop {
            match local.read(&mut buf[header + filled..]) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    filled += n;
                    if filled == chunk {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = read {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        if filled == 0 {
            return;
        }
        buf.truncate(header + filled);
        let len = (buf.len() - 4) as u32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        buf[4] = SSH_FXP_WRITE;
        let mut at = 9;
        buf[at..at + 4].copy_from_slice(&(handle.len() as u32).to_be_bytes());
        at += 4;
        buf[at..at + handle.len()].copy_from_slice(handle);
        at += handle.len();
        buf[at..at + 8].copy_from_slice(&offset.to_be_bytes());
        at += 8;
        buf[at..at + 4].copy_from_slice(&(filled as u32).to_be_bytes());
        if tx.blocking_send(Ok((offset, buf))).is_err() {
            return;
        }
        offset += filled as u64;
        if filled < chunk {
            return;
        }
    }
}

/// Opens the local file to upload.
pub(crate) fn open_local(local: &Path) -> Result<std::fs::File, SshError> {
    std::fs::File::open(local)
        .map_err(|e| SshError::io(format!("cannot open `{}`", local.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn writes_in_flight_cover_one_round_trip_within_bounds() {
        let at = |micros| in_flight_for(Duration::from_micros(micros), MAX_WRITE);
        // Loopback and a VNet: few, so sshd's buffer stays small.
        assert_eq!(at(50), IN_FLIGHT_MIN);
        assert_eq!(at(200), IN_FLIGHT_MIN);
        // 1 ms at 1 GB/s is 1 MB: four writes, plus the spare ones.
        assert_eq!(at(1_000), 4 + SPARE);
        // Across the Internet, and before any round trip was measured: the most.
        assert_eq!(at(30_000), IN_FLIGHT);
        assert_eq!(in_flight_for(Duration::MAX, MAX_WRITE), IN_FLIGHT);
        // A server that takes small writes gets more of them, still within bounds.
        assert_eq!(
            in_flight_for(Duration::from_micros(200), 32 * 1024),
            7 + SPARE
        );
    }
}
