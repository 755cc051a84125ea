//! Waiting for what a test expects, with a deadline and a clear failure.

use switchyard_client::{Connection, Incoming};
use switchyard_protocol::frame::ServerFrame;

use crate::{Welcome, WAIT};

/// The next frame, failing the test on close or timeout.
pub async fn frame(conn: &mut Connection) -> ServerFrame<'static> {
    match conn.recv_timeout(WAIT).await {
        Ok(Incoming::Frame(frame)) => frame,
        Ok(Incoming::Closed { code, reason }) => {
            panic!("closed with {code:?} ({reason}) while a frame was expected")
        }
        Err(err) => panic!("no frame: {err}"),
    }
}

/// Reads frames until one matches, skipping others (heartbeat-free protocol noise
/// such as presence events). Fails after [`WAIT`].
pub async fn until<T>(
    conn: &mut Connection,
    mut pick: impl FnMut(&ServerFrame<'static>) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match conn.recv_timeout(left).await {
            Ok(Incoming::Frame(frame)) => {
                if let Some(found) = pick(&frame) {
                    return found;
                }
            }
            Ok(Incoming::Closed { code, reason }) => {
                panic!("closed with {code:?} ({reason}) while waiting")
            }
            Err(err) => panic!("gave up waiting: {err}"),
        }
    }
}

/// The close code the server ends with, skipping frames before it.
pub async fn closed(conn: &mut Connection) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match conn.recv_timeout(left).await {
            Ok(Incoming::Frame(_)) => continue,
            Ok(Incoming::Closed { code, .. }) => return code,
            Err(err) => panic!("no close frame: {err}"),
        }
    }
}

pub async fn welcome(conn: &mut Connection) -> Welcome {
    let frame = frame(conn).await;
    Welcome::from_frame(frame.clone())
        .unwrap_or_else(|| panic!("first frame is not welcome: {frame:?}"))
}

/// Publishes `data` (JSON text) to `room` with `reference` and returns the seq of its
/// `ack`, failing the test on an `error` for that `ref` or a timeout.
pub async fn publish(conn: &mut Connection, room: &str, data: &str, reference: &str) -> u64 {
    let frame = format!(r#"{{"op":"pub","room":"{room}","data":{data},"ref":"{reference}"}}"#);
    conn.send_text(frame.as_bytes()).await.expect("send pub");
    until(conn, |f| match f {
        ServerFrame::Ack {
            reference: Some(r),
            seq: Some(seq),
        } if r == reference => Some(*seq),
        ServerFrame::Error {
            reference: Some(r),
            code,
            message,
            ..
        } if r == reference => panic!("publish refused: {code:?} {message}"),
        _ => None,
    })
    .await
}
