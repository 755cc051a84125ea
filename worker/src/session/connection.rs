//! One socket's life: take a connection slot, attach a session (fresh or resumed), send
//! `welcome`, run reader and writer side by side, then detach or end the session.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use fastwebsockets::upgrade::UpgradeFut;
use fastwebsockets::{Frame, Payload, WebSocket};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use rand::RngExt;
use switchyard_protocol::frame::ServerFrame;
use switchyard_protocol::{CloseCode, Identity};
use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, debug_span, info_span, Instrument};

use super::cursor::Cursors;
use super::millis::Millis;
use super::writer::End;
use super::{
    lock, queue, reader, writer, Attachment, Detached, Grant, Requests, Session, Terms,
    WriterState, RESUME_TOKEN_BYTES,
};
use crate::Shared;

/// How long a resume waits for the socket it takes over to let go of the session.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection's task. Not an `async fn`: one would keep its arguments (the identity,
/// 168 bytes) for the connection's whole life, and this future is held per connection.
pub(crate) fn serve(
    shared: Arc<Shared>,
    upgrade: UpgradeFut,
    identity: Identity,
) -> impl Future<Output = ()> + Send {
    // Made in the caller, so it must not become a child of the caller's span (the
    // upgrade's), which would then stay open as long as the session: the gateway's
    // `handoff` span (or the client's context) is the session's parent.
    //
    // At `debug` unless traces are exported: a session's own events log at
    // `debug`, and at `info` the span would only hold the subscriber's copy of its
    // fields, about 0.5 KB a connection for the connection's whole life.
    let span = if switchyard_telemetry::trace::enabled() {
        info_span!(parent: None, "session", user.id = %identity.user, worker.id = %shared.id, conn.id = tracing::field::Empty)
    } else {
        debug_span!(parent: None, "session", user.id = %identity.user, worker.id = %shared.id, conn.id = tracing::field::Empty)
    };
    switchyard_telemetry::trace::set_parent(&span, identity.traceparent.as_deref());
    // Its own future, boxed and dropped before the connection runs: what the upgrade,
    // attach and welcome leave (the encoded `welcome`, the identity's strings) would
    // otherwise stay in this task for the connection's whole life.
    let opening = Box::pin(open(shared.clone(), upgrade, identity));
    async move {
        // Bound field by field: a whole `Opened` would keep its slot while its parts run.
        let Some(Opened {
            ws,
            permit: _permit,
            session,
            mut state,
            welcomed,
        }) = opening.await
        else {
            return;
        };
        let end = if welcomed {
            let (mut read, mut write) = ws.split(tokio::io::split);
            let liveness = reader::Liveness::new();
            tokio::select! {
                end = reader::run(&shared, &session, &mut read, &liveness) => end,
                end = writer::run(&shared, &session, &mut write, &mut state, &liveness) => end.unwrap_or(End::Lost),
            }
        } else {
            End::Lost
        };
        debug!(?end, "connection ended");
        Box::pin(finish(&shared, &session, state, end)).await;
    }
    .instrument(span)
}

/// A socket past its upgrade, holding a connection slot and a session.
struct Opened {
    ws: WebSocket<TokioIo<Upgraded>>,
    permit: OwnedSemaphorePermit,
    session: Arc<Session>,
    state: WriterState,
    /// Whether `welcome` was written; if not the socket is gone.
    welcomed: bool,
}

/// Completes the upgrade, takes a connection slot, attaches a session and sends
/// `welcome`. `None` when the upgrade failed or the worker is full (closed with 1013).
async fn open(shared: Arc<Shared>, upgrade: UpgradeFut, identity: Identity) -> Option<Opened> {
    let mut ws = match upgrade.await {
        Ok(ws) => ws,
        Err(err) => {
            debug!(error = %err, "upgrade did not complete");
            return None;
        }
    };
    // Every frame goes out as a vectored write of its header and payload, never copied
    // into a write buffer first: the buffer would stay with every idle socket.
    ws.set_writev_threshold(0);
    let Ok(permit) = shared.permits.clone().try_acquire_owned() else {
        debug!("worker full: closing with 1013");
        let code = CloseCode::TryAgainLater;
        let _ = tokio::time::timeout(
            shared.config.write_timeout(),
            ws.write_frame(Frame::close(code.code(), code.reason().as_bytes())),
        )
        .await;
        return None;
    };
    let (session, state, resumed) = attach(&shared, &identity).await;
    tracing::Span::current().record("conn.id", &*session.conn);
    let welcome = ServerFrame::Welcome {
        conn: (&*session.conn).into(),
        worker: (&*shared.id).into(),
        resume: format!("/ws/{}/{}", shared.id, session.conn).into(),
        resume_token: URL_SAFE_NO_PAD.encode(session.resume_token).into(),
        heartbeat_ms: shared.config.heartbeat.as_millis() as u64,
        resumed,
        user: session.user.as_str().into(),
    }
    .encode();
    shared
        .metrics
        .connections_accepted
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    shared.metrics.frame_out(&welcome);
    let sent = tokio::time::timeout(
        shared.config.write_timeout(),
        ws.write_frame(Frame::text(Payload::Borrowed(&welcome))),
    )
    .await;
    Some(Opened {
        ws,
        permit,
        session,
        state,
        welcomed: matches!(sent, Ok(Ok(()))),
    })
}

