// What a client tells its user, and the small typed emitter that tells it.

import type { ErrorCode, Member } from "./frames.js";

/** The client's state; each change is also a `state` event. */
export type ClientState = "idle" | "connecting" | "connected" | "reconnecting" | "closed";

export interface ConnectingEvent {
  /** The URL without its query (which may carry a resume token). */
  url: string;
  /** True when this attempt goes to the `resume` path of the last `welcome`. */
  resume: boolean;
  /** Attempts since the last `welcome` (1 for the first). */
  attempt: number;
}
export interface ConnectedEvent {
  /** With `resumed` the server restored the session's subscriptions and buffered messages. */
  resumed: boolean;
  conn: string;
  worker: string;
  user: string;
}
export interface DisconnectedEvent {
  /** The close code: as the server sent it, or 1006 when the socket was lost without one (or never opened). */
  code: number;
  reason: string;
  /** Whether the socket had reached `welcome`. */
  wasConnected: boolean;
  /** False when the client stops for good (1000, 1008, 4009, or `close()`). */
  willReconnect: boolean;
}
export interface ReconnectingEvent {
  /** When the next attempt starts. */
  delayMs: number;
  /** The attempt that will be made (1 for the first after a connection). */
  attempt: number;
  /** True when the server asked for this delay (`reconnect.after_ms` before 1012). */
  drained: boolean;
}
export interface ClosedEvent {
  code: number;
}
export interface StateEvent {
  state: ClientState;
}
export interface Message {
  room: string;
  /** Undefined for ephemeral messages. Never repeats within a room. */
  seq: number | undefined;
  from: string;
  /** When the server accepted it, milliseconds since the epoch. */
  ts: number;
  data: unknown;
}
export interface SubscribedEvent {
  room: string;
  seq: number;
  epoch: string;
  /** False when the store could not bring the client up to date: resync another way. */
  recovered: boolean;
  replayed: number;
}
export interface RoomEvent {
  room: string;
}
export interface PresenceEvent {
  room: string;
  user: string;
}
export interface RefreshRequiredEvent {
  expiresInMs: number;
}
export interface RefreshedEvent {
  exp: number;
}
/** An `error` frame that answers no request of the caller (a refused `sub`), or a token provider failure. */
export interface ErrorEvent {
  code: ErrorCode;
  message: string;
  ref?: string;
  room?: string;
}

export interface ClientEvents {
  state: StateEvent;
  connecting: ConnectingEvent;
  connected: ConnectedEvent;
  /** A `welcome` with `resumed: true` (after its `connected`). */
  resumed: ConnectedEvent;
  disconnected: DisconnectedEvent;
  reconnecting: ReconnectingEvent;
  /** The client stopped for good. */
  closed: ClosedEvent;
  message: Message;
  subscribed: SubscribedEvent;
  unsubscribed: RoomEvent;
  join: PresenceEvent;
  leave: PresenceEvent;
  /** The token expires soon and the client was given a fixed token: call `refresh()`. */
  refresh_required: RefreshRequiredEvent;
  refreshed: RefreshedEvent;
  error: ErrorEvent;
}

export type { Member };

export type Listener<T> = (event: T) => void;

/** A typed event emitter. A listener that throws is reported on the console and does not stop the others. */
export class Emitter<Events extends object> {
  private readonly listeners = new Map<keyof Events, Set<Listener<never>>>();

  /** Adds a listener; returns the function that removes it. */
  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    let set = this.listeners.get(event);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(listener as Listener<never>);
    return () => this.off(event, listener);
  }

  off<K extends keyof Events>(event: K, listener: Listener<Events[K]>): void {
    this.listeners.get(event)?.delete(listener as Listener<never>);
  }

  emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    const set = this.listeners.get(event);
    if (set === undefined) return;
    for (const listener of [...set]) {
      callSafely(listener as Listener<Events[K]>, payload);
    }
  }
}

/** Calls a user's callback; what it throws must not break the client. */
export function callSafely<T>(listener: Listener<T>, payload: T): void {
  try {
    listener(payload);
  } catch (error) {
    console.error("switchyard: a listener threw", error);
  }
}
