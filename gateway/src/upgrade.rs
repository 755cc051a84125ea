//! The inbound side: one HTTP/1.1 service per client connection. Upgrades on `/ws` are
//! checked in the order of PROTOCOL §1 (400, 401, 429, 503), stripped of the token and
//! handed to a worker; `/healthz`, `/readyz`, the API of [`crate::api`] and, in dev
//! mode, the page of [`crate::demo`] share the listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use switchyard_protocol::identity::{IDENTITY_HEADER, IDENTITY_SIG_HEADER};
use switchyard_protocol::{ErrorCode, Identity, SUBPROTOCOL};
use switchyard_telemetry::trace;
use tracing::{Instrument as _, Span};

use crate::auth::extract_token;
use crate::config::is_segment;
use crate::error::{json_response, Rejection};
use crate::route::Target;
use crate::{api, demo, now_secs, splice, Shared};

/// How long a client told `no_worker` should wait before trying again.
pub const NO_WORKER_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(2);
/// Longest `traceparent` passed on; a W3C version 00 header is 55 bytes.
const MAX_TRACEPARENT_BYTES: usize = 128;

/// Answers one request of a client connection.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    client: SocketAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if path == "/ws" || path.starts_with("/ws/") {
        let answer = upgrade(&shared, client, req).await;
        let outcome = match &answer {
            Ok(response) => Ok(response.status() == StatusCode::SWITCHING_PROTOCOLS),
            Err(rejection) => Err(rejection.code),
        };
        shared.metrics.upgrade(outcome);
        Span::current().record(
            "upgrade.outcome",
            match outcome {
                Ok(true) => "ok",
                Ok(false) => "worker_refused",
                Err(code) => code.as_str(),
            },
        );
        return answer.unwrap_or_else(Rejection::into_response);
    }
    if path.starts_with("/api/") {
        return api::handle(&shared, req).await;
    }
    if let Some(demo) = shared.demo.as_ref().filter(|_| demo::is_demo_path(path)) {
        return demo::handle(demo, req).await;
    }
    match path {
        "/healthz" => json_response(StatusCode::OK, r#"{"status":"ok"}"#),
        "/readyz" if shared.ready() => json_response(StatusCode::OK, r#"{"status":"ready"}"#),
        "/readyz" => json_response(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"not ready"}"#),
        _ => Rejection::client(ErrorCode::NotFound, "no such path").into_response(),
    }
}

/// What a `/ws` path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsPath {
    pub worker: Option<String>,
    pub conn: Option<String>,
}

/// `/ws`, or `/ws/{worker}/{conn}` with two plain segments; anything else is `None`.
pub fn parse_path(path: &str) -> Option<WsPath> {
    if path == "/ws" {
        return Some(WsPath {
            worker: None,
            conn: None,
        });
    }
    let rest = path.strip_prefix("/ws/")?;
    let (worker, conn) = rest.split_once('/')?;
    (is_segment(worker) && is_segment(conn)).then(|| WsPath {
        worker: Some(worker.to_string()),
        conn: Some(conn.to_string()),
    })
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, wanted: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(wanted)))
    })
}

/// The subprotocols a client offered, in order.
fn offered_subprotocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// 400 checks: is this a WebSocket upgrade we can take at all?
fn check_upgrade(req: &Request<Incoming>) -> Result<WsPath, Rejection> {
    let bad = |message: &str| Err(Rejection::client(ErrorCode::BadRequest, message));
    let headers = req.headers();
    if req.method() != Method::GET || req.version() != Version::HTTP_11 {
        return bad("a WebSocket upgrade is an HTTP/1.1 GET");
    }
    if !has_token(headers, header::UPGRADE, "websocket")
        || !has_token(headers, header::CONNECTION, "upgrade")
    {
        return bad("not a WebSocket upgrade: needs Upgrade: websocket and Connection: upgrade");
    }
    let key_ok = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .is_some_and(|k| k.len() == 24);
    if !key_ok {
        return bad("missing or malformed Sec-WebSocket-Key");
    }
    let mut versions = headers.get_all(header::SEC_WEBSOCKET_VERSION).iter();
    if versions.next().map(HeaderValue::as_bytes) != Some(b"13") || versions.next().is_some() {
        return bad("Sec-WebSocket-Version must be 13");
    }
    let Some(path) = parse_path(req.uri().path()) else {
        return bad("bad path: use /ws or /ws/{worker}/{conn}");
    };
    let offered = offered_subprotocols(headers);
    if !offered.is_empty() && !offered.iter().any(|p| p == SUBPROTOCOL) {
        return bad("subprotocols offered without switchyard.v1");
    }
    Ok(path)
}

