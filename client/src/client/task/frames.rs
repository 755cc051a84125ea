//! Answers from the server during a session: messages through dedupe to the user,
//! `ack`/`presence`/`refreshed`/`error` to the request their `ref` names, and the rest
//! to events.

use std::time::Duration;

use switchyard_protocol::error::ErrorCode;
use switchyard_protocol::{ClientFrame, ServerFrame};
use tokio::sync::oneshot;
use tracing::trace;

use super::{Pending, Task};
use crate::client::presence::apply_changes;
use crate::client::rooms::{AlreadyHeld, Verdict};
use crate::client::{ClientError, Event, Reply, RequestKind};
use crate::connection::Connection;

impl Task {
    /// Records a request under a fresh `ref`; returns its frame when it can go now.
    pub(super) async fn queue(
        &mut self,
        kind: RequestKind,
        reply: Option<oneshot::Sender<Result<Reply, ClientError>>>,
        conn: Option<&Connection>,
    ) -> Option<ClientFrame> {
        let id = self.next_ref;
        self.next_ref += 1;
        let frame = conn.map(|_| request_frame(id, &kind));
        self.requests.insert(
            id,
            Pending {
                kind,
                reply,
                sent: frame.is_some(),
                passed: Vec::new(),
            },
        );
        frame
    }

    /// A join or leave of `room`: every sent `presence` of the room waiting for its
    /// answer takes it.
    fn passed(&mut self, room: &str, user: &str, present: bool) {
        for pending in self.requests.values_mut().filter(|p| p.sent) {
            if matches!(&pending.kind, RequestKind::Presence { room: r } if r.as_str() == room) {
                pending.passed.push((user.to_string(), present));
            }
        }
    }

    /// Resolves the request a `ref` names; a `presence` answer takes the joins and leaves
    /// that passed it. Returns false when none waits for it.
    async fn resolve(
        &mut self,
        reference: Option<&str>,
        answer: Result<Reply, ClientError>,
    ) -> bool {
        let Some(id) = reference.and_then(|r| r.parse::<u64>().ok()) else {
            return false;
        };
        let Some(pending) = self.requests.remove(&id) else {
            return false;
        };
        let answer = match answer {
            Ok(Reply::Presence(members)) => {
                Ok(Reply::Presence(apply_changes(members, &pending.passed)))
            }
            other => other,
        };
        match (pending.reply, answer) {
            (Some(reply), answer) => {
                let _ = reply.send(answer);
            }
            (None, Err(ClientError::Server { code, message })) => {
                self.emit(Event::Error {
                    code,
                    message,
                    reference: Some(id.to_string()),
                    room: None,
                })
                .await;
            }
            (None, _) => {}
        }
        true
    }

