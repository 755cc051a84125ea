import { test } from "node:test";
import assert from "node:assert/strict";
import { Client } from "../build/esm/client.js";
import { ClosedError, DisconnectedError, ServerError, InvalidArgumentError } from "../build/esm/errors.js";
import { FakeTimers, fakeWebSocket, settle, welcome } from "./fake.mjs";

const URL = "wss://localhost:8443/ws";

/** A client on a fake socket and fake timers; `random` is fixed so delays are known. */
function setup(options = {}) {
  const fake = fakeWebSocket();
  const timers = new FakeTimers();
  const events = [];
  const client = new Client({
    url: URL,
    token: "jwt1",
    WebSocket: fake.WebSocket,
    timers,
    random: () => 0.5,
    ...options,
  });
  for (const name of ["state", "connecting", "connected", "resumed", "disconnected", "reconnecting", "closed", "error", "refresh_required", "refreshed", "join", "leave"]) {
    client.on(name, (event) => events.push([name, event]));
  }
  const socket = () => fake.sockets[fake.sockets.length - 1];
  /** Accepts the newest socket and answers with a welcome. */
  const online = (over = {}) => {
    socket().accept();
    socket().deliver(welcome(over));
    return socket();
  };
  const names = () => events.map(([name]) => name);
  return { client, fake, timers, events, names, socket, online };
}

test("connects with the token as a subprotocol and reports each state", () => {
  const { client, fake, events, online } = setup();
  assert.equal(client.state, "idle");
  client.connect();
  assert.equal(fake.sockets.length, 1);
  assert.equal(fake.sockets[0].url, URL);
  assert.deepEqual(fake.sockets[0].protocols, ["switchyard.v1", "switchyard.auth.jwt1"]);
  assert.equal(client.state, "connecting");
  online();
  assert.equal(client.state, "connected");
  assert.equal(client.worker, "w1");
  assert.deepEqual(events, [
    ["state", { state: "connecting" }],
    ["connecting", { url: URL, resume: false, attempt: 1 }],
    ["state", { state: "connected" }],
    ["connected", { resumed: false, conn: "c1", worker: "w1", user: "alice" }],
  ]);
});

test("subscriptions made before the welcome go out after it; messages arrive once, in order, from batched frames", () => {
  const { client, online } = setup();
  const got = [];
  client.subscribe("lobby", { message: (m) => got.push([m.seq, m.from, m.data]) });
  client.connect();
  const socket = online();
  assert.deepEqual(socket.frames(), [{ op: "sub", room: "lobby" }]);
  socket.deliver(
    { op: "subscribed", room: "lobby", seq: 4, epoch: "e1", recovered: true, replayed: 0 },
    { op: "msg", room: "lobby", seq: 5, from: "bob", ts: 1, data: { text: "hi" } },
    { op: "msg", room: "lobby", seq: 5, from: "bob", ts: 1, data: { text: "hi" } },
    { op: "msg", room: "lobby", seq: 3, from: "bob", ts: 1, data: "old" },
    { op: "msg", room: "lobby", seq: 7, from: "carol", ts: 2, data: 7 },
    { op: "msg", room: "lobby", from: "dave", ts: 3, data: "ephemeral" },
  );
  assert.deepEqual(got, [
    [5, "bob", { text: "hi" }],
    [7, "carol", 7],
    [undefined, "dave", "ephemeral"],
  ]);
  assert.equal(client.duplicatesDropped, 2);
  assert.equal(client.lastSeq("lobby"), 7);
  assert.equal(client.epoch("lobby"), "e1");
});

test("a sub refused as unavailable is sent again after a backoff, and once answered stays", () => {
  const { client, timers, events, online } = setup({ backoffMinMs: 100, backoffMaxMs: 1000 });
  const got = [];
  client.subscribe("lobby", { subscribed: (e) => got.push(e.seq) });
  client.connect();
  const socket = online();
  assert.deepEqual(socket.frames(), [{ op: "sub", room: "lobby" }]);
  socket.deliver({ op: "error", code: "unavailable", room: "lobby", message: "the store is unavailable" });
  assert.equal(events.at(-1)[0], "error");
  timers.advance(49);
  assert.deepEqual(socket.frames(), [{ op: "sub", room: "lobby" }], "not before the backoff");
  timers.advance(1);
  assert.deepEqual(socket.frames(), [{ op: "sub", room: "lobby" }, { op: "sub", room: "lobby" }]);
  socket.deliver({ op: "subscribed", room: "lobby", seq: 4, epoch: "e1", recovered: true, replayed: 0 });
  assert.deepEqual(got, [4]);
  timers.advance(5000);
  assert.equal(socket.frames().length, 2, "nothing more is sent");
});

