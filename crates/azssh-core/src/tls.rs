//! Which TLS servers we trust: the system's roots plus the PEM bundle named by `AZSSH_CA_BUNDLE`
//! (a corporate TLS-inspecting proxy, or a test endpoint with its own CA such as the emulator's
//! Bastion). One reader of the variable, shared by the ARM client and the Bastion data plane.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::error::{UserError, kind};

/// Extra trusted CA certificates (PEM), added to the system's roots, never replacing them.
pub const CA_BUNDLE_ENV: &str = "AZSSH_CA_BUNDLE";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the CA bundle `{}` (`AZSSH_CA_BUNDLE`): {reason}", .path.display())]
    Read { path: PathBuf, reason: String },
    #[error("the CA bundle `{}` (`AZSSH_CA_BUNDLE`) holds no PEM certificate", .path.display())]
    Empty { path: PathBuf },
    #[error("cannot set up TLS: {0}")]
    Setup(String),
}

impl UserError for TlsError {
    fn kind(&self) -> &'static str {
        kind::route::CA_BUNDLE
    }
    fn hint(&self) -> Option<String> {
        match self {
            TlsError::Read { .. } | TlsError::Empty { .. } => Some(
                "point `AZSSH_CA_BUNDLE` at a file of `-----BEGIN CERTIFICATE-----` blocks, or unset it"
                    .into(),
            ),
            TlsError::Setup(_) => None,
        }
    }
}

/// The extra CA certificates, from `AZSSH_CA_BUNDLE` (none when unset or empty).
pub fn extra_roots_from_env() -> Result<Vec<CertificateDer<'static>>, TlsError> {
    match std::env::var_os(CA_BUNDLE_ENV).filter(|v| !v.is_empty()) {
        Some(path) => read_bundle(Path::new(&path)),
        None => Ok(Vec::new()),
    }
}

/// The path of the bundle when one is configured.
pub fn bundle_path_from_env() -> Option<PathBuf> {
    std::env::var_os(CA_BUNDLE_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Every certificate of a PEM file; a file without one is an error (a typo'd path to a key
/// file must not silently trust nothing extra).
pub fn read_bundle(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = crate::local_file::read_text(path, crate::local_file::cap::CONFIG, "CA bundle")
        .map_err(|e| TlsError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let certs = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// A rustls client configuration verifying servers against the platform's roots plus `extra`
/// (the same verifier reqwest uses for ARM), with aws-lc-rs, the provider already in the tree.
pub fn client_config(
    extra: Vec<CertificateDer<'static>>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            .map_err(|e| TlsError::Setup(e.to_string()))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .dangerous() // not dangerous: the platform verifier checks chain, name and expiry
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "not a certificate\n").unwrap();
        let err = read_bundle(&p).unwrap_err();
        assert!(
            err.to_string().contains("holds no PEM certificate"),
            "{err}"
        );
        assert_eq!(err.kind(), "route.ca_bundle");
    }

    #[test]
    fn a_generated_ca_is_read() {
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, ca.cert.pem()).unwrap();
        assert_eq!(read_bundle(&p).unwrap().len(), 1);
        assert!(client_config(read_bundle(&p).unwrap()).is_ok());
    }
}
