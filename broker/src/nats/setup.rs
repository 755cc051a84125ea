//! Making the NATS side what the configuration says: the room stream with RePublish,
//! and one stream per KV bucket. A worker creates what is missing and refuses to start
//! when an existing one conflicts, naming each difference.
//!
//! KV buckets are created through their backing streams (`KV_<bucket>`): on nats-server
//! 2.9.10, async-nats' `create_key_value` fails to parse the account info reply, and the
//! explicit stream gives control over replicas and TTL anyway.

use std::time::Duration;

use async_nats::jetstream::stream::{self, DiscardPolicy, Republish, StorageType};
use async_nats::jetstream::{self, kv};

use super::config::{NatsConfig, Storage};
use super::subjects;
use crate::BrokerError;

pub(super) const PRESENCE_BUCKET: &str = "sy_presence";
pub(super) const REGISTRY_BUCKET: &str = "sy_workers";
pub(super) const REVOKED_BUCKET: &str = "sy_revoked";

pub(super) struct Buckets {
    pub(super) presence: kv::Store,
    pub(super) registry: kv::Store,
    pub(super) revoked: kv::Store,
}

fn storage(config: &NatsConfig) -> StorageType {
    match config.storage {
        Storage::File => StorageType::File,
        Storage::Memory => StorageType::Memory,
    }
}

pub(super) fn room_stream_config(config: &NatsConfig) -> stream::Config {
    stream::Config {
        name: config.stream.clone(),
        subjects: vec![subjects::STORED_WILDCARD.into()],
        max_messages_per_subject: config.max_msgs_per_subject,
        max_age: config.max_age,
        duplicate_window: config.duplicate_window,
        max_message_size: config.max_message_bytes,
        num_replicas: config.replicas,
        storage: storage(config),
        discard: DiscardPolicy::Old,
        allow_direct: true,
        republish: Some(Republish {
            source: subjects::STORED_WILDCARD.into(),
            destination: subjects::LIVE_WILDCARD.into(),
            headers_only: false,
        }),
        ..Default::default()
    }
}

fn bucket_config(config: &NatsConfig, bucket: &str, ttl: Duration) -> stream::Config {
    stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age: ttl,
        // Explicit, as the server would fill it in (2 minutes, at most the TTL): an
        // unset value would read back as a difference on the next start.
        duplicate_window: ttl.min(Duration::from_secs(120)),
        num_replicas: config.replicas,
        storage: storage(config),
        discard: DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        ..Default::default()
    }
}

/// Ensures the room stream and the buckets; returns the stream's creation time (the
/// store's epoch) and the opened buckets.
pub(super) async fn ensure(
    js: &jetstream::Context,
    config: &NatsConfig,
) -> Result<(stream::Stream, Buckets), BrokerError> {
    let deadline = tokio::time::Instant::now() + config.setup_timeout;
    let rooms = patiently(deadline, || ensure_stream(js, room_stream_config(config))).await?;
    for (bucket, ttl) in [
        (PRESENCE_BUCKET, config.presence_ttl),
        (REGISTRY_BUCKET, config.registry_ttl),
        (REVOKED_BUCKET, config.revocation_ttl),
    ] {
        patiently(deadline, || {
            ensure_stream(js, bucket_config(config, bucket, ttl))
        })
        .await?;
    }
    let open = |bucket: &'static str| {
        patiently(deadline, move || async move {
            js.get_key_value(bucket).await.map_err(|e| {
                BrokerError::Unavailable(format!("cannot open KV bucket {bucket}: {e}"))
            })
        })
    };
    let buckets = Buckets {
        presence: open(PRESENCE_BUCKET).await?,
        registry: open(REGISTRY_BUCKET).await?,
        revoked: open(REVOKED_BUCKET).await?,
    };
    Ok((rooms, buckets))
}