    pub(super) async fn on_frame(
        &mut self,
        frame: ServerFrame<'static>,
        conn: &Connection,
    ) -> Result<(), ()> {
        match frame {
            ServerFrame::Msg {
                room,
                seq,
                from,
                ts,
                data,
            } => {
                let verdict = self.shared.rooms().on_msg(&room, seq);
                match verdict {
                    Verdict::Deliver => {
                        self.emit(Event::Message {
                            room: room.into_owned(),
                            seq,
                            from: from.into_owned(),
                            ts,
                            data: data.0,
                        })
                        .await
                    }
                    Verdict::Duplicate => trace!(seq, "duplicate dropped"),
                    Verdict::Unwanted => trace!("message for a room not wanted"),
                    Verdict::BeforePoint => trace!(seq, "message before a renewed sub"),
                }
            }
            ServerFrame::Subscribed {
                room,
                seq,
                epoch,
                recovered,
                replayed,
                ..
            } => {
                let wanted = {
                    let mut rooms = self.shared.rooms();
                    if !rooms.has_unsent() {
                        self.resubscribe.reset();
                    }
                    rooms.on_subscribed(&room, seq, &epoch)
                };
                if wanted {
                    self.emit(Event::Subscribed {
                        room: room.into_owned(),
                        seq,
                        epoch: epoch.into_owned(),
                        recovered,
                        replayed,
                    })
                    .await;
                }
            }
            ServerFrame::Unsubscribed { room, .. } => {
                if !self.shared.rooms().on_unsubscribed(&room) {
                    return Ok(());
                }
                self.emit(Event::Unsubscribed {
                    room: room.into_owned(),
                })
                .await
            }
            ServerFrame::Ack { reference, seq } => {
                self.resolve(reference.as_deref(), Ok(Reply::Ack(seq)))
                    .await;
            }
            ServerFrame::Presence {
                reference, members, ..
            } => {
                self.resolve(reference.as_deref(), Ok(Reply::Presence(members)))
                    .await;
            }
            ServerFrame::Refreshed { reference, exp } => {
                self.resolve(reference.as_deref(), Ok(Reply::Refreshed(exp)))
                    .await;
            }
            ServerFrame::Join { room, user } => {
                self.passed(&room, &user, true);
                self.emit(Event::Join {
                    room: room.into_owned(),
                    user: user.into_owned(),
                })
                .await
            }
            ServerFrame::Leave { room, user } => {
                self.passed(&room, &user, false);
                self.emit(Event::Leave {
                    room: room.into_owned(),
                    user: user.into_owned(),
                })
                .await
            }
            ServerFrame::RefreshRequired { expires_in_ms } => {
                let expires_in = Duration::from_millis(expires_in_ms);
                match self.provider.clone() {
                    Some(provider) => {
                        let kind = RequestKind::Refresh { token: provider() };
                        if let Some(frame) = self.queue(kind, None, Some(conn)).await {
                            conn.send_frame(&frame).await.map_err(|_| ())?;
                        }
                    }
                    None => self.emit(Event::RefreshRequired { expires_in }).await,
                }
            }
            ServerFrame::Error {
                reference,
                room,
                code,
                message,
            } => {
                let answer = Err(ClientError::Server {
                    code,
                    message: message.to_string(),
                });
                if self.resolve(reference.as_deref(), answer).await {
                    return Ok(());
                }
                if let Some(room) = &room {
                    // The guard is dropped before any await.
                    let renew = {
                        let mut rooms = self.shared.rooms();
                        match code {
                            // A `sub` resent after a resume that the server already held.
                            ErrorCode::AlreadySubscribed => match rooms.on_already_subscribed(room)
                            {
                                AlreadyHeld::Known => return Ok(()),
                                AlreadyHeld::Renew(frames) => Some(frames),
                                AlreadyHeld::Unknown => None,
                            },
                            ErrorCode::Unavailable => {
                                if rooms.on_unavailable(room) && self.resubscribe_at.is_none() {
                                    let delay = self.resubscribe.next_delay(&mut self.rng);
                                    self.resubscribe_at = Some(tokio::time::Instant::now() + delay);
                                }
                                None
                            }
                            ErrorCode::Forbidden | ErrorCode::BadRoom => {
                                rooms.on_refused(room);
                                None
                            }
                            _ => None,
                        }
                    };
                    if let Some(frames) = renew {
                        for frame in &frames {
                            conn.send_frame(frame).await.map_err(|_| ())?;
                        }
                        return Ok(());
                    }
                }
                self.emit(Event::Error {
                    code,
                    message: message.into_owned(),
                    reference: reference.map(|r| r.into_owned()),
                    room: room.map(|r| r.into_owned()),
                })
                .await;
            }
            ServerFrame::Pong { .. } => {}
            // Handled by the session loop.
            ServerFrame::Welcome { .. } | ServerFrame::Reconnect { .. } => {}
        }
        Ok(())
    }
}

pub(super) fn request_frame(id: u64, kind: &RequestKind) -> ClientFrame {
    let reference = Some(id.to_string());
    match kind {
        RequestKind::Publish {
            room,
            data,
            ephemeral,
        } => ClientFrame::Pub {
            room: room.clone(),
            data: data.clone(),
            ephemeral: *ephemeral,
            reference,
        },
        RequestKind::Presence { room } => ClientFrame::Presence {
            room: room.clone(),
            reference,
        },
        RequestKind::Refresh { token } => ClientFrame::Refresh {
            token: token.clone(),
            reference,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_frames_carry_their_ref() {
        let room = switchyard_protocol::RoomName::parse("lobby").unwrap();
        let frame = request_frame(
            7,
            &RequestKind::Publish {
                room,
                data: bytes::Bytes::from_static(b"{\"a\":1}"),
                ephemeral: false,
            },
        );
        assert_eq!(
            frame.encode(),
            br#"{"op":"pub","room":"lobby","data":{"a":1},"ref":"7"}"#
        );
    }
}
