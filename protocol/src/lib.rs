//! The Switchyard wire protocol (PROTOCOL.md, version 1), with no I/O.
//!
//! - [`room`]: room names and inbox rooms, the only strings that become NATS subjects.
//! - [`claims`]: the JWT claims a token carries and the scope patterns they grant.
//! - [`frame`]: client frames parsed from newline-delimited JSON, server frames encoded
//!   into it. The fan-out path encodes a `msg` once and shares the bytes.
//! - [`identity`]: the verified identity a gateway hands to a worker, and its signed
//!   header form for hand-offs between processes.
//! - [`close`] and [`error`]: close codes and error codes, the two ways a server says no.
//!
//! Data moves one way through it: bytes from a socket become a [`frame::ClientFrame`]
//! (or a [`frame::FrameError`] the caller answers with), and server events become
//! [`bytes::Bytes`] ready to write.

pub mod claims;
pub mod close;
pub mod error;
pub mod frame;
pub mod identity;
pub mod limits;
pub mod room;

pub use claims::{Claims, Pattern, Scope, UserId};
pub use close::CloseCode;
pub use error::ErrorCode;
pub use frame::{ClientFrame, FrameError, ServerFrame};
pub use identity::{Identity, VerifiedToken};
pub use room::RoomName;

/// The version this crate implements; `switchyard.v1` is its subprotocol.
pub const PROTOCOL_VERSION: u32 = 1;
/// The subprotocol a client offers and the server answers.
pub const SUBPROTOCOL: &str = "switchyard.v1";
/// Prefix of the subprotocol that carries a browser's token.
pub const AUTH_SUBPROTOCOL_PREFIX: &str = "switchyard.auth.";
/// `from` of messages published by the server API or a backend without `Sy-From`.
pub const SERVER_SENDER: &str = "$server";
