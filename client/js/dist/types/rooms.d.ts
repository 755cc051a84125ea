import type { SubFrame, UnsubFrame } from "./frames.js";
/** Longest room name, in bytes (its characters are ASCII). */
export declare const MAX_ROOM_BYTES = 128;
/** A room name of PROTOCOL §2: segments of `[A-Za-z0-9_-]` joined by `.`, or `@<user id>`; 1–128 bytes. */
export declare function isValidRoom(room: string): boolean;
/** Where a room's subscription stands on the current session. */
export type SubState = "unsent" | "sent" | "confirmed";
/** What to do with a `msg`. */
export type Verdict = "deliver" | "duplicate" | "unwanted";
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
    /** `already_subscribed`: the server held it all along (a `sub` resent on resume). */
    onAlreadySubscribed(room: string): boolean;
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
