import { Emitter, type ClientEvents, type ClientState, type ErrorEvent, type Message, type SubscribedEvent } from "./events.js";
import { type Member } from "./frames.js";
import { type Timers, type WebSocketConstructor } from "./transport.js";
/** Gives the token for each connection attempt and, on `refresh_required`, a fresh one. */
export type TokenProvider = () => string | Promise<string>;
/** How long `welcome` may take from the start of an attempt. */
export declare const DEFAULT_WELCOME_TIMEOUT_MS = 10000;
/** The shortest liveness window, whatever `heartbeat_ms` says. */
export declare const MIN_HEARTBEAT_MS = 1000;
/** Failed attempts on the resume path before the client goes back to its first URL. */
export declare const RESUME_ATTEMPTS = 2;
/** The server's default `max_frame_bytes`: larger frames are closed with 1009. */
export declare const DEFAULT_MAX_FRAME_BYTES: number;
/** Client frames sent after a `welcome` are batched into text frames of at most this many UTF-16 units (at most 3 bytes each: under the server's 64 KiB). */
export declare const MAX_BATCH_CHARS: number;
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
export declare class Subscription {
    private readonly client;
    readonly room: string;
    private readonly handlers;
    constructor(client: Client, room: string, handlers: SubscriptionHandlers);
    /** Removes these handlers; the room is unsubscribed when no handlers are left. */
    unsubscribe(): void;
    /** The last seq seen in the room. */
    get lastSeq(): number | undefined;
    get epoch(): string | undefined;
}
export declare class Client extends Emitter<ClientEvents> {
    readonly url: string;
    private readonly WebSocketImpl;
    private readonly provider;
    /** Used when no provider is given; replaced by each `refresh()`. */
    private token;
    private readonly backoff;
    private readonly random;
    private readonly timers;
    private readonly welcomeTimeoutMs;
    private readonly maxFrameBytes;
    private readonly table;
    private readonly requests;
    private readonly presenceLogs;
    private readonly handlers;
    private current;
    private socket;
    /** The current socket has had its `welcome`. */
    private online;
    private session;
    private resume;
    private resumeMisses;
    /** Attempts since the last `welcome`. */
    private attempt;
    private welcomed;
    private reconnectCount;
    /** `after_ms` of a `reconnect` frame, for the 1012 that follows it. */
    private drainAfterMs;
    private heartbeatMs;
    private probing;
    private retryTimer;
    private livenessTimer;
    /** Subs refused as `unavailable` are sent again after this backoff. */
    private readonly resubscribeBackoff;
    private resubscribeTimer;
    /** Bumped by each attempt and by `close()`: a token arriving late for an old attempt is dropped. */
    private ticket;
    constructor(options: ClientOptions);
    /** Starts connecting (and reconnecting until `close()` or a close code that forbids it). */
    connect(): void;
    /** Closes with 1000 and stops reconnecting. Pending requests fail with `ClosedError`. */
    close(): void;
    /**
     * Subscribes to `room`, now and after every reconnect; `options.since` asks for
     * history too. Messages reach `handlers.message` once each, in seq order.
     */
    subscribe(room: string, handlers?: SubscriptionHandlers, options?: SubscribeOptions): Subscription;
    /** Unsubscribes from `room`, dropping every handler of it. */
    unsubscribe(room: string): void;
    /** @internal Used by `Subscription.unsubscribe`. */
    removeHandlers(room: string, handlers: SubscriptionHandlers): void;
    /** Publishes a stored message; resolves with its seq once the server has stored it. */
    publish(room: string, data: unknown): Promise<number>;
    /** Publishes a live-only message (no seq, not stored); resolves when the server took it. Not retried after a disconnect. */
    publishEphemeral(room: string, data: unknown): Promise<void>;
    /**
     * The members of a room (needs permission to subscribe to it, not a subscription).
     * A `join` or `leave` of the room that arrives while the answer is on its way is
     * applied over it: the list agrees with the events already delivered.
     */
    presence(room: string): Promise<Member[]>;
    /**
     * Extends the connection with a new token; resolves with its `exp`. With a fixed
     * token the new one is also used for later reconnects.
     */
    refresh(token: string): Promise<number>;
    get state(): ClientState;
    /** The worker holding the current session, while connected. */
    get worker(): string | undefined;
    get conn(): string | undefined;
    /** The user id of the last `welcome`. */
    get user(): string | undefined;
    /** The last seq seen in `room` (or its seq when a live-only subscription began). */
    lastSeq(room: string): number | undefined;
    /** The store epoch of `room`, from its last `subscribed`. */
    epoch(room: string): string | undefined;
    /** The rooms the client keeps subscribed. */
    rooms(): string[];
    /** How many `msg`s were dropped because their seq had been seen. */
    get duplicatesDropped(): number;
    /** How many times the client connected again after its first `welcome`. */
    get reconnects(): number;
    private setState;
    private open;
    private tokenFailed;
    private dial;
    /** Forgets the current socket: its events are ignored from now on. */
    private detach;
    /** The socket ended (`code` 1006 when it was lost without a close frame, or never opened). */
    private ended;
    /** Stops for good. */
    private finish;
    private scheduleResubscribe;
    private cancelResubscribe;
    private arm;
    private disarm;
    /**
     * Nothing arrived for a heartbeat. Browsers answer the server's WebSocket pings
     * unseen, so ask for an answer we can see (`ping` op); a second silent period (or no
     * `welcome` in time) means the connection is dead.
     */
    private idle;
    private send;
    private request;
    private onText;
    private onFrame;
    private onWelcome;
    private onRefreshRequired;
    private onError;
    private each;
}