test("a lost socket reconnects to the resume path; resumed:false resubscribes with since and epoch", () => {
  const { client, fake, timers, events, online, socket } = setup();
  const got = [];
  client.subscribe("lobby", { message: (m) => got.push(m.seq) });
  client.subscribe("chat.b", {});
  client.connect();
  online().deliver(
    { op: "subscribed", room: "lobby", seq: 10, epoch: "e1", recovered: true, replayed: 0 },
    { op: "subscribed", room: "chat.b", seq: 0, epoch: "e1", recovered: true, replayed: 0 },
    { op: "msg", room: "lobby", seq: 12, from: "bob", ts: 1, data: 1 },
  );
  socket().end(1006);
  assert.deepEqual(events.find(([n]) => n === "disconnected")[1], {
    code: 1006,
    reason: "",
    wasConnected: true,
    willReconnect: true,
  });
  assert.equal(client.state, "reconnecting");
  // Full jitter with random() = 0.5 under the first ceiling (500 ms).
  assert.deepEqual(timers.pending(), [250]);
  timers.advance(249);
  assert.equal(fake.sockets.length, 1);
  timers.advance(1);
  assert.equal(fake.sockets.length, 2);
  assert.equal(socket().url, "wss://localhost:8443/ws/w1/c1?resume_token=rt%2B1");
  assert.deepEqual(events.filter(([n]) => n === "connecting").at(-1)[1], {
    url: "wss://localhost:8443/ws/w1/c1",
    resume: true,
    attempt: 1,
  });
  // The worker was gone: a fresh session on another one.
  const second = online({ worker: "w2", conn: "c2", resume: "/ws/w2/c2", resume_token: "rt2" });
  assert.deepEqual(second.frames(), [
    { op: "sub", room: "lobby", since: 12, epoch: "e1" },
    { op: "sub", room: "chat.b", since: 0, epoch: "e1" },
  ]);
  second.deliver(
    { op: "subscribed", room: "lobby", seq: 14, epoch: "e1", recovered: true, replayed: 2 },
    { op: "msg", room: "lobby", seq: 13, from: "bob", ts: 1, data: 1 },
    { op: "msg", room: "lobby", seq: 14, from: "bob", ts: 1, data: 1 },
  );
  assert.deepEqual(got, [12, 13, 14]);
  assert.equal(client.reconnects, 1);
  assert.equal(client.worker, "w2");
});

test("resumed:true sends no sub again: the server kept the subscriptions", () => {
  const { client, timers, names, online, socket } = setup();
  const got = [];
  client.subscribe("lobby", { message: (m) => got.push(m.seq) });
  client.connect();
  online().deliver({ op: "subscribed", room: "lobby", seq: 1, epoch: "e1", recovered: true, replayed: 0 });
  socket().end(1006);
  timers.advance(500);
  const again = online({ resumed: true });
  assert.deepEqual(again.frames(), []);
  assert.ok(names().includes("resumed"));
  // Buffered messages come after the welcome; a redelivered one is dropped.
  again.deliver(
    { op: "msg", room: "lobby", seq: 1, from: "bob", ts: 1, data: 1 },
    { op: "msg", room: "lobby", seq: 2, from: "bob", ts: 1, data: 2 },
  );
  assert.deepEqual(got, [2]);
});

test("a sub resent on resume that the server held is confirmed by already_subscribed, silently", () => {
  const { client, timers, names, online, socket } = setup();
  client.subscribe("lobby", {});
  client.connect();
  online(); // the sub went out, no answer yet
  socket().end(1006);
  timers.advance(500);
  const again = online({ resumed: true });
  assert.deepEqual(again.frames(), [{ op: "sub", room: "lobby" }]);
  again.deliver({ op: "error", room: "lobby", code: "already_subscribed", message: "already" });
  assert.ok(!names().includes("error"));
  assert.deepEqual(client.rooms(), ["lobby"]);
});

