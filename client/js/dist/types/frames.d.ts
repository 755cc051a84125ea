/** The subprotocol every connection offers (PROTOCOL §1). */
export declare const SUBPROTOCOL = "switchyard.v1";
/** A token travels as the subprotocol `switchyard.auth.<jwt>` (browsers cannot set headers). */
export declare const AUTH_SUBPROTOCOL_PREFIX = "switchyard.auth.";
/** Any JSON value: `data` of `pub` and `msg` is passed through as it is. */
export type Json = null | boolean | number | string | Json[] | {
    [key: string]: Json;
};
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
export type ClientFrame = SubFrame | UnsubFrame | PubFrame | PresenceRequestFrame | RefreshFrame | PingFrame;
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
export type ServerFrame = WelcomeFrame | SubscribedFrame | UnsubscribedFrame | MsgFrame | AckFrame | PresenceFrame | JoinFrame | LeaveFrame | RefreshedFrame | PongFrame | RefreshRequiredFrame | ReconnectFrame | ErrorFrame;
/** Error codes of `error` frames (PROTOCOL §2); unknown ones pass through as strings. */
export type ErrorCode = "bad_frame" | "bad_room" | "forbidden" | "already_subscribed" | "not_subscribed" | "invalid_token" | "too_large" | "rate_limited" | "unavailable" | "internal" | (string & {});
/** Close codes of PROTOCOL §4, and 1006, which browsers report for a connection lost without a close frame. */
export declare const CloseCode: {
    readonly Normal: 1000;
    readonly GoingAway: 1001;
    readonly ProtocolError: 1002;
    readonly Abnormal: 1006;
    readonly Policy: 1008;
    readonly TooBig: 1009;
    readonly Internal: 1011;
    readonly Drained: 1012;
    readonly TryAgainLater: 1013;
    readonly SlowConsumer: 4008;
    readonly Disconnected: 4009;
};
/** Whether a client reconnects after a close with this code: all but 1000, 1008 and 4009. */
export declare function shouldReconnect(code: number): boolean;
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
export declare function parseServerText(text: string): Parsed;
/**
 * Encodes client frames as one text frame: newline-delimited JSON. `JSON.stringify`
 * never writes a raw newline (newlines inside strings are escaped), so each frame is
 * exactly one line.
 */
export declare function encodeClientFrames(frames: readonly ClientFrame[]): string;
