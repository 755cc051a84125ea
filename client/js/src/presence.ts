// Presence answers and the events that pass them. The server reads a room's members
// after the `presence` request arrives, and a `join` or `leave` published meanwhile can
// reach the client before the answer does while the answer does not show it (on NATS the
// read and the event take different paths). Such events are newer than the answer, so
// they are applied over it: the list a caller gets agrees with the events it has seen.

import type { Member } from "./frames.js";

/** A `join` (true) or `leave` (false) of a user. */
export type Change = readonly [user: string, present: boolean];

/** The events seen per room while `presence` answers for it are on their way. */
export class PresenceLogs {
  private readonly open = new Map<string, Set<Change[]>>();

  /** Starts a log for one request; give it back to {@link PresenceLogs.close}. */
  start(room: string): Change[] {
    const log: Change[] = [];
    let logs = this.open.get(room);
    if (logs === undefined) {
      logs = new Set();
      this.open.set(room, logs);
    }
    logs.add(log);
    return log;
  }

  close(room: string, log: Change[]): void {
    const logs = this.open.get(room);
    logs?.delete(log);
    if (logs?.size === 0) this.open.delete(room);
  }

  /** A `join` or `leave` of `room` came: every open log of the room takes it. */
  record(room: string, user: string, present: boolean): void {
    for (const log of this.open.get(room) ?? []) log.push([user, present]);
  }
}

/** `members` with `changes` applied in order: a joined user is listed (with one
 * connection, unless listed already), a user who left is not. */
export function applyChanges(members: readonly Member[], changes: readonly Change[]): Member[] {
  const list = [...members];
  for (const [user, present] of changes) {
    const at = list.findIndex((m) => m.user === user);
    if (present && at < 0) list.push({ user, conns: 1 });
    if (!present && at >= 0) list.splice(at, 1);
  }
  return list;
}
