//! Signing in without `AZSSH_ACCESS_TOKEN`: a service principal (`AZURE_CLIENT_SECRET`) and a
//! workload identity (`AZURE_FEDERATED_TOKEN_FILE`) get their token from the authority named by
//! `AZURE_AUTHORITY_HOST`, here a local HTTPS identity endpoint (Entra's `/{tenant}/oauth2/v2.0/
//! token` answer) whose test CA is trusted through `SSL_CERT_FILE`, then `azssh vms` reaches the
//! emulator with that token. Needs the `openssl` command to make the certificates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use azssh_emulator::testing::Emu;

use crate::Test;
use crate::harness::{stderr_of, stdout_of};

/// A test CA and a certificate for 127.0.0.1 signed by it (PEM files in `dir`).
fn certificates(dir: &Path) -> bool {
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=azssh test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]) && run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]) && run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ])
}

/// An Entra-shaped token endpoint over TLS: records each request line and body, answers every
/// POST with `token`. Serves until the process ends (one thread, blocking).
fn identity_endpoint(dir: &Path, token: String) -> (String, Arc<Mutex<Vec<String>>>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_file(dir.join("leaf.pem")).unwrap()];
    let key = PrivateKeyDer::from_pem_file(dir.join("leaf.key")).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut tcp) = stream else { continue };
            let Ok(mut conn) = rustls::ServerConnection::new(config.clone()) else {
                continue;
            };
            let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then as many body bytes as Content-Length says.
            let complete = |r: &[u8]| {
                let text = String::from_utf8_lossy(r);
                let Some(end) = text.find("\r\n\r\n") else {
                    return false;
                };
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                r.len() >= end + 4 + length
            };
            while !complete(&request) {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&request).to_string();
            let line = text.lines().next().unwrap_or_default().to_string();
            let body = text
                .split("\r\n\r\n")
                .nth(1)
                .unwrap_or_default()
                .to_string();
            log.lock().unwrap().push(format!("{line}\n{body}"));
            let answer = format!(
                r#"{{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"{token}"}}"#
            );
            let _ = write!(
                tls,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
            let _ = tls.flush();
            conn.send_close_notify();
            let _ = conn.complete_io(&mut tcp);
        }
    });
    (url, seen)
}

struct Setup {
    emu: Emu,
    test: Test,
    authority: String,
    seen: Arc<Mutex<Vec<String>>>,
}

fn setup() -> Option<Setup> {
    let emu = Emu::builder().vms(3).guests(false).start_blocking();
    let test = Test::new();
    if !certificates(test.dir.path()) {
        eprintln!("SKIPPED: sign-in tests need the `openssl` command to make test certificates");
        return None;
    }
    let token = emu
        .env()
        .into_iter()
        .find(|(k, _)| k == "AZSSH_ACCESS_TOKEN")
        .map(|(_, v)| v)
        .unwrap();
    let (authority, seen) = identity_endpoint(test.dir.path(), token);
    Some(Setup {
        emu,
        test,
        authority,
        seen,
    })
}

/// `azssh vms -o json` with the emulator's endpoint and subscription but no ready token.
fn vms_signed_in(s: &Setup, vars: &[(&str, String)]) -> std::process::Output {
    let mut cmd = s.test.command();
    cmd.args(["vms", "-o", "json"]);
    for (k, v) in s.emu.env() {
        if k != "AZSSH_ACCESS_TOKEN" {
            cmd.env(k, v);
        }
    }
    cmd.env_remove("AZSSH_ACCESS_TOKEN")
        .env("AZURE_AUTHORITY_HOST", &s.authority)
        .env("SSL_CERT_FILE", s.test.path("ca.pem"))
        .env("AZURE_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47")
        .env("AZURE_CLIENT_ID", "00000000-1111-2222-3333-444444444444")
        // No Azure CLI, no IMDS: only the configured credential can answer.
        .env("PATH", "/usr/bin:/bin")
        .env("IDENTITY_ENDPOINT", "http://127.0.0.1:9/")
        .env("IDENTITY_HEADER", "unused");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn assert_listed(out: &std::process::Output) {
    let stdout = stdout_of(out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        stderr_of(out)
    );
    let vms: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(vms.as_array().map(Vec::len), Some(3), "{stdout}");
}

#[test]
fn service_principal_signs_in_at_the_authority_host_variable_names() {
    let Some(s) = setup() else { return };
    let out = vms_signed_in(
        &s,
        &[("AZURE_CLIENT_SECRET", "sp-secret-value-1234".to_string())],
    );
    assert_listed(&out);
    let seen = s.seen.lock().unwrap().clone();
    let request = seen
        .first()
        .expect("the token request reached the local authority");
    assert!(
        request.starts_with("POST /72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/token "),
        "{request}"
    );
    assert!(
        request.contains("client_secret=sp-secret-value-1234"),
        "{request}"
    );
    assert!(
        request.contains("grant_type=client_credentials"),
        "{request}"
    );
    // The secret is a credential azssh knows: it never reaches the output.
    assert!(!stderr_of(&out).contains("sp-secret-value-1234"));
}

#[test]
fn workload_identity_signs_in_with_the_federated_token_file() {
    let Some(s) = setup() else { return };
    let file = s.test.path("federated-token");
    std::fs::write(&file, "federated-assertion-jwt").unwrap();
    let out = vms_signed_in(
        &s,
        &[("AZURE_FEDERATED_TOKEN_FILE", file.display().to_string())],
    );
    assert_listed(&out);
    let seen = s.seen.lock().unwrap().clone();
    let request = seen
        .first()
        .expect("the token request reached the local authority");
    assert!(
        request.contains("client_assertion=federated-assertion-jwt"),
        "{request}"
    );
    assert!(
        request.contains(
            "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
        ),
        "{request}"
    );
}
