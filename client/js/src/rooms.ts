// The subscription table: which rooms the user wants, what the server holds for this
// session, and per room the last seq seen and its epoch, which make resubscribing with
// `since` and dropping duplicates possible (PROTOCOL §3, §5). No I/O: the client sends
// the frames this table returns.

import type { SubFrame, UnsubFrame } from "./frames.js";

const SEGMENT = /^[A-Za-z0-9_-]+$/;
const USER_ID = /^[A-Za-z0-9_-]{1,64}$/;
/** Longest room name, in bytes (its characters are ASCII). */
export const MAX_ROOM_BYTES = 128;

/** A room name of PROTOCOL §2: segments of `[A-Za-z0-9_-]` joined by `.`, or `@<user id>`; 1–128 bytes. */
export function isValidRoom(room: string): boolean {
  if (room.length === 0 || room.length > MAX_ROOM_BYTES) return false;
  if (room.startsWith("@")) return USER_ID.test(room.slice(1));
  return room.split(".").every((segment) => SEGMENT.test(segment));
}

/** Where a room's subscription stands on the current session. */
export type SubState = "unsent" | "sent" | "confirmed";

interface RoomState {
  /** False after `unwant`, until the server has been told. */
  wanted: boolean;
  state: SubState;
  /** The highest seq delivered to the user, or the room's seq at a live-only `sub`. */
  lastSeq: number | undefined;
  epoch: string | undefined;
  /** The `since` of the `sub` in flight (undefined: live only). */
  sentSince: number | undefined;
  /** An `unsub` + `sub` pair renews a subscription whose answer was lost; the `unsubscribed` it brings back is not the user's. */
  renewing: boolean;
}

/** What to do with a `msg`. */
export type Verdict =
  | "deliver"
  | "duplicate"
  | "unwanted"
  /** Sent under a subscription being renewed live-only: before the user's subscription point. */
  | "before_point";

/**
 * What to do with an `already_subscribed`: `known` (confirmed already, nothing to tell),
 * frames that renew a subscription whose answer was lost, or `unknown` (not a room of ours).
 */
export type AlreadyHeld = "known" | "unknown" | Array<SubFrame | UnsubFrame>;

export class Rooms {
  private readonly map = new Map<string, RoomState>();
  private dropped = 0;

  /**
   * Records that the user wants `room`, optionally from `since` (the last seq the user
   * already has) in `epoch`. Returns the `sub` to send now when `online` and the room is
   * not subscribed on this session yet.
   */
  want(room: string, since: number | undefined, epoch: string | undefined, online: boolean): SubFrame | undefined {
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
  unwant(room: string, online: boolean): UnsubFrame | undefined {
    const entry = this.map.get(room);
    if (entry === undefined) return undefined;
    entry.wanted = false;
    if (entry.state === "unsent") {
      this.map.delete(room);
      return undefined;
    }
    if (!online) return undefined;
    this.map.delete(room);
    return { op: "unsub", room };
  }

  /** The `sub` for a room, with `since` = the last seq seen and its epoch. */
  private subFrame(room: string, entry: RoomState): SubFrame {
    entry.state = "sent";
    entry.sentSince = entry.lastSeq;
    const frame: SubFrame = { op: "sub", room };
    if (entry.lastSeq !== undefined) {
      frame.since = entry.lastSeq;
      if (entry.epoch !== undefined) frame.epoch = entry.epoch;
    }
    return frame;
  }

  /**
   * A `welcome` with `resumed: false`: the server holds nothing. Every wanted room is
   * subscribed again from its last seq, in its epoch.
   */
  onFreshSession(): SubFrame[] {
    const frames: SubFrame[] = [];
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
  onResumedSession(): Array<SubFrame | UnsubFrame> {
    const frames: Array<SubFrame | UnsubFrame> = [];
    for (const [room, entry] of [...this.map]) {
      if (!entry.wanted) {
        frames.push({ op: "unsub", room });
        this.map.delete(room);
      }
    }
    for (const [room, entry] of this.map) {
      if (entry.state !== "confirmed") frames.push(this.subFrame(room, entry));
    }
    return frames;
  }

  /**
   * `subscribed`: the server holds the room; `seq` is its latest, `epoch` its store's.
   * Returns whether the user still wants the room.
   */
  onSubscribed(room: string, seq: number, epoch: string): boolean {
    const entry = this.map.get(room);
    if (entry === undefined) return false;
    entry.state = "confirmed";
    entry.renewing = false;
    const reset =
      (entry.epoch !== undefined && entry.epoch !== epoch) ||
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
  onAlreadySubscribed(room: string): AlreadyHeld {
    const entry = this.map.get(room);
    if (entry === undefined) return "unknown";
    if (entry.state !== "sent") return "known";
    entry.renewing = true;
    return [{ op: "unsub", room }, this.subFrame(room, entry)];
  }

  /** `unsubscribed`: returns whether it is the user's (not a renewal's). */
  onUnsubscribed(room: string): boolean {
    return this.map.get(room)?.renewing !== true;
  }

  /**
   * `unavailable` for a `sub`: the server holds nothing and asks for the `sub` again
   * later. The room stays wanted and unsent, for `unsent()` after a backoff, a
   * `subscribe`, or the next session. Returns whether it was ours.
   */
  onUnavailable(room: string): boolean {
    const entry = this.map.get(room);
    if (entry?.state !== "sent") return false;
    entry.state = "unsent";
    entry.renewing = false;
    return true;
  }

  /** The `sub`s of wanted rooms not sent on this session (refused as `unavailable`). */
  unsent(): SubFrame[] {
    const frames: SubFrame[] = [];
    for (const [room, entry] of this.map) {
      if (entry.wanted && entry.state === "unsent") frames.push(this.subFrame(room, entry));
    }
    return frames;
  }

  hasUnsent(): boolean {
    for (const entry of this.map.values()) {
      if (entry.wanted && entry.state === "unsent") return true;
    }
    return false;
  }

  /** The server refused a `sub` (forbidden, bad room): stop asking for it. Returns whether it was pending. */
  onRefused(room: string): boolean {
    if (this.map.get(room)?.state === "sent") {
      this.map.delete(room);
      return true;
    }
    return false;
  }

  /** Dedupe: a stored message is delivered once, the first time its seq is seen. */
  onMsg(room: string, seq: number | undefined): Verdict {
    const entry = this.map.get(room);
    if (entry === undefined || !entry.wanted) return "unwanted";
    if (entry.renewing && entry.sentSince === undefined) return "before_point";
    if (seq === undefined) return "deliver";
    if (entry.lastSeq !== undefined && seq <= entry.lastSeq) {
      this.dropped += 1;
      return "duplicate";
    }
    entry.lastSeq = seq;
    return "deliver";
  }

  lastSeq(room: string): number | undefined {
    return this.map.get(room)?.lastSeq;
  }

  epoch(room: string): string | undefined {
    return this.map.get(room)?.epoch;
  }

  state(room: string): SubState | undefined {
    return this.map.get(room)?.state;
  }

  /** How many `msg`s were dropped because their seq had been seen. */
  get duplicates(): number {
    return this.dropped;
  }

  /** The rooms the user wants, in the order they were first wanted. */
  rooms(): string[] {
    return [...this.map].filter(([, entry]) => entry.wanted).map(([room]) => room);
  }
}
