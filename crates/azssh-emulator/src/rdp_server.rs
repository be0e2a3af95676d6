//! The emulated guest's RDP port (3389) as far as a tunnel check needs it: the server side answers
//! an X.224 Connection Request with a Connection Confirm, as a Windows host does.
//!
//! Wire format, [MS-RDPBCGR] 2.2.1.1 (Client X.224 Connection Request PDU) and 2.2.1.2 (Server
//! X.224 Connection Confirm PDU): a TPKT header (T.123: version 3, reserved 0, big-endian total
//! length), an X.224 TPDU (ITU-T X.224 13.3/13.4: length indicator, code 0xE0 for CR or 0xD0 for
//! CC, DST-REF, SRC-REF, class 0), optional routing token or `Cookie: mstshash=...\r\n` line,
//! then an optional 8-byte negotiation structure (RDP_NEG_REQ 2.2.1.1.1, RDP_NEG_RSP 2.2.1.2.1,
//! RDP_NEG_FAILURE 2.2.1.2.2), whose integers are little-endian.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// TPKT version byte (T.123 / RFC 1006).
const TPKT_VERSION: u8 = 3;
/// X.224 Connection Request TPDU code.
const X224_CR: u8 = 0xE0;
/// X.224 Connection Confirm TPDU code.
const X224_CC: u8 = 0xD0;
/// RDP_NEG_REQ / RDP_NEG_RSP type bytes ([MS-RDPBCGR] 2.2.1.1.1, 2.2.1.2.1/2).
const TYPE_RDP_NEG_REQ: u8 = 0x01;
const TYPE_RDP_NEG_RSP: u8 = 0x02;
/// Standard RDP security ([MS-RDPBCGR] 2.2.1.1.1 requestedProtocols).
pub const PROTOCOL_RDP: u32 = 0x0000_0000;
/// TLS 1.0/1.1/1.2 (External Security Protocols, 5.4.5).
pub const PROTOCOL_SSL: u32 = 0x0000_0001;
/// RDP_NEG_RSP flags a Windows Server 2019+ host sends: EXTENDED_CLIENT_DATA_SUPPORTED (0x01),
/// DYNVC_GFX_PROTOCOL_SUPPORTED (0x02), RESTRICTED_ADMIN_MODE_SUPPORTED (0x08),
/// REDIRECTED_AUTHENTICATION_MODE_SUPPORTED (0x10).
const SERVER_NEG_FLAGS: u8 = 0x1B;
/// The largest Connection Request we accept: a cookie line plus the negotiation block fit easily;
/// anything longer is not an RDP client.
const MAX_CR_LEN: usize = 1024;

/// What went wrong while serving an RDP port.
#[derive(Debug, thiserror::Error)]
pub enum RdpError {
    #[error("the tunnel closed before the RDP listener answered")]
    Closed,
    #[error("i/o error talking to the RDP listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("the peer did not speak RDP: {0}")]
    NotRdp(String),
}

/// A parsed Client X.224 Connection Request ([MS-RDPBCGR] 2.2.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRequest {
    /// The `Cookie: mstshash=` value or routing token line, without the CR LF, if present.
    pub cookie: Option<String>,
    /// `requestedProtocols` of the RDP_NEG_REQ, if the client sent one.
    pub requested_protocols: Option<u32>,
}

/// Builds the Server X.224 Connection Confirm answering `request` ([MS-RDPBCGR] 2.2.1.2).
///
/// Selection mirrors a Windows host without NLA enforcement: TLS when the client offers it
/// (CredSSP is not emulated, and every client that asks for CredSSP also offers TLS), standard
/// RDP security otherwise. No RDP_NEG_REQ in the request means no RDP_NEG_RSP in the answer.
pub fn encode_connection_confirm(request: &ConnectionRequest) -> Vec<u8> {
    let mut variable = Vec::new();
    if let Some(requested) = request.requested_protocols {
        let selected = if requested & PROTOCOL_SSL != 0 {
            PROTOCOL_SSL
        } else {
            PROTOCOL_RDP
        };
        variable.extend_from_slice(&[TYPE_RDP_NEG_RSP, SERVER_NEG_FLAGS, 8, 0]);
        variable.extend_from_slice(&selected.to_le_bytes());
    }
    // SRC-REF is the server's connection reference; Windows sends 0x1234.
    x224_packet(X224_CC, [0x12, 0x34], &variable)
}

/// TPKT header + fixed X.224 CR/CC header (LI, code, DST-REF, SRC-REF, class 0) + `variable`.
fn x224_packet(code: u8, src_ref: [u8; 2], variable: &[u8]) -> Vec<u8> {
    // The length indicator counts the TPDU header after itself: 6 fixed bytes plus variable part.
    let li = 6 + variable.len();
    let total = 4 + 1 + li;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&[TPKT_VERSION, 0]);
    out.extend_from_slice(&(total as u16).to_be_bytes());
    out.push(li as u8);
    out.push(code);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&src_ref);
    out.push(0);
    out.extend_from_slice(variable);
    out
}

/// Reads one TPKT packet and returns its X.224 TPDU (what follows the 4-byte TPKT header).
async fn read_tpkt<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, RdpError> {
    let mut header = [0u8; 4];
    stream
        .read_exact(&mut header)
        .await
        .map_err(eof_is_closed)?;
    if header[0] != TPKT_VERSION {
        return Err(RdpError::NotRdp(format!(
            "expected TPKT version 3, got byte {:#04x}",
            header[0]
        )));
    }
    let total = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if !(4 + 7..=MAX_CR_LEN).contains(&total) {
        return Err(RdpError::NotRdp(format!("implausible TPKT length {total}")));
    }
    let mut tpdu = vec![0u8; total - 4];
    stream.read_exact(&mut tpdu).await.map_err(eof_is_closed)?;
    Ok(tpdu)
}

