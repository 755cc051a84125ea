//! Token claims (PROTOCOL §1 "Tokens") and the scope patterns that decide which rooms a
//! user may subscribe and publish to. Signature and time checks live in the gateway;
//! this module only says what a verified token means.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::limits::MAX_USER_BYTES;
use crate::room::{is_name_byte, RoomName};

/// A user id: 1–64 bytes of `[A-Za-z0-9_-]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct UserId(Arc<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("user id must be 1-{MAX_USER_BYTES} bytes of A-Z a-z 0-9 _ -")]
pub struct BadUserId;

impl UserId {
    pub fn parse(id: &str) -> Result<UserId, BadUserId> {
        if id.is_empty() || id.len() > MAX_USER_BYTES || !id.bytes().all(is_name_byte) {
            return Err(BadUserId);
        }
        Ok(UserId(Arc::from(id)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        UserId::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", &self.0)
    }
}

/// The claims of a Switchyard token, as they are signed. `exp`, `nbf` and `iat` are
/// seconds since the epoch and may be fractional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ScopeClaim>,
}

/// `aud` is a string or a list of strings (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::One(a) => a == wanted,
            Audience::Many(list) => list.iter().any(|a| a == wanted),
        }
    }
}

/// `scope` as signed: lists of pattern strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeClaim {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<Vec<String>>,
    #[serde(default, rename = "pub", skip_serializing_if = "Option::is_none")]
    pub publish: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("scope pattern {0:?} is not a valid room pattern")]
    BadPattern(String),
    #[error("scope lists at most {MAX_PATTERNS} patterns each")]
    TooMany,
}

/// Most patterns one scope list may hold; a token is not a database.
pub const MAX_PATTERNS: usize = 256;

/// One room pattern with NATS subject semantics on room names (`*` one segment, `>` one
/// or more trailing segments). Inbox patterns start with `@` and match only inboxes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Pattern(String);

impl TryFrom<String> for Pattern {
    type Error = ScopeError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Pattern::parse(&text)
    }
}

impl From<Pattern> for String {
    fn from(p: Pattern) -> String {
        p.0
    }
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, ScopeError> {
        let bad = || ScopeError::BadPattern(text.to_string());
        if text.is_empty() || text.len() > crate::limits::MAX_ROOM_BYTES {
            return Err(bad());
        }
        if let Some(user) = text.strip_prefix('@') {
            if user == "*" || UserId::parse(user).is_ok() {
                return Ok(Pattern(text.to_string()));
            }
            return Err(bad());
        }
        let segments: Vec<&str> = text.split('.').collect();
        for (i, seg) in segments.iter().enumerate() {
            let ok = match *seg {
                "*" => true,
                ">" => i == segments.len() - 1,
                s => !s.is_empty() && s.bytes().all(is_name_byte),
            };
            if !ok {
                return Err(bad());
            }
        }
        Ok(Pattern(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, room: &RoomName) -> bool {
        match (self.0.strip_prefix('@'), room.inbox_user()) {
            (Some(p), Some(user)) => p == "*" || p == user,
            (None, None) => subject_matches(&self.0, room.as_str()),
            _ => false,
        }
    }
}

fn subject_matches(pattern: &str, room: &str) -> bool {
    let mut room_segments = room.split('.');
    for p in pattern.split('.') {
        match (p, room_segments.next()) {
            (">", Some(_)) => return true,
            (_, None) => return false,
            ("*", Some(_)) => {}
            (p, Some(r)) if p == r => {}
            _ => return false,
        }
    }
    room_segments.next().is_none()
}

/// What a user may do: the parsed `scope` of their token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    #[serde(default)]
    pub sub: Vec<Pattern>,
    #[serde(default, rename = "pub")]
    pub publish: Vec<Pattern>,
}

impl Scope {
    pub fn from_claim(claim: Option<&ScopeClaim>) -> Result<Scope, ScopeError> {
        let parse = |list: Option<&Vec<String>>| -> Result<Vec<Pattern>, ScopeError> {
            let list = list.map(Vec::as_slice).unwrap_or_default();
            if list.len() > MAX_PATTERNS {
                return Err(ScopeError::TooMany);
            }
            list.iter().map(|p| Pattern::parse(p)).collect()
        };
        Ok(Scope {
            sub: parse(claim.and_then(|c| c.sub.as_ref()))?,
            publish: parse(claim.and_then(|c| c.publish.as_ref()))?,
        })
    }

