//! The outbound side: hand an upgrade to a remote worker and splice bytes both ways.
//!
//! The upgrade is forwarded over a fresh TCP connection with the verified identity in
//! signed headers (`sy-identity`, `sy-identity-sig`). With `[internal_tls]` that
//! connection is mTLS: the worker's certificate must chain to the internal CA and name
//! the host of its address, and the gateway presents its own. On the worker's `101`
//! the client gets its own `101` with the worker's accept key and subprotocol, and a
//! task copies bytes both ways ([`copy`]: no buffer while idle), keeping half-close.
//! After that the gateway never parses a frame.

mod copy;

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use switchyard_protocol::identity::{IDENTITY_HEADER, IDENTITY_SIG_HEADER};
use switchyard_protocol::Identity;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tracing::Instrument as _;

use crate::error::Rejection;
use crate::metrics::OpenGuard;
use crate::route::{ConnGuard, RemoteWorker};
use crate::upgrade::no_worker;
use crate::Shared;

/// Largest non-101 answer of a worker relayed to the client.
const MAX_RELAYED_BODY_BYTES: usize = 64 * 1024;

/// Why one attempt to reach a worker failed; the next worker may do better.
#[derive(Debug, thiserror::Error)]
enum Unreachable {
    #[error("connect timed out")]
    Timeout,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("{0:?} is not a name a worker certificate can hold")]
    ServerName(String),
}

/// Hands `req` to `first`, or once to another worker when `first` cannot be reached.
pub(crate) async fn splice(
    shared: &Shared,
    mut req: Request<Incoming>,
    first: Arc<RemoteWorker>,
    identity: Identity,
) -> Result<Response<Full<Bytes>>, Rejection> {
    let client_upgrade = hyper::upgrade::on(&mut req);
    let secret = shared
        .identity_secret
        .as_deref()
        .ok_or_else(|| Rejection::internal("remote worker without an identity secret"))?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let (payload, sig) = identity.sign(secret, now_ms);
    let forward = || -> Result<Request<Empty<Bytes>>, Rejection> {
        let mut out = Request::builder()
            .method(req.method().clone())
            .uri(req.uri().clone())
            .body(Empty::new())
            .map_err(|e| Rejection::internal(format!("cannot forward request: {e}")))?;
        *out.headers_mut() = req.headers().clone();
        let headers = out.headers_mut();
        let value =
            |v: &str| HeaderValue::from_str(v).map_err(|_| Rejection::internal("identity header"));
        headers.insert(IDENTITY_HEADER, value(&payload)?);
        headers.insert(IDENTITY_SIG_HEADER, value(&sig)?);
        Ok(out)
    };

    let mut worker = first;
    for attempt in 0..2 {
        let guard = worker.guard();
        match exchange(shared, &worker, forward()?).await {
            Ok(response) => {
                return answer(shared, response, client_upgrade, guard, worker.id()).await;
            }
            Err(e) => {
                tracing::warn!(worker.id = worker.id(), error = %e, "worker unreachable");
                worker.mark_down(Instant::now());
            }
        }
        if attempt == 1 {
            break;
        }
        match shared.router.choose_remote(worker.id(), Instant::now()) {
            Some(next) => worker = next,
            None => break,
        }
    }
    Err(no_worker())
}

/// Sends the upgrade to one worker and returns its answer.
async fn exchange(
    shared: &Shared,
    worker: &RemoteWorker,
    out: Request<Empty<Bytes>>,
) -> Result<Response<Incoming>, Unreachable> {
    let timeout = shared.connect_timeout;
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(worker.address()))
        .await
        .map_err(|_| Unreachable::Timeout)??;
    tcp.set_nodelay(true)?;
    match &shared.internal_tls {
        None => send(shared, tcp, out).await,
        Some(config) => {
            let name = server_name(worker.address())?;
            let connect = switchyard_tls::connect(config.clone(), name, tcp);
            let tls = tokio::time::timeout(timeout, connect)
                .await
                .map_err(|_| Unreachable::Timeout)?
                .map_err(Unreachable::Tls)?;
            send(shared, tls, out).await
        }
    }
}

/// The host part of `host:port` (IPv6 brackets removed), as the worker's certificate
/// must name it.
fn server_name(address: &str) -> Result<rustls_pki_types::ServerName<'static>, Unreachable> {
    let host = address
        .rsplit_once(':')
        .map_or(address, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    rustls_pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| Unreachable::ServerName(host.to_string()))
}

