import { test } from "node:test";
import assert from "node:assert/strict";
import { parseServerText, encodeClientFrames, shouldReconnect, CloseCode } from "../build/esm/frames.js";

test("a text frame holding several NDJSON objects yields each, in order", () => {
  const text = [
    '{"op":"msg","room":"lobby","seq":1,"from":"a","ts":1,"data":{"t":"x\\ny"}}',
    '{"op":"msg","room":"lobby","seq":2,"from":"a","ts":2,"data":2}',
    '{"op":"ack","ref":"3","seq":2}',
  ].join("\n");
  const { frames, bad } = parseServerText(text);
  assert.deepEqual(
    frames.map((f) => [f.op, f.seq]),
    [["msg", 1], ["msg", 2], ["ack", 2]],
  );
  assert.equal(frames[0].data.t, "x\ny");
  assert.deepEqual(bad, []);
});

test("CRLF line ends, blank pieces and a trailing newline are tolerated", () => {
  const { frames, bad } = parseServerText('{"op":"pong"}\r\n\n  \n{"op":"pong","ref":"1"}\n');
  assert.equal(frames.length, 2);
  assert.equal(frames[1].ref, "1");
  assert.deepEqual(bad, []);
});

test("a bad piece is set aside and the pieces after it are still read", () => {
  const { frames, bad } = parseServerText('not json\n{"op":"nope"}\n[1]\n{"op":"pong"}');
  assert.deepEqual(frames, [{ op: "pong" }]);
  assert.deepEqual(bad, ["not json", '{"op":"nope"}', "[1]"]);
});

test("client frames encode one per line, newlines in data escaped", () => {
  const text = encodeClientFrames([
    { op: "pub", room: "lobby", data: { text: "two\nlines" }, ref: "1" },
    { op: "ping" },
  ]);
  const lines = text.split("\n");
  assert.equal(lines.length, 2);
  assert.deepEqual(JSON.parse(lines[0]).data, { text: "two\nlines" });
});

test("1000, 1008 and 4009 stop reconnecting; the rest do not", () => {
  for (const code of [CloseCode.Normal, CloseCode.Policy, CloseCode.Disconnected]) {
    assert.equal(shouldReconnect(code), false, String(code));
  }
  for (const code of [1001, 1002, 1006, 1009, 1011, 1012, 1013, 4008]) {
    assert.equal(shouldReconnect(code), true, String(code));
  }
});
