import { test } from "node:test";
import assert from "node:assert/strict";
import { Rooms, isValidRoom } from "../build/esm/rooms.js";

test("duplicates and old seqs are dropped", () => {
  const rooms = new Rooms();
  assert.deepEqual(rooms.want("lobby", undefined, undefined, true), { op: "sub", room: "lobby" });
  assert.ok(rooms.onSubscribed("lobby", 57, "e1"));
  assert.equal(rooms.lastSeq("lobby"), 57);
  assert.equal(rooms.onMsg("lobby", 58), "deliver");
  assert.equal(rooms.onMsg("lobby", 58), "duplicate");
  assert.equal(rooms.onMsg("lobby", 40), "duplicate");
  assert.equal(rooms.onMsg("lobby", 61), "deliver"); // seqs may skip numbers
  assert.equal(rooms.onMsg("lobby", undefined), "deliver"); // ephemeral
  assert.equal(rooms.onMsg("other", 1), "unwanted");
  assert.equal(rooms.duplicates, 2);
  assert.equal(rooms.lastSeq("lobby"), 61);
});

test("a replay after since is not taken for duplicates", () => {
  const rooms = new Rooms();
  assert.deepEqual(rooms.want("lobby", 41, "e1", true), { op: "sub", room: "lobby", since: 41, epoch: "e1" });
  rooms.onSubscribed("lobby", 57, "e1");
  assert.equal(rooms.lastSeq("lobby"), 41);
  assert.equal(rooms.onMsg("lobby", 42), "deliver");
});

test("a fresh session resubscribes each wanted room from its last seq, in its epoch", () => {
  const rooms = new Rooms();
  rooms.want("a", undefined, undefined, true);
  rooms.want("b", undefined, undefined, true);
  rooms.onSubscribed("a", 10, "e1");
  rooms.onSubscribed("b", 0, "e1");
  rooms.onMsg("a", 12);
  rooms.unwant("b", false);
  assert.deepEqual(rooms.onFreshSession(), [{ op: "sub", room: "a", since: 12, epoch: "e1" }]);
  rooms.onSubscribed("a", 14, "e1");
  assert.equal(rooms.onMsg("a", 12), "duplicate");
  assert.equal(rooms.onMsg("a", 13), "deliver");
});

test("a resumed session keeps confirmed rooms, sends what is missing and drops what was given up", () => {
  const rooms = new Rooms();
  rooms.want("a", undefined, undefined, true);
  rooms.onSubscribed("a", 3, "e1");
  rooms.want("b", undefined, undefined, false);
  rooms.want("c", undefined, undefined, true);
  rooms.onSubscribed("c", 0, "e1");
  rooms.unwant("c", false);
  assert.deepEqual(rooms.onResumedSession(), [
    { op: "unsub", room: "c" },
    { op: "sub", room: "b" },
  ]);
  assert.deepEqual(rooms.rooms(), ["a", "b"]);
});

test("a new epoch, or since past the latest seq, resets the sequence", () => {
  let rooms = new Rooms();
  rooms.want("a", 100, "e1", true);
  rooms.onSubscribed("a", 5, "e2");
  assert.equal(rooms.epoch("a"), "e2");
  assert.equal(rooms.onMsg("a", 1), "deliver");
  rooms = new Rooms();
  rooms.want("a", 100, "e1", true);
  rooms.onSubscribed("a", 5, "e1");
  assert.equal(rooms.onMsg("a", 3), "deliver");
});

test("a refused sub is forgotten", () => {
  const rooms = new Rooms();
  rooms.want("secret", undefined, undefined, true);
  assert.ok(rooms.onRefused("secret"));
  assert.deepEqual(rooms.rooms(), []);
  assert.deepEqual(rooms.onFreshSession(), []);
});

test("an unanswered sub held by the server is renewed from the last seq", () => {
  const rooms = new Rooms();
  rooms.want("a", undefined, undefined, true);
  // The socket died before `subscribed`; the resumed session resends the `sub`.
  assert.deepEqual(rooms.onResumedSession(), [{ op: "sub", room: "a" }]);
  assert.deepEqual(rooms.onAlreadySubscribed("a"), [
    { op: "unsub", room: "a" },
    { op: "sub", room: "a" },
  ]);
  // The old subscription's last messages precede the renewed point.
  assert.equal(rooms.onMsg("a", 3), "before_point");
  assert.equal(rooms.onUnsubscribed("a"), false);
  rooms.onSubscribed("a", 4, "e1");
  assert.equal(rooms.onUnsubscribed("a"), true);
  assert.equal(rooms.onMsg("a", 5), "deliver");
  assert.equal(rooms.onAlreadySubscribed("a"), "known");
  assert.equal(rooms.onAlreadySubscribed("b"), "unknown");

  // With messages seen, the renewed `sub` replays from there: nothing is skipped.
  const seen = new Rooms();
  seen.want("a", undefined, undefined, true);
  assert.equal(seen.onMsg("a", 7), "deliver");
  assert.deepEqual(seen.onAlreadySubscribed("a"), [
    { op: "unsub", room: "a" },
    { op: "sub", room: "a", since: 7 },
  ]);
  assert.equal(seen.onMsg("a", 8), "deliver");
  assert.equal(seen.onMsg("a", 8), "duplicate");
});

test("a sub refused as unavailable can be sent again", () => {
  const rooms = new Rooms();
  assert.ok(rooms.want("a", undefined, undefined, true));
  assert.equal(rooms.want("a", undefined, undefined, true), undefined);
  assert.ok(rooms.onUnavailable("a"));
  assert.ok(!rooms.onUnavailable("a"), "not in flight any more");
  assert.deepEqual(rooms.rooms(), ["a"]);
  assert.ok(rooms.hasUnsent());
  assert.ok(rooms.want("a", undefined, undefined, true));
  // Or the retry after a backoff sends it.
  rooms.onUnavailable("a");
  assert.deepEqual(rooms.unsent(), [{ op: "sub", room: "a" }]);
  assert.ok(!rooms.hasUnsent());
});

test("unsubscribing offline waits for the session; an unsent sub just goes", () => {
  const rooms = new Rooms();
  rooms.want("a", undefined, undefined, false);
  assert.equal(rooms.unwant("a", false), undefined);
  assert.deepEqual(rooms.rooms(), []);
  rooms.want("b", undefined, undefined, true);
  assert.deepEqual(rooms.unwant("b", true), { op: "unsub", room: "b" });
});

test("room names follow PROTOCOL §2", () => {
  for (const good of ["lobby", "chat.general", "a-b_c.1", "@alice", "x".repeat(128)]) {
    assert.ok(isValidRoom(good), good);
  }
  for (const bad of ["", "a..b", ".a", "a.", "a b", "chat.*", "game.>", "@", "@a.b", "x".repeat(129), "é"]) {
    assert.ok(!isValidRoom(bad), bad);
  }
});
