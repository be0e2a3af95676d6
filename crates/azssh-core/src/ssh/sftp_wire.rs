//! The SFTP version 3 packets an upload exchanges (draft-ietf-secsh-filexfer-02, as OpenSSH's
//! sftp-server speaks it): message and status codes, request framing, reply parsing, and
//! `Failure`, a failed request in the words russh-sftp used.

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub(super) const SSH_FXP_INIT: u8 = 1;
pub(super) const SSH_FXP_VERSION: u8 = 2;
pub(super) const SSH_FXP_OPEN: u8 = 3;
pub(super) const SSH_FXP_CLOSE: u8 = 4;
pub(super) const SSH_FXP_WRITE: u8 = 6;
pub(super) const SSH_FXP_MKDIR: u8 = 14;
pub(super) const SSH_FXP_STAT: u8 = 17;
pub(super) const SSH_FXP_STATUS: u8 = 101;
pub(super) const SSH_FXP_HANDLE: u8 = 102;
pub(super) const SSH_FXP_ATTRS: u8 = 105;
pub(super) const SSH_FXP_EXTENDED: u8 = 200;
pub(super) const SSH_FXP_EXTENDED_REPLY: u8 = 201;

pub(super) const SSH_FX_OK: u32 = 0;
pub(super) const SSH_FX_NO_SUCH_FILE: u32 = 2;

pub(super) const SSH_FXF_WRITE: u32 = 0x02;
pub(super) const SSH_FXF_CREAT: u32 = 0x08;
pub(super) const SSH_FXF_TRUNC: u32 = 0x10;

/// A WRITE packet before its id is set: everything up to the data is the header.
pub(super) fn write_header_len(handle: &[u8]) -> usize {
    // length(4) type(1) id(4) handle(4 + n) offset(8) data length(4)
    4 + 1 + 4 + 4 + handle.len() + 8 + 4
}

pub(super) fn status_name(code: u32) -> &'static str {
    match code {
        0 => "ok",
        1 => "end of file",
        2 => "no such file",
        3 => "permission denied",
        4 => "failure",
        5 => "bad message",
        6 => "no connection",
        7 => "connection lost",
        8 => "operation unsupported",
        _ => "error",
    }
}

/// A failed request, in the words russh-sftp used (`{status}: {server's message}`), so errors
/// read the same whichever side framed the request.
#[derive(Debug)]
pub(crate) enum Failure {
    Status {
        code: u32,
        message: String,
    },
    Protocol(String),
    /// The destination could not be opened (the inner failure, as text).
    Open(String),
    Local(std::io::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status { code, message } if message.is_empty() => {
                f.write_str(status_name(*code))
            }
            Failure::Status { code, message } => write!(f, "{}: {message}", status_name(*code)),
            Failure::Protocol(m) | Failure::Open(m) => f.write_str(m),
            Failure::Local(e) => write!(f, "{e}"),
        }
    }
}

pub(super) fn protocol(m: &str) -> Failure {
    Failure::Protocol(format!("the server broke the SFTP protocol: {m}"))
}

/// One reply: its type, request id and the rest of its payload.
pub(super) struct Reply {
    pub(super) kind: u8,
    pub(super) id: u32,
    pub(super) body: Bytes,
}

impl Reply {
    /// SSH_FXP_STATUS as a result: OK is `Ok`, anything else the server's code and message.
    pub(super) fn status(mut self) -> Result<(), Failure> {
        if self.kind != SSH_FXP_STATUS {
            return Err(protocol("expected a status reply"));
        }
        let code = get_u32(&mut self.body)?;
        if code == SSH_FX_OK {
            return Ok(());
        }
        // The message is optional in version 3 replies from some servers.
        let message = get_string(&mut self.body)
            .map(|m| String::from_utf8_lossy(&m).into_owned())
            .unwrap_or_default();
        Err(Failure::Status { code, message })
    }
}

pub(super) fn get_u32(b: &mut Bytes) -> Result<u32, Failure> {
    if b.remaining() < 4 {
        return Err(protocol("a reply is cut short"));
    }
    Ok(b.get_u32())
}

pub(super) fn get_u64(b: &mut Bytes) -> Result<u64, Failure> {
    if b.remaining() < 8 {
        return Err(protocol("a reply is cut short"));
    }
    Ok(b.get_u64())
}

pub(super) fn get_string(b: &mut Bytes) -> Result<Bytes, Failure> {
    let n = get_u32(b)? as usize;
    if b.remaining() < n {
        return Err(protocol("a reply is cut short"));
    }
    Ok(b.split_to(n))
}

pub(super) fn put_string(b: &mut BytesMut, s: &[u8]) {
    b.put_u32(s.len() as u32);
    b.put_slice(s);
}

/// A request packet: `build` writes the payload after the type and id.
pub(super) fn packet(kind: u8, id: u32, build: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    b.put_u32(0);
    b.put_u8(kind);
    b.put_u32(id);
    build(&mut b);
    let len = (b.len() - 4) as u32;
    b[..4].copy_from_slice(&len.to_be_bytes());
    b.freeze()
}