test("1012 waits the reconnect frame's after_ms, not the backoff", () => {
  const { client, fake, timers, events, online, socket } = setup();
  client.connect();
  online();
  socket().deliver({ op: "reconnect", reason: "draining", after_ms: 1834 });
  socket().end(1012, "drained");
  assert.deepEqual(events.find(([n]) => n === "reconnecting")[1], { delayMs: 1834, attempt: 1, drained: true });
  assert.deepEqual(timers.pending(), [1834]);
  timers.advance(1833);
  assert.equal(fake.sockets.length, 1);
  timers.advance(1);
  assert.equal(fake.sockets.length, 2);
});

test("1012 without a reconnect frame draws under the current ceiling", () => {
  const { client, timers, online, socket } = setup();
  client.connect();
  online();
  socket().end(1012);
  assert.deepEqual(timers.pending(), [250]);
});

for (const code of [1000, 1008, 4009]) {
  test(`close code ${code} ends the client: no reconnect`, async () => {
    const { client, fake, timers, events, online, socket } = setup();
    client.connect();
    online();
    const pending = client.presence("lobby");
    socket().end(code, "bye");
    assert.deepEqual(events.find(([n]) => n === "disconnected")[1], {
      code,
      reason: "bye",
      wasConnected: true,
      willReconnect: false,
    });
    assert.deepEqual(events.at(-1), ["closed", { code }]);
    assert.equal(client.state, "closed");
    await assert.rejects(pending, DisconnectedError);
    timers.advance(60_000);
    assert.equal(fake.sockets.length, 1);
    await assert.rejects(client.publish("lobby", 1), ClosedError);
  });
}

test("other close codes back off: the ceiling doubles per failed attempt and resets after a welcome", () => {
  const { client, fake, timers, online, socket } = setup();
  client.connect();
  online();
  socket().end(1011);
  assert.deepEqual(timers.pending(), [250]);
  timers.advance(250);
  socket().end(1006); // the attempt fails before the upgrade
  assert.deepEqual(timers.pending(), [500]);
  timers.advance(500);
  socket().end(1006);
  assert.deepEqual(timers.pending(), [1000]);
  timers.advance(1000);
  online();
  socket().end(4008);
  assert.deepEqual(timers.pending(), [250]);
  assert.equal(fake.sockets.length, 4);
});

test("after failed attempts on the resume path the client starts over on its first URL", () => {
  const { client, timers, online, socket } = setup();
  client.connect();
  online();
  socket().end(1006);
  timers.advance(250);
  assert.match(socket().url, /\/ws\/w1\/c1\?resume_token=/);
  socket().end(1006);
  timers.advance(500);
  assert.match(socket().url, /\/ws\/w1\/c1\?resume_token=/);
  socket().end(1006);
  timers.advance(1000);
  assert.equal(socket().url, URL);
});

test("publish resolves with the seq of the ack carrying its ref; an error with that ref rejects it", async () => {
  const { client, online } = setup();
  client.connect();
  const socket = online();
  const first = client.publish("lobby", { text: "a" });
  const second = client.publish("lobby", { text: "b" });
  const [p1, p2] = socket.framesOf("pub");
  assert.deepEqual(p1, { op: "pub", room: "lobby", data: { text: "a" }, ref: p1.ref });
  assert.notEqual(p1.ref, p2.ref);
  socket.deliver(
    { op: "ack", ref: "999", seq: 1 },
    { op: "error", ref: p2.ref, room: "lobby", code: "forbidden", message: "not allowed to publish to lobby" },
    { op: "ack", ref: p1.ref, seq: 58 },
  );
  assert.equal(await first, 58);
  const error = await second.then(
    () => assert.fail("must reject"),
    (e) => e,
  );
  assert.ok(error instanceof ServerError);
  assert.equal(error.code, "forbidden");
  assert.equal(error.room, "lobby");
});

