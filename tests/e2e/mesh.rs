//! The mesh in one test process: several stacks, each a gateway and a worker with its own
//! NATS connection, sharing one nats-server. Fan-out, presence, the API and backends all
//! cross NATS. (Process kills and server faults live in `faults`.)

use std::collections::BTreeSet;

use switchyard_protocol::frame::ServerFrame;
use switchyard_testkit::{expect, NatsServer, Stack};

use crate::{next_msg, publish, send, subscribe};

async fn mesh(nats: &NatsServer, names: &[&str]) -> Vec<Stack> {
    let mut stacks = Vec::new();
    for name in names {
        stacks.push(Stack::start_nats(&nats.url(), name, |_| {}).await);
    }
    stacks
}

#[tokio::test]
async fn fan_out_crosses_workers_once_and_in_order() {
    let nats = NatsServer::start().await;
    let stacks = mesh(&nats, &["a", "b", "c"]).await;
    let (mut sub_a, on_a) = stacks[0]
        .connect(&stacks[0].token("ann", &["room"], &[]))
        .await;
    let (mut sub_b, on_b) = stacks[1]
        .connect(&stacks[1].token("ben", &["room"], &[]))
        .await;
    let (mut publisher, on_c) = stacks[2]
        .connect(&stacks[2].token("cat", &[], &["room"]))
        .await;
    assert_eq!(
        (
            on_a.worker.as_str(),
            on_b.worker.as_str(),
            on_c.worker.as_str()
        ),
        ("a1", "b1", "c1")
    );
    subscribe(&mut sub_a, "room").await;
    subscribe(&mut sub_b, "room").await;
    let mut sent = Vec::new();
    for i in 0..50 {
        sent.push(publish(&mut publisher, "room", &i.to_string(), &i.to_string()).await);
    }
    for conn in [&mut sub_a, &mut sub_b] {
        let mut got = Vec::new();
        while got.len() < sent.len() {
            let (seq, from, _) = next_msg(conn, "room").await;
            assert_eq!(from, "cat");
            got.push(seq.unwrap());
        }
        assert_eq!(got, sent, "each message once, in order");
    }
}

#[tokio::test]
async fn since_replay_on_another_worker_fills_the_gap() {
    let nats = NatsServer::start().await;
    let stacks = mesh(&nats, &["a", "b"]).await;
    let (mut publisher, _) = stacks[0]
        .connect(&stacks[0].token("pub", &[], &["r"]))
        .await;
    let mut sent = Vec::new();
    for i in 0..20 {
        sent.push(publish(&mut publisher, "r", &i.to_string(), &i.to_string()).await);
    }
    let epoch = stacks[0].dev.epoch().await.unwrap();
    assert_eq!(
        stacks[1].dev.epoch().await.unwrap(),
        epoch,
        "one store, one epoch"
    );
    let (mut reader, _) = stacks[1].connect(&stacks[1].token("rd", &["r"], &[])).await;
    send(
        &reader,
        &format!(
            r#"{{"op":"sub","room":"r","since":{},"epoch":"{epoch}"}}"#,
            sent[4]
        ),
    )
    .await;
    let (seq, got_epoch, recovered, replayed) = crate::subscribed(&mut reader, "r").await;
    assert_eq!(
        (seq, got_epoch, recovered, replayed),
        (sent[19], epoch, true, 15)
    );
    let mut got = Vec::new();
    for _ in 0..15 {
        got.push(next_msg(&mut reader, "r").await.0.unwrap());
    }
    assert_eq!(got, sent[5..]);
}