fn eof_is_closed(e: std::io::Error) -> RdpError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        RdpError::Closed
    } else {
        RdpError::Io(e)
    }
}

/// Checks the fixed X.224 header of `tpdu` and returns its variable part.
fn x224_variable(tpdu: &[u8], code: u8) -> Result<&[u8], RdpError> {
    let Some(&li) = tpdu.first() else {
        return Err(RdpError::NotRdp("empty x.224 TPDU".to_string()));
    };
    let li = usize::from(li);
    if li + 1 != tpdu.len() || li < 6 {
        return Err(RdpError::NotRdp(format!(
            "x.224 length indicator {li} does not match a {}-byte TPDU",
            tpdu.len()
        )));
    }
    if tpdu[1] & 0xF0 != code {
        return Err(RdpError::NotRdp(format!(
            "expected x.224 TPDU code {code:#04x}, got {:#04x}",
            tpdu[1]
        )));
    }
    Ok(&tpdu[7..])
}

/// Parses a Client X.224 Connection Request TPDU (after the TPKT header).
pub fn parse_connection_request(tpdu: &[u8]) -> Result<ConnectionRequest, RdpError> {
    let mut rest = x224_variable(tpdu, X224_CR)?;
    let mut cookie = None;
    // The cookie / routing token is an ASCII line ending in CR LF; the negotiation block is not.
    if rest.first() != Some(&TYPE_RDP_NEG_REQ)
        && let Some(end) = rest.windows(2).position(|w| w == b"\r\n")
    {
        cookie = Some(String::from_utf8_lossy(&rest[..end]).into_owned());
        rest = &rest[end + 2..];
    }
    let requested_protocols = match rest {
        [] => None,
        [TYPE_RDP_NEG_REQ, _flags, 8, 0, p0, p1, p2, p3, ..] => {
            Some(u32::from_le_bytes([*p0, *p1, *p2, *p3]))
        }
        _ => {
            return Err(RdpError::NotRdp(
                "malformed RDP_NEG_REQ in the connection request".to_string(),
            ));
        }
    };
    Ok(ConnectionRequest {
        cookie,
        requested_protocols,
    })
}

/// Serves one connection to the emulated port 3389: answers the Connection Request, then idles,
/// discarding what the client sends (a real client would start TLS next), until it closes.
pub async fn serve_rdp_connection<S>(mut stream: S) -> Result<ConnectionRequest, RdpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let tpdu = read_tpkt(&mut stream).await?;
    let request = parse_connection_request(&tpdu)?;
    tracing::debug!(?request, "emulated rdp: connection request");
    stream
        .write_all(&encode_connection_confirm(&request))
        .await?;
    stream.flush().await?;
    let mut sink = [0u8; 4096];
    while stream.read(&mut sink).await? > 0 {}
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [MS-RDPBCGR] 4.1.1: "Cookie: mstshash=eltons" + RDP_NEG_REQ requesting PROTOCOL_RDP.
    const SPEC_REQUEST: &[u8] = &[
        0x03, 0x00, 0x00, 0x2c, 0x27, 0xe0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x43, 0x6f, 0x6f, 0x6b,
        0x69, 0x65, 0x3a, 0x20, 0x6d, 0x73, 0x74, 0x73, 0x68, 0x61, 0x73, 0x68, 0x3d, 0x65, 0x6c,
        0x74, 0x6f, 0x6e, 0x73, 0x0d, 0x0a, 0x01, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn spec_example_request_parses() {
        let request = parse_connection_request(&SPEC_REQUEST[4..]).expect("parses");
        assert_eq!(request.cookie.as_deref(), Some("Cookie: mstshash=eltons"));
        assert_eq!(request.requested_protocols, Some(PROTOCOL_RDP));
    }

    #[test]
    fn confirm_selects_tls_when_offered_and_rdp_otherwise() {
        let tls = encode_connection_confirm(&ConnectionRequest {
            cookie: None,
            requested_protocols: Some(PROTOCOL_SSL | 0x0000_0002),
        });
        // TPKT(19) + LI 14 + CC + refs + class + RDP_NEG_RSP selecting PROTOCOL_SSL.
        assert_eq!(
            tls,
            [
                0x03, 0x00, 0x00, 0x13, 0x0e, 0xd0, 0x00, 0x00, 0x12, 0x34, 0x00, 0x02, 0x1b, 0x08,
                0x00, 0x01, 0x00, 0x00, 0x00
            ]
        );
        let rdp = encode_connection_confirm(&ConnectionRequest {
            cookie: None,
            requested_protocols: Some(PROTOCOL_RDP),
        });
        assert_eq!(&rdp[15..], &PROTOCOL_RDP.to_le_bytes());
    }

    #[test]
    fn confirm_without_negotiation_request_has_no_block() {
        let request = ConnectionRequest {
            cookie: Some("Cookie: mstshash=a".into()),
            requested_protocols: None,
        };
        assert_eq!(encode_connection_confirm(&request).len(), 11);
    }

    #[tokio::test]
    async fn serves_one_request_then_idles_until_close() {
        let (mut client, server) = tokio::io::duplex(4096);
        let served = tokio::spawn(serve_rdp_connection(server));
        client.write_all(SPEC_REQUEST).await.expect("write");
        let mut confirm = [0u8; 19];
        client.read_exact(&mut confirm).await.expect("confirm");
        assert_eq!(confirm[5], X224_CC);
        drop(client);
        let request = served.await.expect("joins").expect("served");
        assert_eq!(request.cookie.as_deref(), Some("Cookie: mstshash=eltons"));
    }
}
