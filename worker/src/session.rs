//! A session: one client's subscriptions, outbox and delivery cursors. It outlives its
//! socket: on an abnormal close it is detached for `session_ttl`, buffering into its
//! bounded outbox, and a sticky reconnect with its `resume_token` attaches a new socket.
//!
//! Per socket there are two halves, run side by side in one task ([`connection`]):
//! the [`reader`] parses frames and acts on them, the [`writer`] owns the write half and
//! drains the outbox. Only the writer writes; it alone ends a connection with a close.

pub(crate) mod alarms;
pub(crate) mod connection;
pub(crate) mod cursor;
mod delivery;
mod millis;
pub(crate) mod outbox;
pub(crate) mod queue;
mod reader;
mod room_map;
mod writer;

use std::sync::{Arc, Mutex};

use switchyard_protocol::{CloseCode, RoomName, Scope, UserId};
use tokio::sync::Notify;

use cursor::Cursors;
use millis::Millis;
use outbox::OutItem;
use room_map::RoomMap;

/// What a token grants, replaced on `refresh`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Grant {
    pub(crate) scope: Scope,
    /// Seconds since the epoch.
    pub(crate) exp: f64,
}

/// What the writer acts on when it changes. Behind a mutex, its changes told through the
/// outbox's wake-up, not in a `watch` channel (one of those costs about 400 bytes), and
/// the reader's requests here too rather than in a queue of their own (128 bytes): every
/// session has this.
#[derive(Debug)]
pub(crate) struct Terms {
    /// Replaced on `refresh`: the writer moves its expiry timer.
    pub(crate) grant: Grant,
    /// A close the server wants (drain, disconnect) or the reader does (a bad frame): the
    /// writer sends it, or, if the socket was already gone, the writer of the socket
    /// that resumes the session.
    pub(crate) close: Option<CloseCode>,
    /// What the reader asked of the writer since the writer last looked.
    pub(crate) requests: Requests,
}

/// Frames the reader owes the client (RFC 6455 §5.5), written by the writer.
#[derive(Debug, Default)]
pub(crate) struct Owed {
    /// The payload of the latest client ping: a pong answers only the most recent ping
    /// not yet answered (§5.5.3 allows it), so a flood of pings costs one pong.
    pub(crate) pong: Option<Vec<u8>>,
    /// The client's close payload, echoed before the connection ends.
    pub(crate) close_echo: Option<Vec<u8>>,
}

/// What the reader asks of the writer.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    /// The highest ping id whose pong the reader saw (0: none). A pong confirms every
    /// ping before it too (`cursor`), so only the highest matters.
    pub(crate) pong_id: u32,
    /// Frames owed to the client, boxed: client pings and closes are rare.
    pub(crate) owed: Option<Box<Owed>>,
}

/// The part of a session that only its writer touches; handed back on detach.
pub(crate) struct WriterState {
    pub(crate) outbox: queue::Receiver<OutItem>,
    pub(crate) cursors: Cursors,
}

pub(crate) enum Attachment {
    /// A socket serves the session. With `takeover`, resumes wait for it to let go:
    /// its writer is asked through the session's wake-up, and they are told through the
    /// `Notify` once it has. Made by the first resume that waits: every session holds
    /// an `Attachment`, and a `Notify` is 32 bytes.
    Attached {
        takeover: Option<Arc<Notify>>,
    },
    /// Boxed: every session holds an `Attachment`, and only a detached one the state.
    Detached(Box<Detached>),
    Ended,
}

/// A session without a socket, waiting for a resume.
pub(crate) struct Detached {
    pub(crate) state: WriterState,
    /// When it was detached: the expiry timer of this detach ends the session only if no
    /// resume came between (one of a later detach in the same millisecond would end it
    /// that millisecond early).
    pub(crate) since: Millis,
}

/// The length of a resume token, before encoding.
pub(crate) const RESUME_TOKEN_BYTES: usize = 24;

pub(crate) struct Session {
    pub(crate) conn: Arc<str>,
    pub(crate) user: UserId,
    /// The secret a sticky reconnect presents to resume this session: random bytes,
    /// sent base64url-encoded in `welcome` and kept raw here (no allocation of its own).
    pub(crate) resume_token: [u8; RESUME_TOKEN_BYTES],
    /// The writer's queue, and its one wake-up ([`queue::Sender::wake`]) for whatever it
    /// must look at again: a room fan-out marked lagged, changed terms, a takeover. One
    /// wake-up rather than one per cause, and in the queue the writer waits on anyway:
    /// each waiting writer would hold a waiter for every source it listens to.
    pub(crate) outbox: queue::Sender<OutItem>,
    /// Changed through [`Session::change_terms`], which wakes the writer.
    pub(crate) terms: Mutex<Terms>,
    /// Rooms this session is subscribed to.
    pub(crate) subs: Mutex<RoomMap<()>>,
    /// Changed through [`Session::set_attachment`].
    pub(crate) attachment: Mutex<Attachment>,
}

/// Leaves a room for good: the worker's local membership and the room's presence.
pub(crate) async fn leave_room(shared: &crate::Shared, session: &Session, room: &RoomName) {
    shared.rooms.leave(room, &session.conn);
    if let Err(err) = shared
        .broker
        .leave(room, &session.user, &session.conn)
        .await
    {
        tracing::debug!(error = %err, room = %room, "presence leave failed");
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Session state is plain data; a panic elsewhere must not take every session down.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Session {
    /// Asks the writer to close the socket with `code`, or ends a detached session.
    pub(crate) fn request_close(&self, code: CloseCode) {
        self.change_terms(|terms| terms.close = Some(code));
    }

    /// Changes the terms and wakes the writer to act on them (a writer that is not
    /// waiting finds the wake-up stored, so none is lost).
    pub(crate) fn change_terms(&self, change: impl FnOnce(&mut Terms)) {
        change(&mut lock(&self.terms));
        self.outbox.wake();
    }

    /// Whether a resume has asked the socket serving this session to let go.
    pub(crate) fn release_requested(&self) -> bool {
        matches!(
            *lock(&self.attachment),
            Attachment::Attached { takeover: Some(_) }
        )
    }

    /// Sets the attachment, telling the resumes that wait for a socket to let go.
    pub(crate) fn set_attachment(&self, next: Attachment) -> Attachment {
        let before = std::mem::replace(&mut *lock(&self.attachment), next);
        if let Attachment::Attached {
            takeover: Some(waiting),
        } = &before
        {
            waiting.notify_waiters();
        }
        before
    }

    /// The close asked for, if any, and the grant's expiry.
    pub(crate) fn close_and_expiry(&self) -> (Option<CloseCode>, f64) {
        let terms = lock(&self.terms);
        (terms.close, terms.grant.exp)
    }

    /// The reader's pong of ping `id` arrived: tells the writer, which confirms the
    /// cursors of that ping.
    pub(crate) fn pong_received(&self, id: u32) {
        self.change_terms(|terms| terms.requests.pong_id = terms.requests.pong_id.max(id));
    }

    /// The reader owes the client a frame: tells the writer.
    pub(crate) fn owe(&self, add: impl FnOnce(&mut Owed)) {
        self.change_terms(|terms| add(terms.requests.owed.get_or_insert_with(Default::default)));
    }

    /// Takes what the reader asked of the writer since it last looked.
    pub(crate) fn take_requests(&self) -> Requests {
        std::mem::take(&mut lock(&self.terms).requests)
    }
}
