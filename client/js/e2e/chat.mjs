// The browser half of tests/browser: two pages of the demo chat in headless Chromium
// (Debian's `chromium`, driven by playwright-core), while the Rust half owns the stack
// and kills the worker that holds page A's socket when asked.
//
//   node e2e/chat.mjs --base https://localhost:PORT --workers w1,w2 --screenshot PATH
//
// It talks to the Rust test in lines: JSON events on stdout (`placed`, `kill`,
// `done`, `fail`), and on stdin the answer `killed <worker>` to a `kill` event.
// Progress goes to stderr. Exit code 0 means every check passed.
//
// Environment: CHROMIUM (default /usr/bin/chromium). The gateway's certificate is
// signed by a test CA that this browser does not trust: Chromium runs with
// --ignore-certificate-errors, in this test only.

import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const args = parseArgs(process.argv.slice(2));
const BASE = args.base ?? fail("--base is required");
const [WORKER_A, WORKER_B] = (args.workers ?? "w1,w2").split(",");
const SCREENSHOT = args.screenshot ?? fail("--screenshot is required");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const STEP_TIMEOUT = 30_000;
/** B keeps sending at least this many messages after page A is back. */
const AFTER_RECONNECT = 3;
/** Messages B sends (and sees stored) while page A is held offline. */
const AWAY = 5;

function parseArgs(list) {
  const out = {};
  for (let i = 0; i < list.length; i += 2) out[list[i].replace(/^--/, "")] = list[i + 1];
  return out;
}

