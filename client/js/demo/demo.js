// The demo page's logic: a chat room over @switchyard/client, served by `switchyard dev`
// at /demo. Query parameters: `user` (joins at once under that name), `room` (default
// `lobby`), `worker` (place the first connection on that worker through the sticky path
// `/ws/<worker>/demo`, to watch messages cross workers).

import { Client } from "/demo/switchyard.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const USER_ID = /^[A-Za-z0-9_-]{1,64}$/;
const MAX_MESSAGES = 500;
const MAX_LOG = 8;
const SPARK_SECONDS = 30;

let client;
let room;
let me;
/** Receive times (ms) of the last second's messages, for the rate. */
const recent = [];
/** Messages per whole second, for the sparkline. */
const perSecond = new Map();
let received = 0;
let acked = 0;
let reconnectAt;

// --- Joining -------------------------------------------------------------------------

$("join-user").value = params.get("user") ?? `guest-${Math.random().toString(36).slice(2, 6)}`;
$("join-room").value = params.get("room") ?? "lobby";
$("join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  join($("join-user").value.trim(), $("join-room").value.trim());
});
if (params.has("user")) join($("join-user").value.trim(), $("join-room").value.trim());

async function fetchToken(user) {
  const response = await fetch("/demo/token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok || typeof body.token !== "string") {
    throw new Error(body.message ?? `token request failed with ${response.status}`);
  }
  return body.token;
}

function join(user, roomName) {
  if (!USER_ID.test(user)) {
    $("join-error").textContent = "A name is 1–64 letters, digits, _ or -.";
    return;
  }
  me = user;
  room = roomName;
  $("join").hidden = true;
  $("user-name").textContent = me;
  $("room-name").textContent = room;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const worker = params.get("worker");
  const path = worker && USER_ID.test(worker) ? `/ws/${worker}/demo` : "/ws";
  client = new Client({ url: `${scheme}://${location.host}${path}`, token: () => fetchToken(me) });
  window.switchyardDemo = { client };
  watchConnection(client);
  try {
    client.subscribe(room, {
      message: onMessage,
      subscribed: onSubscribed,
      join: (u) => setMember(u, true),
      leave: (u) => setMember(u, false),
      error: (e) => notice(`cannot join ${room}: ${e.code}: ${e.message}`),
    });
  } catch (error) {
    notice(String(error));
    return;
  }
  client.connect();
  $("text").disabled = false;
  $("send").disabled = false;
  $("text").focus();
}

// --- Sending -------------------------------------------------------------------------

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("text");
  const text = input.value.trim();
  if (text === "" || client === undefined) return;
  input.value = "";
  // The message shows when it comes back from the room, with its seq.
  client.publish(room, { text }).then(
    () => {
      acked += 1;
      $("acked").textContent = String(acked);
    },
    (error) => notice(`not sent: ${error.message}`),
  );
});

// --- Receiving -----------------------------------------------------------------------

function onMessage(message) {
  received += 1;
  const now = Date.now();
  recent.push(now);
  const second = Math.floor(now / 1000);
  perSecond.set(second, (perSecond.get(second) ?? 0) + 1);
  $("received").textContent = String(received);
  $("duplicates").textContent = String(client.duplicatesDropped);
  const li = document.createElement("li");
  if (message.seq !== undefined) li.dataset.seq = String(message.seq);
  li.dataset.from = message.from;
  if (message.from === me) li.classList.add("mine");
  const text =
    message.data !== null && typeof message.data === "object" && typeof message.data.text === "string"
      ? message.data.text
      : JSON.stringify(message.data);
  li.append(
    span("seq", message.seq === undefined ? "live" : `#${message.seq}`),
    span("from", message.from),
    span("text", text),
    time(message.ts),
  );
  append(li);
}

function onSubscribed(event) {
  if (!event.recovered) notice(`history of ${event.room} could not be fully recovered`);
  // Who is here now; join and leave events keep it up to date.
  client.presence(room).then(
    (members) => {
      $("members").replaceChildren();
      for (const m of members) setMember(m.user, true, m.conns);
    },
    () => {},
  );
}

