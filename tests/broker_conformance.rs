//! One suite every broker engine must pass: the memory engine, and the NATS engine on a
//! real nats-server started for each test. Each test takes a fresh broker from a factory
//! that also returns what keeps its server alive.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use switchyard_broker::memory::{MemoryBroker, MemoryConfig};
use switchyard_broker::nats::{NatsBroker, NatsConfig};
use switchyard_broker::{
    Broker, Control, LiveEvent, LiveFeed, Message, Publish, RegistryEvent, RegistryFeed, WorkerInfo,
};
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

const WAIT: Duration = Duration::from_secs(5);

async fn next_msg(feed: &mut LiveFeed) -> Arc<Message> {
    loop {
        match tokio::time::timeout(WAIT, feed.next())
            .await
            .expect("feed timed out")
        {
            Some(LiveEvent::Msg(m)) => return m,
            Some(_) => continue,
            None => panic!("feed ended"),
        }
    }
}

async fn next_registry(feed: &mut RegistryFeed) -> RegistryEvent {
    tokio::time::timeout(WAIT, feed.next())
        .await
        .expect("registry event in time")
        .expect("feed open")
}

fn seqs(messages: &[Arc<Message>]) -> Vec<u64> {
    messages.iter().map(|m| m.seq.unwrap()).collect()
}

