//! The demo's HTTP side, without a browser: `switchyard dev` serves the page, the client
//! module exactly as committed, and tokens for the demo rooms; a gateway without the
//! demo setting serves none of it.

use std::time::Duration;

use serde_json::json;
use switchyard_protocol::claims::Claims;
use switchyard_protocol::{ErrorCode, ServerFrame};
use switchyard_testkit::{expect, Stack};

/// The module the page loads is the committed build of the client.
const CLIENT_JS: &[u8] = include_bytes!("../../client/js/dist/switchyard.js");

#[tokio::test]
async fn dev_mode_serves_the_demo_page_and_client() {
    let stack = Stack::start().await;
    let http = stack.api().with_key(None);
    let page = http.get("/demo").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers["cache-control"], "no-store");
    assert!(page.headers.contains_key("content-security-policy"));
    assert!(String::from_utf8_lossy(&page.body).contains(r#"src="/demo/demo.js""#));
    let script = http.get("/demo/demo.js").await;
    assert_eq!(script.status, 200);
    assert_eq!(
        script.headers["content-type"],
        "text/javascript; charset=utf-8"
    );
    let module = http.get("/demo/switchyard.js").await;
    assert_eq!(module.status, 200);
    assert_eq!(
        module.headers["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(module.body.as_ref(), CLIENT_JS);
    for path in ["/demo/nope", "/demo/token"] {
        let missing = http.get(path).await;
        assert_eq!(
            (missing.status, missing.error()),
            (404, "not_found".into()),
            "{path}"
        );
    }
}

#[tokio::test]
async fn demo_tokens_are_for_the_demo_rooms_and_an_hour() {
    let stack = Stack::start().await;
    let http = stack.api().with_key(None);
    let answer = http.post("/demo/token", &json!({"user": "alice"})).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let token = answer.json()["token"]
        .as_str()
        .expect("a token")
        .to_string();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Claims>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(stack.dev.state.jwt_secret.as_bytes()),
        &validation,
    )
    .expect("signed with the dev secret")
    .claims;
    assert_eq!(claims.sub, "alice");
    let lifetime = claims.exp - claims.iat.expect("iat");
    assert_eq!(Duration::from_secs_f64(lifetime), Duration::from_secs(3600));
    let scope = claims.scope.expect("scope");
    assert_eq!(
        scope.sub.as_deref(),
        Some(&["lobby".into(), "chat.>".into()][..])
    );
    assert_eq!(scope.publish, scope.sub);

    // The token works on the same origin, as the page uses it: demo rooms only.
    let (mut conn, welcome) = stack.connect(&token).await;
    assert_eq!(welcome.user, "alice");
    conn.send_text(br#"{"op":"sub","room":"chat.general","ref":"1"}"#)
        .await
        .expect("send");
    let room = expect::until(&mut conn, |frame| match frame {
        ServerFrame::Subscribed { room, .. } => Some(room.to_string()),
        _ => None,
    })
    .await;
    assert_eq!(room, "chat.general");
    conn.send_text(br#"{"op":"sub","room":"private","ref":"2"}"#)
        .await
        .expect("send");
    let code = expect::until(&mut conn, |frame| match frame {
        ServerFrame::Error { code, .. } => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(code, ErrorCode::Forbidden);

    for body in [
        json!({"user": "a b"}),
        json!({"user": ""}),
        json!({"name": "x"}),
    ] {
        let refused = http.post("/demo/token", &body).await;
        assert_eq!(
            (refused.status, refused.error()),
            (400, "bad_request".into()),
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_gateway_without_the_demo_setting_serves_no_demo() {
    let stack = Stack::start_with(|o| o.demo = false).await;
    let http = stack.api().with_key(None);
    for path in ["/demo", "/demo/switchyard.js"] {
        let missing = http.get(path).await;
        assert_eq!(
            (missing.status, missing.error()),
            (404, "not_found".into()),
            "{path}"
        );
    }
    let missing = http.post("/demo/token", &json!({"user": "alice"})).await;
    assert_eq!(missing.status, 404);
}
