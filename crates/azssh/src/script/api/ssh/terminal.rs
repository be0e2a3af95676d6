//! The questions `ssh()` puts on the terminal: trusting an unknown host key (`strict: "ask"`,
//! worded like OpenSSH) and reading a passphrase or password without echo. Questions go to
//! stderr through `output::status`; answers are read from stdin, only when it is a terminal.

use std::io::{BufRead, IsTerminal, Read};
use std::sync::Arc;

use crate::output;
use crate::secret::Secret;
use crate::ssh::auth::PromptSecret;
use crate::ssh::known_hosts::{AskHostKey, HostKeyQuestion};

/// Whether a person can answer: stdin is a terminal.
pub(super) fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// OpenSSH's question, answered by `yes`, `no`, or the fingerprint itself (which OpenSSH also
/// accepts, so a user can paste the one they were given out of band).
pub(super) fn ask_host_key() -> AskHostKey {
    Arc::new(|q: &HostKeyQuestion| {
        // The question owns the terminal until answered: no progress line drawn over it.
        let _hold = output::hold_progress();
        let host = crate::ssh::known_hosts::host_field(&q.host, q.port);
        output::status(&format!(
            "The authenticity of host '{host}' can't be established.\n{} key fingerprint is {}.\n",
            key_type_name(&q.algorithm),
            q.fingerprint
        ));
        loop {
            output::status("Are you sure you want to continue connecting (yes/no/[fingerprint])? ");
            let mut answer = String::new();
            match std::io::stdin().lock().read_line(&mut answer) {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
            match host_key_answer(answer.trim(), &q.fingerprint) {
                Some(trust) => return trust,
                None => output::status("Please type 'yes', 'no' or the fingerprint: "),
            }
        }
    })
}

/// The key type as OpenSSH names it in this question (`ED25519`, `RSA`, `ECDSA`).
fn key_type_name(algorithm: &str) -> String {
    let a = algorithm.to_ascii_lowercase();
    if a.contains("ed25519") {
        "ED25519".into()
    } else if a.contains("rsa") {
        "RSA".into()
    } else if a.contains("ecdsa") {
        "ECDSA".into()
    } else {
        algorithm.to_string()
    }
}

/// `Some(trust)` for an answer OpenSSH understands, `None` to ask again.
fn host_key_answer(answer: &str, fingerprint: &str) -> Option<bool> {
    match answer.to_ascii_lowercase().as_str() {
        "yes" => Some(true),
        "no" => Some(false),
        _ if answer == fingerprint => Some(true),
        _ => None,
    }
}

/// Reads a secret with echo off (raw mode), Enter to finish, Ctrl-C or Ctrl-D to decline.
pub(super) fn prompt_secret() -> PromptSecret {
    Arc::new(|question: &str| {
        let _hold = output::hold_progress();
        output::status(question);
        let secret = read_without_echo();
        output::status("\n");
        secret.map(Secret::new)
    })
}

fn read_without_echo() -> Option<String> {
    crossterm::terminal::enable_raw_mode().ok()?;
    let mut text = String::new();
    let mut bytes = Vec::new();
    let mut stdin = std::io::stdin().lock();
    let mut byte = [0u8; 1];
    let accepted = loop {
        match stdin.read(&mut byte) {
            Ok(1) => match byte[0] {
                b'\r' | b'\n' => break true,
                // Ctrl-C, Ctrl-D: the user declines.
                3 | 4 => break false,
                // Backspace / DEL: drop the last character, not the last byte.
                8 | 127 => {
                    if let Ok(s) = String::from_utf8(std::mem::take(&mut bytes)) {
                        text.push_str(&s);
                    }
                    text.pop();
                }
                b => {
                    bytes.push(b);
                    if let Ok(s) = std::str::from_utf8(&bytes) {
                        text.push_str(s);
                        bytes.clear();
                    }
                }
            },
            _ => break false,
        }
    };
    let _ = crossterm::terminal::disable_raw_mode();
    accepted.then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_key_answers_follow_openssh() {
        let fp = "SHA256:abc";
        assert_eq!(host_key_answer("yes", fp), Some(true));
        assert_eq!(host_key_answer("YES", fp), Some(true));
        assert_eq!(host_key_answer("no", fp), Some(false));
        assert_eq!(host_key_answer("SHA256:abc", fp), Some(true));
        assert_eq!(host_key_answer("y", fp), None);
        assert_eq!(host_key_answer("SHA256:abd", fp), None);
    }

    #[test]
    fn key_types_are_named_like_openssh() {
        assert_eq!(key_type_name("ssh-ed25519"), "ED25519");
        assert_eq!(key_type_name("rsa-sha2-512"), "RSA");
        assert_eq!(key_type_name("ecdsa-sha2-nistp256"), "ECDSA");
    }
}
