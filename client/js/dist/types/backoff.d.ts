/** The first ceiling, in milliseconds. */
export declare const BACKOFF_MIN_MS = 500;
/** The cap of the ceiling, in milliseconds. */
export declare const BACKOFF_MAX_MS = 30000;
/** A uniform delay in [0, ceiling) from `random` (a `Math.random`-like function); 0 for a zero ceiling. */
export declare function jitter(ceilingMs: number, random?: () => number): number;
export declare class Backoff {
    readonly minMs: number;
    readonly maxMs: number;
    private ceiling;
    constructor(minMs?: number, maxMs?: number);
    /** The ceiling the next delay is drawn under. */
    get ceilingMs(): number;
    /** A delay in [0, ceiling); the ceiling then doubles, up to the cap. */
    next(random?: () => number): number;
    /** After a successful connection the next failure starts from the bottom again. */
    reset(): void;
}
