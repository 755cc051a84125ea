//! End-to-end tests through the real stack over real sockets: a TLS WebSocket client →
//! gateway → worker on the memory engine. One binary, many modules, to keep link time low.

mod api;
mod auth;
mod client;
mod drain;
mod limits;
mod mesh;
mod metrics;
mod observability;
mod resume;
mod roles;
mod session;
mod slow_consumer;

use switchyard_client::Connection;
use switchyard_protocol::frame::ServerFrame;
use switchyard_testkit::expect;
pub use switchyard_testkit::expect::publish;

/// Sends a raw text frame.
pub async fn send(conn: &Connection, text: &str) {
    conn.send_text(text.as_bytes()).await.expect("send");
}

/// Subscribes and returns the `subscribed` answer as (seq, epoch, recovered, replayed).
pub async fn subscribe(conn: &mut Connection, room: &str) -> (u64, String, bool, u64) {
    send(
        conn,
        &format!(r#"{{"op":"sub","room":"{room}","ref":"sub-{room}"}}"#),
    )
    .await;
    subscribed(conn, room).await
}

pub async fn subscribed(conn: &mut Connection, room: &str) -> (u64, String, bool, u64) {
    expect::until(conn, |f| match f {
        ServerFrame::Subscribed {
            room: r,
            seq,
            epoch,
            recovered,
            replayed,
            ..
        } if r == room => Some((*seq, epoch.to_string(), *recovered, *replayed)),
        ServerFrame::Error { code, message, .. } => panic!("subscribe failed: {code:?} {message}"),
        _ => None,
    })
    .await
}

/// The next `msg` of a room as (seq, from, data).
pub async fn next_msg(conn: &mut Connection, room: &str) -> (Option<u64>, String, String) {
    expect::until(conn, |f| match f {
        ServerFrame::Msg {
            room: r,
            seq,
            from,
            data,
            ..
        } if r == room => Some((*seq, from.to_string(), data.get().to_string())),
        _ => None,
    })
    .await
}

/// The next error frame as (code, ref, room).
pub async fn next_error(conn: &mut Connection) -> (String, Option<String>, Option<String>) {
    expect::until(conn, |f| match f {
        ServerFrame::Error {
            code,
            reference,
            room,
            ..
        } => Some((
            code.as_str().to_string(),
            reference.as_ref().map(|r| r.to_string()),
            room.as_ref().map(|r| r.to_string()),
        )),
        _ => None,
    })
    .await
}

/// Pings with the `ping` op and waits for its pong: proves the connection is open.
pub async fn ping(conn: &mut Connection, reference: &str) {
    send(conn, &format!(r#"{{"op":"ping","ref":"{reference}"}}"#)).await;
    expect::until(conn, |f| {
        matches!(f, ServerFrame::Pong { reference: Some(r) } if r == reference).then_some(())
    })
    .await;
}
