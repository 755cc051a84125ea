import type { Member } from "./frames.js";
/** A `join` (true) or `leave` (false) of a user. */
export type Change = readonly [user: string, present: boolean];
/** The events seen per room while `presence` answers for it are on their way. */
export declare class PresenceLogs {
    private readonly open;
    /** Starts a log for one request; give it back to {@link PresenceLogs.close}. */
    start(room: string): Change[];
    close(room: string, log: Change[]): void;
    /** A `join` or `leave` of `room` came: every open log of the room takes it. */
    record(room: string, user: string, present: boolean): void;
}
/** `members` with `changes` applied in order: a joined user is listed (with one
 * connection, unless listed already), a user who left is not. */
export declare function applyChanges(members: readonly Member[], changes: readonly Change[]): Member[];
