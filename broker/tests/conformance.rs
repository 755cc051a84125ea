//! One suite every engine must pass. Each test takes a fresh broker from a factory; the
//! NATS engine adds its own factory beside the memory one.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use switchyard_broker::memory::{MemoryBroker, MemoryConfig};
use switchyard_broker::{Broker, Control, LiveEvent, Publish};
use switchyard_protocol::{RoomName, UserId};

fn room(name: &str) -> RoomName {
    RoomName::parse(name).unwrap()
}

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

fn msg(room_name: &str, data: &str, id: Option<&str>) -> Publish {
    Publish {
        room: room(room_name),
        from: Arc::from("alice"),
        data: Bytes::copy_from_slice(data.as_bytes()),
        msg_id: id.map(str::to_owned),
        traceparent: None,
    }
}

async fn next_msg(feed: &mut switchyard_broker::LiveFeed) -> Arc<switchyard_broker::Message> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), feed.next())
            .await
            .expect("feed timed out")
        {
            Some(LiveEvent::Msg(m)) => return m,
            Some(_) => continue,
            None => panic!("feed ended"),
        }
    }
}

macro_rules! conformance {
    ($engine:ident, $factory:expr) => {
        mod $engine {
            use super::*;

            async fn broker() -> Arc<dyn Broker> {
                $factory
            }

            #[tokio::test]
            async fn seqs_grow_per_room_and_prev_links_them() {
                let b = broker().await;
                let a1 = b.publish(msg("a", "1", None)).await.unwrap();
                let b1 = b.publish(msg("b", "1", None)).await.unwrap();
                let a2 = b.publish(msg("a", "2", None)).await.unwrap();
                assert!(a1.seq < b1.seq && b1.seq < a2.seq);
                let h = b.history(&room("a"), 0, 10).await.unwrap();
                assert_eq!(h.head, a2.seq);
                assert!(h.recovered);
                let seqs: Vec<_> = h.messages.iter().map(|m| (m.seq, m.prev)).collect();
                assert_eq!(
                    seqs,
                    vec![(Some(a1.seq), Some(0)), (Some(a2.seq), Some(a1.seq))]
                );
                assert_eq!(&h.messages[1].data[..], b"2");
            }

            #[tokio::test]
            async fn history_since_and_limit() {
                let b = broker().await;
                let mut seqs = Vec::new();
                for i in 0..5 {
                    seqs.push(b.publish(msg("r", &i.to_string(), None)).await.unwrap().seq);
                }
                let h = b.history(&room("r"), seqs[1], 2).await.unwrap();
                assert_eq!(
                    h.messages
                        .iter()
                        .map(|m| m.seq.unwrap())
                        .collect::<Vec<_>>(),
                    &seqs[2..4]
                );
                assert!(h.recovered);
                let past_head = b.history(&room("r"), seqs[4] + 100, 10).await.unwrap();
                assert!(!past_head.recovered);
                assert!(past_head.messages.is_empty());
                let empty = b.history(&room("never"), 0, 10).await.unwrap();
                assert_eq!(
                    (empty.head, empty.recovered, empty.messages.len()),
                    (0, true, 0)
                );
            }

            #[tokio::test]
            async fn same_msg_id_is_stored_once() {
                let b = broker().await;
                let first = b.publish(msg("r", "1", Some("c1:7"))).await.unwrap();
                let again = b.publish(msg("r", "1", Some("c1:7"))).await.unwrap();
                assert!(!first.duplicate);
                assert!(again.duplicate);
                assert_eq!(first.seq, again.seq);
                let other = b.publish(msg("r", "1", Some("c1:8"))).await.unwrap();
                assert_ne!(other.seq, first.seq);
                assert_eq!(
                    b.history(&room("r"), 0, 10).await.unwrap().messages.len(),
                    2
                );
            }

            #[tokio::test]
            async fn live_feed_carries_stored_and_ephemeral_messages() {
                let b = broker().await;
                let mut feed = b.live(&room("live")).await.unwrap();
                let stored = b.publish(msg("live", "{\"a\":1}", None)).await.unwrap();
                b.publish_ephemeral(msg("live", "2", None)).await.unwrap();
                b.publish(msg("elsewhere", "3", None)).await.unwrap();
                let m = next_msg(&mut feed).await;
                assert_eq!((m.seq, &m.data[..]), (Some(stored.seq), &b"{\"a\":1}"[..]));
                let e = next_msg(&mut feed).await;
                assert_eq!((e.seq, &e.data[..]), (None, &b"2"[..]));
                let h = b.history(&room("live"), 0, 10).await.unwrap();
                assert_eq!(h.messages.len(), 1, "ephemeral messages are not stored");
            }

            #[tokio::test]
            async fn presence_counts_connections_and_emits_first_and_last() {
                let b = broker().await;
                let r = room("p");
                let mut feed = b.live(&r).await.unwrap();
                b.join(&r, &user("bob"), "c1").await.unwrap();
                b.join(&r, &user("bob"), "c2").await.unwrap();
                b.join(&r, &user("amy"), "c3").await.unwrap();
                let members = b.presence(&r).await.unwrap();
                let view: Vec<_> = members.iter().map(|m| (m.user.as_str(), m.conns)).collect();
                assert_eq!(view, vec![("amy", 1), ("bob", 2)]);
                b.leave(&r, &user("bob"), "c1").await.unwrap();
                b.leave(&r, &user("bob"), "c2").await.unwrap();
                let mut events = Vec::new();
                while events.len() < 3 {
                    match tokio::time::timeout(Duration::from_secs(5), feed.next())
                        .await
                        .unwrap()
                        .unwrap()
                    {
                        LiveEvent::Join { user, .. } => events.push(format!("join {user}")),
                        LiveEvent::Leave { user, .. } => events.push(format!("leave {user}")),
                        _ => {}
                    }
                }
                assert_eq!(events, ["join bob", "join amy", "leave bob"]);
                assert_eq!(b.presence(&r).await.unwrap().len(), 1);
            }

            #[tokio::test]
            async fn disconnect_reaches_control_feed_and_revokes() {
                let b = broker().await;
                let mut feed = b.control_feed().await.unwrap();
                let until = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
                    + 60;
                let event = Control::Disconnect {
                    user: user("eve"),
                    until: Some(until),
                };
                b.control(event.clone()).await.unwrap();
                let got = tokio::time::timeout(Duration::from_secs(5), feed.next())
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(got, event);
                assert_eq!(b.revoked_before(&user("eve")).await.unwrap(), Some(until));
                assert_eq!(b.revoked_before(&user("bob")).await.unwrap(), None);
            }
        }
    };
}

conformance!(memory, Arc::new(MemoryBroker::new(MemoryConfig::default())));

#[tokio::test]
async fn memory_history_is_bounded_and_says_when_it_lost_messages() {
    let b = MemoryBroker::new(MemoryConfig {
        history_size: 3,
        ..MemoryConfig::default()
    });
    let mut seqs = Vec::new();
    for i in 0..5 {
        seqs.push(b.publish(msg("r", &i.to_string(), None)).await.unwrap().seq);
    }
    let h = b.history(&room("r"), 0, 10).await.unwrap();
    assert_eq!(h.messages.len(), 3);
    assert!(!h.recovered, "messages 1 and 2 are gone");
    assert!(!b.history(&room("r"), seqs[0], 10).await.unwrap().recovered);
    let ok = b.history(&room("r"), seqs[1], 10).await.unwrap();
    assert!(ok.recovered, "everything after seq 2 is retained");
    assert_eq!(ok.messages.len(), 3);
}

#[tokio::test]
async fn memory_epochs_differ_between_instances() {
    let a = MemoryBroker::new(MemoryConfig::default());
    let b = MemoryBroker::new(MemoryConfig::default());
    assert_ne!(a.epoch(), b.epoch());
}
