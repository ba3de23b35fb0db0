//! [`HttpsFetch`], the adapter of the [`Fetch`] port: reads a peer's files over HTTPS,
//! presenting this backend's client certificate, trusting only the peer's CA (or pinning its
//! certificate) when one is given, and otherwise the system's root certificates (a peer or a
//! health authority's key set behind a public CDN). It follows no redirect and refuses
//! `http://` unless the peer's settings allow it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{TlsError, provider, read};
use crate::domain::digest::sha256;
use crate::ports::{Fetch, FetchError};

/// A TLS identity: the certificate chain and the private key, PEM.
pub type IdentityPem = (Vec<u8>, Vec<u8>);

/// How this backend reaches one peer: its TLS identity, what it trusts, and whether plain
/// HTTP is allowed.
#[derive(Clone, Debug, Default)]
pub struct PeerTls {
    /// This backend's client certificate chain and private key, PEM, presented to the peer.
    pub identity_pem: Option<IdentityPem>,
    /// Trust anchors (PEM certificates) for the peer's server certificate; without them (and
    /// without a pin), the system's root certificates.
    pub server_ca_pem: Option<Vec<u8>>,
    /// The SHA-256 of the peer's server certificate (DER), pinned: that certificate and no
    /// other is accepted, whoever issued it.
    pub server_cert_sha256: Option<[u8; 32]>,
    /// Allows `http://` URLs (a test, a closed network); otherwise only `https://` is fetched.
    pub insecure_http: bool,
}

impl PeerTls {
    /// The identity and CA read from PEM files.
    pub fn from_files(
        identity: Option<(&Path, &Path)>,
        server_ca: Option<&Path>,
    ) -> Result<Self, TlsError> {
        Ok(Self {
            identity_pem: match identity {
                Some((cert, key)) => Some((read(cert)?, read(key)?)),
                None => None,
            },
            server_ca_pem: server_ca.map(read).transpose()?,
            ..Self::default()
        })
    }
}

/// Reads peers' feeds over HTTPS, presenting this backend's client certificate and trusting
/// only the peer's CA (or pinned certificate).
pub struct HttpsFetch {
    client: reqwest::Client,
}

impl HttpsFetch {
    /// A client over HTTPS only, with the identity and CA of these PEM files.
    pub fn new(
        identity: Option<(&Path, &Path)>,
        server_ca: Option<&Path>,
    ) -> Result<Self, TlsError> {
        Self::with(&PeerTls::from_files(identity, server_ca)?)
    }

    /// A client with these settings.
    pub fn with(settings: &PeerTls) -> Result<Self, TlsError> {
        let provider = provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match (settings.server_cert_sha256, &settings.server_ca_pem) {
            (Some(sha256), _) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedCertificate { sha256, provider })),
            (None, Some(ca)) => {
                let mut roots = RootCertStore::empty();
                for cert in certificates_of(ca)? {
                    roots
                        .add(cert)
                        .map_err(|e| TlsError::Config(e.to_string()))?;
                }
                builder.with_root_certificates(roots)
            }
            (None, None) => builder.with_root_certificates(system_roots()?),
        };
        let tls = match &settings.identity_pem {
            Some((cert, key)) => {
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|_| TlsError::Pem("the client key".into()))?;
                builder
                    .with_client_auth_cert(certificates_of(cert)?, key)
                    .map_err(|e| TlsError::Config(e.to_string()))?
            }
            None => builder.with_no_client_auth(),
        };
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .https_only(!settings.insecure_http)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(Self { client })
    }
}

/// The operating system's trusted root certificates (unreadable ones are skipped, none at all
/// is an error).
fn system_roots() -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(TlsError::Config(format!(
            "no system root certificate found ({} errors)",
            found.errors.len()
        )));
    }
    Ok(roots)
}

fn certificates_of(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsError::Pem("a certificate".into()))?;
    if certs.is_empty() {
        return Err(TlsError::Pem("a certificate".into()));
    }
    Ok(certs)
}

/// Accepts exactly one server certificate, by its SHA-256, and checks that the server holds
/// its key.
#[derive(Debug)]
struct PinnedCertificate {
    sha256: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if sha256(&[end_entity.as_ref()]) == self.sha256 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[async_trait]
impl Fetch for HttpsFetch {
    async fn get(&self, url: &str, max_bytes: usize) -> Result<Vec<u8>, FetchError> {
        let transport = |e: reqwest::Error| FetchError::Transport {
            url: url.to_string(),
            reason: error_chain(&e),
        };
        let too_large = || FetchError::TooLarge {
            url: url.to_string(),
            limit: max_bytes,
        };
        let mut response = self.client.get(url).send().await.map_err(transport)?;
        if !response.status().is_success() {
            return Err(FetchError::Status {
                url: url.to_string(),
                status: response.status().as_u16(),
            });
        }
        if response
            .content_length()
            .is_some_and(|n| n > max_bytes as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// An error with its causes, which is where TLS failures explain themselves.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_ca_the_system_roots_are_trusted() {
        // The machine's CA bundle (ca-certificates) holds the public web's roots.
        assert!(system_roots().unwrap().len() > 10);
        assert!(HttpsFetch::with(&PeerTls::default()).is_ok());
    }
}
