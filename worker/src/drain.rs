//! Drain and shutdown (STYLE §8): publish the phase, close every session with the
//! right code, wait for the tracker within a grace period, then abandon what is left.

use std::sync::Arc;
use std::time::Duration;

use switchyard_protocol::CloseCode;
use tracing::{info, warn};

use crate::session::connection::end_session;
use crate::session::{lock, Attachment};
use crate::{Phase, Shared};

pub(crate) async fn run(shared: &Arc<Shared>, grace: Duration) {
    shared
        .metrics
        .drains
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    shared.phase.send_replace(Phase::Draining);
    close_all(shared, CloseCode::Drained, grace).await;
}

pub(crate) async fn shutdown(shared: &Arc<Shared>, grace: Duration) {
    shared.phase.send_replace(Phase::Draining);
    close_all(shared, CloseCode::GoingAway, grace).await;
}

async fn close_all(shared: &Arc<Shared>, code: CloseCode, grace: Duration) {
    let sessions: Vec<_> = lock(&shared.sessions).iter().cloned().collect();
    info!(
        sessions = sessions.len(),
        code = code.code(),
        "closing every session"
    );
    for session in &sessions {
        let detached = matches!(&*lock(&session.attachment), Attachment::Detached(_));
        if detached {
            end_session(shared, session).await;
        } else {
            session.request_close(code);
        }
    }
    shared.shutdown.cancel();
    shared.tracker.close();
    if tokio::time::timeout(grace, shared.tracker.wait())
        .await
        .is_err()
    {
        warn!(
            left = lock(&shared.sessions).len(),
            "grace period over: abandoning the sessions left"
        );
    }
}
