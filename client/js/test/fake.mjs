// Test doubles: a WebSocket the test plays the server of, and timers it moves by hand.

/** A fresh fake WebSocket class and the list of its instances, newest last. */
export function fakeWebSocket() {
  const sockets = [];
  class FakeSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = undefined;
      this.onopen = null;
      this.onmessage = null;
      this.onclose = null;
      this.onerror = null;
      sockets.push(this);
    }
    send(data) {
      if (this.readyState !== 1) throw new Error("send on a socket that is not open");
      this.sent.push(data);
    }
    close(code, reason) {
      this.closedWith = { code, reason };
      this.readyState = 2;
    }
    // The server's side.
    accept() {
      this.readyState = 1;
      this.onopen?.({});
    }
    /** One text frame holding these frames as NDJSON (strings are sent as they are). */
    deliver(...frames) {
      const text = frames.map((f) => (typeof f === "string" ? f : JSON.stringify(f))).join("\n");
      this.onmessage?.({ data: text });
    }
    /** The server closes with `code` (1006: lost without a close frame). */
    end(code, reason = "") {
      this.readyState = 3;
      this.onclose?.({ code, reason, wasClean: code !== 1006 });
    }
    /** Every frame the client sent, parsed (batches split). */
    frames() {
      return this.sent.flatMap((text) => text.split("\n").map((line) => JSON.parse(line)));
    }
    framesOf(op) {
      return this.frames().filter((f) => f.op === op);
    }
  }
  return { WebSocket: FakeSocket, sockets };
}

/** Timers that run only when the test advances the clock. */
export class FakeTimers {
  constructor() {
    this.now = 0;
    this.queue = [];
    this.nextId = 1;
    this.setTimeout = (fn, ms) => {
      const timer = { id: this.nextId++, at: this.now + ms, ms, fn };
      this.queue.push(timer);
      return timer.id;
    };
    this.clearTimeout = (id) => {
      this.queue = this.queue.filter((t) => t.id !== id);
    };
  }
  /** Runs every timer due within `ms`, in order. */
  advance(ms) {
    const end = this.now + ms;
    for (;;) {
      const due = this.queue.filter((t) => t.at <= end).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (due === undefined) break;
      this.queue = this.queue.filter((t) => t !== due);
      this.now = due.at;
      due.fn();
    }
    this.now = end;
  }
  /** The delays (ms as set) of the timers waiting. */
  pending() {
    return this.queue.map((t) => t.ms);
  }
}

export const welcome = (over = {}) => ({
  op: "welcome",
  conn: "c1",
  worker: "w1",
  resume: "/ws/w1/c1",
  resume_token: "rt+1",
  heartbeat_ms: 25000,
  resumed: false,
  user: "alice",
  ...over,
});

/** Lets promise callbacks run. */
export const settle = () => new Promise((resolve) => setImmediate(resolve));