function emit(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

function note(text) {
  process.stderr.write(`[chat.mjs] ${text}\n`);
}

function fail(message) {
  throw new Error(message);
}

function check(condition, message) {
  if (!condition) fail(message);
}

const stdin = createInterface({ input: process.stdin });
const lines = [];
const waiting = [];
stdin.on("line", (line) => (waiting.length > 0 ? waiting.shift()(line) : lines.push(line)));
function nextLine() {
  return lines.length > 0 ? Promise.resolve(lines.shift()) : new Promise((resolve) => waiting.push(resolve));
}

const profile = mkdtempSync(join(tmpdir(), "switchyard-chromium-"));
let context;
let pageA;
let pageB;

try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 760 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--ignore-certificate-errors",
    ],
  });
  context.setDefaultTimeout(STEP_TIMEOUT);
  pageA = await open("alice", WORKER_A);
  pageB = await open("bob", WORKER_B);

  // Both connected, each on its own worker, as the page shows.
  const placedA = await connectedWorker(pageA);
  const placedB = await connectedWorker(pageB);
  emit({ event: "placed", a: placedA, b: placedB });
  check(placedA !== placedB, `both pages are on ${placedA}: the test needs them apart`);

  // Presence crosses workers: each page lists both users.
  await members(pageA, ["alice", "bob"]);
  await members(pageB, ["alice", "bob"]);
  note("both pages connected and see each other");

  // They chat through the gateway, across the two workers.
  await say(pageA, "hello from alice");
  await say(pageB, "hi alice, bob here");
  await shows(pageA, "hi alice, bob here");
  await shows(pageB, "hello from alice");
  note("chat works both ways");

  // Record what page A's client goes through from here on.
  await pageA.evaluate(() => {
    const timeline = [];
    window.__timeline = timeline;
    for (const name of ["disconnected", "reconnecting", "connecting", "connected", "subscribed"]) {
      window.switchyardDemo.client.on(name, (event) => timeline.push({ name, at: Date.now(), ...event }));
    }
  });

  // Kill the worker holding A's socket, while B keeps sending. Page A asks for a token
  // before each connection attempt: holding that request (in this browser, not in the
  // page) keeps A away until B has sent AWAY messages, so they are surely sent while A
  // is offline, whatever A's random backoff.
  let release;
  const gate = new Promise((resolve) => (release = resolve));
  let reconnecting = false;
  await pageA.route("**/demo/token", async (route) => {
    reconnecting = true;
    await gate;
    await route.continue().catch((error) => note(`token request: ${error.message}`));
  });
  const sent = [];
  let n = 0;
  const bSays = async () => {
    n += 1;
    const text = `bob ${n}`;
    await say(pageB, text);
    sent.push(text);
  };
  for (let i = 0; i < 3; i++) await bSays();
  emit({ event: "kill", worker: placedA });
  const answer = await nextLine();
  check(answer === `killed ${placedA}`, `unexpected answer from the test: ${answer}`);
  note(`${placedA} was killed; bob keeps sending`);
  const killedAt = Date.now();
  const deadline = () => check(Date.now() - killedAt < STEP_TIMEOUT, "page A did not reconnect to another worker in time");
  while (!reconnecting) {
    await bSays();
    deadline();
  }
  for (let i = 0; i < AWAY; i++) await bSays();
  for (const text of sent.slice(-AWAY)) await shows(pageB, text);
  note(`page A is offline and trying to reconnect; bob sent ${AWAY} more messages meanwhile`);
  release(); // from now on the route lets every token request through at once
  let back;
  for (;;) {
    await bSays();
    back = await pageA.evaluate((killed) => {
      const t = window.__timeline;
      const lost = t.findIndex((e) => e.name === "disconnected");
      if (lost < 0) return undefined;
      return t.slice(lost).find((e) => e.name === "connected" && e.worker !== killed);
    }, placedA);
    if (back !== undefined) break;
    deadline();
  }
  for (let i = 0; i < AFTER_RECONNECT; i++) await bSays();
  note(`page A is back on ${back.worker}; bob sent ${sent.length} messages around the kill`);

  // A says something on its new connection; then both pages must hold the same history.
  await say(pageA, "alice is back");
  for (const text of [...sent, "alice is back"]) {
    await shows(pageA, text);
    await shows(pageB, text);
  }
  const listA = await messages(pageA);
  const listB = await messages(pageB);
  check(
    JSON.stringify(listA) === JSON.stringify(listB),
    `the pages differ:\nA ${JSON.stringify(listA)}\nB ${JSON.stringify(listB)}`,
  );
  const seqs = listA.map((m) => m.seq);
  check(seqs.every((s, i) => i === 0 || s > seqs[i - 1]), `seqs not strictly increasing on A: ${seqs}`);
  const textsA = listA.map((m) => m.text);
  for (const text of [...sent, "hello from alice", "hi alice, bob here", "alice is back"]) {
    const count = textsA.filter((t) => t === text).length;
    check(count === 1, `page A shows ${JSON.stringify(text)} ${count} times`);
  }
  const order = textsA.filter((t) => sent.includes(t));
  check(JSON.stringify(order) === JSON.stringify(sent), `bob's messages out of order on A: ${order}`);

  // What A went through: lost without a close frame, reconnected on the other worker,
  // and the store filled the gap.
  const timeline = await pageA.evaluate(() => window.__timeline);
  const lost = timeline.find((e) => e.name === "disconnected");
  check(lost.wasConnected && lost.willReconnect, `unexpected disconnect: ${JSON.stringify(lost)}`);
  const resub = timeline.find((e) => e.name === "subscribed" && e.at >= back.at);
  check(resub !== undefined, "page A did not subscribe again after reconnecting");
  check(resub.recovered === true, "the store could not bring page A up to date");
  check(resub.replayed >= AWAY, `only ${resub.replayed} messages were replayed to page A, fewer than the ${AWAY} sent while it was away`);
  await members(pageA, ["alice", "bob"]);
  const stateA = await pageA.textContent("#state");
  check(/^connected on worker /.test(stateA), `page A shows "${stateA}"`);
  note(`A: lost with ${lost.code}, back on ${back.worker}, ${resub.replayed} replayed, ${listA.length} messages, each once, in order`);

  // A short burst so that the counter has something to show, then the picture.
  for (let i = 0; i < 8; i++) await bSays();
  await shows(pageA, sent[sent.length - 1]);
  await shows(pageB, sent[sent.length - 1]);
  const finalA = await messages(pageA);
  check(JSON.stringify(finalA) === JSON.stringify(await messages(pageB)), "the pages differ after the last burst");
  await pageA.waitForFunction(() => Number(document.getElementById("rate").textContent) > 0, null, { timeout: 5000 });
  await screenshot(pageA, SCREENSHOT);
  await screenshot(pageB, SCREENSHOT.replace(/\.png$/, "-bob.png"));
  const duplicates = await pageA.evaluate(() => window.switchyardDemo.client.duplicatesDropped);
  emit({
    event: "done",
    killed: placedA,
    back_on: back.worker,
    close_code: lost.code,
    sent_by_bob: sent.length,
    replayed: resub.replayed,
    messages_on_a: finalA.length,
    duplicates_dropped: duplicates,
    screenshot: SCREENSHOT,
  });
} catch (error) {
  note(String(error?.stack ?? error));
  for (const [page, name] of [
    [pageA, SCREENSHOT],
    [pageB, SCREENSHOT.replace(/\.png$/, "-bob.png")],
  ]) {
    if (page) await screenshot(page, name).catch(() => {});
  }
  emit({ event: "fail", error: String(error?.message ?? error) });
  process.exitCode = 1;
} finally {
  stdin.close();
  await context?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}

// --- Steps ---------------------------------------------------------------------------

async function open(user, worker) {
  const page = await context.newPage();
  page.on("pageerror", (error) => note(`${user}: page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") note(`${user}: console: ${message.text()}`);
  });
  await page.goto(`${BASE}/demo?user=${user}&worker=${worker}`);
  return page;
}

async function connectedWorker(page) {
  const badge = await page.waitForSelector('#state[data-state="connected"]');
  return badge.getAttribute("data-worker");
}

async function members(page, users) {
  await page.waitForFunction(
    (wanted) => wanted.every((u) => document.querySelector(`#members li[data-user="${u}"]`) !== null),
    users,
  );
}

async function say(page, text) {
  await page.fill("#text", text);
  await page.press("#text", "Enter");
}

async function shows(page, text) {
  await page.waitForFunction(
    (wanted) => [...document.querySelectorAll("#messages li[data-seq] .text")].some((e) => e.textContent === wanted),
    text,
  );
}

function messages(page) {
  return page.$$eval("#messages li[data-seq]", (items) =>
    items.map((li) => ({ seq: Number(li.dataset.seq), from: li.dataset.from, text: li.querySelector(".text").textContent })),
  );
}

async function screenshot(page, path) {
  mkdirSync(dirname(path), { recursive: true });
  await page.screenshot({ path });
}
