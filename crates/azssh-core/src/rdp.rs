//! The RDP probe: `probe_rdp` sends an X.224 Connection Request and checks the Connection Confirm,
//! which the `rdp` verb and the demo use to prove a tunnel reaches an RDP listener.
//!
//! Wire format, [MS-RDPBCGR] 2.2.1.1 (Client X.224 Connection Request PDU) and 2.2.1.2 (Server
//! X.224 Connection Confirm PDU): a TPKT header (T.123: version 3, reserved 0, big-endian total
//! length), an X.224 TPDU (ITU-T X.224 13.3/13.4: length indicator, code 0xE0 for CR or 0xD0 for
//! CC, DST-REF, SRC-REF, class 0), optional routing token or `Cookie: mstshash=...\r\n` line,
//! then an optional 8-byte negotiation structure (RDP_NEG_REQ 2.2.1.1.1, RDP_NEG_RSP 2.2.1.2.1,
//! RDP_NEG_FAILURE 2.2.1.2.2), whose integers are little-endian.

use crate::error::kind;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// TPKT version byte (T.123 / RFC 1006).
const TPKT_VERSION: u8 = 3;
/// X.224 Connection Request TPDU code.
const X224_CR: u8 = 0xE0;
/// X.224 Connection Confirm TPDU code.
const X224_CC: u8 = 0xD0;
/// RDP_NEG_REQ / RDP_NEG_RSP / RDP_NEG_FAILURE type bytes ([MS-RDPBCGR] 2.2.1.1.1, 2.2.1.2.1/2).
const TYPE_RDP_NEG_REQ: u8 = 0x01;
const TYPE_RDP_NEG_RSP: u8 = 0x02;
const TYPE_RDP_NEG_FAILURE: u8 = 0x03;
/// Standard RDP security ([MS-RDPBCGR] 2.2.1.1.1 requestedProtocols).
pub const PROTOCOL_RDP: u32 = 0x0000_0000;
/// TLS 1.0/1.1/1.2 (External Security Protocols, 5.4.5).
pub const PROTOCOL_SSL: u32 = 0x0000_0001;
/// CredSSP (NLA), which implies TLS.
pub const PROTOCOL_HYBRID: u32 = 0x0000_0002;
/// The largest Connection Confirm we accept: the fixed header plus a negotiation block fit
/// easily; anything longer is not an RDP server.
const MAX_CR_LEN: usize = 1024;

/// What went wrong while probing or serving an RDP port.
#[derive(Debug, thiserror::Error)]
pub enum RdpError {
    #[error("the tunnel closed before the RDP listener answered")]
    Closed,
    #[error("i/o error talking to the RDP listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("the peer did not speak RDP: {0}")]
    NotRdp(String),
}

impl crate::error::UserError for RdpError {
    fn kind(&self) -> &'static str {
        match self {
            RdpError::Closed => kind::rdp::CLOSED,
            RdpError::Io(_) => kind::rdp::IO,
            RdpError::NotRdp(_) => kind::rdp::NOT_RDP,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            RdpError::Closed | RdpError::Io(_) => {
                "check that the VM is running and that the tunnel's remote end is `localhost:3389`"
                    .to_string()
            }
            RdpError::NotRdp(_) => {
                "something other than Remote Desktop listens on the forwarded port".to_string()
            }
        })
    }
}

/// What the server chose in its Connection Confirm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RdpNegotiation {
    /// RDP_NEG_RSP: the security protocol the server selected and its flags.
    Selected { protocol: u32, flags: u8 },
    /// RDP_NEG_FAILURE: the server answered but refused every requested protocol
    /// (e.g. 5 = HYBRID_REQUIRED_BY_SERVER). Still proof that RDP listens.
    Failed { code: u32 },
    /// A Connection Confirm without a negotiation block: a pre-RDP-5.2 server, standard security.
    Legacy,
}

/// The result of a successful probe: an RDP server answered the Connection Request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RdpProbe {
    pub negotiation: RdpNegotiation,
}

impl RdpProbe {
    /// A user-facing name for the security the server selected (`"tls"`, `"rdp"`, ...).
    pub fn security(&self) -> &'static str {
        match self.negotiation {
            RdpNegotiation::Selected { protocol, .. } => protocol_name(protocol),
            RdpNegotiation::Failed { .. } => "refused",
            RdpNegotiation::Legacy => "rdp",
        }
    }
}

fn protocol_name(protocol: u32) -> &'static str {
    match protocol {
        PROTOCOL_RDP => "rdp",
        PROTOCOL_SSL => "tls",
        PROTOCOL_HYBRID => "credssp",
        0x0000_0004 => "rdstls",
        0x0000_0008 => "credssp-early-auth",
        _ => "unknown",
    }
}