#[tokio::test]
async fn direct_messages_reach_an_inbox_on_another_worker() {
    let nats = NatsServer::start().await;
    let stacks = mesh(&nats, &["a", "b"]).await;
    let (mut bob, _) = stacks[0].connect(&stacks[0].token("bob", &[], &[])).await;
    subscribe(&mut bob, "@bob").await;
    let (mut alice, _) = stacks[1]
        .connect(&stacks[1].token("alice", &[], &["@*"]))
        .await;
    let seq = publish(&mut alice, "@bob", r#"{"dm":1}"#, "dm").await;
    assert_eq!(
        next_msg(&mut bob, "@bob").await,
        (Some(seq), "alice".into(), r#"{"dm":1}"#.into())
    );
}

#[tokio::test]
async fn presence_spans_workers() {
    let nats = NatsServer::start().await;
    let stacks = mesh(&nats, &["a", "b"]).await;
    let (mut ann, _) = stacks[0]
        .connect(&stacks[0].token("ann", &["lobby"], &[]))
        .await;
    subscribe(&mut ann, "lobby").await;
    let (mut ben, _) = stacks[1]
        .connect(&stacks[1].token("ben", &["lobby"], &[]))
        .await;
    subscribe(&mut ben, "lobby").await;
    expect::until(&mut ann, |f| {
        matches!(f, ServerFrame::Join { user, .. } if user == "ben").then_some(())
    })
    .await;
    send(&ann, r#"{"op":"presence","room":"lobby","ref":"p"}"#).await;
    let members = expect::until(&mut ann, |f| match f {
        ServerFrame::Presence { members, .. } => Some(members.clone()),
        _ => None,
    })
    .await;
    let users: BTreeSet<_> = members.iter().map(|m| m.user.as_str()).collect();
    assert_eq!(users, BTreeSet::from(["ann", "ben"]));
    // The API of either gateway sees the same.
    let api = stacks[1].api().get("/api/v1/presence/lobby").await.json();
    assert_eq!(api["members"].as_array().unwrap().len(), 2);
    ben.close(1000).await.unwrap();
    expect::until(&mut ann, |f| {
        matches!(f, ServerFrame::Leave { user, .. } if user == "ben").then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_api_of_any_gateway_reaches_users_on_any_worker() {
    let nats = NatsServer::start().await;
    let stacks = mesh(&nats, &["a", "b"]).await;
    let (mut ann, _) = stacks[0]
        .connect(&stacks[0].token("ann", &["news"], &[]))
        .await;
    subscribe(&mut ann, "news").await;
    let res = stacks[1]
        .api()
        .post(
            "/api/v1/publish",
            &serde_json::json!({"room": "news", "data": {"n": 1}}),
        )
        .await;
    let seq = res.json()["seq"].as_u64().unwrap();
    assert_eq!(
        next_msg(&mut ann, "news").await,
        (Some(seq), "$server".into(), r#"{"n":1}"#.into())
    );
    let history = stacks[0]
        .api()
        .get("/api/v1/history/news?since=0")
        .await
        .json();
    assert_eq!(history["messages"][0]["seq"], seq);
    let (mut eve, _) = stacks[0].connect(&stacks[0].token("eve", &[], &[])).await;
    let res = stacks[1]
        .api()
        .post("/api/v1/disconnect", &serde_json::json!({"user": "eve"}))
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(expect::closed(&mut eve).await, Some(4009));
}

#[tokio::test]
async fn a_backend_publishing_through_nats_reaches_subscribers_as_the_server() {
    let nats = NatsServer::start().await;
    let stacks = mesh(&nats, &["a"]).await;
    let (mut ann, _) = stacks[0]
        .connect(&stacks[0].token("ann", &["orders"], &[]))
        .await;
    subscribe(&mut ann, "orders").await;
    let backend = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(backend.clone());
    let ack = js
        .publish("sy.room.orders", r#"{"order":42}"#.into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(
        next_msg(&mut ann, "orders").await,
        (
            Some(ack.sequence),
            "$server".into(),
            r#"{"order":42}"#.into()
        )
    );
    // With Sy-From, the backend speaks for a user; live-only messages skip the store.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Sy-From", "bot");
    backend
        .publish_with_headers("sy.live.room.orders", headers, r#"{"typing":true}"#.into())
        .await
        .unwrap();
    assert_eq!(
        next_msg(&mut ann, "orders").await,
        (None, "bot".into(), r#"{"typing":true}"#.into())
    );
}
