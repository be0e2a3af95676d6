//! `RouteError`: how reaching a VM through a jump host or an Azure Bastion can fail, told in
//! the words of the flags (`--jump`, `--bastion`) with what to do next.

use crate::error::{UserError, kind};

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("bad jump host `{spec}`: {reason}")]
    BadJump { spec: String, reason: String },

    #[error("the jump host `{hop}` refused to forward to `{target}`: {reason}")]
    JumpRefused {
        hop: String,
        target: String,
        reason: String,
    },

    #[error("no bastion named `{name}` in resource group `{resource_group}`")]
    BastionNotFound {
        name: String,
        resource_group: String,
    },

    #[error("bastion `{bastion}` cannot tunnel to `{target}`: {reason}")]
    BastionUnsupported {
        bastion: String,
        target: String,
        reason: String,
        hint: String,
    },

    #[error("bastion `{bastion}` refused the tunnel to `{target}` (HTTP {status}): {message}")]
    BastionRefused {
        bastion: String,
        target: String,
        status: u16,
        message: String,
    },

    #[error("cannot reach bastion `{bastion}` at `{host}`: {reason}")]
    BastionUnreachable {
        bastion: String,
        host: String,
        reason: String,
    },

    #[error("the bastion `{bastion}` connection to `{target}` dropped: {reason}")]
    BastionDropped {
        bastion: String,
        target: String,
        reason: String,
    },

    #[error(
        "VM `{vm}` has no public IP address, and no bastion that can tunnel serves its virtual network"
    )]
    NoRoute { vm: String },

    #[error("`{option}` {reason}")]
    Conflict { option: String, reason: String },
}

impl UserError for RouteError {
    fn kind(&self) -> &'static str {
        match self {
            RouteError::BadJump { .. } | RouteError::Conflict { .. } => kind::route::BAD_JUMP,
            RouteError::JumpRefused { .. } => kind::route::JUMP_REFUSED,
            RouteError::BastionNotFound { .. } => kind::route::BASTION_NOT_FOUND,
            RouteError::BastionUnsupported { .. } => kind::route::BASTION_UNSUPPORTED,
            RouteError::BastionRefused { .. } | RouteError::BastionUnreachable { .. } => {
                kind::route::BASTION_REFUSED
            }
            RouteError::BastionDropped { .. } => kind::route::BASTION_DROPPED,
            RouteError::NoRoute { .. } => kind::route::NO_ROUTE,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            RouteError::BadJump { .. } => Some(
                "write jump hosts as OpenSSH's ProxyJump does: `[user@]host[:port][,next...]`"
                    .into(),
            ),
            RouteError::JumpRefused { .. } => Some(
                "check that the jump host's sshd allows forwarding (`AllowTcpForwarding`) and can reach the VM"
                    .into(),
            ),
            RouteError::BastionNotFound { .. } => {
                Some("list bastions with `az network bastion list -o table`".into())
            }
            RouteError::BastionUnsupported { hint, .. } => Some(hint.clone()),
            RouteError::BastionRefused { message, .. }
                if message.to_ascii_lowercase().contains("tunneling is disabled") =>
            {
                Some("enable native client support: `az network bastion update --enable-tunneling true`".into())
            }
            RouteError::BastionRefused { status: 401 | 403, .. } => Some(
                "your Azure account needs Reader on the VM, its NIC and the bastion".into(),
            ),
            RouteError::BastionRefused { .. } => None,
            RouteError::BastionUnreachable { .. } => Some(
                "check the network path to the bastion; a TLS-inspecting proxy's CA goes in `AZSSH_CA_BUNDLE`"
                    .into(),
            ),
            RouteError::BastionDropped { .. } => Some(
                "the other connections of the tunnel go on; connect again (Bastion drops idle or reset streams)"
                    .into(),
            ),
            RouteError::NoRoute { .. } => Some(
                "reach it through a jump host (`--jump user@host`, `jump` in a script), name a bastion (`--bastion NAME`), or connect from inside its virtual network with `prefer_private_ip` (`--prefer-private-ip`)"
                    .into(),
            ),
            RouteError::Conflict { .. } => None,
        }
    }
}
