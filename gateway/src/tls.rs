//! Public TLS: a rustls server config on the ring provider (TLS 1.2 and 1.3, ALPN
//! `http/1.1`) from PEM files or from values, and an accept bounded by a timeout.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read PEM from {path}: {source}")]
    Pem {
        key: &'static str,
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("tls.cert: {0} holds no certificate")]
    NoCertificate(PathBuf),
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Why a client's TLS handshake did not complete; the client's doing, so `debug!`.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS handshake timed out")]
    Timeout,
    #[error("TLS handshake failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads a PEM certificate chain (leaf first) and private key.
pub fn load_pem(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let pem_err = |key: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Pem { key, path, source }
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(pem_err("tls.cert", cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err("tls.cert", cert))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_path_buf()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(pem_err("tls.key", key))?;
    Ok((certs, private))
}

/// A server config for the public listener: ring provider, TLS 1.2 and 1.3, `http/1.1`.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// [`load_pem`] then [`server_config`].
pub fn load_server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let (certs, key) = load_pem(cert, key)?;
    server_config(certs, key)
}

/// Runs the server side of a TLS handshake, giving up after `timeout`.
pub async fn accept(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, HandshakeError> {
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(HandshakeError::Timeout),
    }
}
