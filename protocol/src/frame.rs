//! Frames (PROTOCOL §2): text frames of newline-delimited JSON objects.
//!
//! Client frames are parsed piece by piece; a bad piece becomes a [`FrameError`] that
//! still knows the piece's `ref` and `room`, so the `error` answer can carry them.
//! Server frames serialize through serde, except `msg`, which the fan-out path encodes
//! by hand once per message with [`encode_msg`].

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::ErrorCode;
use crate::limits::MAX_REF_BYTES;
use crate::room::RoomName;

/// Splits a text frame into its newline-delimited pieces, skipping empty ones
/// (a trailing newline, or `\r\n` line ends).
pub fn split_pieces(payload: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(payload);
    std::iter::from_fn(move || loop {
        // memchr finds the newline a word at a time: a batched frame holds up to
        // thousands of lines, and every worker and client splits each one.
        let bytes = rest?;
        let (piece, next) = match memchr::memchr(b'\n', bytes) {
            Some(at) => (&bytes[..at], Some(&bytes[at + 1..])),
            None => (bytes, None),
        };
        rest = next;
        let piece = piece.strip_suffix(b"\r").unwrap_or(piece);
        if !piece.iter().all(u8::is_ascii_whitespace) {
            return Some(piece);
        }
    })
}

/// A frame from a client, validated.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    Sub {
        room: RoomName,
        since: Option<u64>,
        epoch: Option<String>,
        reference: Option<String>,
    },
    Unsub {
        room: RoomName,
        reference: Option<String>,
    },
    Pub {
        room: RoomName,
        /// The raw JSON of `data`, without raw newlines.
        data: Bytes,
        ephemeral: bool,
        reference: Option<String>,
    },
    Presence {
        room: RoomName,
        reference: Option<String>,
    },
    Refresh {
        token: String,
        reference: Option<String>,
    },
    Ping {
        reference: Option<String>,
    },
}

impl ClientFrame {
    pub fn reference(&self) -> Option<&str> {
        match self {
            ClientFrame::Sub { reference, .. }
            | ClientFrame::Unsub { reference, .. }
            | ClientFrame::Pub { reference, .. }
            | ClientFrame::Presence { reference, .. }
            | ClientFrame::Refresh { reference, .. }
            | ClientFrame::Ping { reference } => reference.as_deref(),
        }
    }

    pub fn room(&self) -> Option<&RoomName> {
        match self {
            ClientFrame::Sub { room, .. }
            | ClientFrame::Unsub { room, .. }
            | ClientFrame::Pub { room, .. }
            | ClientFrame::Presence { room, .. } => Some(room),
            ClientFrame::Refresh { .. } | ClientFrame::Ping { .. } => None,
        }
    }

