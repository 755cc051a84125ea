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

import { Backoff, jitter } from "./backoff.js";
import { ClosedError, InvalidArgumentError, ServerError } from "./errors.js";
import {
  Emitter,
  callSafely,
  type ClientEvents,
  type ClientState,
  type ErrorEvent,
  type Message,
  type SubscribedEvent,
} from "./events.js";
import {
  AUTH_SUBPROTOCOL_PREFIX,
  CloseCode,
  SUBPROTOCOL,
  encodeClientFrames,
  parseServerText,
  shouldReconnect,
  type ClientFrame,
  type Member,
  type ServerFrame,
  type WelcomeFrame,
} from "./frames.js";
import { PresenceLogs, applyChanges } from "./presence.js";
import { Requests, requestFrame, type Request } from "./requests.js";
import { redactUrl, resumeUrl } from "./resume.js";
import { Rooms, isValidRoom } from "./rooms.js";
import {
  OPEN,
  defaultTimers,
  globalWebSocket,
  type Timers,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./transport.js";

/** Gives the token for each connection attempt and, on `refresh_required`, a fresh one. */
export type TokenProvider = () => string | Promise<string>;

/** How long `welcome` may take from the start of an attempt. */
export const DEFAULT_WELCOME_TIMEOUT_MS = 10_000;
/** The shortest liveness window, whatever `heartbeat_ms` says. */
export const MIN_HEARTBEAT_MS = 1_000;
/** Failed attempts on the resume path before the client goes back to its first URL. */
export const RESUME_ATTEMPTS = 2;
/** The server's default `max_frame_bytes`: larger frames are closed with 1009. */
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024;
/** Client frames sent after a `welcome` are batched into text frames of at most this many UTF-16 units (at most 3 bytes each: under the server's 64 KiB). */
export const MAX_BATCH_CHARS = 16 * 1024;

export interface ClientOptions {
  /** The gateway's WebSocket URL: `wss://host/ws`. */
  url: string;
  /** A token, or a function called before each attempt and on `refresh_required`. */
  token: string | TokenProvider;
  /** The WebSocket class; defaults to the global one (browsers, Node 22+). */
  WebSocket?: WebSocketConstructor;
  backoffMinMs?: number;
  backoffMaxMs?: number;
  welcomeTimeoutMs?: number;
  /** The server's `max_frame_bytes`: a publish whose frame is larger is refused before it is sent (the server would close with 1009). */
  maxFrameBytes?: number;
  /** A `Math.random`-like source for the jitter (tests make it predictable). */
  random?: () => number;
  timers?: Timers;
}

export interface SubscribeOptions {
  /** The last seq the caller already has (0 for all retained history). Omit for live only. */
  since?: number;
  /** The store epoch `since` was seen in. */
  epoch?: string;
}

/** Callbacks for one room; each is optional. */
export interface SubscriptionHandlers {
  message?: (message: Message) => void;
  subscribed?: (event: SubscribedEvent) => void;
  join?: (user: string) => void;
  leave?: (user: string) => void;
  /** The server refused the subscription (`forbidden`, `bad_room`): it is dropped. */
  error?: (event: ErrorEvent) => void;
}

/** One `subscribe` call's handle. */
export class Subscription {
  constructor(
    private readonly client: Client,
    readonly room: string,
    private readonly handlers: SubscriptionHandlers,
  ) {}

  /** Removes these handlers; the room is unsubscribed when no handlers are left. */
  unsubscribe(): void {
    this.client.removeHandlers(this.room, this.handlers);
  }

  /** The last seq seen in the room. */
  get lastSeq(): number | undefined {
    return this.client.lastSeq(this.room);
  }

  get epoch(): string | undefined {
    return this.client.epoch(this.room);
  }
}

interface Session {
  conn: string;
  worker: string;
  user: string;
}

export class Client extends Emitter<ClientEvents> {
  readonly url: string;
  private readonly WebSocketImpl: WebSocketConstructor;
  private readonly provider: TokenProvider | undefined;
  /** Used when no provider is given; replaced by each `refresh()`. */
  private token: string | undefined;
  private readonly backoff: Backoff;
  private readonly random: () => number;
  private readonly timers: Timers;
  private readonly welcomeTimeoutMs: number;
  private readonly maxFrameBytes: number;
  private readonly table = new Rooms();
  private readonly requests = new Requests();
  private readonly presenceLogs = new PresenceLogs();
  private readonly handlers = new Map<string, Set<SubscriptionHandlers>>();

  private current: ClientState = "idle";
  private socket: WebSocketLike | undefined;
  /** The current socket has had its `welcome`. */
  private online = false;
  private session: Session | undefined;
  private resume: { path: string; token: string } | undefined;
  private resumeMisses = 0;
  /** Attempts since the last `welcome`. */
  private attempt = 0;
  private welcomed = false;
  private reconnectCount = 0;
  /** `after_ms` of a `reconnect` frame, for the 1012 that follows it. */
  private drainAfterMs: number | undefined;
  private heartbeatMs = 0;
  private probing = false;
  private retryTimer: unknown;
  private livenessTimer: unknown;
  /** Subs refused as `unavailable` are sent again after this backoff. */
  private readonly resubscribeBackoff: Backoff;
  private resubscribeTimer: unknown;
  /** Bumped by each attempt and by `close()`: a token arriving late for an old attempt is dropped. */
  private ticket = 0;

  constructor(options: ClientOptions) {
    super();
    let parsed: URL;
    try {
      parsed = new URL(options.url);
    } catch {
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
    } else {
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
  connect(): void {
    if (this.current === "closed") throw new ClosedError();
    if (this.current === "idle") this.open();
  }

  /** Closes with 1000 and stops reconnecting. Pending requests fail with `ClosedError`. */
  close(): void {
    if (this.current === "closed") return;
    const socket = this.socket;
    this.detach();
    if (socket !== undefined) {
      try {
        socket.close(CloseCode.Normal);
      } catch {
        // Already closing: nothing to tell the server.
      }
    }
    this.finish(CloseCode.Normal);
  }

  /**
   * Subscribes to `room`, now and after every reconnect; `options.since` asks for
   * history too. Messages reach `handlers.message` once each, in seq order.
   */
  subscribe(room: string, handlers: SubscriptionHandlers = {}, options: SubscribeOptions = {}): Subscription {
    if (!isValidRoom(room)) throw new InvalidArgumentError(`not a valid room name: ${JSON.stringify(room)}`);
    if (this.current === "closed") throw new ClosedError();
    let set = this.handlers.get(room);
    if (set === undefined) {
      set = new Set();
      this.handlers.set(room, set);
    }
    set.add(handlers);
    const frame = this.table.want(room, options.since, options.epoch, this.online);
    if (frame !== undefined) this.send([frame]);
    return new Subscription(this, room, handlers);
  }

  /** Unsubscribes from `room`, dropping every handler of it. */
  unsubscribe(room: string): void {
    this.handlers.delete(room);
    const frame = this.table.unwant(room, this.online);
    if (frame !== undefined) this.send([frame]);
  }

  /** @internal Used by `Subscription.unsubscribe`. */
  removeHandlers(room: string, handlers: SubscriptionHandlers): void {
    const set = this.handlers.get(room);
    if (set === undefined || !set.delete(handlers)) return;
    if (set.size === 0) this.unsubscribe(room);
  }

  /** Publishes a stored message; resolves with its seq once the server has stored it. */
  async publish(room: string, data: unknown): Promise<number> {
    const answer = await this.request({ kind: "publish", room: checkRoom(room), data: checkData(data), ephemeral: false });
    if (answer.op !== "ack" || typeof answer.seq !== "number") {
      throw new ServerError("internal", "the server acknowledged without a seq", room);
    }
    return answer.seq;
  }

  /** Publishes a live-only message (no seq, not stored); resolves when the server took it. Not retried after a disconnect. */
  async publishEphemeral(room: string, data: unknown): Promise<void> {
    await this.request({ kind: "publish", room: checkRoom(room), data: checkData(data), ephemeral: true });
  }

  /**
   * The members of a room (needs permission to subscribe to it, not a subscription).
   * A `join` or `leave` of the room that arrives while the answer is on its way is
   * applied over it: the list agrees with the events already delivered.
   */
  async presence(room: string): Promise<Member[]> {
    const name = checkRoom(room);
    const log = this.presenceLogs.start(name);
    try {
      const answer = await this.request({ kind: "presence", room: name });
      return answer.op === "presence" ? applyChanges(answer.members, log) : [];
    } finally {
      this.presenceLogs.close(name, log);
    }
  }

  /**
   * Extends the connection with a new token; resolves with its `exp`. With a fixed
   * token the new one is also used for later reconnects.
   */
  async refresh(token: string): Promise<number> {
    if (this.provider === undefined) this.token = token;
    const answer = await this.request({ kind: "refresh", token });
    return answer.op === "refreshed" ? answer.exp : 0;
  }

  get state(): ClientState {
    return this.current;
  }

  /** The worker holding the current session, while connected. */
  get worker(): string | undefined {
    return this.online ? this.session?.worker : undefined;
  }

  get conn(): string | undefined {
    return this.online ? this.session?.conn : undefined;
  }

  /** The user id of the last `welcome`. */
  get user(): string | undefined {
    return this.session?.user;
  }

  /** The last seq seen in `room` (or its seq when a live-only subscription began). */
  lastSeq(room: string): number | undefined {
    return this.table.lastSeq(room);
  }

  /** The store epoch of `room`, from its last `subscribed`. */
  epoch(room: string): string | undefined {
    return this.table.epoch(room);
  }

  /** The rooms the client keeps subscribed. */
  rooms(): string[] {
    return this.table.rooms();
  }

  /** How many `msg`s were dropped because their seq had been seen. */
  get duplicatesDropped(): number {
    return this.table.duplicates;
  }

  /** How many times the client connected again after its first `welcome`. */
  get reconnects(): number {
    return this.reconnectCount;
  }

  // --- Connecting --------------------------------------------------------------------

  private setState(state: ClientState): void {
    if (this.current === state) return;
    this.current = state;
    this.emit("state", { state });
  }

  private open(): void {
    const ticket = ++this.ticket;
    this.attempt += 1;
    this.setState("connecting");
    let url = this.url;
    const resume = this.resume;
    if (resume !== undefined) {
      try {
        url = resumeUrl(this.url, resume.path, resume.token);
      } catch {
        this.resume = undefined;
      }
    }
    const viaResume = url !== this.url;
    this.emit("connecting", { url: redactUrl(url), resume: viaResume, attempt: this.attempt });
    let token: string | Promise<string>;
    try {
      token = this.provider !== undefined ? this.provider() : (this.token ?? "");
    } catch (error) {
      this.tokenFailed(error);
      return;
    }
    if (typeof token === "string") {
      this.dial(url, token);
      return;
    }
    token.then(
      (value) => {
        if (ticket === this.ticket && this.current === "connecting") this.dial(url, value);
      },
      (error: unknown) => {
        if (ticket === this.ticket && this.current === "connecting") this.tokenFailed(error);
      },
    );
  }

  private tokenFailed(error: unknown): void {
    this.emit("error", { code: "token_provider", message: `the token provider failed: ${String(error)}` });
    this.ended(CloseCode.Abnormal, "no token");
  }

  private dial(url: string, token: string): void {
    let socket: WebSocketLike;
    try {
      socket = new this.WebSocketImpl(url, [SUBPROTOCOL, AUTH_SUBPROTOCOL_PREFIX + token]);
    } catch (error) {
      // A token with characters a subprotocol cannot carry, mostly.
      this.emit("error", { code: "connect_failed", message: String(error) });
      this.ended(CloseCode.Abnormal, "cannot open a WebSocket");
      return;
    }
    this.socket = socket;
    this.online = false;
    this.probing = false;
    socket.onmessage = (event: { data?: unknown }) => {
      if (this.socket === socket) this.onText(socket, event.data);
    };
    socket.onclose = (event: { code?: number; reason?: string }) => {
      if (this.socket === socket) this.ended(event.code ?? CloseCode.Abnormal, event.reason ?? "");
    };
    // A `close` event follows every `error` event.
    socket.onerror = () => {};
    this.arm(this.welcomeTimeoutMs);
  }

  /** Forgets the current socket: its events are ignored from now on. */
  private detach(): void {
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
  private ended(code: number, reason: string): void {
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
    if (this.current === "closed") return; // a listener closed the client
    if (stop) {
      this.finish(code);
      return;
    }
    let delayMs: number;
    let drained = false;
    if (code === CloseCode.Drained) {
      drained = this.drainAfterMs !== undefined;
      delayMs = this.drainAfterMs ?? jitter(this.backoff.ceilingMs, this.random);
    } else {
      delayMs = this.backoff.next(this.random);
    }
    this.drainAfterMs = undefined;
    this.setState("reconnecting");
    this.emit("reconnecting", { delayMs, attempt: this.attempt + 1, drained });
    if (this.current !== "reconnecting") return; // a listener closed the client
    this.retryTimer = this.timers.setTimeout(() => {
      this.retryTimer = undefined;
      if (this.current === "reconnecting") this.open();
    }, delayMs);
  }

  /** Stops for good. */
  private finish(code: number): void {
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

  private scheduleResubscribe(): void {
    if (this.resubscribeTimer !== undefined) return;
    this.resubscribeTimer = this.timers.setTimeout(() => {
      this.resubscribeTimer = undefined;
      if (this.online) this.send(this.table.unsent());
    }, this.resubscribeBackoff.next(this.random));
  }

  private cancelResubscribe(): void {
    if (this.resubscribeTimer !== undefined) {
      this.timers.clearTimeout(this.resubscribeTimer);
      this.resubscribeTimer = undefined;
    }
  }

  // --- Liveness ----------------------------------------------------------------------

  private arm(ms: number): void {
    this.disarm();
    this.livenessTimer = this.timers.setTimeout(() => {
      this.livenessTimer = undefined;
      this.idle();
    }, ms);
  }

  private disarm(): void {
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
  private idle(): void {
    const socket = this.socket;
    if (socket === undefined) return;
    if (!this.online || this.probing) {
      // `ended` detaches the socket first, so its own close event is not seen.
      this.ended(CloseCode.Abnormal, "no answer from the server");
      try {
        socket.close();
      } catch {
        // Closing a dead socket may throw; it is gone either way.
      }
      return;
    }
    this.probing = true;
    this.send([{ op: "ping" }]);
    this.arm(this.heartbeatMs);
  }

  // --- Frames ------------------------------------------------------------------------

  private send(frames: readonly ClientFrame[]): void {
    const socket = this.socket;
    if (socket === undefined || !this.online || socket.readyState !== OPEN || frames.length === 0) return;
    let batch: ClientFrame[] = [];
    let size = 0;
    const flush = () => {
      if (batch.length > 0) socket.send(encodeClientFrames(batch));
      batch = [];
      size = 0;
    };
    for (const frame of frames) {
      const length = JSON.stringify(frame).length + 1;
      if (size + length > MAX_BATCH_CHARS) flush();
      batch.push(frame);
      size += length;
    }
    flush();
  }

  private request(request: Request): Promise<ServerFrame> {
    if (this.current === "closed") return Promise.reject(new ClosedError());
    if (request.kind === "publish") {
      // Measured with the longest ref it could carry; a frame the server refuses would
      // close the connection, and a stored publish would be sent again after each reconnect.
      const bytes = utf8Length(JSON.stringify(requestFrame(Number.MAX_SAFE_INTEGER, request)));
      if (bytes > this.maxFrameBytes) {
        return Promise.reject(
          new InvalidArgumentError(`the message is ${bytes} bytes; the server takes frames of at most ${this.maxFrameBytes}`),
        );
      }
    }
    return new Promise<ServerFrame>((resolve, reject) => {
      const frame = this.requests.add(request, { resolve, reject }, this.online);
      if (frame !== undefined) this.send([frame]);
    });
  }

  private onText(socket: WebSocketLike, data: unknown): void {
    // Binary frames are not part of the protocol: ignored.
    if (typeof data !== "string") return;
    this.probing = false;
    if (this.online) this.arm(this.heartbeatMs);
    for (const frame of parseServerText(data).frames) {
      if (this.socket !== socket) return; // a handler closed the client
      this.onFrame(frame);
    }
  }

  private onFrame(frame: ServerFrame): void {
    switch (frame.op) {
      case "welcome":
        this.onWelcome(frame);
        return;
      case "reconnect":
        this.drainAfterMs = frame.after_ms;
        return;
      case "msg": {
        if (this.table.onMsg(frame.room, frame.seq) !== "deliver") return;
        const message: Message = { room: frame.room, seq: frame.seq, from: frame.from, ts: frame.ts, data: frame.data };
        this.each(frame.room, (h) => h.message && callSafely(h.message, message));
        this.emit("message", message);
        return;
      }
      case "subscribed": {
        if (!this.table.hasUnsent()) this.resubscribeBackoff.reset();
        if (!this.table.onSubscribed(frame.room, frame.seq, frame.epoch)) return;
        const event: SubscribedEvent = {
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
        if (!this.table.onUnsubscribed(frame.room)) return;
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
        if (pending !== undefined) pending.settle.resolve(frame);
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

  private onWelcome(frame: WelcomeFrame): void {
    this.online = true;
    this.heartbeatMs = Math.max(frame.heartbeat_ms, MIN_HEARTBEAT_MS);
    this.arm(this.heartbeatMs);
    this.resume = { path: frame.resume, token: frame.resume_token };
    this.resumeMisses = 0;
    this.backoff.reset();
    this.attempt = 0;
    if (this.welcomed) this.reconnectCount += 1;
    this.welcomed = true;
    this.session = { conn: frame.conn, worker: frame.worker, user: frame.user };
    const socket = this.socket;
    this.setState("connected");
    const event = { resumed: frame.resumed, conn: frame.conn, worker: frame.worker, user: frame.user };
    this.emit("connected", event);
    if (frame.resumed) this.emit("resumed", event);
    if (this.socket !== socket) return; // a listener closed the client
    const subs: ClientFrame[] = frame.resumed ? this.table.onResumedSession() : this.table.onFreshSession();
    this.send([...subs, ...this.requests.unsentFrames()]);
  }

  private onRefreshRequired(expiresInMs: number): void {
    const provider = this.provider;
    if (provider === undefined) {
      this.emit("refresh_required", { expiresInMs });
      return;
    }
    Promise.resolve()
      .then(provider)
      .then((token) => this.request({ kind: "refresh", token }))
      .then(
        (answer) => {
          if (answer.op === "refreshed") this.emit("refreshed", { exp: answer.exp });
        },
        (error: unknown) => {
          if (error instanceof ServerError) {
            this.emit("error", { code: error.code, message: error.message });
          } else if (!(error instanceof ClosedError)) {
            this.emit("error", { code: "token_provider", message: `refresh failed: ${String(error)}` });
          }
        },
      );
  }

  private onError(code: string, message: string, ref: string | undefined, room: string | undefined): void {
    const pending = this.requests.take(ref);
    if (pending !== undefined) {
      pending.settle.reject(new ServerError(code, message, room));
      return;
    }
    const event: ErrorEvent = { code, message };
    if (ref !== undefined) event.ref = ref;
    if (room !== undefined) {
      event.room = room;
      if (code === "already_subscribed") {
        // A `sub` resent after a resume that the server already held.
        const held = this.table.onAlreadySubscribed(room);
        if (held === "known") return;
        if (held !== "unknown") {
          this.send(held);
          return;
        }
      }
      if (code === "unavailable" && this.table.onUnavailable(room)) this.scheduleResubscribe();
      if ((code === "forbidden" || code === "bad_room") && this.table.onRefused(room)) {
        this.each(room, (h) => h.error && callSafely(h.error, event));
        this.handlers.delete(room);
      }
    }
    this.emit("error", event);
  }

  private each(room: string, call: (handlers: SubscriptionHandlers) => unknown): void {
    const set = this.handlers.get(room);
    if (set === undefined) return;
    for (const handlers of [...set]) call(handlers);
  }
}

function checkRoom(room: string): string {
  if (!isValidRoom(room)) throw new InvalidArgumentError(`not a valid room name: ${JSON.stringify(room)}`);
  return room;
}

/** `data` must be JSON: what `JSON.stringify` cannot write (undefined, functions) is refused. */
function checkData(data: unknown): unknown {
  let text: string | undefined;
  try {
    text = JSON.stringify(data);
  } catch {
    text = undefined;
  }
  if (text === undefined) throw new InvalidArgumentError("data must be a JSON value");
  return data;
}

/** The UTF-8 length of a string, without allocating. */
function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      bytes += 4; // a surrogate pair: one code point above U+FFFF
      i += 1;
    } else bytes += 3;
  }
  return bytes;
}
