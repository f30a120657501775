//! TLS checks, and the trust settings that HTTPS checks share: a chain to the system roots
//! (or to the CAs of a `ca_file`), a certificate for the host name, valid long enough.
//!
//! The handshake accepts any certificate and keeps it; the chain is then verified by rustls'
//! own WebPKI verifier, once at the current time and once at the time `min_days_valid` from
//! now. That gives precise reasons (expired on a date, issued for other names, unknown
//! issuer) rather than a failed handshake, and needs no X.509 parser of our own.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::net::TcpStream;

/// The one crypto provider ferry's TLS uses (the one reqwest and azure_core use too).
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The CAs a chain must lead to: those in `ca_file`, or the system's.
pub fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|error| format!("cannot read ca_file {}: {error}", path.display()))?
                .collect::<Result<_, _>>()
                .map_err(|error| format!("ca_file {} is not PEM: {error}", path.display()))?;
            if certificates.is_empty() {
                return Err(format!(
                    "ca_file {} holds no certificate: put the CA's PEM certificate in it",
                    path.display()
                ));
            }
            for certificate in certificates {
                roots.add(certificate).map_err(|error| {
                    format!(
                        "ca_file {} holds a bad certificate: {error}",
                        path.display()
                    )
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for certificate in found.certs {
                // A system store may hold a certificate rustls cannot use; the others still count.
                let _ = roots.add(certificate);
            }
            if roots.is_empty() {
                return Err(
                    "no system CA certificates were found: install ca-certificates, or set ca_file"
                        .to_owned(),
                );
            }
        }
    }
    Ok(roots)
}

/// A client configuration that trusts `roots`, for HTTPS checks.
pub fn client_config(roots: RootCertStore) -> Result<ClientConfig, String> {
    ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())
        .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
}

/// Accepts any certificate during the handshake and keeps the chain for later verification.
#[derive(Debug)]
struct KeepChain {
    provider: Arc<CryptoProvider>,
    chain: std::sync::Mutex<Vec<CertificateDer<'static>>>,
}

impl ServerCertVerifier for KeepChain {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(
            intermediates
                .iter()
                .map(|certificate| certificate.clone().into_owned()),
        );
        *self
            .chain
            .lock()
            .expect("never poisoned: no panics while held") = chain;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A certificate's time as a date for people: `2026-11-29` (ferry's one time format, its
/// date part).
pub fn format_date(time: UnixTime) -> String {
    ferry_core::time::format_date(ferry_core::time::from_unix_seconds(time.as_secs()))
}

/// A verification failure in words.
fn explain(error: &rustls::Error, host: &str, trusted: &str) -> String {
    match error {
        rustls::Error::InvalidCertificate(certificate) => match certificate {
            CertificateError::ExpiredContext { not_after, .. } => {
                format!("the certificate expired on {}", format_date(*not_after))
            }
            CertificateError::Expired => "the certificate has expired".to_owned(),
            CertificateError::NotValidYetContext { not_before, .. } => {
                format!(
                    "the certificate is not valid before {}",
                    format_date(*not_before)
                )
            }
            CertificateError::NotValidForNameContext { presented, .. } => format!(
                "the certificate is for {}, not {host}",
                if presented.is_empty() {
                    "no name".to_owned()
                } else {
                    // rustls renders each name as `DnsName("hub.example.org")`: keep the name.
                    presented
                        .iter()
                        .map(|name| name.split('"').nth(1).unwrap_or(name))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
            CertificateError::NotValidForName => format!("the certificate is not for {host}"),
            CertificateError::UnknownIssuer => {
                format!("the certificate's chain does not lead to {trusted}")
            }
            other => format!("the certificate is not valid: {other:?}"),
        },
        other => format!("the certificate is not valid: {other}"),
    }
}

/// Connects to `host:port`, and checks the certificate it serves for `host`.
pub async fn probe(
    host: &str,
    connect_to: Option<&str>,
    port: u16,
    ca_file: Option<&Path>,
    min_days_valid: u64,
) -> Result<String, String> {
    let trusted = match ca_file {
        Some(path) => format!("a CA in {}", path.display()),
        None => "a CA the system trusts".to_owned(),
    };
    let roots = Arc::new(roots(ca_file)?);
    let provider = crypto_provider();
    let server_name = ServerName::try_from(host.to_owned())
        .map_err(|_| format!("`{host}` is not a host name or IP address"))?;
    let keeper = Arc::new(KeepChain {
        provider: provider.clone(),
        chain: std::sync::Mutex::new(Vec::new()),
    });
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(keeper.clone())
        .with_no_client_auth();
    // The name is still what the certificate must match (and the SNI sent): only the
    // address connected to changes.
    let address = connect_to.unwrap_or(host);
    let stream = TcpStream::connect((address, port))
        .await
        .map_err(|error| format!("cannot connect to {address}:{port}: {error}"))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name.clone(), stream)
        .await
        .map_err(|error| format!("the TLS handshake with {host}:{port} failed: {error}"))?;
    let chain = keeper.chain.lock().expect("never poisoned").clone();
    let Some((end_entity, intermediates)) = chain.split_first() else {
        return Err(format!("{host}:{port} sent no certificate"));
    };
    let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider)
        .build()
        .map_err(|error| error.to_string())?;
    let now = SystemTime::now();
    let verify_at = |time: SystemTime| {
        let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        verifier.verify_server_cert(
            end_entity,
            intermediates,
            &server_name,
            &[],
            UnixTime::since_unix_epoch(since_epoch),
        )
    };
    verify_at(now).map_err(|error| explain(&error, host, &trusted))?;
    let horizon = now
        .checked_add(Duration::from_secs(min_days_valid.saturating_mul(86_400)))
        .unwrap_or(now);
    match verify_at(horizon) {
        Ok(_) => Ok(format!(
            "{host}:{port} serves a valid certificate, valid for at least {min_days_valid} more days"
        )),
        Err(rustls::Error::InvalidCertificate(CertificateError::ExpiredContext {
            not_after,
            ..
        })) => Err(format!(
            "the certificate expires on {}, within {min_days_valid} days (min_days_valid)",
            format_date(not_after)
        )),
        Err(error) => Err(explain(&error, host, &trusted)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_calendar_dates() {
        let date = |secs| format_date(UnixTime::since_unix_epoch(Duration::from_secs(secs)));
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(1_577_836_799), "2019-12-31");
        assert_eq!(date(4_102_444_800), "2100-01-01");
    }
}
