//! A minimal interactive `cmd.exe` for `ssh user@vm` without a command.

use std::sync::Arc;

use russh::server::Msg;
use russh::{Channel, ChannelMsg};

use super::GuestAccess;
use super::session::guest_exec;

/// The `cmd.exe` banner Windows Server 2022 prints at the start of an interactive session.
const CMD_BANNER: &str = "Microsoft Windows [Version 10.0.20348.2655]\r\n(c) Microsoft Corporation. All rights reserved.\r\n\r\n";

/// A minimal interactive `cmd.exe`: a prompt, line editing (backspace, Ctrl-C, Ctrl-D), and each
/// line run through [`GuestAccess::exec`]. With a pty the server echoes input, as a terminal
/// expects; without one (`ssh -T`, piped input) it only reads lines.
pub(super) async fn run_shell(
    mut channel: Channel<Msg>,
    guest: Arc<dyn GuestAccess>,
    user: String,
    echo: bool,
) {
    let prompt = format!("C:\\Users\\{user}>");
    let _ = channel.data_bytes(format!("{CMD_BANNER}{prompt}")).await;
    let mut line: Vec<u8> = Vec::new();
    let mut exit_code = 0;
    'session: while let Some(msg) = channel.wait().await {
        let data = match msg {
            ChannelMsg::Data { data } => data,
            ChannelMsg::Eof | ChannelMsg::Close => break,
            _ => continue,
        };
        for &byte in data.iter() {
            let mut out: Vec<u8> = Vec::new();
            match byte {
                b'\r' | b'\n' => {
                    // A terminal sends CR, a pipe LF, Windows text CR LF: one line each way.
                    if byte == b'\n' && echo {
                        continue;
                    }
                    if echo {
                        out.extend_from_slice(b"\r\n");
                    }
                    let command = String::from_utf8_lossy(&line).trim().to_string();
                    line.clear();
                    if command.eq_ignore_ascii_case("exit") {
                        let _ = channel.data(&out[..]).await;
                        break 'session;
                    }
                    if let Some(code) = command
                        .strip_prefix("exit ")
                        .and_then(|c| c.trim().parse().ok())
                    {
                        exit_code = code;
                        let _ = channel.data(&out[..]).await;
                        break 'session;
                    }
                    if !command.is_empty() {
                        let _ = channel.data(&out[..]).await;
                        out.clear();
                        let outcome = guest_exec(guest.clone(), user.clone(), command).await;
                        exit_code = outcome.exit_code;
                        let _ = channel.data(&outcome.stdout[..]).await;
                        let _ = channel.extended_data(1, &outcome.stderr[..]).await;
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(prompt.as_bytes());
                }
                0x7f | 0x08 => {
                    if line.pop().is_some() && echo {
                        out.extend_from_slice(b"\x08 \x08");
                    }
                }
                0x03 => {
                    line.clear();
                    out.extend_from_slice(b"^C\r\n");
                    out.extend_from_slice(prompt.as_bytes());
                }
                0x04 if line.is_empty() => break 'session,
                byte => {
                    line.push(byte);
                    if echo {
                        out.push(byte);
                    }
                }
            }
            if !out.is_empty() {
                let _ = channel.data(&out[..]).await;
            }
        }
    }
    let _ = channel.exit_status(exit_code).await;
    let _ = channel.eof().await;
    let _ = channel.close().await;
}
