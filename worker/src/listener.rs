//! The internal listener: gateways in other processes hand upgrades over here, with the
//! identity they verified in signed headers (PROTOCOL §1, DESIGN "path of a connection").
//! A request without a valid signature is refused: only gateways may place clients.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use switchyard_protocol::identity::{IDENTITY_HEADER, IDENTITY_SIG_HEADER};
use switchyard_protocol::Identity;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::Worker;

/// Time a gateway has to send the upgrade request.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves hand-offs until `shutdown`.
pub async fn run(
    worker: Worker,
    listener: TcpListener,
    secret: Arc<[u8]>,
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
        let (worker, secret) = (worker.clone(), secret.clone());
        tracker.spawn(async move {
            let service = service_fn(move |req| {
                let response = handoff(&worker, &secret, req);
                async move { Ok::<_, Infallible>(response) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
            if let Err(err) = served {
                debug!(client.addr = %peer, error = %err, "hand-off connection ended");
            }
        });
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
