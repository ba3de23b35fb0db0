//! [`HttpsFetch`], the adapter of the [`Fetch`] port: reads a peer's files over HTTPS,
//! presenting this backend's client certificate, trusting only the peer's CA when one is given.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;

use super::{TlsError, certificates, read};
use crate::ports::{Fetch, FetchError};

/// Reads peers' feeds over HTTPS, presenting this backend's client certificate and trusting
/// only the peer's CA when one is configured.
pub struct HttpsFetch {
    client: reqwest::Client,
}

impl HttpsFetch {
    /// A client presenting the certificate and key of the PEM files `identity`, if given.
    pub fn new(
        identity: Option<(&Path, &Path)>,
        server_ca: Option<&Path>,
    ) -> Result<Self, TlsError> {
        let identity = identity
            .map(|(cert, key)| {
                let pem = [read(cert)?, read(key)?].concat();
                Ok::<_, TlsError>((pem, cert.display().to_string()))
            })
            .transpose()?;
        Self::with_identity_pem(
            identity
                .as_ref()
                .map(|(pem, name)| (pem.as_slice(), name.as_str())),
            server_ca,
        )
    }

    /// A client presenting the certificate and key in `identity` (PEM, both in one text, with
    /// a name for errors), if given: for a key that comes from a secret store, not a file.
    pub fn with_identity_pem(
        identity: Option<(&[u8], &str)>,
        server_ca: Option<&Path>,
    ) -> Result<Self, TlsError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120));
        if let Some(ca) = server_ca {
            builder = builder.tls_built_in_root_certs(false);
            for cert in certificates(ca)? {
                let cert = reqwest::Certificate::from_der(&cert)
                    .map_err(|e| TlsError::Config(e.to_string()))?;
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some((pem, name)) = identity {
            let identity =
                reqwest::Identity::from_pem(pem).map_err(|_| TlsError::Pem(name.to_string()))?;
            builder = builder.identity(identity);
        }
        Ok(Self {
            client: builder
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?,
        })
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
