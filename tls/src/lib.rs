//! TLS for Switchyard's long-lived sockets over rustls' unbuffered API: the server side
//! of the gateway's public listener and the workers' hand-off listener, and the client
//! side of the gateway's hand-offs to workers.
//!
//! rustls' buffered connection (what `tokio-rustls` wraps) keeps a 4 KiB receive buffer
//! per connection for as long as it lives, whatever it holds. A worker holds hundreds of
//! thousands of sockets that are idle nearly always, and that buffer was the largest part
//! of the memory of each. Here the ciphertext is read into, and written from, a buffer
//! lent by the polling thread ([`scratch`]); a connection keeps bytes of its own only
//! while they wait: a partial record, plaintext its reader has not taken yet, ciphertext
//! the socket has not accepted yet.

mod accept;
mod crypto;
mod records;
mod scratch;
mod stream;

pub use accept::{accept, connect};
pub use crypto::{issue_session_tickets, provider};
pub use records::Connection;
pub use stream::TlsStream;
