//! How the bytes of an SSH session reach the VM: straight over TCP, through an Azure Bastion
//! WebSocket tunnel, through a chain of jump hosts (`ProxyJump`), or a bastion followed by
//! jump hosts. `Session::connect` opens the session over whatever stream the route gives, so
//! host-key checking, authentication, exec, SFTP and forwarding work the same on every path.
//!
//! # Layout
//! - `jump` — `JumpHost`, `parse_jumps` (`[user@]host[:port][,next...]`).
//! - `bastion` — the Bastion data plane: token, WebSocket, relay, `BastionStream`.
//! - `private_net` — `AZSSH_PRIVATE_NET`, where private addresses are reached from here.
//! - `quick_ack` — `QuickAck`, the first hop's TCP stream, acknowledging data as it is read.
//! - `error` — `RouteError`.

pub mod bastion;
pub mod error;
pub mod jump;
pub mod private_net;
pub mod quick_ack;

use tokio::io::{AsyncRead, AsyncWrite};

pub use bastion::{ArmTokenFn, Bastion, BastionStream, BastionTarget};
pub use error::RouteError;
pub use jump::{JumpHost, format_jumps, parse_jumps};
pub use quick_ack::QuickAck;

/// A byte stream an SSH session can run over.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Any of the streams a route opens.
pub type BoxIo = Box<dyn Io>;

/// The path to a host. The default is direct TCP.
#[derive(Debug, Clone, Default)]
pub struct Route {
    /// The first hop: a bastion and what it connects to, which is the destination when there
    /// are no jump hosts, else the first jump host.
    pub bastion: Option<(Bastion, BastionTarget)>,
    /// Jump hosts in order, as `-J` lists them.
    pub jumps: Vec<JumpHost>,
}

impl Route {
    pub fn direct() -> Route {
        Route::default()
    }

    pub fn is_direct(&self) -> bool {
        self.bastion.is_none() && self.jumps.is_empty()
    }

    /// `direct`, `bastion`, `jump` or `bastion+jump`: what scripts and reports see.
    pub fn via(&self) -> &'static str {
        match (self.bastion.is_some(), self.jumps.is_empty()) {
            (false, true) => "direct",
            (true, true) => "bastion",
            (false, false) => "jump",
            (true, false) => "bastion+jump",
        }
    }

    /// e.g. `through bastion \`bst-1\``, `through jump host ops@10.0.0.5`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some((b, _)) = &self.bastion {
            parts.push(format!("bastion `{}`", b.name()));
        }
        if !self.jumps.is_empty() {
            let s = if self.jumps.len() == 1 { "" } else { "s" };
            parts.push(format!("jump host{s} `{}`", format_jumps(&self.jumps)));
        }
        if parts.is_empty() {
            "directly".to_string()
        } else {
            format!("through {}", parts.join(", then "))
        }
    }

    /// The route to the last jump host: everything before it.
    pub(crate) fn split_last(&self) -> Option<(Route, &JumpHost)> {
        let (last, before) = self.jumps.split_last()?;
        Some((
            Route {
                bastion: self.bastion.clone(),
                jumps: before.to_vec(),
            },
            last,
        ))
    }
}