/// Resumes the session named by the identity when its owner asks for it with the right
/// `resume_token`, else starts a fresh one.
async fn attach(shared: &Arc<Shared>, identity: &Identity) -> (Arc<Session>, WriterState, bool) {
    let grant = Grant {
        scope: identity.scope.clone(),
        exp: identity.exp,
    };
    if let (Some(conn), Some(token)) = (&identity.resume_conn, &identity.resume_token) {
        let found = lock(&shared.sessions).get(conn);
        if let Some(session) = found {
            let owner = session.user == identity.user
                && URL_SAFE_NO_PAD
                    .decode(token)
                    .is_ok_and(|token| constant_time_eq(&session.resume_token, &token));
            if owner {
                if let Some(mut state) = take_over(&session).await {
                    state.cursors.rewind();
                    // Wakes the writer too, which looks at the lag to fill.
                    session.change_terms(|terms| terms.grant = grant);
                    shared
                        .stats
                        .sessions_resumed
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return (session, state, true);
                }
            }
        }
    }
    let (outbox_tx, outbox_rx) = queue::bounded(shared.config.outbox_capacity);
    let session = Arc::new(Session {
        conn: new_conn_id(),
        user: identity.user.clone(),
        resume_token: new_resume_token(),
        outbox: outbox_tx,
        terms: std::sync::Mutex::new(Terms {
            grant,
            close: None,
            requests: Requests::default(),
        }),
        subs: Default::default(),
        attachment: std::sync::Mutex::new(Attachment::Attached { takeover: None }),
    });
    lock(&shared.sessions).insert(session.clone());
    (
        session,
        WriterState {
            outbox: outbox_rx,
            cursors: Cursors::default(),
        },
        false,
    )
}

/// Takes a session's writer state, asking a socket that still holds it to let go.
async fn take_over(session: &Session) -> Option<WriterState> {
    let deadline = Instant::now() + TAKEOVER_TIMEOUT;
    loop {
        let waiting = {
            let mut attachment = lock(&session.attachment);
            match &mut *attachment {
                Attachment::Ended => return None,
                Attachment::Attached { takeover } => {
                    let waiting = takeover.get_or_insert_with(Default::default).clone();
                    session.outbox.wake();
                    waiting
                }
                Attachment::Detached(_) => {
                    let attached = Attachment::Attached { takeover: None };
                    let Attachment::Detached(detached) =
                        std::mem::replace(&mut *attachment, attached)
                    else {
                        unreachable!("matched Detached above")
                    };
                    return Some(detached.state);
                }
            }
        };
        let changed = waiting.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        // The socket may have let go before this waited: then look again at once.
        let still = matches!(
            &*lock(&session.attachment),
            Attachment::Attached { takeover: Some(t) } if Arc::ptr_eq(t, &waiting)
        );
        if still
            && tokio::time::timeout_at(deadline.into(), changed)
                .await
                .is_err()
        {
            return None;
        }
    }
}

async fn finish(shared: &Arc<Shared>, session: &Arc<Session>, state: WriterState, end: End) {
    let keep = matches!(end, End::Lost | End::TakenOver) && !shared.is_draining();
    if keep {
        let since = Millis::now();
        session.set_attachment(Attachment::Detached(Box::new(Detached { state, since })));
        let (shared, session) = (shared.clone(), session.clone());
        shared.clone().tracker.spawn(async move {
            tokio::time::sleep(shared.config.session_ttl).await;
            let expired =
                matches!(&*lock(&session.attachment), Attachment::Detached(d) if d.since == since);
            if expired {
                debug!(conn.id = %session.conn, "detached session expired");
                end_session(&shared, &session).await;
            }
        });
    } else {
        drop(state);
        end_session(shared, session).await;
    }
}

/// Ends a session for good: leaves its rooms and presence, forgets it.
pub(crate) async fn end_session(shared: &Shared, session: &Session) {
    if matches!(session.set_attachment(Attachment::Ended), Attachment::Ended) {
        return;
    }
    lock(&shared.sessions).remove(&session.conn);
    let subs = std::mem::take(&mut *lock(&session.subs));
    for room in subs.into_rooms() {
        super::leave_room(shared, session, &room).await;
    }
}

/// `c_` and 12 letters and digits (71 random bits): unique among a worker's sessions,
/// and not a secret (the resume token is). Short, because every connection keeps it in
/// a 32-byte allocation its session, rooms and presence share.
fn new_conn_id() -> Arc<str> {
    let mut id = [0u8; 2 + 12];
    id[..2].copy_from_slice(b"c_");
    for (byte, random) in id[2..]
        .iter_mut()
        .zip(rand::rng().sample_iter(rand::distr::Alphanumeric))
    {
        *byte = random;
    }
    std::str::from_utf8(&id)
        .expect("alphanumeric is ASCII")
        .into()
}

fn new_resume_token() -> [u8; RESUME_TOKEN_BYTES] {
    rand::rng().random()
}

/// Compares secrets without an early exit, so timing does not reveal a prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