/// HTTP/1.1 over `io`: sends the upgrade and returns the worker's answer.
async fn send<I>(
    shared: &Shared,
    io: I,
    out: Request<Empty<Bytes>>,
) -> Result<Response<Incoming>, Unreachable>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeout = shared.connect_timeout;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let stop = shared.splice_stop.clone();
    shared.splices.spawn(
        async move {
            tokio::select! {
                result = conn.with_upgrades() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "worker connection ended");
                    }
                }
                _ = stop.cancelled() => {}
            }
        }
        .in_current_span(),
    );
    tokio::time::timeout(timeout, sender.send_request(out))
        .await
        .map_err(|_| Unreachable::Timeout)?
        .map_err(Unreachable::from)
}

/// Relays the worker's answer; on `101` starts the splice.
async fn answer(
    shared: &Shared,
    mut response: Response<Incoming>,
    client_upgrade: OnUpgrade,
    guard: ConnGuard,
    worker_id: &str,
) -> Result<Response<Full<Bytes>>, Rejection> {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (mut parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_RELAYED_BODY_BYTES)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        for hop in [
            header::CONNECTION,
            header::TRANSFER_ENCODING,
            header::CONTENT_LENGTH,
            header::UPGRADE,
        ] {
            parts.headers.remove(hop);
        }
        tracing::debug!(status = parts.status.as_u16(), "worker refused the upgrade");
        return Ok(Response::from_parts(parts, Full::new(body)));
    }

    let mut reply = Response::new(Full::default());
    *reply.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = reply.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    for name in [header::SEC_WEBSOCKET_ACCEPT, header::SEC_WEBSOCKET_PROTOCOL] {
        if let Some(value) = response.headers().get(&name) {
            headers.insert(name, value.clone());
        }
    }

    let worker_upgrade = hyper::upgrade::on(&mut response);
    let stop = shared.splice_stop.clone();
    let splices = shared.splices.clone();
    let span = tracing::debug_span!("splice", worker.id = %worker_id);
    let open = shared.metrics.open();
    shared.splices.spawn(
        async move {
            let (client, worker) = match tokio::try_join!(client_upgrade, worker_upgrade) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(error = %e, "upgrade did not complete");
                    return;
                }
            };
            let held = Held {
                _load: guard,
                _open: open,
                stop,
            };
            splices.spawn(
                copy_until_stopped(TokioIo::new(client), TokioIo::new(worker), held)
                    .in_current_span(),
            );
        }
        .instrument(span),
    );
    Ok(reply)
}

/// What a splice holds for its life besides its sockets: the worker's load and the open
/// count go down when it ends.
struct Held {
    _load: ConnGuard,
    _open: OpenGuard,
    stop: tokio_util::sync::CancellationToken,
}

/// A splice's own task, spawned once both upgrades are done: in the task that awaited
/// them, their futures' slots stayed beside the copy for the connection's life. Not an
/// `async fn` (which keeps its arguments beside what it moves them into), and no
/// `select!` (whose futures would hold references to what this holds already): the
/// task is 512 bytes a client instead of 640.
fn copy_until_stopped(
    client: TokioIo<Upgraded>,
    worker: TokioIo<Upgraded>,
    held: Held,
) -> impl Future<Output = ()> + Send {
    let mut splice = copy::Splice::new(client, worker);
    async move {
        let stopped = held.stop.cancelled();
        tokio::pin!(stopped);
        let ended = std::future::poll_fn(|cx| {
            if stopped.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            splice.poll_copy(cx).map(Some)
        })
        .await;
        match ended {
            Some(Ok((up, down))) => {
                tracing::debug!(bytes.up = up, bytes.down = down, "splice ended")
            }
            Some(Err(e)) => tracing::debug!(error = %e, "splice ended by a reset"),
            None => tracing::debug!("splice stopped by shutdown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_are_the_host_of_the_address() {
        let name = |a: &str| server_name(a).map(|n| n.to_str().into_owned()).ok();
        assert_eq!(
            name("w1.switchyard.svc:9101").as_deref(),
            Some("w1.switchyard.svc")
        );
        assert_eq!(name("127.0.0.1:9101").as_deref(), Some("127.0.0.1"));
        assert_eq!(name("[::1]:9101").as_deref(), Some("::1"));
        assert!(name("bad host:1").is_none());
    }
}