    /// The op name, for metrics labels and logs.
    pub fn op(&self) -> &'static str {
        match self {
            ClientFrame::Sub { .. } => "sub",
            ClientFrame::Unsub { .. } => "unsub",
            ClientFrame::Pub { .. } => "pub",
            ClientFrame::Presence { .. } => "presence",
            ClientFrame::Refresh { .. } => "refresh",
            ClientFrame::Ping { .. } => "ping",
        }
    }

    /// Parses one newline-free piece of a text frame.
    pub fn parse(piece: &[u8]) -> Result<ClientFrame, FrameError> {
        let wire: WireFrame<'_> = serde_json::from_slice(piece)
            .map_err(|_| FrameError::new(ErrorCode::BadFrame, "frame is not a JSON object"))?;
        // Learn ref and room first so that every later error can carry them.
        let reference = match wire.reference {
            None => None,
            Some(raw) if raw.get() == "null" => None,
            Some(raw) => match serde_json::from_str::<String>(raw.get()) {
                Ok(r) if r.len() <= MAX_REF_BYTES => Some(r),
                Ok(_) => return Err(FrameError::new(ErrorCode::BadFrame, "ref is too long")),
                Err(_) => return Err(FrameError::new(ErrorCode::BadFrame, "ref must be a string")),
            },
        };
        let room_text = wire
            .room
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok());
        let fail = |code, message: &'static str| FrameError {
            code,
            message: Cow::Borrowed(message),
            reference: reference.clone(),
            room: room_text.clone().filter(|r| r.len() <= ECHOED_ROOM_BYTES),
        };
        let op = match wire
            .op
            .map(|raw| serde_json::from_str::<Cow<'_, str>>(raw.get()))
        {
            Some(Ok(op)) => op,
            Some(Err(_)) => return Err(fail(ErrorCode::BadFrame, "op must be a string")),
            None => return Err(fail(ErrorCode::BadFrame, "frame has no op")),
        };
        let room = || -> Result<RoomName, FrameError> {
            match (&wire.room, &room_text) {
                (None, _) => Err(fail(ErrorCode::BadFrame, "room is missing")),
                (Some(_), None) => Err(fail(ErrorCode::BadFrame, "room must be a string")),
                (Some(_), Some(text)) => RoomName::parse(text)
                    .map_err(|_| fail(ErrorCode::BadRoom, "room name is not valid")),
            }
        };
        let frame = match op.as_ref() {
            "sub" => {
                let since = match wire.since {
                    None => None,
                    Some(raw) if raw.get() == "null" => None,
                    Some(raw) => Some(serde_json::from_str::<u64>(raw.get()).map_err(|_| {
                        fail(ErrorCode::BadFrame, "since must be a non-negative integer")
                    })?),
                };
                let epoch = match wire.epoch {
                    None => None,
                    Some(raw) if raw.get() == "null" => None,
                    Some(raw) => Some(
                        serde_json::from_str::<String>(raw.get())
                            .map_err(|_| fail(ErrorCode::BadFrame, "epoch must be a string"))?,
                    ),
                };
                ClientFrame::Sub {
                    room: room()?,
                    since,
                    epoch,
                    reference,
                }
            }
            "unsub" => ClientFrame::Unsub {
                room: room()?,
                reference,
            },
            "pub" => {
                let room = room()?;
                let data = wire
                    .data
                    .ok_or_else(|| fail(ErrorCode::BadFrame, "data is missing"))?;
                let ephemeral = match wire.ephemeral {
                    None => false,
                    Some(raw) => serde_json::from_str::<bool>(raw.get())
                        .map_err(|_| fail(ErrorCode::BadFrame, "ephemeral must be a boolean"))?,
                };
                ClientFrame::Pub {
                    room,
                    data: minify_newlines(data.get().as_bytes()),
                    ephemeral,
                    reference,
                }
            }
            "presence" => ClientFrame::Presence {
                room: room()?,
                reference,
            },
            "refresh" => {
                let token = wire
                    .token
                    .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
                    .ok_or_else(|| fail(ErrorCode::BadFrame, "token must be a string"))?;
                ClientFrame::Refresh { token, reference }
            }
            "ping" => ClientFrame::Ping { reference },
            _ => return Err(fail(ErrorCode::BadFrame, "unknown op")),
        };
        Ok(frame)
    }

    /// Encodes the frame as a client sends it (used by the Rust client and tests).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(b"{\"op\":");
        push_json_str(&mut out, self.op());
        if let Some(room) = self.room() {
            out.extend_from_slice(b",\"room\":");
            push_json_str(&mut out, room.as_str());
        }
        match self {
            ClientFrame::Sub { since, epoch, .. } => {
                if let Some(since) = since {
                    out.extend_from_slice(format!(",\"since\":{since}").as_bytes());
                }
                if let Some(epoch) = epoch {
                    out.extend_from_slice(b",\"epoch\":");
                    push_json_str(&mut out, epoch);
                }
            }
            ClientFrame::Pub {
                data, ephemeral, ..
            } => {
                out.extend_from_slice(b",\"data\":");
                out.extend_from_slice(data);
                if *ephemeral {
                    out.extend_from_slice(b",\"ephemeral\":true");
                }
            }
            ClientFrame::Refresh { token, .. } => {
                out.extend_from_slice(b",\"token\":");
                push_json_str(&mut out, token);
            }
            ClientFrame::Unsub { .. } | ClientFrame::Presence { .. } | ClientFrame::Ping { .. } => {
            }
        }
        if let Some(r) = self.reference() {
            out.extend_from_slice(b",\"ref\":");
            push_json_str(&mut out, r);
        }
        out.push(b'}');
        out
    }
}