/// Builds the Client X.224 Connection Request that `mstsc` sends: cookie line plus RDP_NEG_REQ.
pub fn encode_connection_request(user: &str, requested_protocols: u32) -> Vec<u8> {
    // The cookie is terminated by CR LF ([MS-RDPBCGR] 2.2.1.1), so it must not contain one.
    let user: String = user.chars().filter(|c| !c.is_control()).collect();
    let mut variable = format!("Cookie: mstshash={user}\r\n").into_bytes();
    variable.extend_from_slice(&[TYPE_RDP_NEG_REQ, 0, 8, 0]);
    variable.extend_from_slice(&requested_protocols.to_le_bytes());
    x224_packet(X224_CR, [0, 0], &variable)
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

/// Parses a Server X.224 Connection Confirm TPDU (after the TPKT header).
pub fn parse_connection_confirm(tpdu: &[u8]) -> Result<RdpProbe, RdpError> {
    let rest = x224_variable(tpdu, X224_CC)?;
    let negotiation = match rest {
        [] => RdpNegotiation::Legacy,
        [TYPE_RDP_NEG_RSP, flags, 8, 0, p0, p1, p2, p3] => RdpNegotiation::Selected {
            protocol: u32::from_le_bytes([*p0, *p1, *p2, *p3]),
            flags: *flags,
        },
        [TYPE_RDP_NEG_FAILURE, _, 8, 0, c0, c1, c2, c3] => RdpNegotiation::Failed {
            code: u32::from_le_bytes([*c0, *c1, *c2, *c3]),
        },
        _ => {
            return Err(RdpError::NotRdp(
                "malformed negotiation block in the connection confirm".to_string(),
            ));
        }
    };
    Ok(RdpProbe { negotiation })
}

/// Sends a Connection Request (asking for TLS or CredSSP, as `mstsc` does) over `stream` and
/// validates the Connection Confirm. Proves that an RDP listener sits at the far end of a tunnel.
///
/// It waits as long as the stream does: wrap it in `tokio::time::timeout` when the far end may
/// accept and stay silent.
pub async fn probe_rdp<S>(stream: &mut S) -> Result<RdpProbe, RdpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream
        .write_all(&encode_connection_request(
            "azssh",
            PROTOCOL_SSL | PROTOCOL_HYBRID,
        ))
        .await?;
    stream.flush().await?;
    let tpdu = read_tpkt(stream).await?;
    parse_connection_confirm(&tpdu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_request_matches_the_spec_example() {
        // [MS-RDPBCGR] 4.1.1: "Cookie: mstshash=eltons" + RDP_NEG_REQ requesting PROTOCOL_RDP.
        let bytes = encode_connection_request("eltons", PROTOCOL_RDP);
        let expected: &[u8] = &[
            0x03, 0x00, 0x00, 0x2c, 0x27, 0xe0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x43, 0x6f, 0x6f,
            0x6b, 0x69, 0x65, 0x3a, 0x20, 0x6d, 0x73, 0x74, 0x73, 0x68, 0x61, 0x73, 0x68, 0x3d,
            0x65, 0x6c, 0x74, 0x6f, 0x6e, 0x73, 0x0d, 0x0a, 0x01, 0x00, 0x08, 0x00, 0x00, 0x00,
            0x00, 0x00,
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn confirm_selecting_tls_is_read_as_tls() {
        // A Windows Server 2019 answer: TPKT(19) + LI 14 + CC + refs + class + RDP_NEG_RSP
        // (flags 0x1b) selecting PROTOCOL_SSL.
        let tls = [
            0x03, 0x00, 0x00, 0x13, 0x0e, 0xd0, 0x00, 0x00, 0x12, 0x34, 0x00, 0x02, 0x1b, 0x08,
            0x00, 0x01, 0x00, 0x00, 0x00,
        ];
        let probe = parse_connection_confirm(&tls[4..]).expect("parses");
        assert_eq!(probe.security(), "tls");
    }

    #[test]
    fn confirm_without_negotiation_block_is_legacy() {
        let cc = x224_packet(X224_CC, [0x12, 0x34], &[]);
        assert_eq!(cc.len(), 11);
        let probe = parse_connection_confirm(&cc[4..]).expect("parses");
        assert_eq!(probe.negotiation, RdpNegotiation::Legacy);
    }

    #[test]
    fn neg_failure_is_reported_as_refused() {
        let cc = x224_packet(
            X224_CC,
            [0, 0],
            &[TYPE_RDP_NEG_FAILURE, 0, 8, 0, 5, 0, 0, 0],
        );
        let probe = parse_connection_confirm(&cc[4..]).expect("parses");
        assert_eq!(probe.negotiation, RdpNegotiation::Failed { code: 5 });
        assert_eq!(probe.security(), "refused");
    }

    #[test]
    fn wrong_tpdu_code_is_not_rdp() {
        let cr = encode_connection_request("x", PROTOCOL_SSL);
        assert!(matches!(
            parse_connection_confirm(&cr[4..]),
            Err(RdpError::NotRdp(_))
        ));
    }

    #[tokio::test]
    async fn probe_of_a_non_rdp_server_fails() {
        let (mut client, mut server) = tokio::io::duplex(4096);
        tokio::spawn(async move {
            let _ = server.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await;
            let mut sink = Vec::new();
            let _ = server.read_to_end(&mut sink).await;
        });
        assert!(matches!(
            probe_rdp(&mut client).await,
            Err(RdpError::NotRdp(_))
        ));
    }

    #[tokio::test]
    async fn probe_of_a_closed_tunnel_says_closed() {
        let (mut client, server) = tokio::io::duplex(4096);
        drop(server);
        let err = probe_rdp(&mut client).await.expect_err("fails");
        // Writing into a dropped duplex is a broken pipe; reading is an EOF. Both mean closed.
        assert!(matches!(err, RdpError::Closed | RdpError::Io(_)), "{err:?}");
    }
}
