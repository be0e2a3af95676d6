//! Remote Desktop through a tunnel: `rdp_probe` proves an RDP listener answers at a local port
//! (the X.224 exchange lives in `azssh_core::rdp::probe_rdp`; this only connects and times it),
//! and `launch_rdp` starts whichever RDP client this machine has.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rhai::{Dynamic, Map};

use super::error::SessionError;
use crate::rdp::{RdpNegotiation, probe_rdp};

/// An RDP listener answers the Connection Request at once; a tunnel whose far end is dead
/// accepts locally and then stays silent, so the probe needs its own deadline.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `host:port` and checks the X.224 Connection Confirm.
pub async fn probe(host: &str, port: u16) -> Result<Map, ProbeError> {
    let addr = format!("{host}:{port}");
    let started = std::time::Instant::now();
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.map_err(|e| {
            ProbeError::Session(SessionError::RdpUnreachable {
                addr: addr.clone(),
                reason: e.to_string().to_lowercase(),
            })
        })?;
        probe_rdp(&mut stream).await.map_err(ProbeError::Rdp)
    };
    let answer = tokio::time::timeout(PROBE_TIMEOUT, attempt)
        .await
        .map_err(|_| {
            ProbeError::Session(SessionError::RdpTimeout {
                addr: addr.clone(),
                seconds: PROBE_TIMEOUT.as_secs(),
            })
        })??;
    let mut m = Map::new();
    m.insert("address".into(), addr.clone().into());
    m.insert("security".into(), answer.security().into());
    let code = match answer.negotiation {
        RdpNegotiation::Failed { code } => Dynamic::from(i64::from(code)),
        _ => Dynamic::UNIT,
    };
    m.insert("failure_code".into(), code);
    m.insert(
        "duration_ms".into(),
        Dynamic::from(started.elapsed().as_millis() as i64),
    );
    Ok(m)
}

/// Either an address problem or an RDP protocol problem, each with its own kind.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Session(SessionError),
    #[error(transparent)]
    Rdp(crate::rdp::RdpError),
}

impl crate::error::UserError for ProbeError {
    fn kind(&self) -> &'static str {
        match self {
            ProbeError::Session(e) => e.kind(),
            ProbeError::Rdp(e) => e.kind(),
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            ProbeError::Session(e) => e.hint(),
            ProbeError::Rdp(e) => e.hint(),
        }
    }
}

/// The client to start for `address` (`127.0.0.1:PORT`) on this OS, if any: `mstsc` on
/// Windows, FreeRDP where installed, else macOS's `open rdp://` (Microsoft Remote Desktop or
/// Windows App registers the scheme).
pub fn rdp_client(address: &str, user: Option<&str>) -> Option<(String, Vec<String>)> {
    if cfg!(windows) {
        return Some(("mstsc".into(), vec![format!("/v:{address}")]));
    }
    for name in ["xfreerdp3", "xfreerdp", "sdl-freerdp"] {
        if let Some(path) = find_in_path(name, std::env::var_os("PATH").as_deref()) {
            let mut args = vec![format!("/v:{address}")];
            if let Some(u) = user {
                args.push(format!("/u:{u}"));
            }
            return Some((path.display().to_string(), args));
        }
    }
    if cfg!(target_os = "macos") {
        let uri = format!("rdp://full%20address=s:{address}");
        return Some(("open".into(), vec![uri]));
    }
    None
}

fn find_in_path(name: &str, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

/// Starts the client without waiting for it (the caller keeps the tunnel open meanwhile).
/// `Ok(None)` when this machine has none.
pub fn launch(address: &str, user: Option<&str>) -> Result<Option<String>, SessionError> {
    let Some((program, args)) = rdp_client(address, user) else {
        return Ok(None);
    };
    std::process::Command::new(&program)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .spawn()
        .map_err(|e| SessionError::Launch {
            client: program.clone(),
            reason: e.to_string().to_lowercase(),
        })?;
    tracing::debug!(%program, ?args, "started the RDP client");
    Ok(Some(program))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freerdp_is_found_on_path_and_gets_address_and_user() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("xfreerdp");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let found = find_in_path("xfreerdp", Some(dir.path().as_os_str()));
        assert_eq!(found, Some(bin));
        assert_eq!(find_in_path("mstsc", Some(dir.path().as_os_str())), None);
    }

    #[tokio::test]
    async fn probe_reads_the_confirm_of_an_rdp_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let _ = azssh_emulator::rdp_server::serve_rdp_connection(s).await;
        });
        let m = probe("127.0.0.1", port).await.unwrap();
        assert_eq!(m["security"].clone().into_string().unwrap(), "tls");
    }

    #[tokio::test]
    async fn probe_of_a_closed_port_says_unreachable() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = probe("127.0.0.1", port).await.unwrap_err();
        use crate::error::UserError;
        assert_eq!(err.kind(), "rdp.unreachable");
    }
}