test("publishes before the welcome are sent after it; stored ones are resent with the same ref after a drop", async () => {
  const { client, timers, online, socket } = setup();
  client.subscribe("lobby", {});
  const stored = client.publish("lobby", 1);
  const ephemeral = client.publishEphemeral("cursor.doc1", { x: 1 });
  client.connect();
  const first = online();
  const pubs = first.framesOf("pub");
  assert.deepEqual(
    first.frames().map((f) => f.op),
    ["sub", "pub", "pub"],
  );
  assert.equal(first.sent.length, 1, "catch-up frames go out batched in one text frame");
  assert.equal(pubs[1].ephemeral, true);
  first.end(1006);
  await assert.rejects(ephemeral, DisconnectedError);
  timers.advance(250);
  const second = online();
  const resent = second.framesOf("pub");
  assert.deepEqual(resent, [pubs[0]]);
  second.deliver({ op: "ack", ref: pubs[0].ref, seq: 9 });
  assert.equal(await stored, 9);
});

test("an ephemeral publish resolves on its ack without seq", async () => {
  const { client, online } = setup();
  client.connect();
  const socket = online();
  const done = client.publishEphemeral("cursor.doc1", { x: 1 });
  const [pub] = socket.framesOf("pub");
  socket.deliver({ op: "ack", ref: pub.ref });
  assert.equal(await done, undefined);
});

test("bad rooms and data are refused before anything is sent", async () => {
  const { client, online } = setup();
  client.connect();
  const socket = online();
  assert.throws(() => client.subscribe("chat.*"), InvalidArgumentError);
  await assert.rejects(client.publish("a b", 1), InvalidArgumentError);
  await assert.rejects(client.publish("lobby", undefined), InvalidArgumentError);
  assert.deepEqual(socket.frames(), []);
});

test("a publish larger than the server's frame limit is refused before it is sent", async () => {
  const { client, online } = setup({ maxFrameBytes: 100 });
  client.connect();
  const socket = online();
  await assert.rejects(client.publish("lobby", { text: "é".repeat(60) }), InvalidArgumentError);
  const fits = client.publish("lobby", { text: "é".repeat(10) });
  assert.equal(socket.framesOf("pub").length, 1);
  socket.deliver({ op: "ack", ref: socket.framesOf("pub")[0].ref, seq: 1 });
  assert.equal(await fits, 1);
});

test("presence resolves with the members", async () => {
  const { client, online } = setup();
  client.connect();
  const socket = online();
  const members = client.presence("lobby");
  const [frame] = socket.framesOf("presence");
  socket.deliver({ op: "presence", room: "lobby", ref: frame.ref, members: [{ user: "alice", conns: 2 }] });
  assert.deepEqual(await members, [{ user: "alice", conns: 2 }]);
});

test("a join or leave that passes a presence answer is applied over it", async () => {
  const { client, online } = setup();
  client.connect();
  const socket = online();
  const members = client.presence("lobby");
  const other = client.presence("other");
  const [frame, otherFrame] = socket.framesOf("presence");
  // Bob joined and carol left after the server read the members; both events came first.
  socket.deliver({ op: "join", room: "lobby", user: "bob" }, { op: "leave", room: "lobby", user: "carol" });
  socket.deliver({
    op: "presence",
    room: "lobby",
    ref: frame.ref,
    members: [{ user: "alice", conns: 2 }, { user: "carol", conns: 1 }],
  });
  assert.deepEqual(await members, [{ user: "alice", conns: 2 }, { user: "bob", conns: 1 }]);
  // Another room's answer takes none of them, and a later listing starts afresh.
  socket.deliver({ op: "presence", room: "other", ref: otherFrame.ref, members: [] });
  assert.deepEqual(await other, []);
  const again = client.presence("lobby");
  const [, , third] = socket.framesOf("presence");
  socket.deliver({ op: "presence", room: "lobby", ref: third.ref, members: [{ user: "carol", conns: 1 }] });
  assert.deepEqual(await again, [{ user: "carol", conns: 1 }]);
});

test("join and leave reach the room's handlers and the client's events", () => {
  const { client, events, online } = setup();
  const seen = [];
  client.subscribe("lobby", { join: (u) => seen.push(`+${u}`), leave: (u) => seen.push(`-${u}`) });
  client.connect();
  online().deliver({ op: "join", room: "lobby", user: "bob" }, { op: "leave", room: "lobby", user: "bob" });
  assert.deepEqual(seen, ["+bob", "-bob"]);
  assert.deepEqual(
    events.filter(([n]) => n === "join" || n === "leave"),
    [
      ["join", { room: "lobby", user: "bob" }],
      ["leave", { room: "lobby", user: "bob" }],
    ],
  );
});

