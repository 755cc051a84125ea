// The committed single-file module (what the demo page loads) works like the sources.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as bundled from "../dist/switchyard.js";
import { fakeWebSocket, FakeTimers, welcome } from "./fake.mjs";

test("dist/switchyard.js exports the public API and runs a session", () => {
  for (const name of ["Client", "Subscription", "Backoff", "ServerError", "ClosedError", "CloseCode", "parseServerText", "resumeUrl"]) {
    assert.ok(name in bundled, name);
  }
  const fake = fakeWebSocket();
  const client = new bundled.Client({ url: "ws://127.0.0.1:1/ws", token: "t", WebSocket: fake.WebSocket, timers: new FakeTimers() });
  const got = [];
  client.subscribe("lobby", { message: (m) => got.push(m.seq) });
  client.connect();
  fake.sockets[0].accept();
  fake.sockets[0].deliver(
    welcome(),
    { op: "subscribed", room: "lobby", seq: 0, epoch: "e1", recovered: true, replayed: 0 },
    { op: "msg", room: "lobby", seq: 1, from: "x", ts: 1, data: 1 },
    { op: "msg", room: "lobby", seq: 1, from: "x", ts: 1, data: 1 },
  );
  assert.deepEqual(got, [1]);
  assert.ok(new bundled.ServerError("forbidden", "no") instanceof Error);
});
