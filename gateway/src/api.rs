//! The HTTP API for backends (PROTOCOL §6), on the public listener: publish, disconnect,
//! presence, history. Every call takes `Authorization: Bearer <api key>`, compared in
//! constant time.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use switchyard_broker::{Broker, BrokerError, Control, Publish};
use switchyard_protocol::frame::{minify_newlines, Member};
use switchyard_protocol::{ErrorCode, RoomName, UserId, SERVER_SENDER};
use switchyard_telemetry::trace;
use tracing::Instrument as _;

use crate::auth::bearer;
use crate::error::{json_response, Rejection};
use crate::upgrade::{percent_decode, query_param};
use crate::Shared;

/// Most messages one history call returns.
pub const MAX_HISTORY_LIMIT: usize = 1000;

/// The API key, compared in constant time. Its `Debug` hides it.
#[derive(Clone)]
pub struct ApiKey(Arc<[u8]>);

impl ApiKey {
    pub fn new(key: impl AsRef<[u8]>) -> ApiKey {
        ApiKey(Arc::from(key.as_ref()))
    }

    fn matches(&self, given: &[u8]) -> bool {
        // Length is not secret; contents are compared without early exit.
        self.0.len() == given.len()
            && self
                .0
                .iter()
                .zip(given)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(..)")
    }
}

pub(crate) async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    route(shared, req)
        .await
        .unwrap_or_else(Rejection::into_response)
}

async fn route(
    shared: &Shared,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Rejection> {
    authorize(shared, &req)?;
    let path = req.uri().path().to_string();
    let rest = path
        .strip_prefix("/api/v1/")
        .ok_or_else(|| Rejection::client(ErrorCode::NotFound, "no such API"))?;
    let method = req.method().clone();
    let known = matches!((&method, rest), (&Method::POST, "publish" | "disconnect"))
        || (method == Method::GET
            && (rest.starts_with("presence/") || rest.starts_with("history/")));
    if !known {
        return Err(Rejection::client(ErrorCode::NotFound, "no such API"));
    }
    let Some(broker) = shared.broker.clone() else {
        return Err(Rejection::upstream(
            ErrorCode::Unavailable,
            "the HTTP API needs the NATS engine when gateway and workers are separate processes",
        ));
    };
    match (method, rest) {
        (Method::POST, "publish") => publish(shared, broker.as_ref(), req).await,
        (Method::POST, _) => disconnect(shared, broker.as_ref(), req).await,
        (_, rest) => match rest.split_once('/') {
            Some(("presence", room)) => presence(broker.as_ref(), room).await,
            Some((_, room)) => history(broker.as_ref(), room, req.uri().query()).await,
            None => Err(Rejection::client(ErrorCode::NotFound, "no such API")),
        },
    }
}

fn authorize(shared: &Shared, req: &Request<Incoming>) -> Result<(), Rejection> {
    let Some(key) = &shared.api_key else {
        return Err(Rejection::client(
            ErrorCode::Unavailable,
            "the HTTP API is disabled: no API key is configured",
        ));
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .ok_or_else(|| Rejection::client(ErrorCode::MissingToken, "missing API key"))?;
    if !key.matches(given.as_bytes()) {
        return Err(Rejection::client(ErrorCode::InvalidToken, "wrong API key"));
    }
    Ok(())
}

async fn read_json<T: for<'de> Deserialize<'de>>(
    shared: &Shared,
    req: Request<Incoming>,
) -> Result<T, Rejection> {
    let too_large = || Rejection::client(ErrorCode::TooLarge, "request body too large");
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > shared.max_api_body_bytes) {
        return Err(too_large());
    }
    let body = Limited::new(req.into_body(), shared.max_api_body_bytes)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                too_large()
            } else {
                Rejection::client(ErrorCode::BadRequest, "cannot read request body")
            }
        })?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| {
        // Where, not what: serde's message can quote the body, and refusals are logged.
        Rejection::client(
            ErrorCode::BadRequest,
            format!(
                "malformed body: {:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ),
        )
    })
}

fn room(name: &str) -> Result<RoomName, Rejection> {
    RoomName::parse(name).map_err(|e| Rejection::client(ErrorCode::BadRoom, e.to_string()))
}

fn broker_error(e: BrokerError) -> Rejection {
    match e {
        BrokerError::Unavailable(m) => Rejection::upstream(ErrorCode::Unavailable, m),
        BrokerError::Rejected(m) => Rejection::client(ErrorCode::TooLarge, m),
        BrokerError::Internal(m) => Rejection::upstream(ErrorCode::Internal, m),
    }
}

fn ok_json(value: &impl Serialize) -> Result<Response<Full<Bytes>>, Rejection> {
    let body = serde_json::to_vec(value)
        .map_err(|e| Rejection::internal(format!("cannot encode answer: {e}")))?;
    Ok(json_response(StatusCode::OK, body))
}

