import type { ClientFrame, ServerFrame } from "./frames.js";
export type Request = {
    kind: "publish";
    room: string;
    data: unknown;
    ephemeral: boolean;
} | {
    kind: "presence";
    room: string;
} | {
    kind: "refresh";
    token: string;
};
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
export declare class Requests {
    private nextRef;
    private readonly pending;
    /** Records a request under a fresh ref; returns its frame, marked sent when `online`. */
    add(request: Request, settle: Settle, online: boolean): ClientFrame | undefined;
    /** Removes and returns the request a `ref` names, if one waits for it. */
    take(ref: string | undefined): Pending | undefined;
    /** After a `welcome`: the frames of every request not yet sent, in ref order, now marked sent. */
    unsentFrames(): ClientFrame[];
    /** The connection dropped: stored publishes will be sent again; other sent requests fail. */
    onDisconnect(): void;
    /** Fails every request (the client closed). */
    rejectAll(error: Error): void;
    get size(): number;
}
export type { Pending };
/** The frame of a request, carrying its ref. */
export declare function requestFrame(id: number, request: Request): ClientFrame;
