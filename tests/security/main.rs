//! Internal security (DESIGN "Security"), each refusal shown over real sockets:
//!
//! - `handoff`: gateway → worker hand-offs over mTLS (`[worker.tls]`,
//!   `[internal_tls]`), in this process on the memory engine.
//! - `nats`: the shipped `nats/` configs, rendered for loopback (certificates from
//!   `pki`, free ports), on real nats-server processes: the 3-node cluster with mTLS on
//!   clients and routes carries a mesh of `switchyard` processes (`roles`), and each
//!   NATS user is refused what its role must not do; `nats/gen-certs.sh` makes what
//!   `single.conf` needs.

mod handoff;
mod nats;
mod pki;
mod roles;

use switchyard_client::Connection;
use switchyard_protocol::frame::ServerFrame;
pub use switchyard_testkit::expect::publish;
use switchyard_testkit::{expect, now};

/// The gateways' HMAC secret for signed identities, in the in-process tests.
pub const IDENTITY_SECRET: &[u8] = b"identity secret of the security tests";
/// The HS256 secret of tokens, in the in-process tests.
pub const JWT_SECRET: &[u8] = b"jwt secret of the security tests";

/// An HS256 token for `user` with these scopes, valid for an hour.
pub fn token(secret: &[u8], user: &str, sub: &[&str], publish: &[&str]) -> String {
    let claims = serde_json::json!({
        "sub": user,
        "exp": now() + 3600.0,
        "iat": now(),
        "scope": {"sub": sub, "pub": publish},
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("claims sign")
}

async fn send(conn: &Connection, text: &str) {
    conn.send_text(text.as_bytes()).await.expect("send");
}

/// Subscribes from the start of the room's history and waits for `subscribed`.
pub async fn subscribe(conn: &mut Connection, room: &str) {
    send(
        conn,
        &format!(r#"{{"op":"sub","room":"{room}","since":0,"ref":"sub-{room}"}}"#),
    )
    .await;
    expect::until(conn, |f| match f {
        ServerFrame::Subscribed { room: r, .. } if r == room => Some(()),
        ServerFrame::Error { code, message, .. } => panic!("subscribe failed: {code:?} {message}"),
        _ => None,
    })
    .await
}

/// Waits for the stored message `seq` of `room` and returns its data.
pub async fn message(conn: &mut Connection, room: &str, seq: u64) -> String {
    expect::until(conn, |f| match f {
        ServerFrame::Msg {
            room: r,
            seq: Some(s),
            data,
            ..
        } if r == room && *s == seq => Some(data.get().to_string()),
        _ => None,
    })
    .await
}
