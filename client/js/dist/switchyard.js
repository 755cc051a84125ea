// @switchyard/client 0.1.0: one ES module built from client/js/src by scripts/bundle.mjs.
// Generated: edit src/ and run `npm run build`.

// --- backoff.ts
const __backoff = (() => {
// Reconnect delays (PROTOCOL §5): exponential from 0.5 s, doubling to 30 s, with full
// jitter: each delay is drawn uniformly from [0, ceiling).
/** The first ceiling, in milliseconds. */
const BACKOFF_MIN_MS = 500;
/** The cap of the ceiling, in milliseconds. */
const BACKOFF_MAX_MS = 30000;
/** A uniform delay in [0, ceiling) from `random` (a `Math.random`-like function); 0 for a zero ceiling. */
function jitter(ceilingMs, random = Math.random) {
    if (!(ceilingMs > 0))
        return 0;
    // `random` is in [0, 1); the clamp keeps a misbehaving source inside the range.
    const r = Math.min(Math.max(random(), 0), 1 - Number.EPSILON);
    return Math.floor(r * ceilingMs);
}
class Backoff {
    constructor(minMs = BACKOFF_MIN_MS, maxMs = BACKOFF_MAX_MS) {
        this.minMs = Math.max(1, minMs);
        this.maxMs = Math.max(this.minMs, maxMs);
        this.ceiling = this.minMs;
    }
    /** The ceiling the next delay is drawn under. */
    get ceilingMs() {
        return this.ceiling;
    }
    /** A delay in [0, ceiling); the ceiling then doubles, up to the cap. */
    next(random = Math.random) {
        const delay = jitter(this.ceiling, random);
        this.ceiling = Math.min(this.ceiling * 2, this.maxMs);
        return delay;
    }
    /** After a successful connection the next failure starts from the bottom again. */
    reset() {
        this.ceiling = this.minMs;
    }
}
return { BACKOFF_MIN_MS, BACKOFF_MAX_MS, jitter, Backoff };
})();

// --- errors.ts
const __errors = (() => {
// Why a request (publish, presence, refresh) failed.
/** The server answered the request with an `error` frame. */
class ServerError extends Error {
    constructor(code, message, room) {
        super(`${code}: ${message}`);
        this.name = "ServerError";
        this.code = code;
        this.room = room;
    }
}
/**
 * The connection dropped before the answer, for a request that is not retried
 * (ephemeral publish, presence, refresh). Stored publishes are sent again instead.
 */
class DisconnectedError extends Error {
    constructor() {
        super("connection dropped before the answer");
        this.name = "DisconnectedError";
    }
}
/** The client was closed (or stopped for good) before the answer. */
class ClosedError extends Error {
    constructor() {
        super("client is closed");
        this.name = "ClosedError";
    }
}
/** Refused before sending: a room name or data the server would refuse. */
class InvalidArgumentError extends Error {
    constructor(message) {
        super(message);
        this.name = "InvalidArgumentError";
    }
}
return { ServerError, DisconnectedError, ClosedError, InvalidArgumentError };
})();

// --- events.ts
const __events = (() => {
// What a client tells its user, and the small typed emitter that tells it.
/** A typed event emitter. A listener that throws is reported on the console and does not stop the others. */
class Emitter {
    constructor() {
        this.listeners = new Map();
    }
    /** Adds a listener; returns the function that removes it. */
    on(event, listener) {
        let set = this.listeners.get(event);
        if (set === undefined) {
            set = new Set();
            this.listeners.set(event, set);
        }
        set.add(listener);
        return () => this.off(event, listener);
    }
    off(event, listener) {
        this.listeners.get(event)?.delete(listener);
    }
    emit(event, payload) {
        const set = this.listeners.get(event);
        if (set === undefined)
            return;
        for (const listener of [...set]) {
            callSafely(listener, payload);
        }
    }
}
/** Calls a user's callback; what it throws must not break the client. */
function callSafely(listener, payload) {
    try {
        listener(payload);
    }
    catch (error) {
        console.error("switchyard: a listener threw", error);
    }
}
return { Emitter, callSafely };
})();

