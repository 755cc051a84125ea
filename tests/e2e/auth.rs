//! Authentication before the upgrade (PROTOCOL §1), end to end over TLS.

use switchyard_client::{ConnectError, Connection, TokenVia};
use switchyard_testkit::{now, Stack};

async fn refused(stack: &Stack, options: switchyard_client::ConnectOptions) -> (u16, String) {
    match Connection::connect(&options).await {
        Err(ConnectError::Http { status, body, .. }) => (
            status,
            body.map(|b| b.error.as_str().to_string())
                .unwrap_or_default(),
        ),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => {
            let _ = stack;
            panic!("the upgrade was accepted")
        }
    }
}

fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

#[tokio::test]
async fn bad_tokens_are_refused_before_the_upgrade() {
    let stack = Stack::start().await;
    let valid = stack.token("alice", &[], &[]);
    let mut no_token = stack.options("/ws", "");
    no_token.token = None;
    assert_eq!(
        refused(&stack, no_token).await,
        (401, "missing_token".into())
    );

    let other_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": "alice", "exp": now() + 60.0}),
        &jsonwebtoken::EncodingKey::from_secret(b"not the server's secret"),
    )
    .unwrap();
    assert_eq!(
        refused(&stack, stack.options("/ws", &other_key)).await,
        (401, "invalid_token".into())
    );

    let claims = b64(format!(r#"{{"sub":"alice","exp":{}}}"#, now() + 60.0).as_bytes());
    let alg_none = format!("{}.{claims}.", b64(br#"{"alg":"none","typ":"JWT"}"#));
    assert_eq!(
        refused(&stack, stack.options("/ws", &alg_none)).await,
        (401, "invalid_token".into())
    );

    let expired = stack.sign(&serde_json::json!({"sub": "alice", "exp": now() - 60.0}));
    assert_eq!(
        refused(&stack, stack.options("/ws", &expired)).await,
        (401, "token_expired".into())
    );

    let not_yet = stack
        .sign(&serde_json::json!({"sub": "alice", "exp": now() + 600.0, "nbf": now() + 300.0}));
    assert_eq!(
        refused(&stack, stack.options("/ws", &not_yet)).await,
        (401, "invalid_token".into())
    );

    let bad_sub = stack.sign(&serde_json::json!({"sub": "a b", "exp": now() + 60.0}));
    assert_eq!(
        refused(&stack, stack.options("/ws", &bad_sub)).await,
        (401, "invalid_token".into())
    );

    let mut tampered = valid.clone();
    tampered.pop();
    tampered.push(if valid.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(
        refused(&stack, stack.options("/ws", &tampered)).await,
        (401, "invalid_token".into())
    );

    assert_eq!(refused(&stack, stack.options("/nope", &valid)).await.0, 404);
    assert_eq!(
        refused(&stack, stack.options("/ws/w1", &valid)).await,
        (400, "bad_request".into())
    );
    let bad_protocols = stack
        .options("/ws", &valid)
        .header("Sec-WebSocket-Protocol", "chat.v2");
    assert_eq!(
        refused(&stack, bad_protocols).await,
        (400, "bad_request".into())
    );
}

#[tokio::test]
async fn the_token_may_travel_in_any_of_the_three_places() {
    let stack = Stack::start().await;
    let token = stack.token("alice", &[], &[]);
    for via in [TokenVia::Header, TokenVia::Subprotocol, TokenVia::Query] {
        let options = stack.options("/ws", &token).token(&token, via);
        let mut conn = Connection::connect(&options).await.unwrap();
        let welcome = switchyard_testkit::expect::welcome(&mut conn).await;
        assert_eq!(welcome.user, "alice");
        let wants_protocol = via == TokenVia::Subprotocol;
        assert_eq!(
            conn.subprotocol(),
            wants_protocol.then_some("switchyard.v1"),
            "{via:?}"
        );
    }
}