#[derive(Deserialize)]
struct PublishBody {
    room: String,
    data: Box<RawValue>,
    #[serde(default)]
    ephemeral: bool,
}

#[derive(Serialize)]
struct Seq {
    seq: u64,
}

#[derive(Serialize)]
struct Empty {}

async fn publish(
    shared: &Shared,
    broker: &dyn Broker,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Rejection> {
    let traceparent = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| trace::parse_traceparent(v).is_some())
        .map(str::to_string);
    let body: PublishBody = read_json(shared, req).await?;
    let room = room(&body.room)?;
    // The message's trace: the backend's when it sent a traceparent, else this request's.
    let span = trace::span(|| {
        tracing::info_span!(
            "publish",
            room = %room,
            api = true,
            ephemeral = body.ephemeral,
            seq = tracing::field::Empty,
        )
    });
    trace::set_parent(&span, traceparent.as_deref());
    let msg = Publish {
        room,
        from: Arc::from(SERVER_SENDER),
        data: minify_newlines(body.data.get().as_bytes()),
        msg_id: None,
        traceparent: trace::traceparent(&span).or(traceparent),
    };
    if body.ephemeral {
        let sent = broker.publish_ephemeral(msg).instrument(span).await;
        shared.metrics.api_publish(sent.is_ok());
        sent.map_err(broker_error)?;
        return ok_json(&Empty {});
    }
    let stored = broker.publish(msg).instrument(span.clone()).await;
    shared.metrics.api_publish(stored.is_ok());
    let stored = stored.map_err(broker_error)?;
    span.record("seq", stored.seq as i64);
    ok_json(&Seq { seq: stored.seq })
}

#[derive(Deserialize)]
struct DisconnectBody {
    user: String,
    #[serde(default)]
    until: Option<u64>,
}

async fn disconnect(
    shared: &Shared,
    broker: &dyn Broker,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Rejection> {
    let body: DisconnectBody = read_json(shared, req).await?;
    let user = UserId::parse(&body.user)
        .map_err(|e| Rejection::client(ErrorCode::BadRequest, e.to_string()))?;
    broker
        .control(Control::Disconnect {
            user,
            until: body.until,
        })
        .await
        .map_err(broker_error)?;
    ok_json(&Empty {})
}

#[derive(Serialize)]
struct PresenceAnswer<'a> {
    room: &'a str,
    members: Vec<Member>,
}

async fn presence(broker: &dyn Broker, name: &str) -> Result<Response<Full<Bytes>>, Rejection> {
    let room = room(&percent_decode(name))?;
    let members = broker.presence(&room).await.map_err(broker_error)?;
    ok_json(&PresenceAnswer {
        room: room.as_str(),
        members,
    })
}

#[derive(Serialize)]
struct HistoryAnswer<'a> {
    room: &'a str,
    seq: u64,
    epoch: &'a str,
    recovered: bool,
    messages: Vec<HistoryMessage<'a>>,
}

#[derive(Serialize)]
struct HistoryMessage<'a> {
    seq: Option<u64>,
    from: &'a str,
    ts: u64,
    data: Box<RawValue>,
}

async fn history(
    broker: &dyn Broker,
    name: &str,
    query: Option<&str>,
) -> Result<Response<Full<Bytes>>, Rejection> {
    let room = room(&percent_decode(name))?;
    let number = |key: &str| -> Result<Option<u64>, Rejection> {
        query
            .and_then(|q| query_param(q, key))
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    Rejection::client(ErrorCode::BadRequest, format!("{key} must be a number"))
                })
            })
            .transpose()
    };
    let since = number("since")?.unwrap_or(0);
    let limit = number("limit")?
        .map(|l| usize::try_from(l).unwrap_or(usize::MAX))
        .unwrap_or(switchyard_protocol::limits::DEFAULT_HISTORY_LIMIT)
        .min(MAX_HISTORY_LIMIT);
    let page = broker
        .history(&room, since, limit)
        .await
        .map_err(broker_error)?;
    let mut messages = Vec::with_capacity(page.messages.len());
    for m in &page.messages {
        let text = String::from_utf8_lossy(&m.data).into_owned();
        match RawValue::from_string(text) {
            Ok(data) => messages.push(HistoryMessage {
                seq: m.seq,
                from: &m.from,
                ts: m.ts,
                data,
            }),
            Err(_) => tracing::warn!(seq = ?m.seq, "stored message is not JSON; left out"),
        }
    }
    ok_json(&HistoryAnswer {
        room: room.as_str(),
        seq: page.head,
        epoch: &page.epoch,
        recovered: page.recovered,
        messages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_comparison() {
        let key = ApiKey::new("s3cret");
        assert!(key.matches(b"s3cret"));
        assert!(!key.matches(b"s3cres"));
        assert!(!key.matches(b"s3cret!"));
        assert!(!key.matches(b""));
        assert_eq!(format!("{key:?}"), "ApiKey(..)");
    }
}
