//! The Switchyard Rust client, in two layers.
//!
//! - [`connection`]: one WebSocket connection, low level, for protocol tests and the
//!   bench. [`Connection::connect`] dials TCP (and TLS with rustls), sends the upgrade
//!   with the token in a header, the subprotocol list or the query, and returns a
//!   refused upgrade as [`ConnectError::Http`] with its status and JSON error. After
//!   the upgrade a reader task and a writer task own the socket's halves; the caller
//!   sends frames to the writer's bounded outbox and receives the server's text frames
//!   split into their newline-delimited pieces, one [`Incoming`] at a time.
//! - [`client`]: the reconnecting [`Client`] of PROTOCOL §5. One task owns the current
//!   `Connection` and what outlives it: subscriptions with the last seq and epoch of each
//!   room, requests waiting for their `ref`, the resume path and token. It reconnects
//!   with jittered backoff, resumes or resubscribes with `since`, drops duplicate seqs,
//!   and reports everything as [`Event`]s on a bounded channel. Its attempts share one
//!   TLS configuration, so a reconnect also resumes the TLS session (no certificate to
//!   check, none for the server to sign).
//!
//! Data moves: user call → `Client` handle → command channel → client task →
//! `Connection` outbox → writer task → socket; socket → reader task → `Connection` inbox
//! → client task (dedupe, answers by `ref`) → event channel → user.

pub mod client;
pub mod connection;

pub use client::{Client, ClientError, ClientOptions, Event, TokenProvider};
pub use connection::{
    ConnectError, ConnectOptions, Connection, Incoming, RawIncoming, RecvError, SendError,
    TlsTrust, TokenVia,
};