test("refresh_required calls the token callback and sends refresh with the new token", async () => {
  let n = 0;
  const { client, events, online } = setup({ token: () => `jwt${++n}` });
  client.connect();
  const socket = online();
  assert.deepEqual(socket.protocols, ["switchyard.v1", "switchyard.auth.jwt1"]);
  socket.deliver({ op: "refresh_required", expires_in_ms: 30000 });
  await settle();
  const [refresh] = socket.framesOf("refresh");
  assert.deepEqual(refresh, { op: "refresh", token: "jwt2", ref: refresh.ref });
  socket.deliver({ op: "refreshed", ref: refresh.ref, exp: 1763803600 });
  await settle();
  assert.deepEqual(events.at(-1), ["refreshed", { exp: 1763803600 }]);
});

test("a refused refresh is reported as an error event", async () => {
  const { client, events, online } = setup({ token: () => "jwt" });
  client.connect();
  const socket = online();
  socket.deliver({ op: "refresh_required", expires_in_ms: 1000 });
  await settle();
  const [refresh] = socket.framesOf("refresh");
  socket.deliver({ op: "error", ref: refresh.ref, code: "invalid_token", message: "expired" });
  await settle();
  assert.equal(events.at(-1)[0], "error");
  assert.equal(events.at(-1)[1].code, "invalid_token");
});

test("with a fixed token, refresh_required is an event and refresh() replaces the token for reconnects", async () => {
  const { client, timers, events, online, socket } = setup();
  client.connect();
  online().deliver({ op: "refresh_required", expires_in_ms: 30000 });
  assert.deepEqual(events.at(-1), ["refresh_required", { expiresInMs: 30000 }]);
  const done = client.refresh("jwt2");
  const [refresh] = socket().framesOf("refresh");
  assert.equal(refresh.token, "jwt2");
  socket().deliver({ op: "refreshed", ref: refresh.ref, exp: 42 });
  assert.equal(await done, 42);
  socket().end(1006);
  timers.advance(250);
  assert.deepEqual(socket().protocols, ["switchyard.v1", "switchyard.auth.jwt2"]);
});

test("an async token provider is awaited before each attempt", async () => {
  const fakeFetch = [];
  const { client, fake } = setup({
    token: () =>
      new Promise((resolve) => {
        fakeFetch.push(resolve);
      }),
  });
  client.connect();
  assert.equal(fake.sockets.length, 0);
  fakeFetch[0]("fetched");
  await settle();
  assert.deepEqual(fake.sockets[0].protocols, ["switchyard.v1", "switchyard.auth.fetched"]);
});

test("a failing token provider counts as a failed attempt and is retried with backoff", async () => {
  let calls = 0;
  const { client, fake, timers, names } = setup({
    token: () => {
      calls += 1;
      if (calls === 1) return Promise.reject(new Error("offline"));
      return "jwt";
    },
  });
  client.connect();
  await settle();
  assert.ok(names().includes("error"));
  assert.deepEqual(timers.pending(), [250]);
  timers.advance(250);
  assert.equal(fake.sockets.length, 1);
});

test("silence for a heartbeat sends a ping op; a second silent period drops the socket and reconnects", () => {
  const { client, fake, timers, events, online, socket } = setup();
  client.connect();
  const first = online({ heartbeat_ms: 2000 });
  timers.advance(2000);
  assert.deepEqual(first.frames(), [{ op: "ping" }]);
  first.deliver({ op: "pong" });
  timers.advance(1999);
  assert.equal(first.closedWith, undefined);
  timers.advance(1); // ping again
  assert.equal(first.framesOf("ping").length, 2);
  timers.advance(2000); // no answer
  assert.ok(first.closedWith !== undefined);
  assert.deepEqual(events.find(([n]) => n === "disconnected")[1], {
    code: 1006,
    reason: "no answer from the server",
    wasConnected: true,
    willReconnect: true,
  });
  timers.advance(250);
  assert.equal(fake.sockets.length, 2);
  assert.notEqual(socket(), first);
});

