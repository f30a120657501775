//! The simulator's certificate authority, generated at start, and server certificates it signs.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::SimulatorError;

/// A CA that lives as long as the simulator; clients trust its PEM file.
pub struct CertificateAuthority {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertificateAuthority")
    }
}

impl CertificateAuthority {
    pub fn generate() -> Result<Self, SimulatorError> {
        let key = KeyPair::generate().map_err(tls_error)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls_error)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "ferry-sim test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let certificate = params.self_signed(&key).map_err(tls_error)?;
        Ok(CertificateAuthority {
            pem: certificate.pem(),
            params,
            key,
        })
    }

    /// The CA certificate, PEM-encoded.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A rustls server config with a certificate for `names` (host names or IP addresses).
    pub fn server_config(
        &self,
        names: &[String],
    ) -> Result<Arc<rustls::ServerConfig>, SimulatorError> {
        let key = KeyPair::generate().map_err(tls_error)?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(tls_error)?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        let issuer = Issuer::from_params(&self.params, &self.key);
        let certificate = params.signed_by(&key, &issuer).map_err(tls_error)?;
        let chain = vec![CertificateDer::from(certificate.der().to_vec())];
        let private_key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?
            .with_no_client_auth()
            .with_single_cert(chain, private_key)
            .map_err(tls_error)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

fn tls_error(error: impl std::fmt::Display) -> SimulatorError {
    SimulatorError::Tls(error.to_string())
}
