// Requests waiting for their answer, by `ref`: publish (answered by `ack`), presence
// (`presence`), refresh (`refreshed`); any of them may be answered by `error` instead.
// Refs are the client's own counter, unique for the client's lifetime.
//
// Across a disconnect, stored publishes stay and are sent again with the same `ref`
// after the next `welcome` (the server stores a retried `ref` once per session, so
// after a resume it is stored once; after a fresh reconnect it may be stored twice).
// Requests never sent stay too; the rest fail with `DisconnectedError`.

import type { ClientFrame, ServerFrame } from "./frames.js";
import { DisconnectedError } from "./errors.js";

export type Request =
  | { kind: "publish"; room: string; data: unknown; ephemeral: boolean }
  | { kind: "presence"; room: string }
  | { kind: "refresh"; token: string };

/** Settles a request: `resolve` gets the answering frame. */
export interface Settle {
  resolve(frame: ServerFrame): void;
  reject(error: Error): void;
}

interface Pending {
  request: Request;
  settle: Settle;
  sent: boolean;
}

export class Requests {
  private nextRef = 1;
  private readonly pending = new Map<number, Pending>();

  /** Records a request under a fresh ref; returns its frame, marked sent when `online`. */
  add(request: Request, settle: Settle, online: boolean): ClientFrame | undefined {
    const id = this.nextRef;
    this.nextRef += 1;
    this.pending.set(id, { request, settle, sent: online });
    return online ? requestFrame(id, request) : undefined;
  }

  /** Removes and returns the request a `ref` names, if one waits for it. */
  take(ref: string | undefined): Pending | undefined {
    if (ref === undefined || !/^[0-9]+$/.test(ref)) return undefined;
    const id = Number(ref);
    const found = this.pending.get(id);
    if (found !== undefined) this.pending.delete(id);
    return found;
  }

  /** After a `welcome`: the frames of every request not yet sent, in ref order, now marked sent. */
  unsentFrames(): ClientFrame[] {
    const frames: ClientFrame[] = [];
    for (const [id, pending] of [...this.pending].sort(([a], [b]) => a - b)) {
      if (pending.sent) continue;
      pending.sent = true;
      frames.push(requestFrame(id, pending.request));
    }
    return frames;
  }

  /** The connection dropped: stored publishes will be sent again; other sent requests fail. */
  onDisconnect(): void {
    for (const [id, pending] of [...this.pending]) {
      if (!pending.sent) continue;
      const retried = pending.request.kind === "publish" && !pending.request.ephemeral;
      if (retried) {
        pending.sent = false;
      } else {
        this.pending.delete(id);
        pending.settle.reject(new DisconnectedError());
      }
    }
  }

  /** Fails every request (the client closed). */
  rejectAll(error: Error): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const pending of all) pending.settle.reject(error);
  }

  get size(): number {
    return this.pending.size;
  }
}

export type { Pending };

/** The frame of a request, carrying its ref. */
export function requestFrame(id: number, request: Request): ClientFrame {
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