    /// A user may always subscribe to their own inbox.
    pub fn may_subscribe(&self, user: &UserId, room: &RoomName) -> bool {
        room.inbox_user() == Some(user.as_str()) || self.sub.iter().any(|p| p.matches(room))
    }

    pub fn may_publish(&self, room: &RoomName) -> bool {
        self.publish.iter().any(|p| p.matches(room))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(s: &str) -> RoomName {
        RoomName::parse(s).unwrap()
    }

    fn pat(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    #[test]
    fn user_ids() {
        assert!(UserId::parse("alice").is_ok());
        assert!(UserId::parse(&"a".repeat(64)).is_ok());
        for bad in ["", "a b", "a.b", "$server", "@x", &"a".repeat(65), "é"] {
            assert_eq!(UserId::parse(bad), Err(BadUserId), "{bad:?}");
        }
    }

    #[test]
    fn star_matches_exactly_one_segment_anywhere() {
        assert!(pat("chat.*").matches(&room("chat.1")));
        assert!(!pat("chat.*").matches(&room("chat")));
        assert!(!pat("chat.*").matches(&room("chat.1.2")));
        assert!(pat("a.*.c").matches(&room("a.b.c")));
        assert!(!pat("a.*.c").matches(&room("a.b.d")));
        assert!(pat("*").matches(&room("lobby")));
        assert!(!pat("*").matches(&room("a.b")));
    }

    #[test]
    fn gt_matches_one_or_more_trailing_segments() {
        assert!(pat("game.>").matches(&room("game.1")));
        assert!(pat("game.>").matches(&room("game.1.2")));
        assert!(!pat("game.>").matches(&room("game")));
        assert!(pat(">").matches(&room("anything.at.all")));
        assert!(pat("lobby").matches(&room("lobby")));
        assert!(!pat("lobby").matches(&room("lobby2")));
    }

    #[test]
    fn inboxes_are_matched_only_by_at_patterns() {
        assert!(!pat(">").matches(&room("@bob")));
        assert!(!pat("*").matches(&room("@bob")));
        assert!(pat("@*").matches(&room("@bob")));
        assert!(pat("@bob").matches(&room("@bob")));
        assert!(!pat("@bob").matches(&room("@alice")));
        assert!(!pat("@*").matches(&room("lobby")));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "", "a.>.b", "a..b", "a b", "@", "@a.b", "@>", "x*", "*x", ">x",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn missing_scope_allows_only_own_inbox() {
        let alice = UserId::parse("alice").unwrap();
        let scope = Scope::from_claim(None).unwrap();
        assert!(scope.may_subscribe(&alice, &room("@alice")));
        assert!(!scope.may_subscribe(&alice, &room("@bob")));
        assert!(!scope.may_subscribe(&alice, &room("lobby")));
        assert!(!scope.may_publish(&room("@alice")));
        assert!(!scope.may_publish(&room("lobby")));
    }

    #[test]
    fn scope_from_claim() {
        let claim: ScopeClaim =
            serde_json::from_str(r#"{"sub":["chat.*"],"pub":["chat.>","@*"]}"#).unwrap();
        let scope = Scope::from_claim(Some(&claim)).unwrap();
        let alice = UserId::parse("alice").unwrap();
        assert!(scope.may_subscribe(&alice, &room("chat.1")));
        assert!(scope.may_publish(&room("chat.1.2")));
        assert!(scope.may_publish(&room("@bob")));
        assert!(!scope.may_subscribe(&alice, &room("@bob")));
        let bad: ScopeClaim = serde_json::from_str(r#"{"sub":["a..b"]}"#).unwrap();
        assert!(Scope::from_claim(Some(&bad)).is_err());
    }

    #[test]
    fn claims_accept_fractional_times_and_either_audience() {
        let c: Claims =
            serde_json::from_str(r#"{"sub":"a","exp":1763800000.5,"aud":["x","y"]}"#).unwrap();
        assert_eq!(c.exp, 1763800000.5);
        assert!(c.aud.unwrap().contains("y"));
        let c: Claims = serde_json::from_str(r#"{"sub":"a","exp":1,"aud":"x"}"#).unwrap();
        assert!(c.aud.unwrap().contains("x"));
    }
}