/// Rooms longer than this are not echoed back in errors.
const ECHOED_ROOM_BYTES: usize = 256;

/// Every field is kept raw and typed later, so that a mistyped field is a `bad_frame`
/// that still echoes `ref` and `room`. `raw_some` keeps an explicit `null` as a value.
#[derive(Deserialize)]
struct WireFrame<'a> {
    #[serde(borrow, default, deserialize_with = "raw_some")]
    op: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw_some")]
    room: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw_some", rename = "ref")]
    reference: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw_some")]
    data: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw_some")]
    since: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw_some")]
    epoch: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw_some")]
    ephemeral: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw_some")]
    token: Option<&'a RawValue>,
}

fn raw_some<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

/// A client frame that could not be accepted, with what the `error` answer echoes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub code: ErrorCode,
    pub message: Cow<'static, str>,
    pub reference: Option<String>,
    pub room: Option<String>,
}

impl FrameError {
    pub fn new(code: ErrorCode, message: &'static str) -> FrameError {
        FrameError {
            code,
            message: Cow::Borrowed(message),
            reference: None,
            room: None,
        }
    }

    pub fn to_server_frame(&self) -> ServerFrame<'_> {
        ServerFrame::Error {
            reference: self.reference.as_deref().map(Cow::Borrowed),
            room: self.room.as_deref().map(Cow::Borrowed),
            code: self.code,
            message: Cow::Borrowed(&self.message),
        }
    }
}

/// Valid JSON holds raw newlines only as whitespace (inside strings they must be
/// escaped), so dropping every raw CR and LF byte minifies it safely (PROTOCOL §2).
pub fn minify_newlines(json: &[u8]) -> Bytes {
    if !json.iter().any(|b| *b == b'\n' || *b == b'\r') {
        return Bytes::copy_from_slice(json);
    }
    json.iter()
        .copied()
        .filter(|b| *b != b'\n' && *b != b'\r')
        .collect::<Vec<u8>>()
        .into()
}

/// Raw JSON carried through untouched (`data`), comparable for tests and clients.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(pub Box<RawValue>);

impl RawJson {
    pub fn get(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &RawJson) -> bool {
        self.get() == other.get()
    }
}

/// One member of a room's presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub user: String,
    pub conns: u32,
}

/// A frame from the server. Borrowed for encoding, owned when a client decodes one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Welcome {
        conn: Cow<'a, str>,
        worker: Cow<'a, str>,
        resume: Cow<'a, str>,
        resume_token: Cow<'a, str>,
        heartbeat_ms: u64,
        resumed: bool,
        user: Cow<'a, str>,
    },
    Subscribed {
        room: Cow<'a, str>,
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Cow<'a, str>>,
        seq: u64,
        epoch: Cow<'a, str>,
        recovered: bool,
        replayed: u64,
    },
    Unsubscribed {
        room: Cow<'a, str>,
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Cow<'a, str>>,
    },
    Msg {
        room: Cow<'a, str>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        from: Cow<'a, str>,
        ts: u64,
        data: RawJson,
    },
    Ack {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Cow<'a, str>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
    },
    Presence {
        room: Cow<'a, str>,
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Cow<'a, str>>,
        members: Vec<Member>,
    },
    Join {
        room: Cow<'a, str>,
        user: Cow<'a, str>,
    },
    Leave {
        room: Cow<'a, str>,
        user: Cow<'a, str>,
    },
    Refreshed {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Cow<'a, str>>,
        exp: u64,
    },
    Pong {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Cow<'a, str>>,
    },
    RefreshRequired {
        expires_in_ms: u64,
    },
    Reconnect {
        reason: Cow<'a, str>,
        after_ms: u64,
    },
    Error {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Cow<'a, str>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<Cow<'a, str>>,
        code: ErrorCode,
        message: Cow<'a, str>,
    },
}