test("no welcome within the welcome timeout counts as a failed attempt", () => {
  const { client, fake, timers } = setup({ welcomeTimeoutMs: 3000 });
  client.connect();
  fake.sockets[0].accept();
  timers.advance(3000);
  assert.ok(fake.sockets[0].closedWith !== undefined);
  assert.deepEqual(timers.pending(), [250]);
});

test("a refused subscription reaches its error handler and is forgotten", () => {
  const { client, online } = setup();
  const errors = [];
  client.subscribe("secret", { error: (e) => errors.push(e.code) });
  client.connect();
  online().deliver({ op: "error", room: "secret", code: "forbidden", message: "no" });
  assert.deepEqual(errors, ["forbidden"]);
  assert.deepEqual(client.rooms(), []);
});

test("unsubscribe sends unsub when the last handlers go, and messages stop", () => {
  const { client, online } = setup();
  const got = [];
  client.connect();
  const socket = online();
  const a = client.subscribe("lobby", { message: (m) => got.push(`a${m.seq}`) });
  const b = client.subscribe("lobby", { message: (m) => got.push(`b${m.seq}`) });
  assert.equal(socket.framesOf("sub").length, 1);
  socket.deliver({ op: "subscribed", room: "lobby", seq: 0, epoch: "e1", recovered: true, replayed: 0 });
  socket.deliver({ op: "msg", room: "lobby", seq: 1, from: "x", ts: 1, data: 1 });
  a.unsubscribe();
  assert.equal(socket.framesOf("unsub").length, 0);
  socket.deliver({ op: "msg", room: "lobby", seq: 2, from: "x", ts: 1, data: 1 });
  b.unsubscribe();
  assert.deepEqual(socket.framesOf("unsub"), [{ op: "unsub", room: "lobby" }]);
  socket.deliver({ op: "msg", room: "lobby", seq: 3, from: "x", ts: 1, data: 1 });
  assert.deepEqual(got, ["a1", "b1", "b2"]);
});

test("close() closes with 1000, fails pending requests and stops for good", async () => {
  const { client, fake, timers, events, online } = setup();
  client.connect();
  const socket = online();
  const pending = client.publish("lobby", 1);
  client.close();
  assert.deepEqual(socket.closedWith, { code: 1000, reason: undefined });
  await assert.rejects(pending, ClosedError);
  assert.deepEqual(events.slice(-2), [
    ["state", { state: "closed" }],
    ["closed", { code: 1000 }],
  ]);
  socket.end(1000); // late events of the old socket are ignored
  timers.advance(60_000);
  assert.equal(fake.sockets.length, 1);
  assert.throws(() => client.connect(), ClosedError);
});

test("close() while waiting to reconnect cancels the attempt", () => {
  const { client, fake, timers, online, socket } = setup();
  client.connect();
  online();
  socket().end(1006);
  client.close();
  timers.advance(60_000);
  assert.equal(fake.sockets.length, 1);
  assert.equal(client.state, "closed");
});

test("a listener that throws does not break the client", () => {
  const { client, online } = setup();
  const original = console.error;
  console.error = () => {};
  try {
    const got = [];
    client.subscribe("lobby", {
      message: () => {
        throw new Error("user bug");
      },
    });
    client.on("message", (m) => got.push(m.seq));
    client.connect();
    online().deliver(
      { op: "subscribed", room: "lobby", seq: 0, epoch: "e1", recovered: true, replayed: 0 },
      { op: "msg", room: "lobby", seq: 1, from: "x", ts: 1, data: 1 },
      { op: "msg", room: "lobby", seq: 2, from: "x", ts: 1, data: 1 },
    );
    assert.deepEqual(got, [1, 2]);
  } finally {
    console.error = original;
  }
});

test("the constructor refuses what cannot work", () => {
  const { WebSocket } = fakeWebSocket();
  assert.throws(() => new Client({ url: "https://h/ws", token: "t", WebSocket }), InvalidArgumentError);
  assert.throws(() => new Client({ url: "not a url", token: "t", WebSocket }), InvalidArgumentError);
});
