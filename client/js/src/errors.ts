// Why a request (publish, presence, refresh) failed.

import type { ErrorCode } from "./frames.js";

/** The server answered the request with an `error` frame. */
export class ServerError extends Error {
  readonly code: ErrorCode;
  readonly room: string | undefined;

  constructor(code: ErrorCode, message: string, room?: string) {
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
export class DisconnectedError extends Error {
  constructor() {
    super("connection dropped before the answer");
    this.name = "DisconnectedError";
  }
}

/** The client was closed (or stopped for good) before the answer. */
export class ClosedError extends Error {
  constructor() {
    super("client is closed");
    this.name = "ClosedError";
  }
}

/** Refused before sending: a room name or data the server would refuse. */
export class InvalidArgumentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidArgumentError";
  }
}
