//! The internal listener: gateways in other processes hand upgrades over here, with the
//! identity they verified in signed headers (PROTOCOL §1, DESIGN "path of a connection").
//! A request without a valid signature is refused: only gateways may place clients.
//!
//! With `[worker.tls]` ([`run_tls`]) the listener speaks TLS and requires a client
//! certificate signed by `client_ca` (mTLS, DESIGN "Security"): a peer that is not a
//! gateway is refused in the handshake, before any HTTP, and the signed identity is
//! still checked after it (defence in depth). Without it ([`run`]), plain TCP.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use switchyard_protocol::identity::{IDENTITY_HEADER, IDENTITY_SIG_HEADER};
use switchyard_protocol::Identity;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::ListenerTls;
use crate::Worker;

/// Time a gateway has to send the upgrade request.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a gateway has to complete the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why `[worker.tls]` cannot be used; each names its key.
#[derive(Debug, thiserror::Error)]
pub enum ListenerTlsError {
    #[error("{key}: cannot read PEM from {path}: {source}")]
    Pem {
        key: &'static str,
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{key}: {path} holds no certificate")]
    NoCertificate { key: &'static str, path: PathBuf },
    #[error("worker.tls.client_ca: {0}")]
    ClientCa(String),
    #[error("worker.tls: {0}")]
    Rustls(#[from] rustls::Error),
}

fn certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ListenerTlsError> {
    let pem = |source| ListenerTlsError::Pem {
        key,
        path: path.to_path_buf(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if certs.is_empty() {
        return Err(ListenerTlsError::NoCertificate {
            key,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The listener's rustls config (ring provider, TLS 1.2 and 1.3, `http/1.1`): its own
/// certificate, and client certificates required and verified against `client_ca`.
pub fn tls_config(tls: &ListenerTls) -> Result<Arc<ServerConfig>, ListenerTlsError> {
    let chain = certificates("worker.tls.cert", &tls.cert)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|source| ListenerTlsError::Pem {
        key: "worker.tls.key",
        path: tls.key.clone(),
        source,
    })?;
    let mut roots = RootCertStore::empty();
    for ca in certificates("worker.tls.client_ca", &tls.client_ca)? {
        roots
            .add(ca)
            .map_err(|e| ListenerTlsError::ClientCa(e.to_string()))?;
    }
    let provider = switchyard_tls::provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| ListenerTlsError::ClientCa(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // The gateway keeps one client config per process, so its hand-offs resume and skip
    // both certificates (its own and the worker's).
    switchyard_tls::issue_session_tickets(&mut config)?;
    Ok(Arc::new(config))
}

/// Serves plain-TCP hand-offs until `shutdown`.
pub async fn run(
    worker: Worker,
    listener: TcpListener,
    secret: Arc<[u8]>,
    shutdown: CancellationToken,
) {
    serve(worker, listener, secret, None, shutdown).await
}

/// Serves hand-offs over mTLS ([`tls_config`]) until `shutdown`.
pub async fn run_tls(
    worker: Worker,
    listener: TcpListener,
    secret: Arc<[u8]>,
    tls: Arc<ServerConfig>,
    shutdown: CancellationToken,
) {
    serve(worker, listener, secret, Some(tls), shutdown).await
}

async fn serve(
    worker: Worker,
    listener: TcpListener,
    secret: Arc<[u8]>,
    tls: Option<Arc<ServerConfig>>,
    shutdown: CancellationToken,
) {
    let tracker = worker.shared.tracker.clone();
    let address = match (&worker.shared.config.advertise, listener.local_addr()) {
        (Some(advertise), _) => advertise.clone(),
        (None, Ok(local)) => local.to_string(),
        (None, Err(err)) => {
            warn!(error = %err, "cannot read the listener's address: not announcing");
            String::new()
        }
    };
    if !address.is_empty() {
        worker.advertise(address);
    }
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (worker, secret, tls) = (worker.clone(), secret.clone(), tls.clone());
        tracker.spawn(async move {
            match tls {
                None => http(worker, secret, stream, peer).await,
                Some(config) => {
                    if let Some(stream) = handshake(config, stream, peer).await {
                        http(worker, secret, stream, peer).await;
                    }
                }
            }
        });
    }
}

/// The TLS handshake, bounded by [`TLS_HANDSHAKE_TIMEOUT`]. A peer refused for its
/// certificate (none, or not signed by `client_ca`) is not a gateway: `warn!`. A reset,
/// EOF or timeout (a TCP health check) is `debug!`.
async fn handshake(
    config: Arc<ServerConfig>,
    stream: TcpStream,
    peer: std::net::SocketAddr,
) -> Option<switchyard_tls::TlsStream<TcpStream>> {
    match tokio::time::timeout(
        TLS_HANDSHAKE_TIMEOUT,
        switchyard_tls::accept(config, stream),
    )
    .await
    {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(err)) => {
            let refused = err
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
                .is_some_and(|e| {
                    matches!(
                        e,
                        rustls::Error::NoCertificatesPresented
                            | rustls::Error::InvalidCertificate(_)
                    )
                });
            if refused {
                warn!(client.addr = %peer, error = %err, "refused a hand-off that is not from a gateway (TLS client certificate)");
            } else {
                debug!(client.addr = %peer, error = %err, "hand-off TLS handshake failed");
            }
            None
        }
        Err(_) => {
            debug!(client.addr = %peer, "hand-off TLS handshake timed out");
            None
        }
    }
}

async fn http<I>(worker: Worker, secret: Arc<[u8]>, io: I, peer: std::net::SocketAddr)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let response = handoff(&worker, &secret, req);
        async move { Ok::<_, Infallible>(response) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await;
    if let Err(err) = served {
        debug!(client.addr = %peer, error = %err, "hand-off connection ended");
    }
}

fn handoff(worker: &Worker, secret: &[u8], req: Request<Incoming>) -> Response<Empty<Bytes>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (Some(payload), Some(sig)) = (header(IDENTITY_HEADER), header(IDENTITY_SIG_HEADER)) else {
        return status(StatusCode::FORBIDDEN);
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    match Identity::verify(&payload, &sig, secret, now_ms) {
        Ok(identity) => worker.serve_upgrade(req, identity),
        Err(err) => {
            warn!(error = %err, "refused a hand-off that is not from a gateway");
            status(StatusCode::FORBIDDEN)
        }
    }
}

fn status(code: StatusCode) -> Response<Empty<Bytes>> {
    let mut response = Response::new(Empty::new());
    *response.status_mut() = code;
    response
}
