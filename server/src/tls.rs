//! HTTPS with rustls (ring provider): the server certificate, and optional client-certificate
//! verification against a CA — what a webhook kubeconfig's `client-certificate` presents.
//!
//! Client certificates are *requested*, not required, at the TLS layer: a certificate that does
//! not chain to the CA fails the handshake, while a connection without one reaches HTTP, where the
//! auth policy answers 401 when a credential is required. That keeps `/healthz` and `/readyz`
//! usable by kubelet probes (which present no certificate) and lets tokens work beside mTLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::ServerError;

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Verify client certificates against this CA bundle (mTLS).
    pub client_ca: Option<PathBuf>,
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let bad = |reason: String| ServerError::Tls {
        path: path.to_path_buf(),
        reason,
    };
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// The rustls server configuration, ALPN h2 + http/1.1 (kube-apiserver uses either).
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| ServerError::Tls {
        path: files.key.clone(),
        reason: format!("no usable PEM private key: {e}"),
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::TlsConfig(e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certs(ca)? {
                roots.add(c).map_err(|e| ServerError::Tls {
                    path: ca.clone(),
                    reason: format!("not a usable CA certificate: {e}"),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| ServerError::Tls {
                    path: ca.clone(),
                    reason: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| ServerError::Tls {
            path: files.cert.clone(),
            reason: format!("certificate and key do not form a usable pair: {e}"),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Subject CN of a (verified) client certificate.
pub fn subject_cn(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}
