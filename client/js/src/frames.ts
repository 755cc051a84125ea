// The frames of the wire protocol, version 1 (docs/PROTOCOL.md §2), the close codes of
// §4, and the reading of server text frames: newline-delimited JSON, one object per
// line, several lines per frame when the server batches.

/** The subprotocol every connection offers (PROTOCOL §1). */
export const SUBPROTOCOL = "switchyard.v1";
/** A token travels as the subprotocol `switchyard.auth.<jwt>` (browsers cannot set headers). */
export const AUTH_SUBPROTOCOL_PREFIX = "switchyard.auth.";

/** Any JSON value: `data` of `pub` and `msg` is passed through as it is. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

// Client → server.

export interface SubFrame {
  op: "sub";
  room: string;
  since?: number;
  epoch?: string;
  ref?: string;
}
export interface UnsubFrame {
  op: "unsub";
  room: string;
  ref?: string;
}
export interface PubFrame {
  op: "pub";
  room: string;
  data: unknown;
  ephemeral?: true;
  ref?: string;
}
export interface PresenceRequestFrame {
  op: "presence";
  room: string;
  ref?: string;
}
export interface RefreshFrame {
  op: "refresh";
  token: string;
  ref?: string;
}
export interface PingFrame {
  op: "ping";
  ref?: string;
}
export type ClientFrame =
  | SubFrame
  | UnsubFrame
  | PubFrame
  | PresenceRequestFrame
  | RefreshFrame
  | PingFrame;

// Server → client.

export interface Member {
  user: string;
  conns: number;
}
export interface WelcomeFrame {
  op: "welcome";
  conn: string;
  worker: string;
  /** The sticky path to reconnect to: `/ws/{worker}/{conn}`. */
  resume: string;
  resume_token: string;
  heartbeat_ms: number;
  resumed: boolean;
  user: string;
}
export interface SubscribedFrame {
  op: "subscribed";
  room: string;
  ref?: string;
  seq: number;
  epoch: string;
  recovered: boolean;
  replayed: number;
}
export interface UnsubscribedFrame {
  op: "unsubscribed";
  room: string;
  ref?: string;
}
export interface MsgFrame {
  op: "msg";
  room: string;
  /** Absent for ephemeral messages. */
  seq?: number;
  from: string;
  ts: number;
  data: unknown;
}
export interface AckFrame {
  op: "ack";
  ref?: string;
  /** Absent for an ephemeral publish. */
  seq?: number;
}
export interface PresenceFrame {
  op: "presence";
  room: string;
  ref?: string;
  members: Member[];
}
export interface JoinFrame {
  op: "join";
  room: string;
  user: string;
}
export interface LeaveFrame {
  op: "leave";
  room: string;
  user: string;
}
export interface RefreshedFrame {
  op: "refreshed";
  ref?: string;
  exp: number;
}
export interface PongFrame {
  op: "pong";
  ref?: string;
}
export interface RefreshRequiredFrame {
  op: "refresh_required";
  expires_in_ms: number;
}
export interface ReconnectFrame {
  op: "reconnect";
  reason: string;
  after_ms: number;
}
export interface ErrorFrame {
  op: "error";
  ref?: string;
  room?: string;
  code: ErrorCode;
  message: string;
}
export type ServerFrame =
  | WelcomeFrame
  | SubscribedFrame
  | UnsubscribedFrame
  | MsgFrame
  | AckFrame
  | PresenceFrame
  | JoinFrame
  | LeaveFrame
  | RefreshedFrame
  | PongFrame
  | RefreshRequiredFrame
  | ReconnectFrame
  | ErrorFrame;

/** Error codes of `error` frames (PROTOCOL §2); unknown ones pass through as strings. */
export type ErrorCode =
  | "bad_frame"
  | "bad_room"
  | "forbidden"
  | "already_subscribed"
  | "not_subscribed"
  | "invalid_token"
  | "too_large"
  | "rate_limited"
  | "unavailable"
  | "internal"
  | (string & {});

/** Close codes of PROTOCOL §4, and 1006, which browsers report for a connection lost without a close frame. */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  Abnormal: 1006,
  Policy: 1008,
  TooBig: 1009,
  Internal: 1011,
  Drained: 1012,
  TryAgainLater: 1013,
  SlowConsumer: 4008,
  Disconnected: 4009,
} as const;

/** Whether a client reconnects after a close with this code: all but 1000, 1008 and 4009. */
export function shouldReconnect(code: number): boolean {
  return (
    code !== CloseCode.Normal && code !== CloseCode.Policy && code !== CloseCode.Disconnected
  );
}

const SERVER_OPS = new Set([
  "welcome",
  "subscribed",
  "unsubscribed",
  "msg",
  "ack",
  "presence",
  "join",
  "leave",
  "refreshed",
  "pong",
  "refresh_required",
  "reconnect",
  "error",
]);

/** What reading one text frame gave: its frames in order, and the pieces that were not frames. */
export interface Parsed {
  frames: ServerFrame[];
  bad: string[];
}

/**
 * Splits a server text frame on `\n` (ignoring `\r` line ends and blank pieces) and
 * parses each piece. A piece that is not a JSON object with a known `op` is set aside in
 * `bad`; the pieces after it are still read.
 */
export function parseServerText(text: string): Parsed {
  const frames: ServerFrame[] = [];
  const bad: string[] = [];
  for (const line of text.split("\n")) {
    const piece = line.endsWith("\r") ? line.slice(0, -1) : line;
    if (piece.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(piece);
    } catch {
      bad.push(piece);
      continue;
    }
    if (
      typeof value === "object" &&
      value !== null &&
      !Array.isArray(value) &&
      SERVER_OPS.has((value as { op?: unknown }).op as string)
    ) {
      frames.push(value as ServerFrame);
    } else {
      bad.push(piece);
    }
  }
  return { frames, bad };
}

/**
 * Encodes client frames as one text frame: newline-delimited JSON. `JSON.stringify`
 * never writes a raw newline (newlines inside strings are escaped), so each frame is
 * exactly one line.
 */
export function encodeClientFrames(frames: readonly ClientFrame[]): string {
  return frames.map((frame) => JSON.stringify(frame)).join("\n");
}
