//! Public TLS: a rustls server config on the ring provider (TLS 1.2 and 1.3, ALPN
//! `http/1.1`) from PEM files or from values, and an accept bounded by a timeout.
//!
//! Internal TLS (`[internal_tls]`): the client config the gateway dials workers with,
//! trusting only the internal CA and presenting the gateway's certificate (mTLS).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use switchyard_tls::TlsStream;
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read PEM from {path}: {source}")]
    Pem {
        key: &'static str,
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{key}: {path} holds no certificate")]
    NoCertificate { key: &'static str, path: PathBuf },
    #[error("internal_tls.ca: {0}")]
    InternalCa(String),
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
    load_pem_keyed(("tls.cert", cert), ("tls.key", key))
}

fn pem_err(
    key: &'static str,
    path: &Path,
) -> impl FnOnce(rustls_pki_types::pem::Error) -> TlsError {
    let path = path.to_path_buf();
    move |source| TlsError::Pem { key, path, source }
}

/// Every certificate of a PEM file; at least one.
fn certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_err(key, path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err(key, path))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            key,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// [`load_pem`] with the config keys its errors name.
fn load_pem_keyed(
    (cert_key, cert): (&'static str, &Path),
    (key_key, key): (&'static str, &Path),
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let certs = certificates(cert_key, cert)?;
    let private = PrivateKeyDer::from_pem_file(key).map_err(pem_err(key_key, key))?;
    Ok((certs, private))
}

/// The client config for hand-offs to workers (`[internal_tls]`): ring provider, TLS
/// 1.2 and 1.3, `http/1.1`; a worker's certificate must chain to `ca` and name the host
/// of its address, and the gateway presents `cert` (mTLS).
pub fn load_internal_client_config(
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for root in certificates("internal_tls.ca", ca)? {
        roots
            .add(root)
            .map_err(|e| TlsError::InternalCa(e.to_string()))?;
    }
    let (chain, private) = load_pem_keyed(("internal_tls.cert", cert), ("internal_tls.key", key))?;
    let mut config = ClientConfig::builder_with_provider(switchyard_tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, private)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A server config for the public listener: ring provider, TLS 1.2 and 1.3, `http/1.1`.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(switchyard_tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    switchyard_tls::issue_session_tickets(&mut config)?;
    Ok(Arc::new(config))
}

/// [`load_pem`] then [`server_config`].
pub fn load_server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let (certs, key) = load_pem(cert, key)?;
    server_config(certs, key)
}

/// Runs the server side of a TLS handshake, giving up after `timeout`. The stream holds
/// no TLS buffer while idle ([`switchyard_tls`]).
pub async fn accept(
    config: &Arc<ServerConfig>,
    stream: TcpStream,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, HandshakeError> {
    match tokio::time::timeout(timeout, switchyard_tls::accept(config.clone(), stream)).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(HandshakeError::Timeout),
    }
}
