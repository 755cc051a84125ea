import { test } from "node:test";
import assert from "node:assert/strict";
import { resumeUrl, redactUrl } from "../build/esm/resume.js";

test("the resume URL keeps scheme, host and query and adds resume_token", () => {
  assert.equal(
    resumeUrl("wss://localhost:8443/ws", "/ws/w1/c_9f", "r+t"),
    "wss://localhost:8443/ws/w1/c_9f?resume_token=r%2Bt",
  );
  assert.equal(
    resumeUrl("ws://127.0.0.1:1/ws?x=1&resume_token=old", "/ws/w2/c2", "new"),
    "ws://127.0.0.1:1/ws/w2/c2?x=1&resume_token=new",
  );
  // A query on the resume path itself is not taken.
  assert.equal(resumeUrl("ws://h/ws", "/ws/w1/c1?evil=1", "t"), "ws://h/ws/w1/c1?resume_token=t");
});

test("a resume path that could leave the host is refused", () => {
  assert.throws(() => resumeUrl("ws://h/ws", "evil.example/ws", "t"));
  assert.throws(() => resumeUrl("ws://h/ws", "//evil.example/ws", "t"));
  assert.throws(() => resumeUrl("ws://h/ws", "", "t"));
});

test("redacted URLs lose their query", () => {
  assert.equal(redactUrl("wss://h/ws/w1/c1?resume_token=secret"), "wss://h/ws/w1/c1");
  assert.equal(redactUrl("wss://h/ws"), "wss://h/ws");
});
