import type { ErrorCode } from "./frames.js";
/** The server answered the request with an `error` frame. */
export declare class ServerError extends Error {
    readonly code: ErrorCode;
    readonly room: string | undefined;
    constructor(code: ErrorCode, message: string, room?: string);
}
/**
 * The connection dropped before the answer, for a request that is not retried
 * (ephemeral publish, presence, refresh). Stored publishes are sent again instead.
 */
export declare class DisconnectedError extends Error {
    constructor();
}
/** The client was closed (or stopped for good) before the answer. */
export declare class ClosedError extends Error {
    constructor();
}
/** Refused before sending: a room name or data the server would refuse. */
export declare class InvalidArgumentError extends Error {
    constructor(message: string);
}
