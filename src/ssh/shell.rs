//! Interactive shell: a PTY sized like the local terminal, the terminal in raw mode while the
//! shell runs (restored by a guard on every exit path, panics included), window-size changes
//! passed on.

use russh::{ChannelMsg, Pty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::connect::Session;
use super::error::SshError;

/// Puts the terminal in raw mode and takes it out again when dropped.
struct RawModeGuard;

impl RawModeGuard {
    fn enable() -> Result<RawModeGuard, SshError> {
        crossterm::terminal::enable_raw_mode()
            .map_err(|e| SshError::io("cannot put the terminal in raw mode", e))?;
        Ok(RawModeGuard)
    }
}

impl Drop for RawModeGuard {
    fn drop(&mut self) {
        if let Err(e) = crossterm::terminal::disable_raw_mode() {
            tracing::debug!("cannot restore the terminal: {e}");
        }
    }
}

fn terminal_size() -> (u32, u32) {
    crossterm::terminal::size()
        .map(|(c, r)| (u32::from(c), u32::from(r)))
        .unwrap_or((80, 24))
}

impl Session {
    /// Runs an interactive shell on the local terminal until it exits; returns its exit code.
    pub async fn shell(&self) -> Result<Option<u32>, SshError> {
        let channel = self.handle.channel_open_session().await?;
        let term = std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".to_string());
        let (cols, rows) = terminal_size();
        channel
            .request_pty(true, &term, cols, rows, 0, 0, &[(Pty::TTY_OP_END, 0)])
            .await?;
        channel.request_shell(true).await?;

        let _raw = RawModeGuard::enable()?;
        let (mut reader, writer) = channel.split();
        let mut stdin = tokio::io::stdin();
        let mut stdout = tokio::io::stdout();
        let mut input = vec![0u8; 4096];
        let mut stdin_open = true;
        let mut exit_code = None;
        #[cfg(unix)]
        let mut winch =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
                .map_err(|e| SshError::io("cannot watch the terminal size", e))?;

        loop {
            #[cfg(unix)]
            let resized = winch.recv();
            #[cfg(not(unix))]
            let resized = std::future::pending::<Option<()>>();
            tokio::select! {
                n = stdin.read(&mut input), if stdin_open => match n {
                    Ok(0) | Err(_) => {
                        stdin_open = false;
                        writer.eof().await?;
                    }
                    Ok(n) => writer.data_bytes(input[..n].to_vec()).await?,
                },
                _ = resized => {
                    let (cols, rows) = terminal_size();
                    writer.window_change(cols, rows, 0, 0).await?;
                }
                msg = reader.wait() => match msg {
                    Some(ChannelMsg::Data { data }) => write_out(&mut stdout, &data).await?,
                    Some(ChannelMsg::ExtendedData { data, .. }) => write_out(&mut stdout, &data).await?,
                    Some(ChannelMsg::ExitStatus { exit_status }) => exit_code = Some(exit_status),
                    Some(ChannelMsg::Close) | None => break,
                    Some(_) => {}
                },
            }
        }
        Ok(exit_code)
    }
}

async fn write_out(out: &mut tokio::io::Stdout, data: &[u8]) -> Result<(), SshError> {
    out.write_all(data)
        .await
        .map_err(|e| SshError::io("cannot write to the terminal", e))?;
    out.flush()
        .await
        .map_err(|e| SshError::io("cannot write to the terminal", e))
}