/// Retries what failed for a passing reason (a request timed out, a stream another
/// process just created has no leader yet: every pod of a fresh cluster starts at once)
/// until `deadline`. A conflict is not retried.
async fn patiently<T, F, Fut>(
    deadline: tokio::time::Instant,
    mut attempt: F,
) -> Result<T, BrokerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BrokerError>>,
{
    let mut pause = Duration::from_millis(200);
    loop {
        match attempt().await {
            Err(BrokerError::Unavailable(why))
                if tokio::time::Instant::now() + pause < deadline =>
            {
                tracing::warn!(error = %why, retry_in = ?pause, "NATS setup not possible yet, retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(3));
            }
            other => return other,
        }
    }
}

async fn ensure_stream(
    js: &jetstream::Context,
    want: stream::Config,
) -> Result<stream::Stream, BrokerError> {
    // Two workers starting together race to create it: the loser reads the winner's.
    for _ in 0..3 {
        match js.get_stream(&want.name).await {
            Ok(mut existing) => {
                let info = existing.info().await.map_err(|e| {
                    BrokerError::Unavailable(format!("cannot read stream {}: {e}", want.name))
                })?;
                let conflicts = differences(&info.config, &want);
                if !conflicts.is_empty() {
                    return Err(BrokerError::Rejected(format!(
                        "stream {} exists with other settings: {}. Change the configuration to match, or \
                         update or delete the stream (nats stream edit / rm {})",
                        want.name,
                        conflicts.join("; "),
                        want.name
                    )));
                }
                return Ok(existing);
            }
            Err(err)
                if matches!(
                    err.kind(),
                    jetstream::context::GetStreamErrorKind::JetStream(e)
                        if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                ) =>
            {
                match js.create_stream(want.clone()).await {
                    Ok(created) => return Ok(created),
                    Err(err) if err.to_string().contains("already in use") => continue,
                    Err(err) => {
                        return Err(BrokerError::Unavailable(format!(
                            "cannot create stream {}: {err}",
                            want.name
                        )));
                    }
                }
            }
            Err(err) => {
                return Err(BrokerError::Unavailable(format!(
                    "cannot read stream {}: {err}",
                    want.name
                )));
            }
        }
    }
    Err(BrokerError::Unavailable(format!(
        "stream {} keeps changing while being created",
        want.name
    )))
}

/// The settings that matter for correctness, compared one by one.
fn differences(have: &stream::Config, want: &stream::Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut cmp = |name: &str, have: String, want: String| {
        if have != want {
            out.push(format!("{name} is {have}, the configuration says {want}"));
        }
    };
    cmp(
        "subjects",
        format!("{:?}", have.subjects),
        format!("{:?}", want.subjects),
    );
    cmp(
        "replicas",
        have.num_replicas.to_string(),
        want.num_replicas.to_string(),
    );
    cmp(
        "max_msgs_per_subject",
        have.max_messages_per_subject.to_string(),
        want.max_messages_per_subject.to_string(),
    );
    cmp(
        "max_age",
        format!("{:?}", have.max_age),
        format!("{:?}", want.max_age),
    );
    cmp(
        "duplicate_window",
        format!("{:?}", have.duplicate_window),
        format!("{:?}", want.duplicate_window),
    );
    cmp(
        "storage",
        format!("{:?}", have.storage),
        format!("{:?}", want.storage),
    );
    cmp(
        "allow_direct",
        have.allow_direct.to_string(),
        want.allow_direct.to_string(),
    );
    cmp(
        "republish",
        format!(
            "{:?}",
            have.republish
                .as_ref()
                .map(|r| (&r.source, &r.destination, r.headers_only))
        ),
        format!(
            "{:?}",
            want.republish
                .as_ref()
                .map(|r| (&r.source, &r.destination, r.headers_only))
        ),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_each_setting() {
        let config = NatsConfig::default();
        let want = room_stream_config(&config);
        assert!(differences(&want, &want).is_empty());
        let have = stream::Config {
            max_age: Duration::from_secs(60),
            republish: None,
            ..want.clone()
        };
        let found = differences(&have, &want);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("max_age is 60s"));
        assert!(found[1].starts_with("republish is None"));
    }
}
