//! Adapters between crates that must not import each other.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use switchyard_gateway::{AuthError, LocalWorker, Verifier, WorkerLoad};
use switchyard_protocol::Identity;
use switchyard_worker::{TokenRejected, TokenVerifier, VerifiedToken, Worker};

/// A worker in the gateway's process: upgrades are handed over as hyper requests, with
/// no loopback hop and one socket per client.
pub struct InProcessWorker(pub Worker);

#[async_trait::async_trait]
impl LocalWorker for InProcessWorker {
    fn id(&self) -> &str {
        self.0.id()
    }

    fn load(&self) -> WorkerLoad {
        let load = self.0.load();
        WorkerLoad {
            conns: load.conns,
            capacity: load.capacity,
            draining: load.draining,
        }
    }

    async fn handoff(&self, req: Request<Incoming>, identity: Identity) -> Response<Full<Bytes>> {
        self.0.serve_upgrade(req, identity).map(|_| Full::default())
    }
}

/// The gateway's verifier, used by workers to check `refresh` tokens.
pub struct GatewayVerifier(pub Arc<Verifier>);

impl TokenVerifier for GatewayVerifier {
    fn verify(&self, token: &str) -> Result<VerifiedToken, TokenRejected> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        match self.0.verify(token, now) {
            Ok(verified) => Ok(verified),
            Err(AuthError::Expired) => Err(TokenRejected::Expired),
            Err(_) => Err(TokenRejected::Invalid),
        }
    }
}
