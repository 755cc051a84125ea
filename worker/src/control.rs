//! Mesh-wide commands from the broker: disconnect (and revoke) a user everywhere.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use switchyard_broker::Control;
use switchyard_protocol::CloseCode;
use tracing::{debug, warn};

use crate::session::connection::end_session;
use crate::session::{lock, Attachment};
use crate::Shared;

/// How long to wait before asking the broker for the control feed again.
const RETRY: Duration = Duration::from_secs(1);

pub(crate) async fn run(shared: Arc<Shared>) {
    loop {
        let mut feed = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            feed = shared.broker.control_feed() => match feed {
                Ok(feed) => feed,
                Err(err) => {
                    warn!(error = %err, "control feed unavailable, retrying");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            },
        };
        loop {
            let event = tokio::select! {
                _ = shared.shutdown.cancelled() => return,
                event = feed.next() => event,
            };
            match event {
                Some(Control::Disconnect { user, .. }) => {
                    let sessions: Vec<_> = lock(&shared.sessions)
                        .iter()
                        .filter(|s| s.user == user)
                        .cloned()
                        .collect();
                    debug!(user.id = %user, sessions = sessions.len(), "disconnecting user");
                    for session in sessions {
                        let detached =
                            matches!(&*lock(&session.attachment), Attachment::Detached(_));
                        if detached {
                            end_session(&shared, &session).await;
                        } else {
                            session.request_close(CloseCode::Disconnected);
                        }
                    }
                }
                None => break,
            }
        }
    }
}