async fn upgrade(
    shared: &Shared,
    client: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Rejection> {
    // Every attempt counts against the client's rate, whatever its fate; the answer
    // still follows the order of PROTOCOL §1.
    let within_rate = shared.limiter.check(client.ip(), Instant::now());

    let path = check_upgrade(&req)?;
    // A client's own trace context is linked: the connection's trace is the gateway's.
    let client_traceparent = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= MAX_TRACEPARENT_BYTES);
    trace::link(&Span::current(), client_traceparent);
    let verified = async {
        let token = extract_token(req.headers(), req.uri().query())
            .ok_or(crate::auth::AuthError::Missing)?;
        let now = now_secs();
        let verified = shared.verifier.verify(&token, now)?;
        drop(token);
        if let Some(broker) = &shared.broker {
            shared
                .verifier
                .check_revoked(&verified, broker.as_ref(), now)
                .await?;
        }
        Ok::<_, Rejection>(verified)
    }
    .instrument(tracing::info_span!("authenticate"))
    .await?;
    Span::current().record("user.id", verified.user.as_str());

    if !within_rate {
        return Err(Rejection::client(
            ErrorCode::RateLimited,
            "too many upgrades from this address",
        ));
    }

    let target = tracing::info_span!("route", sticky = path.worker.is_some()).in_scope(|| {
        shared
            .router
            .choose(path.worker.as_deref(), None, Instant::now())
            .ok_or_else(no_worker)
    })?;

    let subprotocol = !offered_subprotocols(req.headers()).is_empty();
    let query = req.uri().query();
    let mut identity: Identity = verified.into_identity();
    identity.subprotocol = subprotocol;
    identity.resume_conn = path.conn;
    identity.resume_token = query.and_then(|q| query_param(q, "resume_token"));
    Span::current().record("worker.id", target.id());
    let handoff = tracing::info_span!(
        "handoff",
        worker.id = target.id(),
        remote = matches!(target, Target::Remote(_))
    );
    // The worker's session joins this trace (without traces, the client's goes on).
    identity.traceparent =
        trace::traceparent(&handoff).or_else(|| client_traceparent.map(str::to_string));
    strip_token(&mut req, subprotocol);

    async move {
        match target {
            Target::Local(worker) => Ok(worker.handoff(req, identity).await),
            Target::Remote(worker) => splice::splice(shared, req, worker, identity).await,
        }
    }
    .instrument(handoff)
    .await
}

pub(crate) fn no_worker() -> Rejection {
    Rejection::upstream(ErrorCode::NoWorker, "no healthy worker to route to")
        .retry_after(NO_WORKER_RETRY_AFTER)
}

/// Removes every trace of the token before the request leaves the gateway.
fn strip_token(req: &mut Request<Incoming>, subprotocol: bool) {
    let headers = req.headers_mut();
    headers.remove(header::AUTHORIZATION);
    // Only this gateway speaks for the identity; a client's own copy goes.
    headers.remove(IDENTITY_HEADER);
    headers.remove(IDENTITY_SIG_HEADER);
    headers.remove(header::SEC_WEBSOCKET_PROTOCOL);
    if subprotocol {
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    if let Some(query) = req.uri().query() {
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| !pair.is_empty() && pair.split('=').next() != Some("access_token"))
            .collect();
        let path_and_query = if kept.is_empty() {
            req.uri().path().to_string()
        } else {
            format!("{}?{}", req.uri().path(), kept.join("&"))
        };
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = path_and_query.parse().ok();
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}

/// The first value of `name` in a query string, percent-decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| percent_decode(value))
    })
}

/// Decodes `%XX` escapes (and `+` as a space); a malformed escape is kept as it is.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert!(parse_path("/ws").unwrap().worker.is_none());
        let sticky = parse_path("/ws/w1/c_9f").unwrap();
        assert_eq!(sticky.worker.as_deref(), Some("w1"));
        assert_eq!(sticky.conn.as_deref(), Some("c_9f"));
        for bad in [
            "/ws/",
            "/ws/w1",
            "/ws/w1/",
            "/ws/w1/c/x",
            "/ws/w 1/c",
            "/wsx",
        ] {
            assert!(parse_path(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn query_params_are_decoded() {
        assert_eq!(
            query_param("a=1&resume_token=x%2By&b", "resume_token").as_deref(),
            Some("x+y")
        );
        assert_eq!(query_param("b", "b").as_deref(), Some(""));
        assert_eq!(query_param("a=1", "b"), None);
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz%40"), "%zz@");
    }
}
