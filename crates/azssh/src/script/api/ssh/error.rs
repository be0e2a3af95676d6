//! `SessionError`: what the SSH bindings refuse before any packet is sent (no address to reach,
//! no terminal for a shell, a closed session or tunnel) and RDP client launch failures.

use crate::error::UserError;
use azssh_core::error::kind;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("VM `{vm}` has no {which} IP address")]
    NoAddress { vm: String, which: &'static str },

    #[error("`{what}` needs a terminal, and stdin or stdout is not one")]
    NotATerminal { what: &'static str },

    #[error("the ssh session `{session}` is closed")]
    SessionClosed { session: String },

    #[error("cannot reach the RDP port `{addr}`: {reason}")]
    RdpUnreachable { addr: String, reason: String },

    #[error("the RDP port `{addr}` did not answer within {seconds}s")]
    RdpTimeout { addr: String, seconds: u64 },

    #[error("cannot start the RDP client `{client}`: {reason}")]
    Launch { client: String, reason: String },
}

impl UserError for SessionError {
    fn kind(&self) -> &'static str {
        match self {
            SessionError::NoAddress { .. } => kind::ssh::NO_ADDRESS,
            SessionError::NotATerminal { .. } => kind::ssh::NOT_A_TERMINAL,
            SessionError::SessionClosed { .. } => kind::ssh::SESSION_CLOSED,
            SessionError::RdpUnreachable { .. } => kind::rdp::UNREACHABLE,
            SessionError::RdpTimeout { .. } => kind::rdp::TIMEOUT,
            SessionError::Launch { .. } => kind::rdp::LAUNCH,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            SessionError::NoAddress {
                which: "public", ..
            } => Some(
                "attach a public IP to the VM's NIC, connect from inside its virtual network with \
                 `prefer_private_ip: true` (`--prefer-private-ip`), or go through Azure Bastion"
                    .into(),
            ),
            SessionError::NoAddress { .. } => {
                Some("read the VM again with `v.refresh()`: its NIC may not be ready yet".into())
            }
            SessionError::NotATerminal { .. } => Some(
                "run it from an interactive terminal, or pass a command (`azssh connect ... -- \
                 hostname`, `s.exec(\"hostname\")`)"
                    .into(),
            ),
            SessionError::SessionClosed { .. } => Some("open a new one with `ssh(...)`".into()),
            SessionError::RdpUnreachable { .. } | SessionError::RdpTimeout { .. } => Some(
                "check the tunnel is open (`t.local_port`) and that Remote Desktop is enabled on \
                 the VM"
                    .into(),
            ),
            SessionError::Launch { .. } => {
                Some("connect your RDP client to the address printed above by hand".into())
            }
        }
    }
}
