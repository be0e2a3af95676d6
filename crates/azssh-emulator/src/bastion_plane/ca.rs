//! The certificate authority the emulator generates at start (rcgen), and the server certificate
//! it issues for the bastion data plane: `127.0.0.1` (IP SAN) and `localhost`, the hosts of the
//! bastions' `dnsName` (`127.0.0.1:PORT`). The CA's PEM is written to a file that clients trust
//! through `AZSSH_CA_BUNDLE`, so the TLS they verify is real TLS, not a switched-off check.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// What went wrong building the CA or the TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot generate the emulator's certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot build the data plane's TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot write the CA bundle `{path}`: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// The CA and the server configuration of the data plane.
pub struct Authority {
    /// PEM of the CA certificate (what `AZSSH_CA_BUNDLE` names).
    pub ca_pem: String,
    pub ca_der: CertificateDer<'static>,
    pub bundle: PathBuf,
    pub server: Arc<rustls::ServerConfig>,
}

/// The crypto provider both ends use: aws-lc-rs, named explicitly so a build that also links
/// `ring` (through other crates) never has to guess a process default.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl Authority {
    /// Generates the CA and the server certificate; writes the CA's PEM to `dir/ca.pem`.
    pub fn generate(dir: &Path) -> Result<Authority, CaError> {
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "azssh emulator CA (not Azure)");
        ca.distinguished_name
            .push(DnType::OrganizationName, "azssh emulator");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;

        let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])?;
        leaf.distinguished_name
            .push(DnType::CommonName, "bastion.azssh-emulator");
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate()?;
        let leaf_cert = leaf.signed_by(&leaf_key, &ca)?;

        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![leaf_cert.der().clone(), ca.der().clone()], key)?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];

        let ca_pem = ca.pem();
        let bundle = dir.join("ca.pem");
        std::fs::write(&bundle, &ca_pem).map_err(|source| CaError::Write {
            path: bundle.display().to_string(),
            source,
        })?;
        Ok(Authority {
            ca_pem,
            ca_der: ca.der().clone(),
            bundle,
            server: Arc::new(server),
        })
    }

    /// A client configuration trusting only this CA (for tests and in-process clients).
    pub fn client_config(&self) -> Result<rustls::ClientConfig, CaError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone())?;
        Ok(rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}
