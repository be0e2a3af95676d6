//! One SSH connection to a guest: public-key auth against the guest's key files, exec, the
//! sftp subsystem, the cmd-style shell, and direct-tcpip forwarding to the emulated RDP port.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure};

use super::shell::run_shell;
use super::{ExecOutcome, GUEST_RDP_PORT, GuestAccess};
use crate::guest_sftp::GuestSftp;
use crate::rdp_server as rdp;

/// One client connection's state.
pub(super) struct GuestSession {
    guest: Arc<dyn GuestAccess>,
    /// Set once public-key authentication succeeds.
    user: Option<String>,
    /// Session channels waiting for their exec / subsystem / shell request.
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// Channels that asked for a terminal (the shell then echoes input).
    pty: HashSet<ChannelId>,
    /// Channels running the sftp subsystem.
    sftp: HashSet<ChannelId>,
}

impl GuestSession {
    pub(super) fn new(guest: Arc<dyn GuestAccess>) -> Self {
        GuestSession {
            guest,
            user: None,
            channels: HashMap::new(),
            pty: HashSet::new(),
            sftp: HashSet::new(),
        }
    }

    fn user(&self) -> String {
        self.user.clone().unwrap_or_default()
    }
}

fn is_rdp_target(host: &str, port: u32) -> bool {
    port == u32::from(GUEST_RDP_PORT)
        && matches!(
            host.to_ascii_lowercase().as_str(),
            "localhost" | "127.0.0.1" | "::1" | "[::1]"
        )
}

impl russh::server::Handler for GuestSession {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // Answering the probe truthfully lets `ssh` move on to its next key without signing.
        Ok(if self.guest.is_authorized(user, offer.public_key) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.guest.is_authorized(user, key.public_key) {
            self.user = Some(user.to_string());
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if !is_rdp_target(host_to_connect, port_to_connect) {
            // Nothing else listens inside the emulated guest; OpenSSH reports "connect failed".
            tracing::debug!(host_to_connect, port_to_connect, "forward refused");
            reply.reject(ChannelOpenFailure::ConnectFailed).await;
            return Ok(());
        }
        reply.accept().await;
        tokio::spawn(async move {
            // In-process: the RDP listener sits on the other end of a duplex pipe, not a port.
            let (mut near, far) = tokio::io::duplex(64 * 1024);
            tokio::spawn(async move {
                if let Err(e) = rdp::serve_rdp_connection(far).await {
                    tracing::debug!(error = %e, "emulated rdp connection ended");
                }
            });
            let mut stream = channel.into_stream();
            let _ = tokio::io::copy_bidirectional(&mut stream, &mut near).await;
        });
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.pty.insert(channel);
        session.channel_success(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _variable_name: &str,
        _variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Windows OpenSSH has no AcceptEnv by default: refuse, as it does.
        session.channel_failure(channel)
    }

    async fn exec_request(
        &mut self,
        channel_id: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(channel) = self.channels.remove(&channel_id) else {
            return session.channel_failure(channel_id);
        };
        session.channel_success(channel_id)?;
        let command = String::from_utf8_lossy(data).into_owned();
        tokio::spawn(run_exec(channel, self.guest.clone(), self.user(), command));
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel_id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let channel = match (name, self.channels.remove(&channel_id)) {
            ("sftp", Some(channel)) => channel,
            _ => return session.channel_failure(channel_id),
        };
        session.channel_success(channel_id)?;
        self.sftp.insert(channel_id);
        let sftp = GuestSftp::new(self.guest.sftp_root(), &self.user());
        russh_sftp::server::run(channel.into_stream(), sftp).await;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel_id: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(channel) = self.channels.remove(&channel_id) else {
            return session.channel_failure(channel_id);
        };
        session.channel_success(channel_id)?;
        let echo = self.pty.remove(&channel_id);
        tokio::spawn(run_shell(channel, self.guest.clone(), self.user(), echo));
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The client sends EOF once it has every reply it wants. OpenSSH's sshd then reports
        // sftp-server's exit status 0, and `scp` (which runs over SFTP since OpenSSH 9) fails
        // without it, so report it, as sshd does, and close.
        if self.sftp.remove(&channel) {
            session.exit_status_request(channel, 0)?;
            session.eof(channel)?;
            session.close(channel)?;
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        self.pty.remove(&channel);
        self.sftp.remove(&channel);
        Ok(())
    }
}

/// Runs the guest's command on the blocking pool; a panic in the guest model is exit code 1.
pub(super) async fn guest_exec(
    guest: Arc<dyn GuestAccess>,
    user: String,
    command: String,
) -> ExecOutcome {
    tokio::task::spawn_blocking(move || guest.exec(&user, &command))
        .await
        .unwrap_or_else(|_| ExecOutcome {
            stdout: Vec::new(),
            stderr: b"the emulated guest failed to run the command\r\n".to_vec(),
            exit_code: 1,
        })
}

/// An exec channel: stdout as data, stderr as extended data 1, then exit-status, EOF, close
/// (the order OpenSSH's sshd uses, so `ssh` exits with the command's code).
async fn run_exec(
    channel: Channel<Msg>,
    guest: Arc<dyn GuestAccess>,
    user: String,
    command: String,
) {
    // Only the program name: a command line may carry a password or token.
    let program = command.split_whitespace().next().unwrap_or_default();
    tracing::debug!(%user, program, "guest exec");
    let outcome = guest_exec(guest, user, command).await;
    let _ = channel.data(&outcome.stdout[..]).await;
    let _ = channel.extended_data(1, &outcome.stderr[..]).await;
    let _ = channel.exit_status(outcome.exit_code).await;
    let _ = channel.eof().await;
    let _ = channel.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdp_targets_are_loopback_3389_only() {
        assert!(is_rdp_target("localhost", 3389));
        assert!(is_rdp_target("LOCALHOST", 3389));
        assert!(is_rdp_target("127.0.0.1", 3389));
        assert!(!is_rdp_target("localhost", 22));
        assert!(!is_rdp_target("10.0.0.4", 3389));
    }
}
