//! Room names (PROTOCOL §2 "Room names"). A room name becomes part of a NATS subject,
//! so anything that could widen a subscription (`*`, `>`, empty segments, spaces) is
//! refused here, once, at the edge.

use std::fmt;
use std::sync::Arc;

use crate::claims::UserId;
use crate::limits::MAX_ROOM_BYTES;

/// A validated room name: segments of `[A-Za-z0-9_-]` joined by `.`, or `@<user id>`.
/// Cheap to clone: rooms are shared by every subscriber of a worker.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(Arc<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("room name is empty")]
    Empty,
    #[error("room name is longer than {MAX_ROOM_BYTES} bytes")]
    TooLong,
    #[error("room name has an empty segment")]
    EmptySegment,
    #[error("room name may only hold A-Z a-z 0-9 _ - and . between segments")]
    BadCharacter,
    #[error("inbox room must be @ followed by a user id")]
    BadInbox,
}

pub(crate) fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

impl RoomName {
    pub fn parse(name: &str) -> Result<RoomName, RoomError> {
        validate(name)?;
        Ok(RoomName(Arc::from(name)))
    }

    /// The inbox room of a user: `@<user>`.
    pub fn inbox(user: &UserId) -> RoomName {
        RoomName(Arc::from(format!("@{}", user.as_str())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The user whose inbox this is, for `@<user>` rooms.
    pub fn inbox_user(&self) -> Option<&str> {
        self.0.strip_prefix('@')
    }

    pub fn is_inbox(&self) -> bool {
        self.0.starts_with('@')
    }

    /// The NATS subject token(s) for this room. Inbox rooms map `@` to `_inbox.` so that
    /// every room is a plain subject suffix (`@` is legal in NATS but kept out of wildcards).
    pub fn subject_suffix(&self) -> String {
        match self.inbox_user() {
            Some(user) => format!("_inbox.{user}"),
            None => self.0.to_string(),
        }
    }

    /// The inverse of [`RoomName::subject_suffix`].
    pub fn from_subject_suffix(suffix: &str) -> Result<RoomName, RoomError> {
        match suffix.strip_prefix("_inbox.") {
            Some(user) => RoomName::parse(&format!("@{user}")),
            None => RoomName::parse(suffix),
        }
    }
}

fn validate(name: &str) -> Result<(), RoomError> {
    if name.is_empty() {
        return Err(RoomError::Empty);
    }
    if name.len() > MAX_ROOM_BYTES {
        return Err(RoomError::TooLong);
    }
    if let Some(user) = name.strip_prefix('@') {
        return UserId::parse(user)
            .map(|_| ())
            .map_err(|_| RoomError::BadInbox);
    }
    if name.starts_with("_inbox.") || name == "_inbox" {
        // Reserved for the subject form of inbox rooms.
        return Err(RoomError::BadCharacter);
    }
    for segment in name.split('.') {
        if segment.is_empty() {
            return Err(RoomError::EmptySegment);
        }
        if !segment.bytes().all(is_name_byte) {
            return Err(RoomError::BadCharacter);
        }
    }
    Ok(())
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomName({})", &self.0)
    }
}

impl AsRef<str> for RoomName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        for name in [
            "lobby",
            "chat.room-1",
            "a.b.c",
            "A_z-09",
            "@alice",
            "@a-b_c",
        ] {
            assert!(RoomName::parse(name).is_ok(), "{name}");
        }
        let max = "a".repeat(MAX_ROOM_BYTES);
        assert!(RoomName::parse(&max).is_ok());
    }

    #[test]
    fn refuses_names_that_could_widen_a_subject() {
        let cases = [
            ("", RoomError::Empty),
            ("a.>", RoomError::BadCharacter),
            ("*", RoomError::BadCharacter),
            ("a.*.c", RoomError::BadCharacter),
            (">", RoomError::BadCharacter),
            ("a b", RoomError::BadCharacter),
            ("a\tb", RoomError::BadCharacter),
            ("a\nb", RoomError::BadCharacter),
            ("a..b", RoomError::EmptySegment),
            (".a", RoomError::EmptySegment),
            ("a.", RoomError::EmptySegment),
            ("é", RoomError::BadCharacter),
            ("_inbox.bob", RoomError::BadCharacter),
            ("@", RoomError::BadInbox),
            ("@a.b", RoomError::BadInbox),
            ("@*", RoomError::BadInbox),
            ("a@b", RoomError::BadCharacter),
        ];
        for (name, want) in cases {
            assert_eq!(RoomName::parse(name), Err(want), "{name:?}");
        }
        assert_eq!(
            RoomName::parse(&"a".repeat(MAX_ROOM_BYTES + 1)),
            Err(RoomError::TooLong)
        );
    }

    #[test]
    fn inbox_rooms() {
        let room = RoomName::parse("@bob").unwrap();
        assert!(room.is_inbox());
        assert_eq!(room.inbox_user(), Some("bob"));
        assert_eq!(room.subject_suffix(), "_inbox.bob");
        assert_eq!(RoomName::from_subject_suffix("_inbox.bob").unwrap(), room);
        let plain = RoomName::parse("chat.1").unwrap();
        assert_eq!(plain.subject_suffix(), "chat.1");
        assert_eq!(RoomName::from_subject_suffix("chat.1").unwrap(), plain);
        assert_eq!(RoomName::inbox(&UserId::parse("bob").unwrap()), room);
    }
}