impl ServerFrame<'_> {
    /// One line of newline-delimited JSON, without the newline. serde_json's compact
    /// writer escapes newlines in strings, so the line never holds a raw one.
    pub fn encode(&self) -> Bytes {
        // Every variant is plain data with string keys: serialization cannot fail.
        Bytes::from(serde_json::to_vec(self).expect("server frames serialize"))
    }

    /// Parses one piece of a server text frame (clients, tests, the bench).
    pub fn parse(piece: &[u8]) -> Result<ServerFrame<'static>, serde_json::Error> {
        // serde buffers internally tagged enums, which loses raw values: `msg` (the one
        // frame with raw `data`) is read through its own struct.
        #[derive(Deserialize)]
        struct Op<'a> {
            #[serde(borrow)]
            op: Cow<'a, str>,
        }
        #[derive(Deserialize)]
        struct Msg {
            room: String,
            #[serde(default)]
            seq: Option<u64>,
            from: String,
            ts: u64,
            data: RawJson,
        }
        if serde_json::from_slice::<Op<'_>>(piece)?.op == "msg" {
            let m: Msg = serde_json::from_slice(piece)?;
            return Ok(ServerFrame::Msg {
                room: m.room.into(),
                seq: m.seq,
                from: m.from.into(),
                ts: m.ts,
                data: m.data,
            });
        }
        serde_json::from_slice(piece)
    }
}

/// Encodes a `msg` frame once per message, to be shared by every local subscriber.
/// `data` must be valid JSON without raw newlines; `room` and `from` are validated names.
pub fn encode_msg(room: &str, seq: Option<u64>, from: &str, ts: u64, data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(64 + room.len() + from.len() + data.len());
    out.put_slice(b"{\"op\":\"msg\",\"room\":");
    push_json_str_buf(&mut out, room);
    if let Some(seq) = seq {
        out.put_slice(b",\"seq\":");
        push_u64(&mut out, seq);
    }
    out.put_slice(b",\"from\":");
    push_json_str_buf(&mut out, from);
    out.put_slice(b",\"ts\":");
    push_u64(&mut out, ts);
    out.put_slice(b",\"data\":");
    out.put_slice(data);
    out.put_u8(b'}');
    out.freeze()
}

fn push_u64(out: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
}

fn push_json_str_buf(out: &mut BytesMut, s: &str) {
    if s.bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
    {
        out.put_u8(b'"');
        out.put_slice(s.as_bytes());
        out.put_u8(b'"');
    } else {
        // Writing a str to an in-memory buffer cannot fail.
        out.put_slice(&serde_json::to_vec(s).expect("string serializes"));
    }
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a str to a Vec cannot fail.
    serde_json::to_writer(out, s).expect("string serializes");
}

/// Reads the `seq` of a `msg` line as [`encode_msg`] writes it, without a full parse
/// (the bench reads millions): `seq` comes right after the room, whose name cannot hold
/// a quote, so the room's closing quote is the first quote after its opening one.
pub fn peek_msg_seq(piece: &[u8]) -> Option<u64> {
    let room = piece.strip_prefix(b"{\"op\":\"msg\",\"room\":\"")?;
    let after_room = &room[memchr::memchr(b'"', room)? + 1..];
    let (seq, _) = leading_u64(after_room.strip_prefix(b",\"seq\":")?)?;
    Some(seq)
}

/// The decimal number at the start of `bytes` and what follows it; `None` when there is
/// none or it does not fit a `u64`.
pub fn leading_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let n = bytes[..digits].iter().try_fold(0u64, |n, b| {
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })?;
    Some((n, &bytes[digits..]))
}

#[cfg(test)]
mod tests;
