//! The HTTP API of PROTOCOL §6 against live subscribers.

use switchyard_testkit::{expect, Stack};

use crate::{next_msg, subscribe};

#[tokio::test]
async fn publish_reaches_subscribers_as_the_server() {
    let stack = Stack::start().await;
    let (mut alice, _) = stack.connect(&stack.token("alice", &["news"], &[])).await;
    subscribe(&mut alice, "news").await;
    let res = stack
        .api()
        .post(
            "/api/v1/publish",
            &serde_json::json!({"room": "news", "data": {"title": "hi"}}),
        )
        .await;
    assert_eq!(res.status, 200);
    let seq = res.json()["seq"].as_u64().unwrap();
    assert_eq!(
        next_msg(&mut alice, "news").await,
        (Some(seq), "$server".into(), r#"{"title":"hi"}"#.into())
    );
    let eph = stack
        .api()
        .post(
            "/api/v1/publish",
            &serde_json::json!({"room": "news", "data": 1, "ephemeral": true}),
        )
        .await;
    assert_eq!((eph.status, eph.json()), (200, serde_json::json!({})));
    assert_eq!(next_msg(&mut alice, "news").await.0, None);
}

#[tokio::test]
async fn the_api_key_is_required_and_checked() {
    let stack = Stack::start().await;
    let body = serde_json::json!({"room": "news", "data": 1});
    let missing = stack
        .api()
        .with_key(None)
        .post("/api/v1/publish", &body)
        .await;
    assert_eq!(
        (missing.status, missing.error()),
        (401, "missing_token".into())
    );
    let wrong = stack
        .api()
        .with_key(Some("nope"))
        .post("/api/v1/publish", &body)
        .await;
    assert_eq!((wrong.status, wrong.error()), (401, "invalid_token".into()));
    let history = stack.api().get("/api/v1/history/news").await.json();
    assert_eq!(
        history["messages"],
        serde_json::json!([]),
        "nothing was stored"
    );
}

#[tokio::test]
async fn bad_requests_are_named() {
    let stack = Stack::start().await;
    let api = stack.api();
    let bad_json = api.post_raw("/api/v1/publish", b"{not json").await;
    assert_eq!(
        (bad_json.status, bad_json.error()),
        (400, "bad_request".into())
    );
    let bad_room = api
        .post(
            "/api/v1/publish",
            &serde_json::json!({"room": "a.>", "data": 1}),
        )
        .await;
    assert_eq!(
        (bad_room.status, bad_room.error()),
        (400, "bad_room".into())
    );
    let bad_history = api.get("/api/v1/history/a..b").await;
    assert_eq!(
        (bad_history.status, bad_history.error()),
        (400, "bad_room".into())
    );
}

#[tokio::test]
async fn history_pages_from_since() {
    let stack = Stack::start().await;
    let api = stack.api();
    let mut seqs = Vec::new();
    for i in 0..5 {
        seqs.push(
            api.post(
                "/api/v1/publish",
                &serde_json::json!({"room": "h", "data": i}),
            )
            .await
            .json()["seq"]
                .as_u64()
                .unwrap(),
        );
    }
    let page = api
        .get(&format!("/api/v1/history/h?since={}&limit=2", seqs[1]))
        .await
        .json();
    assert_eq!(page["seq"], seqs[4]);
    assert_eq!(page["recovered"], true);
    let got: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(got, &seqs[2..4]);
    assert_eq!(page["messages"][0]["data"], 2);
    assert_eq!(page["messages"][0]["from"], "$server");
}

#[tokio::test]
async fn disconnect_closes_every_connection_of_the_user_with_4009_and_revokes() {
    let stack = Stack::start_with(|o| o.workers = 2).await;
    let token = stack.token("eve", &[], &[]);
    let (mut a, _) = stack.connect_path("/ws/w1/x", &token).await;
    let (mut b, _) = stack.connect_path("/ws/w2/x", &token).await;
    let (mut other, _) = stack.connect(&stack.token("bob", &[], &[])).await;
    let until = switchyard_testkit::now() as u64 + 3600;
    let res = stack
        .api()
        .post(
            "/api/v1/disconnect",
            &serde_json::json!({"user": "eve", "until": until}),
        )
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(expect::closed(&mut a).await, Some(4009));
    assert_eq!(expect::closed(&mut b).await, Some(4009));
    crate::ping(&mut other, "bob-untouched").await;
    let again = switchyard_client::Connection::connect(&stack.options("/ws", &token)).await;
    assert!(
        matches!(
            again,
            Err(switchyard_client::ConnectError::Http { status: 401, .. })
        ),
        "revoked token accepted"
    );
}