macro_rules! conformance {
    ($engine:ident, $factory:expr) => {
        mod $engine {
            use super::*;

            async fn broker() -> (Arc<dyn Broker>, Box<dyn std::any::Any>) {
                $factory
            }

            #[tokio::test]
            async fn seqs_grow_per_room_and_the_live_feed_links_them() {
                let (b, _server) = broker().await;
                let mut feed = b.live(&room("a")).await.unwrap();
                let a1 = b.publish(msg("a", "1", None)).await.unwrap();
                let b1 = b.publish(msg("b", "1", None)).await.unwrap();
                let a2 = b.publish(msg("a", "2", None)).await.unwrap();
                assert!(a1.seq < b1.seq && b1.seq < a2.seq);
                let h = b.history(&room("a"), 0, 10).await.unwrap();
                assert_eq!(h.head, a2.seq);
                assert_eq!(seqs(&h.messages), [a1.seq, a2.seq]);
                assert_eq!(&h.messages[1].data[..], b"2");
                assert_eq!(&*h.messages[1].from, "alice");
                assert_eq!((h.more, h.scanned), (false, a2.seq));
                let first = next_msg(&mut feed).await;
                let second = next_msg(&mut feed).await;
                assert_eq!((first.seq, first.prev), (Some(a1.seq), Some(0)));
                assert_eq!((second.seq, second.prev), (Some(a2.seq), Some(a1.seq)));
            }

            #[tokio::test]
            async fn history_pages_from_since() {
                let (b, _server) = broker().await;
                let mut all = Vec::new();
                for i in 0..5 {
                    all.push(b.publish(msg("r", &i.to_string(), None)).await.unwrap().seq);
                }
                let h = b.history(&room("r"), all[1], 2).await.unwrap();
                assert_eq!(seqs(&h.messages), &all[2..4]);
                assert!(h.recovered);
                assert_eq!((h.more, h.scanned), (true, all[3]));
                let rest = b.history(&room("r"), h.scanned, 2).await.unwrap();
                assert_eq!(seqs(&rest.messages), &all[4..]);
                assert!(!rest.more);
                let head_only = b.history(&room("r"), 0, 0).await.unwrap();
                assert_eq!((head_only.head, head_only.messages.len()), (all[4], 0));
                let empty = b.history(&room("never"), 0, 10).await.unwrap();
                assert_eq!((empty.head, empty.messages.len()), (0, 0));
            }

            #[tokio::test]
            async fn recovered_is_true_when_nothing_after_since_was_lost() {
                let (b, _server) = broker().await;
                let a1 = b.publish(msg("a", "1", None)).await.unwrap();
                let a2 = b.publish(msg("a", "2", None)).await.unwrap();
                assert!(b.history(&room("a"), a1.seq, 10).await.unwrap().recovered);
                assert!(b.history(&room("a"), a2.seq, 10).await.unwrap().recovered);
                let past_head = b.history(&room("a"), a2.seq + 100, 10).await.unwrap();
                assert!(!past_head.recovered);
                assert!(past_head.messages.is_empty());
            }

            #[tokio::test]
            async fn same_msg_id_is_stored_once() {
                let (b, _server) = broker().await;
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
            async fn live_feed_carries_stored_and_ephemeral_messages_of_its_room_only() {
                let (b, _server) = broker().await;
                let mut feed = b.live(&room("live")).await.unwrap();
                let stored = b.publish(msg("live", "{\"a\":1}", None)).await.unwrap();
                b.publish_ephemeral(msg("live", "2", None)).await.unwrap();
                b.publish(msg("elsewhere", "3", None)).await.unwrap();
                b.publish(msg("live.sub", "4", None)).await.unwrap();
                let m = next_msg(&mut feed).await;
                assert_eq!((m.seq, &m.data[..]), (Some(stored.seq), &b"{\"a\":1}"[..]));
                let e = next_msg(&mut feed).await;
                assert_eq!((e.seq, &e.data[..], &*e.from), (None, &b"2"[..], "alice"));
                let h = b.history(&room("live"), 0, 10).await.unwrap();
                assert_eq!(h.messages.len(), 1, "ephemeral messages are not stored");
                assert!(
                    tokio::time::timeout(Duration::from_millis(200), next_msg(&mut feed))
                        .await
                        .is_err(),
                    "other rooms leak into the feed"
                );
            }

            #[tokio::test]
            async fn inbox_rooms_work_like_any_other() {
                let (b, _server) = broker().await;
                let inbox = room("@bob");
                let mut feed = b.live(&inbox).await.unwrap();
                let stored = b.publish(msg("@bob", "\"psst\"", None)).await.unwrap();
                assert_eq!(next_msg(&mut feed).await.seq, Some(stored.seq));
                assert_eq!(
                    seqs(&b.history(&inbox, 0, 10).await.unwrap().messages),
                    [stored.seq]
                );
            }

            #[tokio::test]
            async fn presence_counts_connections_and_emits_first_and_last() {
                let (b, _server) = broker().await;
                let r = room("p");
                let mut feed = b.live(&r).await.unwrap();
                b.join(&r, &user("bob"), &"c1".into()).await.unwrap();
                b.join(&r, &user("bob"), &"c2".into()).await.unwrap();
                b.join(&r, &user("amy"), &"c3".into()).await.unwrap();
                // A room whose name extends this one's is another room.
                b.join(&room("p.q"), &user("zed"), &"c4".into())
                    .await
                    .unwrap();
                let members = b.presence(&r).await.unwrap();
                let view: Vec<_> = members.iter().map(|m| (m.user.as_str(), m.conns)).collect();
                assert_eq!(view, vec![("amy", 1), ("bob", 2)]);
                b.leave(&r, &user("bob"), "c1").await.unwrap();
                b.leave(&r, &user("bob"), "c2").await.unwrap();
                let mut events = Vec::new();
                while events.len() < 3 {
                    match tokio::time::timeout(WAIT, feed.next())
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
                let (b, _server) = broker().await;
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
                let got = tokio::time::timeout(WAIT, feed.next())
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(got, event);
                assert_eq!(b.revoked_before(&user("eve")).await.unwrap(), Some(until));
                assert_eq!(b.revoked_before(&user("bob")).await.unwrap(), None);
            }

            #[tokio::test]
            async fn the_registry_tells_what_is_there_then_what_changes() {
                let (b, _server) = broker().await;
                let w1 = WorkerInfo {
                    id: "w1".into(),
                    address: "127.0.0.1:1".into(),
                    conns: 1,
                    capacity: 10,
                    draining: false,
                };
                b.announce(w1.clone()).await.unwrap();
                let mut feed = b.registry().await.unwrap();
                assert_eq!(
                    next_registry(&mut feed).await,
                    RegistryEvent::Up(w1.clone())
                );
                let draining = WorkerInfo {
                    draining: true,
                    ..w1.clone()
                };
                b.announce(draining.clone()).await.unwrap();
                assert_eq!(next_registry(&mut feed).await, RegistryEvent::Up(draining));
                b.withdraw("w1").await.unwrap();
                assert_eq!(
                    next_registry(&mut feed).await,
                    RegistryEvent::Gone("w1".into())
                );
            }
        }
    };
}

conformance!(
    memory,
    (
        Arc::new(MemoryBroker::new(MemoryConfig::default())),
        Box::new(())
    )
);
conformance!(nats, {
    let server = switchyard_testkit::NatsServer::start().await;
    let config = NatsConfig {
        url: server.url(),
        ..NatsConfig::default()
    };
    let broker = NatsBroker::connect(config)
        .await
        .expect("NATS engine connects");
    (broker as Arc<dyn Broker>, Box::new(server))
});

#[tokio::test]
async fn memory_history_is_bounded_and_says_when_it_lost_messages() {
    let b = MemoryBroker::new(MemoryConfig {
        history_size: 3,
        ..MemoryConfig::default()
    });
    let mut all = Vec::new();
    for i in 0..5 {
        all.push(b.publish(msg("r", &i.to_string(), None)).await.unwrap().seq);
    }
    let h = b.history(&room("r"), 0, 10).await.unwrap();
    assert_eq!(h.messages.len(), 3);
    assert!(!h.recovered, "messages 1 and 2 are gone");
    assert!(!b.history(&room("r"), all[0], 10).await.unwrap().recovered);
    let ok = b.history(&room("r"), all[1], 10).await.unwrap();
    assert!(ok.recovered, "everything after seq 2 is retained");
    assert_eq!(ok.messages.len(), 3);
}

#[tokio::test]
async fn memory_epochs_differ_between_instances() {
    let a = MemoryBroker::new(MemoryConfig::default());
    let b = MemoryBroker::new(MemoryConfig::default());
    assert_ne!(a.epoch(), b.epoch());
}

#[tokio::test]
async fn nats_history_is_bounded_per_room_and_never_claims_a_false_recovery() {
    let server = switchyard_testkit::NatsServer::start().await;
    let config = NatsConfig {
        url: server.url(),
        max_msgs_per_subject: 3,
        ..NatsConfig::default()
    };
    let b = NatsBroker::connect(config).await.unwrap();
    let mut all = Vec::new();
    for i in 0..5 {
        all.push(b.publish(msg("r", &i.to_string(), None)).await.unwrap().seq);
    }
    let h = b.history(&room("r"), 0, 10).await.unwrap();
    assert_eq!(seqs(&h.messages), &all[2..]);
    assert!(!h.recovered, "messages 1 and 2 are gone");
    assert!(!b.history(&room("r"), all[0], 10).await.unwrap().recovered);
    let ok = b.history(&room("r"), all[2], 10).await.unwrap();
    assert!(
        ok.recovered,
        "message 3 is still there, so everything after it is"
    );
    assert_eq!(seqs(&ok.messages), &all[3..]);
}

/// Two brokers on one fresh nats-server, as two processes of a mesh, with this presence
/// TTL; the server is returned to be kept alive.
async fn two_nats_brokers(
    presence_ttl: Duration,
) -> (
    switchyard_testkit::NatsServer,
    Arc<NatsBroker>,
    Arc<NatsBroker>,
) {
    let server = switchyard_testkit::NatsServer::start().await;
    let config = NatsConfig {
        url: server.url(),
        presence_ttl,
        ..NatsConfig::default()
    };
    let a = NatsBroker::connect(config.clone()).await.unwrap();
    let b = NatsBroker::connect(config).await.unwrap();
    (server, a, b)
}

/// A user connected through two processes is one member of the room: one join, one
/// leave, whichever process sees the last connection go, and a process that dies
/// holding connections stops counting once its liveness ages out.
#[tokio::test]
async fn nats_presence_spans_processes_and_forgets_a_dead_one() {
    let ttl = Duration::from_secs(2);
    let (_server, a, b) = two_nats_brokers(ttl).await;
    let r = room("lobby");
    let bob = user("bob");
    let mut feed = a.live(&r).await.unwrap();
    let conns = |a: &Arc<NatsBroker>| {
        let a = a.clone();
        let r = r.clone();
        async move {
            let members = a.presence(&r).await.unwrap();
            members
                .iter()
                .map(|m| (m.user.clone(), m.conns))
                .collect::<Vec<_>>()
        }
    };
    a.join(&r, &bob, &"c1".into()).await.unwrap();
    b.join(&r, &bob, &"c2".into()).await.unwrap();
    assert_eq!(conns(&a).await, [("bob".to_string(), 2)]);
    b.leave(&r, &bob, "c2").await.unwrap();
    assert_eq!(conns(&b).await, [("bob".to_string(), 1)]);
    b.join(&r, &bob, &"c3".into()).await.unwrap();
    drop(b);
    // b's entries stay in the room's entry, but not in its count, once b's liveness
    // ages out; a's refresh keeps its own alive meanwhile.
    let deadline = tokio::time::Instant::now() + ttl * 4;
    while conns(&a).await != [("bob".to_string(), 1)] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dead process still counts"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.leave(&r, &bob, "c1").await.unwrap();
    assert!(conns(&a).await.is_empty());
    let mut events = Vec::new();
    while events.len() < 2 {
        match tokio::time::timeout(WAIT, feed.next())
            .await
            .expect("presence event in time")
            .unwrap()
        {
            LiveEvent::Join { user, .. } => events.push(format!("join {user}")),
            LiveEvent::Leave { user, .. } => events.push(format!("leave {user}")),
            _ => {}
        }
    }
    assert_eq!(events, ["join bob", "leave bob"]);
    // Nothing else follows: not b's join, nor a leave of its own.
    assert!(
        tokio::time::timeout(ttl, async {
            loop {
                if let Some(LiveEvent::Join { .. } | LiveEvent::Leave { .. }) = feed.next().await {
                    return;
                }
            }
        })
        .await
        .is_err(),
        "a presence event after the last leave"
    );
}

/// Refreshes keep a held entry past its TTL with its counts as they were: an entry only
/// this process holds (written back from its own count) and one two processes hold
/// (written back as last read).
#[tokio::test]
async fn nats_presence_entries_outlive_their_ttl_through_refreshes() {
    let ttl = Duration::from_secs(1);
    let (_server, a, b) = two_nats_brokers(ttl).await;
    let r = room("lobby");
    let (bob, carol) = (user("bob"), user("carol"));
    a.join(&r, &bob, &"c1".into()).await.unwrap();
    a.join(&r, &bob, &"c2".into()).await.unwrap();
    a.join(&r, &carol, &"c3".into()).await.unwrap();
    b.join(&r, &carol, &"c4".into()).await.unwrap();
    let listed = || async {
        let mut members: Vec<_> = a
            .presence(&r)
            .await
            .unwrap()
            .into_iter()
            .map(|m| (m.user, m.conns))
            .collect();
        members.sort();
        members
    };
    let want = [("bob".to_string(), 2), ("carol".to_string(), 2)];
    assert_eq!(listed().await, want);
    tokio::time::sleep(ttl * 3).await;
    assert_eq!(listed().await, want, "after three TTLs");
}

/// A process that held presence once stays marked alive while it holds none: a join
/// after a quiet spell longer than the TTL is not taken for a dead holder's by another
/// process joining the same user (which would announce the user a second time).
#[tokio::test]
async fn nats_presence_holder_stays_alive_through_a_quiet_spell() {
    let ttl = Duration::from_secs(1);
    let (_server, a, b) = two_nats_brokers(ttl).await;
    let r = room("lobby");
    let mut feed = a.live(&r).await.unwrap();
    a.join(&r, &user("amy"), &"c1".into()).await.unwrap();
    a.leave(&r, &user("amy"), "c1").await.unwrap();
    tokio::time::sleep(ttl * 3).await;
    a.join(&r, &user("bob"), &"c2".into()).await.unwrap();
    b.join(&r, &user("bob"), &"c3".into()).await.unwrap();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + ttl * 2;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, feed.next()).await {
        match event {
            LiveEvent::Join { user, .. } => events.push(format!("join {user}")),
            LiveEvent::Leave { user, .. } => events.push(format!("leave {user}")),
            _ => {}
        }
    }
    assert_eq!(events, ["join amy", "leave amy", "join bob"]);
    let members = a.presence(&r).await.unwrap();
    let view: Vec<_> = members.iter().map(|m| (m.user.as_str(), m.conns)).collect();
    assert_eq!(view, [("bob", 2)]);
}

#[tokio::test]
async fn nats_refuses_to_start_on_a_conflicting_stream() {
    let server = switchyard_testkit::NatsServer::start().await;
    let first = NatsConfig {
        url: server.url(),
        ..NatsConfig::default()
    };
    drop(NatsBroker::connect(first.clone()).await.unwrap());
    let other = NatsConfig {
        max_age: Duration::from_secs(3600),
        ..first
    };
    let err = NatsBroker::connect(other)
        .await
        .err()
        .expect("a conflicting stream is refused");
    let text = err.to_string();
    assert!(
        text.contains("max_age") && text.contains("SY_ROOMS"),
        "{text}"
    );
}

#[tokio::test]
async fn nats_drops_backend_payloads_that_are_not_json() {
    let server = switchyard_testkit::NatsServer::start().await;
    let b = NatsBroker::connect(NatsConfig {
        url: server.url(),
        ..NatsConfig::default()
    })
    .await
    .unwrap();
    let mut feed = b.live(&room("raw")).await.unwrap();
    let js = async_nats::jetstream::new(b.client().clone());
    js.publish("sy.room.raw", "not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let good = js
        .publish("sy.room.raw", "{\"ok\":true}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let m = next_msg(&mut feed).await;
    assert_eq!(
        (m.seq, &*m.from),
        (Some(good.sequence), "$server"),
        "backends publish as the server"
    );
    let h = b.history(&room("raw"), 0, 10).await.unwrap();
    assert_eq!(seqs(&h.messages), [good.sequence]);
    assert_eq!(h.scanned, good.sequence);
}

#[tokio::test]
async fn nats_starts_again_on_what_it_created() {
    let server = switchyard_testkit::NatsServer::start().await;
    let config = NatsConfig {
        url: server.url(),
        ..NatsConfig::default()
    };
    let first = NatsBroker::connect(config.clone()).await.unwrap();
    let second = NatsBroker::connect(config)
        .await
        .expect("a second worker accepts the same setup");
    assert_eq!(first.epoch(), second.epoch());
}
