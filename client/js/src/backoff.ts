// Reconnect delays (PROTOCOL §5): exponential from 0.5 s, doubling to 30 s, with full
// jitter: each delay is drawn uniformly from [0, ceiling).

/** The first ceiling, in milliseconds. */
export const BACKOFF_MIN_MS = 500;
/** The cap of the ceiling, in milliseconds. */
export const BACKOFF_MAX_MS = 30_000;

/** A uniform delay in [0, ceiling) from `random` (a `Math.random`-like function); 0 for a zero ceiling. */
export function jitter(ceilingMs: number, random: () => number = Math.random): number {
  if (!(ceilingMs > 0)) return 0;
  // `random` is in [0, 1); the clamp keeps a misbehaving source inside the range.
  const r = Math.min(Math.max(random(), 0), 1 - Number.EPSILON);
  return Math.floor(r * ceilingMs);
}

export class Backoff {
  readonly minMs: number;
  readonly maxMs: number;
  private ceiling: number;

  constructor(minMs: number = BACKOFF_MIN_MS, maxMs: number = BACKOFF_MAX_MS) {
    this.minMs = Math.max(1, minMs);
    this.maxMs = Math.max(this.minMs, maxMs);
    this.ceiling = this.minMs;
  }

  /** The ceiling the next delay is drawn under. */
  get ceilingMs(): number {
    return this.ceiling;
  }

  /** A delay in [0, ceiling); the ceiling then doubles, up to the cap. */
  next(random: () => number = Math.random): number {
    const delay = jitter(this.ceiling, random);
    this.ceiling = Math.min(this.ceiling * 2, this.maxMs);
    return delay;
  }

  /** After a successful connection the next failure starts from the bottom again. */
  reset(): void {
    this.ceiling = this.minMs;
  }
}
