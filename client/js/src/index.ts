// @switchyard/client: a dependency-free client for Switchyard's wire protocol, version 1
// (docs/PROTOCOL.md), for browsers and Node.
//
// Parts: `client` (the reconnecting client: sessions, resume, resubscribe with `since`,
// requests by `ref`), `rooms` (per-room last seq, epoch and dedupe), `requests`
// (pending answers by `ref`), `backoff` (delays with full jitter), `resume` (the
// sticky reconnect URL), `frames` (wire types and NDJSON), `events` (what the client
// tells its user), `transport` (the WebSocket and timers it runs on), `errors`.

export {
  Client,
  Subscription,
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_WELCOME_TIMEOUT_MS,
  MIN_HEARTBEAT_MS,
  RESUME_ATTEMPTS,
  MAX_BATCH_CHARS,
} from "./client.js";
export type { ClientOptions, SubscribeOptions, SubscriptionHandlers, TokenProvider } from "./client.js";
export { Backoff, BACKOFF_MAX_MS, BACKOFF_MIN_MS, jitter } from "./backoff.js";
export { ClosedError, DisconnectedError, InvalidArgumentError, ServerError } from "./errors.js";
export { Emitter } from "./events.js";
export type {
  ClientEvents,
  ClientState,
  ClosedEvent,
  ConnectedEvent,
  ConnectingEvent,
  DisconnectedEvent,
  ErrorEvent,
  Listener,
  Message,
  PresenceEvent,
  ReconnectingEvent,
  RefreshRequiredEvent,
  RefreshedEvent,
  RoomEvent,
  StateEvent,
  SubscribedEvent,
} from "./events.js";
export {
  AUTH_SUBPROTOCOL_PREFIX,
  CloseCode,
  SUBPROTOCOL,
  encodeClientFrames,
  parseServerText,
  shouldReconnect,
} from "./frames.js";
export type { ClientFrame, ErrorCode, Json, Member, Parsed, ServerFrame, WelcomeFrame } from "./frames.js";
export { Rooms, isValidRoom, MAX_ROOM_BYTES } from "./rooms.js";
export type { Verdict } from "./rooms.js";
export { redactUrl, resumeUrl } from "./resume.js";
export type { Timers, WebSocketConstructor, WebSocketLike } from "./transport.js";