// --- frames.ts
const __frames = (() => {
// The frames of the wire protocol, version 1 (docs/PROTOCOL.md §2), the close codes of
// §4, and the reading of server text frames: newline-delimited JSON, one object per
// line, several lines per frame when the server batches.
/** The subprotocol every connection offers (PROTOCOL §1). */
const SUBPROTOCOL = "switchyard.v1";
/** A token travels as the subprotocol `switchyard.auth.<jwt>` (browsers cannot set headers). */
const AUTH_SUBPROTOCOL_PREFIX = "switchyard.auth.";
/** Close codes of PROTOCOL §4, and 1006, which browsers report for a connection lost without a close frame. */
const CloseCode = {
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
};
/** Whether a client reconnects after a close with this code: all but 1000, 1008 and 4009. */
function shouldReconnect(code) {
    return (code !== CloseCode.Normal && code !== CloseCode.Policy && code !== CloseCode.Disconnected);
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
/**
 * Splits a server text frame on `\n` (ignoring `\r` line ends and blank pieces) and
 * parses each piece. A piece that is not a JSON object with a known `op` is set aside in
 * `bad`; the pieces after it are still read.
 */
function parseServerText(text) {
    const frames = [];
    const bad = [];
    for (const line of text.split("\n")) {
        const piece = line.endsWith("\r") ? line.slice(0, -1) : line;
        if (piece.trim() === "")
            continue;
        let value;
        try {
            value = JSON.parse(piece);
        }
        catch {
            bad.push(piece);
            continue;
        }
        if (typeof value === "object" &&
            value !== null &&
            !Array.isArray(value) &&
            SERVER_OPS.has(value.op)) {
            frames.push(value);
        }
        else {
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
function encodeClientFrames(frames) {
    return frames.map((frame) => JSON.stringify(frame)).join("\n");
}
return { SUBPROTOCOL, AUTH_SUBPROTOCOL_PREFIX, CloseCode, shouldReconnect, parseServerText, encodeClientFrames };
})();

// --- presence.ts
const __presence = (() => {
// Presence answers and the events that pass them. The server reads a room's members
// after the `presence` request arrives, and a `join` or `leave` published meanwhile can
// reach the client before the answer does while the answer does not show it (on NATS the
// read and the event take different paths). Such events are newer than the answer, so
// they are applied over it: the list a caller gets agrees with the events it has seen.
/** The events seen per room while `presence` answers for it are on their way. */
class PresenceLogs {
    constructor() {
        this.open = new Map();
    }
    /** Starts a log for one request; give it back to {@link PresenceLogs.close}. */
    start(room) {
        const log = [];
        let logs = this.open.get(room);
        if (logs === undefined) {
            logs = new Set();
            this.open.set(room, logs);
        }
        logs.add(log);
        return log;
    }
    close(room, log) {
        const logs = this.open.get(room);
        logs?.delete(log);
        if (logs?.size === 0)
            this.open.delete(room);
    }
    /** A `join` or `leave` of `room` came: every open log of the room takes it. */
    record(room, user, present) {
        for (const log of this.open.get(room) ?? [])
            log.push([user, present]);
    }
}
/** `members` with `changes` applied in order: a joined user is listed (with one
 * connection, unless listed already), a user who left is not. */
function applyChanges(members, changes) {
    const list = [...members];
    for (const [user, present] of changes) {
        const at = list.findIndex((m) => m.user === user);
        if (present && at < 0)
            list.push({ user, conns: 1 });
        if (!present && at >= 0)
            list.splice(at, 1);
    }
    return list;
}
return { PresenceLogs, applyChanges };
})();

// --- requests.ts
const __requests = (() => {
// Requests waiting for their answer, by `ref`: publish (answered by `ack`), presence
// (`presence`), refresh (`refreshed`); any of them may be answered by `error` instead.
// Refs are the client's own counter, unique for the client's lifetime.
//
// Across a disconnect, stored publishes stay and are sent again with the same `ref`
// after the next `welcome` (the server stores a retried `ref` once per session, so
// after a resume it is stored once; after a fresh reconnect it may be stored twice).
// Requests never sent stay too; the rest fail with `DisconnectedError`.
const { DisconnectedError } = __errors;
class Requests {
    constructor() {
        this.nextRef = 1;
        this.pending = new Map();
    }
    /** Records a request under a fresh ref; returns its frame, marked sent when `online`. */
    add(request, settle, online) {
        const id = this.nextRef;
        this.nextRef += 1;
        this.pending.set(id, { request, settle, sent: online });
        return online ? requestFrame(id, request) : undefined;
    }
    /** Removes and returns the request a `ref` names, if one waits for it. */
    take(ref) {
        if (ref === undefined || !/^[0-9]+$/.test(ref))
            return undefined;
        const id = Number(ref);
        const found = this.pending.get(id);
        if (found !== undefined)
            this.pending.delete(id);
        return found;
    }
    /** After a `welcome`: the frames of every request not yet sent, in ref order, now marked sent. */
    unsentFrames() {
        const frames = [];
        for (const [id, pending] of [...this.pending].sort(([a], [b]) => a - b)) {
            if (pending.sent)
                continue;
            pending.sent = true;
            frames.push(requestFrame(id, pending.request));
        }
        return frames;
    }
    /** The connection dropped: stored publishes will be sent again; other sent requests fail. */
    onDisconnect() {
        for (const [id, pending] of [...this.pending]) {
            if (!pending.sent)
                continue;
            const retried = pending.request.kind === "publish" && !pending.request.ephemeral;
            if (retried) {
                pending.sent = false;
            }
            else {
                this.pending.delete(id);
                pending.settle.reject(new DisconnectedError());
            }
        }
    }
    /** Fails every request (the client closed). */
    rejectAll(error) {
        const all = [...this.pending.values()];
        this.pending.clear();
        for (const pending of all)
            pending.settle.reject(error);
    }
    get size() {
        return this.pending.size;
    }
}
/** The frame of a request, carrying its ref. */
function requestFrame(id, request) {
    const ref = String(id);
    switch (request.kind) {
        case "publish":
            return request.ephemeral
                ? { op: "pub", room: request.room, data: request.data, ephemeral: true, ref }
                : { op: "pub", room: request.room, data: request.data, ref };
        case "presence":
            return { op: "presence", room: request.room, ref };
        case "refresh":
            return { op: "refresh", token: request.token, ref };
    }
}
return { Requests, requestFrame };
})();

// --- resume.ts
const __resume = (() => {
// Where a reconnect goes (PROTOCOL §5): the `resume` path of the last `welcome`, with its
// `resume_token`, on the scheme and host of the first URL.
/**
 * The URL of a sticky reconnect: `base`'s scheme, host and query (less any old
 * `resume_token`), the `resume` path of the last `welcome`, and `resume_token`. Throws
 * when the path does not start with a single `/`: a `welcome` must not be able to send
 * the client (and its token) to another host.
 */
function resumeUrl(base, resumePath, resumeToken) {
    if (!resumePath.startsWith("/") || resumePath.startsWith("//")) {
        throw new Error("resume path must start with a single /");
    }
    const url = new URL(base);
    url.pathname = resumePath.split("?")[0] ?? resumePath;
    url.hash = "";
    const kept = url.search
        .replace(/^\?/, "")
        .split("&")
        .filter((pair) => pair !== "" && !pair.startsWith("resume_token="));
    kept.push(`resume_token=${encodeURIComponent(resumeToken)}`);
    url.search = `?${kept.join("&")}`;
    return url.toString();
}
/** The URL without its query, for events and logs (the query may carry a resume token). */
function redactUrl(url) {
    return url.split("?")[0] ?? url;
}
return { resumeUrl, redactUrl };
})();

// --- rooms.ts
const __rooms = (() => {
// The subscription table: which rooms the user wants, what the server holds for this
// session, and per room the last seq seen and its epoch, which make resubscribing with
// `since` and dropping duplicates possible (PROTOCOL §3, §5). No I/O: the client sends
// the frames this table returns.
const SEGMENT = /^[A-Za-z0-9_-]+$/;
const USER_ID = /^[A-Za-z0-9_-]{1,64}$/;
/** Longest room name, in bytes (its characters are ASCII). */
const MAX_ROOM_BYTES = 128;
/** A room name of PROTOCOL §2: segments of `[A-Za-z0-9_-]` joined by `.`, or `@<user id>`; 1–128 bytes. */
function isValidRoom(room) {
    if (room.length === 0 || room.length > MAX_ROOM_BYTES)
        return false;
    if (room.startsWith("@"))
        return USER_ID.test(room.slice(1));
    return room.split(".").every((segment) => SEGMENT.test(segment));
}
class Rooms {
    constructor() {
        this.map = new Map();
        this.dropped = 0;
    }
    /**
     * Records that the user wants `room`, optionally from `since` (the last seq the user
     * already has) in `epoch`. Returns the `sub` to send now when `online` and the room is
     * not subscribed on this session yet.
     */
    want(room, since, epoch, online) {
        let entry = this.map.get(room);
        if (entry === undefined) {
            entry = {
                wanted: true,
                state: "unsent",
                lastSeq: undefined,
                epoch: undefined,
                sentSince: undefined,
                renewing: false,
            };
            this.map.set(room, entry);
        }
        entry.wanted = true;
        if (since !== undefined) {
            entry.lastSeq = since;
            entry.epoch = epoch;
        }
        return online && entry.state === "unsent" ? this.subFrame(room, entry) : undefined;
    }
    /** Records that the user no longer wants `room`. Returns the `unsub` to send now. */
    unwant(room, online) {
        const entry = this.map.get(room);
        if (entry === undefined)
            return undefined;
        entry.wanted = false;
        if (entry.state === "unsent") {
            this.map.delete(room);
            return undefined;
        }
        if (!online)
            return undefined;
        this.map.delete(room);
        return { op: "unsub", room };
    }
    /** The `sub` for a room, with `since` = the last seq seen and its epoch. */
    subFrame(room, entry) {
        entry.state = "sent";
        entry.sentSince = entry.lastSeq;
        const frame = { op: "sub", room };
        if (entry.lastSeq !== undefined) {
            frame.since = entry.lastSeq;
            if (entry.epoch !== undefined)
                frame.epoch = entry.epoch;
        }
        return frame;
    }
    /**
     * A `welcome` with `resumed: false`: the server holds nothing. Every wanted room is
     * subscribed again from its last seq, in its epoch.
     */
    onFreshSession() {
        const frames = [];
        for (const [room, entry] of [...this.map]) {
            if (!entry.wanted) {
                this.map.delete(room);
                continue;
            }
            entry.renewing = false;
            frames.push(this.subFrame(room, entry));
        }
        return frames;
    }
    /**
     * A `welcome` with `resumed: true`: the server restored what it held. Rooms given up
     * while away are unsubscribed; rooms wanted but not confirmed are (re)sent, and an
     * `already_subscribed` answer then confirms them.
     */
    onResumedSession() {
        const frames = [];
        for (const [room, entry] of [...this.map]) {
            if (!entry.wanted) {
                frames.push({ op: "unsub", room });
                this.map.delete(room);
            }
        }
        for (const [room, entry] of this.map) {
            if (entry.state !== "confirmed")
                frames.push(this.subFrame(room, entry));
        }
        return frames;
    }
    /**
     * `subscribed`: the server holds the room; `seq` is its latest, `epoch` its store's.
     * Returns whether the user still wants the room.
     */
    onSubscribed(room, seq, epoch) {
        const entry = this.map.get(room);
        if (entry === undefined)
            return false;
        entry.state = "confirmed";
        entry.renewing = false;
        const reset = (entry.epoch !== undefined && entry.epoch !== epoch) ||
            (entry.lastSeq !== undefined && entry.lastSeq > seq);
        if (reset) {
            // The store lost its history: old seqs say nothing about new ones.
            entry.lastSeq = undefined;
        }
        if (entry.sentSince === undefined) {
            // Live only: nothing at or below `seq` will come, and a later `since` must start
            // here so that a reconnect misses nothing.
            entry.lastSeq = entry.lastSeq === undefined ? seq : Math.max(entry.lastSeq, seq);
        }
        entry.epoch = epoch;
        return entry.wanted;
    }
    /**
     * `already_subscribed`: the server held the room all along (a `sub` resent on resume).
     * When our `sub` was never answered, the server took it before the socket died and its
     * `subscribed` was lost: the user still needs that answer, and a live-only `sub` its
     * point, so the subscription is renewed (`unsub`, then `sub` from the last seq seen).
     */
    onAlreadySubscribed(room) {
        const entry = this.map.get(room);
        if (entry === undefined)
            return "unknown";
        if (entry.state !== "sent")
            return "known";
        entry.renewing = true;
        return [{ op: "unsub", room }, this.subFrame(room, entry)];
    }
    /** `unsubscribed`: returns whether it is the user's (not a renewal's). */
    onUnsubscribed(room) {
        return this.map.get(room)?.renewing !== true;
    }
    /**
     * `unavailable` for a `sub`: the server holds nothing and asks for the `sub` again
     * later. The room stays wanted and unsent, for `unsent()` after a backoff, a
     * `subscribe`, or the next session. Returns whether it was ours.
     */
    onUnavailable(room) {
        const entry = this.map.get(room);
        if (entry?.state !== "sent")
            return false;
        entry.state = "unsent";
        entry.renewing = false;
        return true;
    }
    /** The `sub`s of wanted rooms not sent on this session (refused as `unavailable`). */
    unsent() {
        const frames = [];
        for (const [room, entry] of this.map) {
            if (entry.wanted && entry.state === "unsent")
                frames.push(this.subFrame(room, entry));
        }
        return frames;
    }
    hasUnsent() {
        for (const entry of this.map.values()) {
            if (entry.wanted && entry.state === "unsent")
                return true;
        }
        return false;
    }
    /** The server refused a `sub` (forbidden, bad room): stop asking for it. Returns whether it was pending. */
    onRefused(room) {
        if (this.map.get(room)?.state === "sent") {
            this.map.delete(room);
            return true;
        }
        return false;
    }
    /** Dedupe: a stored message is delivered once, the first time its seq is seen. */
    onMsg(room, seq) {
        const entry = this.map.get(room);
        if (entry === undefined || !entry.wanted)
            return "unwanted";
        if (entry.renewing && entry.sentSince === undefined)
            return "before_point";
        if (seq === undefined)
            return "deliver";
        if (entry.lastSeq !== undefined && seq <= entry.lastSeq) {
            this.dropped += 1;
            return "duplicate";
        }
        entry.lastSeq = seq;
        return "deliver";
    }
    lastSeq(room) {
        return this.map.get(room)?.lastSeq;
    }
    epoch(room) {
        return this.map.get(room)?.epoch;
    }
    state(room) {
        return this.map.get(room)?.state;
    }
    /** How many `msg`s were dropped because their seq had been seen. */
    get duplicates() {
        return this.dropped;
    }
    /** The rooms the user wants, in the order they were first wanted. */
    rooms() {
        return [...this.map].filter(([, entry]) => entry.wanted).map(([room]) => room);
    }
}
return { MAX_ROOM_BYTES, isValidRoom, Rooms };
})();

// --- transport.ts
const __transport = (() => {
// What the client needs from its environment: a WebSocket implementation and timers.
// Browsers (and Node 22+) have both globally; tests and older Node pass their own
// (for example the `ws` package's `WebSocket`).
/** `WebSocket.OPEN`. */
const OPEN = 1;
const defaultTimers = {
    setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
    clearTimeout: (handle) => globalThis.clearTimeout(handle),
};
/** The global `WebSocket`, if this environment has one. */
function globalWebSocket() {
    return globalThis.WebSocket;
}
return { OPEN, defaultTimers, globalWebSocket };
})();

// --- client.ts
const __client = (() => {
// The reconnecting client (PROTOCOL §5), the browser's counterpart of the Rust client in
// client/src/client.rs.
//
// One `Client` owns at most one socket at a time and the state that outlives it: the
// subscription table (`Rooms`: last seq and epoch per room, dedupe), requests waiting
// for an answer (`Requests`), the resume path and token of the last `welcome`, and the
// reconnect `Backoff`. Frames the user asks for while offline are kept and sent after
// the next `welcome`: subscriptions first, then requests in `ref` order.
//
// Delivery: each stored message reaches the handlers once, in seq order per room,
// across resumes and fresh reconnects (the client resubscribes with `since`).
// Publishing is at-least-once: a stored `pub` not acknowledged when the connection
// drops is sent again with the same `ref` after reconnecting.
const { Backoff, jitter } = __backoff;
const { ClosedError, InvalidArgumentError, ServerError } = __errors;
const { Emitter, callSafely } = __events;
const { AUTH_SUBPROTOCOL_PREFIX, CloseCode, SUBPROTOCOL, encodeClientFrames, parseServerText, shouldReconnect } = __frames;
const { PresenceLogs, applyChanges } = __presence;
const { Requests, requestFrame } = __requests;
const { redactUrl, resumeUrl } = __resume;
const { Rooms, isValidRoom } = __rooms;
const { OPEN, defaultTimers, globalWebSocket } = __transport;
/** How long `welcome` may take from the start of an attempt. */
const DEFAULT_WELCOME_TIMEOUT_MS = 10000;
/** The shortest liveness window, whatever `heartbeat_ms` says. */
const MIN_HEARTBEAT_MS = 1000;
/** Failed attempts on the resume path before the client goes back to its first URL. */
const RESUME_ATTEMPTS = 2;
/** The server's default `max_frame_bytes`: larger frames are closed with 1009. */
const DEFAULT_MAX_FRAME_BYTES = 64 * 1024;
/** Client frames sent after a `welcome` are batched into text frames of at most this many UTF-16 units (at most 3 bytes each: under the server's 64 KiB). */
const MAX_BATCH_CHARS = 16 * 1024;
/** One `subscribe` call's handle. */
class Subscription {
    constructor(client, room, handlers) {
        this.client = client;
        this.room = room;
        this.handlers = handlers;
    }
    /** Removes these handlers; the room is unsubscribed when no handlers are left. */
    unsubscribe() {
        this.client.removeHandlers(this.room, this.handlers);
    }
    /** The last seq seen in the room. */
    get lastSeq() {
        return this.client.lastSeq(this.room);
    }
    get epoch() {
        return this.client.epoch(this.room);
    }
}
class Client extends Emitter {
    constructor(options) {
        super();
        this.table = new Rooms();
        this.requests = new Requests();
        this.presenceLogs = new PresenceLogs();
        this.handlers = new Map();
        this.current = "idle";
        /** The current socket has had its `welcome`. */
        this.online = false;
        this.resumeMisses = 0;
        /** Attempts since the last `welcome`. */
        this.attempt = 0;
        this.welcomed = false;
        this.reconnectCount = 0;
        this.heartbeatMs = 0;
        this.probing = false;
        /** Bumped by each attempt and by `close()`: a token arriving late for an old attempt is dropped. */
        this.ticket = 0;
        let parsed;
        try {
            parsed = new URL(options.url);
        }
        catch {
            throw new InvalidArgumentError(`not a URL: ${options.url}`);
        }
        if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
            throw new InvalidArgumentError("the URL must be ws:// or wss://");
        }
        this.url = options.url;
        const impl = options.WebSocket ?? globalWebSocket();
        if (impl === undefined) {
            throw new InvalidArgumentError("no WebSocket here: pass options.WebSocket (for example from the ws package)");
        }
        this.WebSocketImpl = impl;
        if (typeof options.token === "function") {
            this.provider = options.token;
        }
        else {
            this.token = options.token;
        }
        this.backoff = new Backoff(options.backoffMinMs, options.backoffMaxMs);
        this.resubscribeBackoff = new Backoff(options.backoffMinMs, options.backoffMaxMs);
        this.random = options.random ?? Math.random;
        this.timers = options.timers ?? defaultTimers;
        this.welcomeTimeoutMs = options.welcomeTimeoutMs ?? DEFAULT_WELCOME_TIMEOUT_MS;
        this.maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    }
    // --- The user's side -------------------------------------------------------------
    /** Starts connecting (and reconnecting until `close()` or a close code that forbids it). */
    connect() {
        if (this.current === "closed")
            throw new ClosedError();
        if (this.current === "idle")
            this.open();
    }
    /** Closes with 1000 and stops reconnecting. Pending requests fail with `ClosedError`. */
    close() {
        if (this.current === "closed")
            return;
        const socket = this.socket;
        this.detach();
        if (socket !== undefined) {
            try {
                socket.close(CloseCode.Normal);
            }
            catch {
                // Already closing: nothing to tell the server.
            }
        }
        this.finish(CloseCode.Normal);
    }
    /**
     * Subscribes to `room`, now and after every reconnect; `options.since` asks for
     * history too. Messages reach `handlers.message` once each, in seq order.
     */
    subscribe(room, handlers = {}, options = {}) {
        if (!isValidRoom(room))
            throw new InvalidArgumentError(`not a valid room name: ${JSON.stringify(room)}`);
        if (this.current === "closed")
            throw new ClosedError();
        let set = this.handlers.get(room);
        if (set === undefined) {
            set = new Set();
            this.handlers.set(room, set);
        }
        set.add(handlers);
        const frame = this.table.want(room, options.since, options.epoch, this.online);
        if (frame !== undefined)
            this.send([frame]);
        return new Subscription(this, room, handlers);
    }
    /** Unsubscribes from `room`, dropping every handler of it. */
    unsubscribe(room) {
        this.handlers.delete(room);
        const frame = this.table.unwant(room, this.online);
        if (frame !== undefined)
            this.send([frame]);
    }
    /** @internal Used by `Subscription.unsubscribe`. */
    removeHandlers(room, handlers) {
        const set = this.handlers.get(room);
        if (set === undefined || !set.delete(handlers))
            return;
        if (set.size === 0)
            this.unsubscribe(room);
    }
    /** Publishes a stored message; resolves with its seq once the server has stored it. */
    async publish(room, data) {
        const answer = await this.request({ kind: "publish", room: checkRoom(room), data: checkData(data), ephemeral: false });
        if (answer.op !== "ack" || typeof answer.seq !== "number") {
            throw new ServerError("internal", "the server acknowledged without a seq", room);
        }
        return answer.seq;
    }
    /** Publishes a live-only message (no seq, not stored); resolves when the server took it. Not retried after a disconnect. */
    async publishEphemeral(room, data) {
        await this.request({ kind: "publish", room: checkRoom(room), data: checkData(data), ephemeral: true });
    }
    /**
     * The members of a room (needs permission to subscribe to it, not a subscription).
     * A `join` or `leave` of the room that arrives while the answer is on its way is
     * applied over it: the list agrees with the events already delivered.
     */
    async presence(room) {
        const name = checkRoom(room);
        const log = this.presenceLogs.start(name);
        try {
            const answer = await this.request({ kind: "presence", room: name });
            return answer.op === "presence" ? applyChanges(answer.members, log) : [];
        }
        finally {
            this.presenceLogs.close(name, log);
        }
    }
    /**
     * Extends the connection with a new token; resolves with its `exp`. With a fixed
     * token the new one is also used for later reconnects.
     */
    async refresh(token) {
        if (this.provider === undefined)
            this.token = token;
        const answer = await this.request({ kind: "refresh", token });
        return answer.op === "refreshed" ? answer.exp : 0;
    }
    get state() {
        return this.current;
    }
    /** The worker holding the current session, while connected. */
    get worker() {
        return this.online ? this.session?.worker : undefined;
    }
    get conn() {
        return this.online ? this.session?.conn : undefined;
    }
    /** The user id of the last `welcome`. */
    get user() {
        return this.session?.user;
    }
    /** The last seq seen in `room` (or its seq when a live-only subscription began). */
    lastSeq(room) {
        return this.table.lastSeq(room);
    }
    /** The store epoch of `room`, from its last `subscribed`. */
    epoch(room) {
        return this.table.epoch(room);
    }
    /** The rooms the client keeps subscribed. */
    rooms() {
        return this.table.rooms();
    }
    /** How many `msg`s were dropped because their seq had been seen. */
    get duplicatesDropped() {
        return this.table.duplicates;
    }
    /** How many times the client connected again after its first `welcome`. */
    get reconnects() {
        return this.reconnectCount;
    }
    // --- Connecting --------------------------------------------------------------------
    setState(state) {
        if (this.current === state)
            return;
        this.current = state;
        this.emit("state", { state });
    }
    open() {
        const ticket = ++this.ticket;
        this.attempt += 1;
        this.setState("connecting");
        let url = this.url;
        const resume = this.resume;
        if (resume !== undefined) {
            try {
                url = resumeUrl(this.url, resume.path, resume.token);
            }
            catch {
                this.resume = undefined;
            }
        }
        const viaResume = url !== this.url;
        this.emit("connecting", { url: redactUrl(url), resume: viaResume, attempt: this.attempt });
        let token;
        try {
            token = this.provider !== undefined ? this.provider() : (this.token ?? "");
        }
        catch (error) {
            this.tokenFailed(error);
            return;
        }
        if (typeof token === "string") {
            this.dial(url, token);
            return;
        }
        token.then((value) => {
            if (ticket === this.ticket && this.current === "connecting")
                this.dial(url, value);
        }, (error) => {
            if (ticket === this.ticket && this.current === "connecting")
                this.tokenFailed(error);
        });
    }
    tokenFailed(error) {
        this.emit("error", { code: "token_provider", message: `the token provider failed: ${String(error)}` });
        this.ended(CloseCode.Abnormal, "no token");
    }
    dial(url, token) {
        let socket;
        try {
            socket = new this.WebSocketImpl(url, [SUBPROTOCOL, AUTH_SUBPROTOCOL_PREFIX + token]);
        }
        catch (error) {
            // A token with characters a subprotocol cannot carry, mostly.
            this.emit("error", { code: "connect_failed", message: String(error) });
            this.ended(CloseCode.Abnormal, "cannot open a WebSocket");
            return;
        }
        this.socket = socket;
        this.online = false;
        this.probing = false;
        socket.onmessage = (event) => {
            if (this.socket === socket)
                this.onText(socket, event.data);
        };
        socket.onclose = (event) => {
            if (this.socket === socket)
                this.ended(event.code ?? CloseCode.Abnormal, event.reason ?? "");
        };
        // A `close` event follows every `error` event.
        socket.onerror = () => { };
        this.arm(this.welcomeTimeoutMs);
    }
    /** Forgets the current socket: its events are ignored from now on. */
    detach() {
        this.disarm();
        // The next session sends every sub not held.
        this.cancelResubscribe();
        const socket = this.socket;
        this.socket = undefined;
        this.online = false;
        if (socket !== undefined) {
            socket.onopen = null;
            socket.onmessage = null;
            socket.onclose = null;
            socket.onerror = null;
        }
    }
    /** The socket ended (`code` 1006 when it was lost without a close frame, or never opened). */
    ended(code, reason) {
        const wasConnected = this.online;
        this.detach();
        if (!wasConnected && this.resume !== undefined) {
            // The resume path did not take us; after a few misses start over on the first URL.
            this.resumeMisses += 1;
            if (this.resumeMisses >= RESUME_ATTEMPTS) {
                this.resume = undefined;
                this.resumeMisses = 0;
            }
        }
        this.requests.onDisconnect();
        const stop = !shouldReconnect(code);
        this.emit("disconnected", { code, reason, wasConnected, willReconnect: !stop });
        if (this.current === "closed")
            return; // a listener closed the client
        if (stop) {
            this.finish(code);
            return;
        }
        let delayMs;
        let drained = false;
        if (code === CloseCode.Drained) {
            drained = this.drainAfterMs !== undefined;
            delayMs = this.drainAfterMs ?? jitter(this.backoff.ceilingMs, this.random);
        }
        else {
            delayMs = this.backoff.next(this.random);
        }
        this.drainAfterMs = undefined;
        this.setState("reconnecting");
        this.emit("reconnecting", { delayMs, attempt: this.attempt + 1, drained });
        if (this.current !== "reconnecting")
            return; // a listener closed the client
        this.retryTimer = this.timers.setTimeout(() => {
            this.retryTimer = undefined;
            if (this.current === "reconnecting")
                this.open();
        }, delayMs);
    }
    /** Stops for good. */
    finish(code) {
        this.ticket += 1;
        if (this.retryTimer !== undefined) {
            this.timers.clearTimeout(this.retryTimer);
            this.retryTimer = undefined;
        }
        this.cancelResubscribe();
        this.setState("closed");
        this.requests.rejectAll(new ClosedError());
        this.emit("closed", { code });
    }
    // --- Subs refused as `unavailable` --------------------------------------------------
    scheduleResubscribe() {
        if (this.resubscribeTimer !== undefined)
            return;
        this.resubscribeTimer = this.timers.setTimeout(() => {
            this.resubscribeTimer = undefined;
            if (this.online)
                this.send(this.table.unsent());
        }, this.resubscribeBackoff.next(this.random));
    }
    cancelResubscribe() {
        if (this.resubscribeTimer !== undefined) {
            this.timers.clearTimeout(this.resubscribeTimer);
            this.resubscribeTimer = undefined;
        }
    }
    // --- Liveness ----------------------------------------------------------------------
    arm(ms) {
        this.disarm();
        this.livenessTimer = this.timers.setTimeout(() => {
            this.livenessTimer = undefined;
            this.idle();
        }, ms);
    }
    disarm() {
        if (this.livenessTimer !== undefined) {
            this.timers.clearTimeout(this.livenessTimer);
            this.livenessTimer = undefined;
        }
    }
    /**
     * Nothing arrived for a heartbeat. Browsers answer the server's WebSocket pings
     * unseen, so ask for an answer we can see (`ping` op); a second silent period (or no
     * `welcome` in time) means the connection is dead.
     */
    idle() {
        const socket = this.socket;
        if (socket === undefined)
            return;
        if (!this.online || this.probing) {
            // `ended` detaches the socket first, so its own close event is not seen.
            this.ended(CloseCode.Abnormal, "no answer from the server");
            try {
                socket.close();
            }
            catch {
                // Closing a dead socket may throw; it is gone either way.
            }
            return;
        }
        this.probing = true;
        this.send([{ op: "ping" }]);
        this.arm(this.heartbeatMs);
    }
    // --- Frames ------------------------------------------------------------------------
    send(frames) {
        const socket = this.socket;
        if (socket === undefined || !this.online || socket.readyState !== OPEN || frames.length === 0)
            return;
        let batch = [];
        let size = 0;
        const flush = () => {
            if (batch.length > 0)
                socket.send(encodeClientFrames(batch));
            batch = [];
            size = 0;
        };
        for (const frame of frames) {
            const length = JSON.stringify(frame).length + 1;
            if (size + length > MAX_BATCH_CHARS)
                flush();
            batch.push(frame);
            size += length;
        }
        flush();
    }
    request(request) {
        if (this.current === "closed")
            return Promise.reject(new ClosedError());
        if (request.kind === "publish") {
            // Measured with the longest ref it could carry; a frame the server refuses would
            // close the connection, and a stored publish would be sent again after each reconnect.
            const bytes = utf8Length(JSON.stringify(requestFrame(Number.MAX_SAFE_INTEGER, request)));
            if (bytes > this.maxFrameBytes) {
                return Promise.reject(new InvalidArgumentError(`the message is ${bytes} bytes; the server takes frames of at most ${this.maxFrameBytes}`));
            }
        }
        return new Promise((resolve, reject) => {
            const frame = this.requests.add(request, { resolve, reject }, this.online);
            if (frame !== undefined)
                this.send([frame]);
        });
    }
    onText(socket, data) {
        // Binary frames are not part of the protocol: ignored.
        if (typeof data !== "string")
            return;
        this.probing = false;
        if (this.online)
            this.arm(this.heartbeatMs);
        for (const frame of parseServerText(data).frames) {
            if (this.socket !== socket)
                return; // a handler closed the client
            this.onFrame(frame);
        }
    }
    onFrame(frame) {
        switch (frame.op) {
            case "welcome":
                this.onWelcome(frame);
                return;
            case "reconnect":
                this.drainAfterMs = frame.after_ms;
                return;
            case "msg": {
                if (this.table.onMsg(frame.room, frame.seq) !== "deliver")
                    return;
                const message = { room: frame.room, seq: frame.seq, from: frame.from, ts: frame.ts, data: frame.data };
                this.each(frame.room, (h) => h.message && callSafely(h.message, message));
                this.emit("message", message);
                return;
            }
            case "subscribed": {
                if (!this.table.hasUnsent())
                    this.resubscribeBackoff.reset();
                if (!this.table.onSubscribed(frame.room, frame.seq, frame.epoch))
                    return;
                const event = {
                    room: frame.room,
                    seq: frame.seq,
                    epoch: frame.epoch,
                    recovered: frame.recovered,
                    replayed: frame.replayed,
                };
                this.each(frame.room, (h) => h.subscribed && callSafely(h.subscribed, event));
                this.emit("subscribed", event);
                return;
            }
            case "unsubscribed":
                if (!this.table.onUnsubscribed(frame.room))
                    return;
                this.emit("unsubscribed", { room: frame.room });
                return;
            case "join":
                this.presenceLogs.record(frame.room, frame.user, true);
                this.each(frame.room, (h) => h.join && callSafely(h.join, frame.user));
                this.emit("join", { room: frame.room, user: frame.user });
                return;
            case "leave":
                this.presenceLogs.record(frame.room, frame.user, false);
                this.each(frame.room, (h) => h.leave && callSafely(h.leave, frame.user));
                this.emit("leave", { room: frame.room, user: frame.user });
                return;
            case "ack":
            case "presence":
            case "refreshed": {
                const pending = this.requests.take(frame.ref);
                if (pending !== undefined)
                    pending.settle.resolve(frame);
                return;
            }
            case "refresh_required":
                this.onRefreshRequired(frame.expires_in_ms);
                return;
            case "error":
                this.onError(frame.code, frame.message, frame.ref, frame.room);
                return;
            case "pong":
                return;
        }
    }
    onWelcome(frame) {
        this.online = true;
        this.heartbeatMs = Math.max(frame.heartbeat_ms, MIN_HEARTBEAT_MS);
        this.arm(this.heartbeatMs);
        this.resume = { path: frame.resume, token: frame.resume_token };
        this.resumeMisses = 0;
        this.backoff.reset();
        this.attempt = 0;
        if (this.welcomed)
            this.reconnectCount += 1;
        this.welcomed = true;
        this.session = { conn: frame.conn, worker: frame.worker, user: frame.user };
        const socket = this.socket;
        this.setState("connected");
        const event = { resumed: frame.resumed, conn: frame.conn, worker: frame.worker, user: frame.user };
        this.emit("connected", event);
        if (frame.resumed)
            this.emit("resumed", event);
        if (this.socket !== socket)
            return; // a listener closed the client
        const subs = frame.resumed ? this.table.onResumedSession() : this.table.onFreshSession();
        this.send([...subs, ...this.requests.unsentFrames()]);
    }
    onRefreshRequired(expiresInMs) {
        const provider = this.provider;
        if (provider === undefined) {
            this.emit("refresh_required", { expiresInMs });
            return;
        }
        Promise.resolve()
            .then(provider)
            .then((token) => this.request({ kind: "refresh", token }))
            .then((answer) => {
            if (answer.op === "refreshed")
                this.emit("refreshed", { exp: answer.exp });
        }, (error) => {
            if (error instanceof ServerError) {
                this.emit("error", { code: error.code, message: error.message });
            }
            else if (!(error instanceof ClosedError)) {
                this.emit("error", { code: "token_provider", message: `refresh failed: ${String(error)}` });
            }
        });
    }
    onError(code, message, ref, room) {
        const pending = this.requests.take(ref);
        if (pending !== undefined) {
            pending.settle.reject(new ServerError(code, message, room));
            return;
        }
        const event = { code, message };
        if (ref !== undefined)
            event.ref = ref;
        if (room !== undefined) {
            event.room = room;
            if (code === "already_subscribed") {
                // A `sub` resent after a resume that the server already held.
                const held = this.table.onAlreadySubscribed(room);
                if (held === "known")
                    return;
                if (held !== "unknown") {
                    this.send(held);
                    return;
                }
            }
            if (code === "unavailable" && this.table.onUnavailable(room))
                this.scheduleResubscribe();
            if ((code === "forbidden" || code === "bad_room") && this.table.onRefused(room)) {
                this.each(room, (h) => h.error && callSafely(h.error, event));
                this.handlers.delete(room);
            }
        }
        this.emit("error", event);
    }
    each(room, call) {
        const set = this.handlers.get(room);
        if (set === undefined)
            return;
        for (const handlers of [...set])
            call(handlers);
    }
}
function checkRoom(room) {
    if (!isValidRoom(room))
        throw new InvalidArgumentError(`not a valid room name: ${JSON.stringify(room)}`);
    return room;
}
/** `data` must be JSON: what `JSON.stringify` cannot write (undefined, functions) is refused. */
function checkData(data) {
    let text;
    try {
        text = JSON.stringify(data);
    }
    catch {
        text = undefined;
    }
    if (text === undefined)
        throw new InvalidArgumentError("data must be a JSON value");
    return data;
}
/** The UTF-8 length of a string, without allocating. */
function utf8Length(text) {
    let bytes = 0;
    for (let i = 0; i < text.length; i++) {
        const unit = text.charCodeAt(i);
        if (unit < 0x80)
            bytes += 1;
        else if (unit < 0x800)
            bytes += 2;
        else if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
            bytes += 4; // a surrogate pair: one code point above U+FFFF
            i += 1;
        }
        else
            bytes += 3;
    }
    return bytes;
}
return { DEFAULT_WELCOME_TIMEOUT_MS, MIN_HEARTBEAT_MS, RESUME_ATTEMPTS, DEFAULT_MAX_FRAME_BYTES, MAX_BATCH_CHARS, Subscription, Client };
})();

// --- index.ts
const __index = (() => {
// @switchyard/client: a dependency-free client for Switchyard's wire protocol, version 1
// (docs/PROTOCOL.md), for browsers and Node.
//
// Parts: `client` (the reconnecting client: sessions, resume, resubscribe with `since`,
// requests by `ref`), `rooms` (per-room last seq, epoch and dedupe), `requests`
// (pending answers by `ref`), `backoff` (delays with full jitter), `resume` (the
// sticky reconnect URL), `frames` (wire types and NDJSON), `events` (what the client
// tells its user), `transport` (the WebSocket and timers it runs on), `errors`.
return { Client: __client.Client, Subscription: __client.Subscription, DEFAULT_MAX_FRAME_BYTES: __client.DEFAULT_MAX_FRAME_BYTES, DEFAULT_WELCOME_TIMEOUT_MS: __client.DEFAULT_WELCOME_TIMEOUT_MS, MIN_HEARTBEAT_MS: __client.MIN_HEARTBEAT_MS, RESUME_ATTEMPTS: __client.RESUME_ATTEMPTS, MAX_BATCH_CHARS: __client.MAX_BATCH_CHARS, Backoff: __backoff.Backoff, BACKOFF_MAX_MS: __backoff.BACKOFF_MAX_MS, BACKOFF_MIN_MS: __backoff.BACKOFF_MIN_MS, jitter: __backoff.jitter, ClosedError: __errors.ClosedError, DisconnectedError: __errors.DisconnectedError, InvalidArgumentError: __errors.InvalidArgumentError, ServerError: __errors.ServerError, Emitter: __events.Emitter, AUTH_SUBPROTOCOL_PREFIX: __frames.AUTH_SUBPROTOCOL_PREFIX, CloseCode: __frames.CloseCode, SUBPROTOCOL: __frames.SUBPROTOCOL, encodeClientFrames: __frames.encodeClientFrames, parseServerText: __frames.parseServerText, shouldReconnect: __frames.shouldReconnect, Rooms: __rooms.Rooms, isValidRoom: __rooms.isValidRoom, MAX_ROOM_BYTES: __rooms.MAX_ROOM_BYTES, redactUrl: __resume.redactUrl, resumeUrl: __resume.resumeUrl };
})();

export const { Client, Subscription, DEFAULT_MAX_FRAME_BYTES, DEFAULT_WELCOME_TIMEOUT_MS, MIN_HEARTBEAT_MS, RESUME_ATTEMPTS, MAX_BATCH_CHARS, Backoff, BACKOFF_MAX_MS, BACKOFF_MIN_MS, jitter, ClosedError, DisconnectedError, InvalidArgumentError, ServerError, Emitter, AUTH_SUBPROTOCOL_PREFIX, CloseCode, SUBPROTOCOL, encodeClientFrames, parseServerText, shouldReconnect, Rooms, isValidRoom, MAX_ROOM_BYTES, redactUrl, resumeUrl } = __index;
