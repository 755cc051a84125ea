//! Every frame type of PROTOCOL §2 through the real stack.

use switchyard_protocol::frame::ServerFrame;
use switchyard_testkit::{expect, Stack};

use crate::{next_error, next_msg, ping, publish, send, subscribe};

#[tokio::test]
async fn welcome_comes_first_and_names_the_session() {
    let stack = Stack::start().await;
    let (_conn, welcome) = stack
        .connect(&stack.token("alice", &["lobby"], &["lobby"]))
        .await;
    assert_eq!(welcome.user, "alice");
    assert_eq!(welcome.worker, "w1");
    assert!(!welcome.resumed);
    assert!(welcome.conn.starts_with("c_"));
    assert_eq!(welcome.resume, format!("/ws/w1/{}", welcome.conn));
    assert!(welcome.resume_token.len() >= 24);
    assert_eq!(welcome.heartbeat_ms, 25_000);
}

#[tokio::test]
async fn publish_is_acked_with_its_seq_and_delivered_to_every_subscriber() {
    let stack = Stack::start().await;
    let token = stack.token("alice", &["lobby"], &["lobby"]);
    let (mut alice, _) = stack.connect(&token).await;
    let (mut bob, _) = stack.connect(&stack.token("bob", &["lobby"], &[])).await;
    assert_eq!(
        subscribe(&mut alice, "lobby").await,
        (0, stack.dev.epoch().await.unwrap(), true, 0)
    );
    subscribe(&mut bob, "lobby").await;
    let seq = publish(&mut alice, "lobby", r#"{"text":"hi","n":[1, 2.50]}"#, "p1").await;
    let (got_seq, from, data) = next_msg(&mut bob, "lobby").await;
    assert_eq!(
        (got_seq, from.as_str(), data.as_str()),
        (Some(seq), "alice", r#"{"text":"hi","n":[1, 2.50]}"#)
    );
    // The publisher gets its own message too.
    assert_eq!(next_msg(&mut alice, "lobby").await.0, Some(seq));
    let (seq2, ..) = (publish(&mut alice, "lobby", "2", "p2").await,);
    assert!(seq2 > seq);
    let (head, ..) = subscribe(
        &mut stack
            .connect(&stack.token("carol", &["lobby"], &[]))
            .await
            .0,
        "lobby",
    )
    .await;
    assert_eq!(head, seq2, "subscribed carries the room's latest seq");
}

#[tokio::test]
async fn batched_client_frames_are_handled_in_order() {
    let stack = Stack::start().await;
    let (mut conn, _) = stack.connect(&stack.token("alice", &["r"], &["r"])).await;
    send(&conn, "{\"op\":\"sub\",\"room\":\"r\",\"ref\":\"s\"}\n{\"op\":\"pub\",\"room\":\"r\",\"data\":1,\"ref\":\"a\"}\r\n{\"op\":\"ping\",\"ref\":\"z\"}\n").await;
    let mut order = Vec::new();
    while order.len() < 4 {
        match expect::frame(&mut conn).await {
            ServerFrame::Subscribed { .. } => order.push("subscribed"),
            ServerFrame::Ack { .. } => order.push("ack"),
            ServerFrame::Msg { .. } => order.push("msg"),
            ServerFrame::Pong { .. } => order.push("pong"),
            _ => {}
        }
    }
    assert_eq!(order[0], "subscribed");
    assert_eq!(order.iter().filter(|o| **o == "pong").count(), 1);
}

#[tokio::test]
async fn retried_ref_is_stored_once_with_the_same_seq() {
    let stack = Stack::start().await;
    let (mut conn, _) = stack.connect(&stack.token("alice", &[], &["r"])).await;
    let first = publish(&mut conn, "r", "1", "same").await;
    let again = publish(&mut conn, "r", "1", "same").await;
    assert_eq!(first, again);
    let history = stack.api().get("/api/v1/history/r?since=0").await.json();
    assert_eq!(history["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn ephemeral_messages_have_no_seq_and_are_not_stored() {
    let stack = Stack::start().await;
    let (mut alice, _) = stack
        .connect(&stack.token("alice", &["cursor.>"], &["cursor.>"]))
        .await;
    subscribe(&mut alice, "cursor.doc1").await;
    send(
        &alice,
        r#"{"op":"pub","room":"cursor.doc1","data":{"x":1},"ephemeral":true,"ref":"e1"}"#,
    )
    .await;
    let ack = expect::until(&mut alice, |f| match f {
        ServerFrame::Ack {
            reference: Some(r),
            seq,
        } if r == "e1" => Some(*seq),
        _ => None,
    })
    .await;
    assert_eq!(ack, None);
    let (seq, from, data) = next_msg(&mut alice, "cursor.doc1").await;
    assert_eq!(
        (seq, from.as_str(), data.as_str()),
        (None, "alice", r#"{"x":1}"#)
    );
    // Without a ref there is no ack at all: the next answer is the pong.
    send(
        &alice,
        r#"{"op":"pub","room":"cursor.doc1","data":2,"ephemeral":true}"#,
    )
    .await;
    send(&alice, r#"{"op":"ping","ref":"after"}"#).await;
    loop {
        match expect::frame(&mut alice).await {
            ServerFrame::Ack { .. } => panic!("an ephemeral pub without ref was acked"),
            ServerFrame::Pong { .. } => break,
            _ => {}
        }
    }
    let history = stack
        .api()
        .get("/api/v1/history/cursor.doc1?since=0")
        .await
        .json();
    assert_eq!(history["messages"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn presence_lists_members_and_announces_joins_and_leaves() {
    let stack = Stack::start().await;
    let (mut alice, _) = stack.connect(&stack.token("alice", &["lobby"], &[])).await;
    subscribe(&mut alice, "lobby").await;
    let (mut bob1, _) = stack.connect(&stack.token("bob", &["lobby"], &[])).await;
    let (mut bob2, _) = stack.connect(&stack.token("bob", &["lobby"], &[])).await;
    subscribe(&mut bob1, "lobby").await;
    expect::until(&mut alice, |f| {
        matches!(f, ServerFrame::Join { user, .. } if user == "bob").then_some(())
    })
    .await;
    subscribe(&mut bob2, "lobby").await;
    send(&alice, r#"{"op":"presence","room":"lobby","ref":"pr"}"#).await;
    let members = expect::until(&mut alice, |f| match f {
        ServerFrame::Presence {
            members,
            reference: Some(r),
            ..
        } if r == "pr" => Some(members.clone()),
        _ => None,
    })
    .await;
    let view: Vec<_> = members.iter().map(|m| (m.user.as_str(), m.conns)).collect();
    assert_eq!(view, [("alice", 1), ("bob", 2)]);
    send(&bob1, r#"{"op":"unsub","room":"lobby","ref":"u"}"#).await;
    expect::until(&mut bob1, |f| {
        matches!(f, ServerFrame::Unsubscribed { reference: Some(r), .. } if r == "u").then_some(())
    })
    .await;
    bob2.close(1000).await.unwrap();
    expect::until(&mut alice, |f| {
        matches!(f, ServerFrame::Leave { user, .. } if user == "bob").then_some(())
    })
    .await;
    let api = stack.api().get("/api/v1/presence/lobby").await.json();
    assert_eq!(
        api["members"],
        serde_json::json!([{"user":"alice","conns":1}])
    );
}

#[tokio::test]
async fn every_error_code_answers_the_frame_and_keeps_the_connection() {
    let stack = Stack::start().await;
    let (mut conn, _) = stack
        .connect(&stack.token("alice", &["lobby"], &["lobby"]))
        .await;
    let cases: &[(&str, &str, Option<&str>, Option<&str>)] = &[
        ("not json", "bad_frame", None, None),
        (r#"{"op":"fly","ref":"1"}"#, "bad_frame", Some("1"), None),
        (r#"{"op":"sub","ref":"2"}"#, "bad_frame", Some("2"), None),
        (
            r#"{"op":"sub","room":"a.>","ref":"3"}"#,
            "bad_room",
            Some("3"),
            Some("a.>"),
        ),
        (
            r#"{"op":"sub","room":"*","ref":"4"}"#,
            "bad_room",
            Some("4"),
            Some("*"),
        ),
        (
            r#"{"op":"sub","room":"a b","ref":"5"}"#,
            "bad_room",
            Some("5"),
            Some("a b"),
        ),
        (
            r#"{"op":"sub","room":"secret","ref":"6"}"#,
            "forbidden",
            Some("6"),
            Some("secret"),
        ),
        (
            r#"{"op":"pub","room":"secret","data":1,"ref":"7"}"#,
            "forbidden",
            Some("7"),
            Some("secret"),
        ),
        (
            r#"{"op":"pub","room":"@bob","data":1,"ref":"8"}"#,
            "forbidden",
            Some("8"),
            Some("@bob"),
        ),
        (
            r#"{"op":"unsub","room":"lobby","ref":"9"}"#,
            "not_subscribed",
            Some("9"),
            Some("lobby"),
        ),
        (
            r#"{"op":"refresh","token":"nonsense","ref":"10"}"#,
            "invalid_token",
            Some("10"),
            None,
        ),
    ];
    for (frame, code, reference, room) in cases {
        send(&conn, frame).await;
        let got = next_error(&mut conn).await;
        assert_eq!(
            got,
            (
                code.to_string(),
                reference.map(str::to_owned),
                room.map(str::to_owned)
            ),
            "{frame}"
        );
    }
    subscribe(&mut conn, "lobby").await;
    send(&conn, r#"{"op":"sub","room":"lobby","ref":"11"}"#).await;
    assert_eq!(next_error(&mut conn).await.0, "already_subscribed");
    conn.send_binary(b"\x01\x02").await.unwrap();
    assert_eq!(next_error(&mut conn).await.0, "bad_frame");
    ping(&mut conn, "still-open").await;
}

#[tokio::test]
async fn own_inbox_is_always_allowed_and_direct_messages_need_scope() {
    let stack = Stack::start().await;
    let (mut bob, _) = stack.connect(&stack.token("bob", &[], &[])).await;
    subscribe(&mut bob, "@bob").await;
    let (mut alice, _) = stack.connect(&stack.token("alice", &[], &["@*"])).await;
    let seq = publish(&mut alice, "@bob", r#""psst""#, "dm").await;
    assert_eq!(
        next_msg(&mut bob, "@bob").await,
        (Some(seq), "alice".into(), r#""psst""#.into())
    );
    send(&alice, r#"{"op":"sub","room":"@bob","ref":"x"}"#).await;
    assert_eq!(next_error(&mut alice).await.0, "forbidden");
}

#[tokio::test]
async fn refresh_replaces_the_grant_and_refuses_other_users() {
    let stack = Stack::start().await;
    let (mut conn, _) = stack.connect(&stack.token("alice", &[], &[])).await;
    send(&conn, r#"{"op":"sub","room":"news","ref":"a"}"#).await;
    assert_eq!(next_error(&mut conn).await.0, "forbidden");
    let wider = stack.token("alice", &["news"], &[]);
    send(
        &conn,
        &format!(r#"{{"op":"refresh","token":"{wider}","ref":"r"}}"#),
    )
    .await;
    let exp = expect::until(&mut conn, |f| match f {
        ServerFrame::Refreshed {
            reference: Some(r),
            exp,
        } if r == "r" => Some(*exp),
        _ => None,
    })
    .await;
    assert!(exp as f64 > switchyard_testkit::now());
    subscribe(&mut conn, "news").await;
    let bobs = stack.token("bob", &[">"], &[">"]);
    send(
        &conn,
        &format!(r#"{{"op":"refresh","token":"{bobs}","ref":"b"}}"#),
    )
    .await;
    assert_eq!(
        next_error(&mut conn).await,
        ("invalid_token".into(), Some("b".into()), None)
    );
}
