//! Named limits of the protocol, shared by every role.

use std::time::Duration;

/// Largest client frame accepted (PROTOCOL §2); larger closes with 1009.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 * 1024;
/// Longest room name in bytes.
pub const MAX_ROOM_BYTES: usize = 128;
/// Longest user id in bytes.
pub const MAX_USER_BYTES: usize = 64;
/// Longest `ref` a client may send; it is echoed back, so it is bounded.
pub const MAX_REF_BYTES: usize = 128;
/// Server heartbeat period.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(25);
/// How long a detached session waits for its client to resume.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(30);
/// Clock leeway for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(5);
/// `refresh_required` is sent when this much (or half the token's life) is left.
pub const REFRESH_NOTICE: Duration = Duration::from_secs(30);
/// Default page size of the history API.
pub const DEFAULT_HISTORY_LIMIT: usize = 100;
/// Reconnect backoff: first delay, and the cap it doubles up to (PROTOCOL §5).
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(500);
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(30);
