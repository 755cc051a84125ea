import type { SubFrame, UnsubFrame } from "./frames.js";
/** Longest room name, in bytes (its characters are ASCII). */
export declare const MAX_ROOM_BYTES = 128;
/** A room name of PROTOCOL §2: segments of `[A-Za-z0-9_-]` joined by `.`, or `@<user id>`; 1–128 bytes. */
export declare function isValidRoom(room: string): boolean;
/** Where a room's subscription stands on the current session. */
export type SubState = "unsent" | "sent" | "confirmed";
/** What to do with a `msg`. */
export type Verdict = "deliver" | "duplicate" | "unwanted"
/** Sent under a subscription being renewed live-only: before the user's subscription point. */
 | "before_point";
/**
 * What to do with an `already_subscribed`: `known` (confirmed already, nothing to tell),
 * frames that renew a subscription whose answer was lost, or `unknown` (not a room of ours).
 */
export type AlreadyHeld = "known" | "unknown" | Array<SubFrame | UnsubFrame>;
export declare class Rooms {
    private readonly map;
    private dropped;
    /**
     * Records that the user wants `room`, optionally from `since` (the last seq the user
     * already has) in `epoch`. Returns the `sub` to send now when `online` and the room is
     * not subscribed on this session yet.
     */
    want(room: string, since: number | undefined, epoch: string | undefined, online: boolean): SubFrame | undefined;
    /** Records that the user no longer wants `room`. Returns the `unsub` to send now. */
    unwant(room: string, online: boolean): UnsubFrame | undefined;
    /** The `sub` for a room, with `since` = the last seq seen and its epoch. */
    private subFrame;
    /**
     * A `welcome` with `resumed: false`: the server holds nothing. Every wanted room is
     * subscribed again from its last seq, in its epoch.
     */
    onFreshSession(): SubFrame[];
    /**
     * A `welcome` with `resumed: true`: the server restored what it held. Rooms given up
     * while away are unsubscribed; rooms wanted but not confirmed are (re)sent, and an
     * `already_subscribed` answer then confirms them.
     */
    onResumedSession(): Array<SubFrame | UnsubFrame>;
    /**
     * `subscribed`: the server holds the room; `seq` is its latest, `epoch` its store's.
     * Returns whether the user still wants the room.
     */
    onSubscribed(room: string, seq: number, epoch: string): boolean;
    /**
     * `already_subscribed`: the server held the room all along (a `sub` resent on resume).
     * When our `sub` was never answered, the server took it before the socket died and its
     * `subscribed` was lost: the user still needs that answer, and a live-only `sub` its
     * point, so the subscription is renewed (`unsub`, then `sub` from the last seq seen).
     */
    onAlreadySubscribed(room: string): AlreadyHeld;
    /** `unsubscribed`: returns whether it is the user's (not a renewal's). */
    onUnsubscribed(room: string): boolean;
    /**
     * `unavailable` for a `sub`: the server holds nothing and asks for the `sub` again
     * later. The room stays wanted and unsent, for `unsent()` after a backoff, a
     * `subscribe`, or the next session. Returns whether it was ours.
     */
    onUnavailable(room: string): boolean;
    /** The `sub`s of wanted rooms not sent on this session (refused as `unavailable`). */
    unsent(): SubFrame[];
    hasUnsent(): boolean;
    /** The server refused a `sub` (forbidden, bad room): stop asking for it. Returns whether it was pending. */
    onRefused(room: string): boolean;
    /** Dedupe: a stored message is delivered once, the first time its seq is seen. */
    onMsg(room: string, seq: number | undefined): Verdict;
    lastSeq(room: string): number | undefined;
    epoch(room: string): string | undefined;
    state(room: string): SubState | undefined;
    /** How many `msg`s were dropped because their seq had been seen. */
    get duplicates(): number;
    /** The rooms the user wants, in the order they were first wanted. */
    rooms(): string[];
}
