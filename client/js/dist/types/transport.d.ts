/** The part of the WHATWG `WebSocket` the client uses. Event parameters are loose so that the browser's class and `ws`'s fit. */
export interface WebSocketLike {
    readonly readyState: number;
    onopen: ((event: any) => void) | null;
    onmessage: ((event: any) => void) | null;
    onclose: ((event: any) => void) | null;
    onerror: ((event: any) => void) | null;
    send(data: string): void;
    close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;
/** `WebSocket.OPEN`. */
export declare const OPEN = 1;
/** Timers, replaceable by tests. */
export interface Timers {
    setTimeout(callback: () => void, ms: number): unknown;
    clearTimeout(handle: unknown): void;
}
export declare const defaultTimers: Timers;
/** The global `WebSocket`, if this environment has one. */
export declare function globalWebSocket(): WebSocketConstructor | undefined;
