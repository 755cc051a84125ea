import { test } from "node:test";
import assert from "node:assert/strict";
import { Backoff, jitter, BACKOFF_MIN_MS, BACKOFF_MAX_MS } from "../build/esm/backoff.js";

/** A seeded Math.random stand-in (mulberry32). */
function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test("ceiling doubles from 0.5 s to the 30 s cap", () => {
  const b = new Backoff();
  const ceilings = [];
  for (let i = 0; i < 10; i++) {
    ceilings.push(b.ceilingMs);
    b.next(seeded(1));
  }
  assert.deepEqual(ceilings, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000]);
  assert.equal(BACKOFF_MIN_MS, 500);
  assert.equal(BACKOFF_MAX_MS, 30000);
});

test("delays stay under their ceiling with full jitter", () => {
  const random = seeded(7);
  const b = new Backoff();
  for (let i = 0; i < 1000; i++) {
    const ceiling = b.ceilingMs;
    const delay = b.next(random);
    assert.ok(delay >= 0 && delay < ceiling, `${delay} not in [0, ${ceiling})`);
  }
  // Full jitter: draws under the cap cover the whole range, low values included.
  const draws = Array.from({ length: 2000 }, () => jitter(BACKOFF_MAX_MS, random));
  assert.ok(draws.every((d) => d >= 0 && d < BACKOFF_MAX_MS));
  assert.ok(draws.some((d) => d < 3000));
  assert.ok(draws.some((d) => d > 27000));
  const mean = draws.reduce((a, b) => a + b, 0) / draws.length;
  assert.ok(mean > 13000 && mean < 17000, `mean ${mean}`);
});

test("the ends of the random range map inside [0, ceiling)", () => {
  assert.equal(jitter(500, () => 0), 0);
  assert.equal(jitter(500, () => 0.9999999999), 499);
  assert.equal(jitter(500, () => 1), 499); // a source that breaks its contract is clamped
  assert.equal(jitter(0, () => 0.5), 0);
});

test("reset starts over", () => {
  const random = seeded(3);
  const b = new Backoff();
  for (let i = 0; i < 5; i++) b.next(random);
  assert.equal(b.ceilingMs, 16000);
  b.reset();
  assert.equal(b.ceilingMs, 500);
  assert.ok(b.next(random) < 500);
});

test("custom bounds are kept sane", () => {
  const b = new Backoff(0, -5);
  assert.equal(b.minMs, 1);
  assert.equal(b.maxMs, 1);
});
