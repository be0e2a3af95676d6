//! Running one command over an `exec` channel: stdout and stderr kept apart, exit status or
//! signal, optional streaming, a timeout; and `powershell`, which sends a script as
//! `-EncodedCommand` so it survives any Windows DefaultShell and any quoting.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use russh::ChannelMsg;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::connect::Session;
use super::error::SshError;

/// Where output goes as it arrives, besides being collected.
pub type StreamTo = Box<dyn AsyncWrite + Send + Unpin>;

#[derive(Default)]
pub struct ExecOptions {
    /// `None`: wait as long as the command runs.
    pub timeout: Option<Duration>,
    pub stdout_to: Option<StreamTo>,
    pub stderr_to: Option<StreamTo>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecResult {
    /// `None` when the command died of a signal or the server sent no status.
    pub exit_code: Option<u32>,
    /// e.g. `"KILL"`, when the command died of a signal.
    pub signal: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecResult {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// `powershell.exe -NoProfile -NonInteractive -EncodedCommand <base64 UTF-16LE>`. Windows
/// OpenSSH hands the command line to cmd.exe (or PowerShell if DefaultShell says so); base64
/// holds no character either shell interprets. cmd.exe caps a line at 8191 characters, so a
/// script of more than ≈ 3000 characters needs PowerShell as DefaultShell or SFTP.
pub fn powershell_command(script: &str) -> String {
    format!(
        "powershell.exe -NoProfile -NonInteractive -EncodedCommand {}",
        encode_powershell(script)
    )
}

/// Base64 of the script's UTF-16LE bytes: what `-EncodedCommand` expects.
pub fn encode_powershell(script: &str) -> String {
    let bytes: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
    BASE64.encode(bytes)
}

impl Session {
    /// Runs `command` and collects its output.
    pub async fn exec(&self, command: &str, opts: ExecOptions) -> Result<ExecResult, SshError> {
        run(self, command, opts).await
    }

    /// Runs a PowerShell script through `-EncodedCommand`.
    pub async fn powershell(
        &self,
        script: &str,
        opts: ExecOptions,
    ) -> Result<ExecResult, SshError> {
        self.exec(&powershell_command(script), opts).await
    }
}

async fn run(
    session: &Session,
    command: &str,
    mut opts: ExecOptions,
) -> Result<ExecResult, SshError> {
    let mut channel = session.handle.channel_open_session().await?;
    channel.exec(true, command).await?;
    let collect = async {
        let mut result = ExecResult::default();
        // Keep reading after `ExitStatus`: OpenSSH may send trailing data before EOF/close.
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    forward(&mut opts.stdout_to, &data).await?;
                    result.stdout.extend_from_slice(&data);
                }
                ChannelMsg::ExtendedData { data, ext: 1 } => {
                    forward(&mut opts.stderr_to, &data).await?;
                    result.stderr.extend_from_slice(&data);
                }
                ChannelMsg::ExitStatus { exit_status } => result.exit_code = Some(exit_status),
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    result.signal = Some(signal_name_of(&signal_name));
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        Ok::<_, SshError>(result)
    };
    let result = match opts.timeout {
        Some(after) => match tokio::time::timeout(after, collect).await {
            Ok(r) => r,
            Err(_) => {
                let _ = channel.close().await;
                return Err(SshError::ExecTimeout {
                    command: shorten(command),
                    after,
                });
            }
        },
        None => collect.await,
    }?;
    Ok(result)
}

/// The name as the protocol carries it (`KILL`, `TERM`); russh keeps its own private.
fn signal_name_of(sig: &russh::Sig) -> String {
    match sig {
        russh::Sig::Custom(name) => name.clone(),
        known => format!("{known:?}"),
    }
}

async fn forward(to: &mut Option<StreamTo>, data: &[u8]) -> Result<(), SshError> {
    if let Some(w) = to {
        w.write_all(data)
            .await
            .map_err(|e| SshError::io("cannot stream command output", e))?;
        w.flush()
            .await
            .map_err(|e| SshError::io("cannot stream command output", e))?;
    }
    Ok(())
}

/// Errors name the command, but an encoded PowerShell script is kilobytes of base64.
fn shorten(command: &str) -> String {
    if command.len() <= 80 {
        return command.to_string();
    }
    let cut = (0..=77)
        .rev()
        .find(|i| command.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{}...", &command[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_utf16le_like_powershell_does() {
        // `[Convert]::ToBase64String([Text.Encoding]::Unicode.GetBytes('dir'))`
        assert_eq!(encode_powershell("dir"), "ZABpAHIA");
        assert_eq!(encode_powershell("é"), "6QA=");
    }

    #[test]
    fn powershell_command_carries_no_shell_metacharacters() {
        let cmd = powershell_command("Write-Output 'a \"b\" & | > %PATH%'");
        let encoded = cmd.rsplit(' ').next().unwrap_or_default();
        assert!(
            encoded
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
        );
        assert!(cmd.starts_with("powershell.exe -NoProfile -NonInteractive -EncodedCommand "));
    }

    #[test]
    fn long_commands_are_shortened_in_errors() {
        let long = "x".repeat(500);
        assert_eq!(shorten(&long).len(), 80);
        assert_eq!(shorten("true"), "true");
    }
}