function setMember(user, present, conns) {
  const list = $("members");
  let li = list.querySelector(`li[data-user="${CSS.escape(user)}"]`);
  if (!present) {
    li?.remove();
  } else {
    if (!li) {
      li = document.createElement("li");
      li.dataset.user = user;
      li.append(span("name", user === me ? `${user} (you)` : user), span("conns", ""));
      list.append(li);
    }
    if (conns !== undefined) li.querySelector(".conns").textContent = conns > 1 ? `${conns} connections` : "";
  }
  $("member-count").textContent = String(list.children.length);
}

function notice(text) {
  const li = document.createElement("li");
  li.className = "notice";
  li.textContent = text;
  append(li);
}

function append(li) {
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.append(li);
  while (list.children.length > MAX_MESSAGES) list.firstElementChild.remove();
  if (atBottom) list.scrollTop = list.scrollHeight;
}

// --- Connection state ----------------------------------------------------------------

function watchConnection(c) {
  c.on("connecting", (e) => {
    setState("connecting", e.attempt > 1 ? `connecting… (attempt ${e.attempt})` : "connecting…");
  });
  c.on("connected", (e) => {
    reconnectAt = undefined;
    const how = e.resumed ? "resumed" : "connected";
    setState(how, `${how} on worker ${e.worker}`, { worker: e.worker });
    log(e.resumed ? `resumed the session on ${e.worker}` : `connected on ${e.worker} (new session ${e.conn})`);
    $("reconnects").textContent = String(c.reconnects);
  });
  c.on("disconnected", (e) => {
    setState("disconnected", `disconnected (${e.code})`, { code: String(e.code) });
    if (e.wasConnected) log(`disconnected with ${e.code}${e.reason ? `: ${e.reason}` : ""}`);
  });
  c.on("reconnecting", (e) => {
    reconnectAt = Date.now() + e.delayMs;
    setState("reconnecting", reconnectText());
    if (e.attempt === 1) log(`reconnecting in ${(e.delayMs / 1000).toFixed(1)} s${e.drained ? " (drained)" : ""}`);
  });
  c.on("closed", (e) => {
    reconnectAt = undefined;
    setState("closed", `closed (${e.code})`, { code: String(e.code) });
    log(`closed with ${e.code}`);
  });
  c.on("subscribed", (e) => {
    log(e.replayed > 0 ? `subscribed to ${e.room}: ${e.replayed} missed message(s) replayed` : `subscribed to ${e.room}`);
  });
}

function reconnectText() {
  const left = Math.max(0, (reconnectAt ?? Date.now()) - Date.now());
  return `reconnecting in ${(left / 1000).toFixed(1)} s`;
}

function setState(state, text, { worker, code } = {}) {
  const badge = $("state");
  badge.dataset.state = state;
  badge.textContent = text;
  if (worker !== undefined) badge.dataset.worker = worker;
  else delete badge.dataset.worker;
  if (code !== undefined) badge.dataset.code = code;
  else delete badge.dataset.code;
}

function log(text) {
  const li = document.createElement("li");
  li.append(time(Date.now()), text);
  const list = $("log");
  list.prepend(li);
  while (list.children.length > MAX_LOG) list.lastElementChild.remove();
}

// --- The live counter ----------------------------------------------------------------

const spark = $("spark");
for (let i = 0; i < SPARK_SECONDS; i++) spark.append(document.createElement("div"));

setInterval(() => {
  const now = Date.now();
  while (recent.length > 0 && recent[0] <= now - 1000) recent.shift();
  $("rate").textContent = String(recent.length);
  if ($("state").dataset.state === "reconnecting") $("state").textContent = reconnectText();
  const current = Math.floor(now / 1000);
  const counts = [];
  for (let s = current - SPARK_SECONDS + 1; s <= current; s++) counts.push(perSecond.get(s) ?? 0);
  for (const s of perSecond.keys()) if (s <= current - SPARK_SECONDS) perSecond.delete(s);
  const top = Math.max(1, ...counts);
  counts.forEach((n, i) => {
    spark.children[i].style.height = `${Math.round((n / top) * 100)}%`;
  });
}, 250);

// --- Small builders ------------------------------------------------------------------

function span(className, text) {
  const s = document.createElement("span");
  s.className = className;
  s.textContent = text;
  return s;
}

function time(ms) {
  const t = document.createElement("time");
  const d = new Date(ms);
  t.dateTime = d.toISOString();
  t.textContent = d.toLocaleTimeString([], { hour12: false });
  return t;
}
