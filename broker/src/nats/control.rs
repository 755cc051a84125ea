//! Mesh-wide control on NATS: disconnects on core subject `sy.control`, revocations in
//! KV `sy_revoked` (user → until) so that gateways refuse old tokens after restarts too.

use async_nats::jetstream::kv::Store;
use async_nats::Client;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use switchyard_protocol::UserId;

use super::{subjects, unavailable};
use crate::{BrokerError, Control, ControlFeed};

#[derive(Serialize, Deserialize)]
struct Wire {
    disconnect: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    until: Option<u64>,
}

pub(super) async fn send(
    client: &Client,
    revoked: &Store,
    event: &Control,
) -> Result<(), BrokerError> {
    let Control::Disconnect { user, until } = event;
    if let Some(until) = until {
        revoked
            .put(user.as_str(), until.to_string().into())
            .await
            .map_err(|e| unavailable("record the revocation", e))?;
    }
    let wire = Wire {
        disconnect: user.to_string(),
        until: *until,
    };
    // Plain data: serialization cannot fail.
    let payload = serde_json::to_vec(&wire).expect("control event serializes");
    client
        .publish(subjects::CONTROL, payload.into())
        .await
        .map_err(|e| unavailable("publish control", e))?;
    client
        .flush()
        .await
        .map_err(|e| unavailable("flush control", e))
}

pub(super) async fn feed(client: &Client) -> Result<ControlFeed, BrokerError> {
    let sub = client
        .subscribe(subjects::CONTROL)
        .await
        .map_err(|e| unavailable("subscribe to control", e))?;
    client.flush().await.map_err(|e| unavailable("flush", e))?;
    Ok(sub
        .filter_map(|msg| async move {
            let wire: Wire = serde_json::from_slice(&msg.payload).ok()?;
            let user = UserId::parse(&wire.disconnect).ok()?;
            Some(Control::Disconnect {
                user,
                until: wire.until,
            })
        })
        .boxed())
}

pub(super) async fn revoked_before(
    revoked: &Store,
    user: &UserId,
) -> Result<Option<u64>, BrokerError> {
    let value = revoked
        .get(user.as_str())
        .await
        .map_err(|e| unavailable("read revocations", e))?;
    let now = super::decode::now_ms() / 1000;
    Ok(value
        .and_then(|v| {
            std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
        })
        .filter(|until| *until > now))
}
