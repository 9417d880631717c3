// The cluster dashboard: reads `#cluster=ID&secret=BASE64`, opens every record in this browser
// and follows the cluster live over SSE. The secret is only ever handed to WebCrypto: it is
// never put in a URL, a header or a body, and the fragment itself is never sent by browsers.

import { ClusterKey, fromBase64 } from "./sealing.js";
import { decodeAffiliate, decodeEndpoint, decodeMeshHealth, keyIdHex } from "./record.js";

const $ = (id) => document.getElementById(id);
const state = { cluster: "", key: null, members: new Map(), lastId: "", source: null, queue: Promise.resolve() };
let timelineTimer = null;

// URLSearchParams would turn the '+' of base64 into a space, so the fragment is split by hand.
function fragment() {
  const out = {};
  for (const part of location.hash.replace(/^#/, "").split("&")) {
    const at = part.indexOf("=");
    if (at > 0) out[part.slice(0, at)] = decodeURIComponent(part.slice(at + 1));
  }
  return { cluster: out.cluster || "", secret: out.secret || "" };
}

const api = (suffix) => `/v1/clusters/${encodeURIComponent(state.cluster)}${suffix}`;

function problem(message) {
  $("problem").textContent = message;
  $("problem").hidden = !message;
}

function setLive(live) {
  $("live").textContent = live ? "live" : "reconnecting…";
  $("live").className = "badge " + (live ? "live" : "down");
}

async function openAffiliate(raw) {
  const member = { id: raw.id, expiresAt: raw.expires_at, record: null, error: null, endpoints: [] };
  if (!raw.data) {
    member.error = "no data yet";
  } else {
    try {
      member.record = decodeAffiliate(await state.key.openData(fromBase64(raw.data)));
    } catch (err) {
      member.error = `cannot decrypt: ${err.message}`;
    }
  }
  for (const blob of raw.endpoints) {
    try {
      member.endpoints.push(decodeEndpoint(await state.key.openEndpoint(fromBase64(blob))));
    } catch {
      member.endpoints.push("(does not open)");
    }
  }
  return member;
}

function cell(row, className, text) {
  const td = row.insertCell();
  td.className = className;
  td.textContent = text; // textContent only: record fields come from any member of the cluster
  return td;
}

function memberRow(tbody, m) {
  const row = tbody.insertRow();
  row.dataset.id = m.id;
  const r = m.record;
  if (!r) {
    row.className = "undecryptable";
    cell(row, "hostname", m.error);
    cell(row, "node-id", m.id);
    for (const name of ["machine-type", "os", "addresses"]) cell(row, name, "");
  } else {
    cell(row, "hostname", r.hostname || r.nodename);
    cell(row, "node-id", r.nodeId || m.id);
    cell(row, "machine-type", r.machineType + (r.apiServerPort ? ` (api :${r.apiServerPort})` : ""));
    cell(row, "os", r.os);
    cell(row, "addresses", r.addresses.join(" "));
  }
  cell(row, "endpoints", m.endpoints.join(" "));
  cell(row, "kubespan-key", r && r.kubespan ? r.kubespan.publicKey : "");
  cell(row, "kubespan-address", r && r.kubespan ? r.kubespan.address : "");
  cell(row, "expires", new Date(m.expiresAt).toLocaleString());
  return row;
}

const label = (m) => (m.record && (m.record.hostname || m.record.nodename)) || m.id;
const byLabel = (a, b) => label(a).localeCompare(label(b));

function renderMembers(tbody, members, changedId) {
  tbody.replaceChildren();
  for (const m of [...members].sort(byLabel)) {
    const row = memberRow(tbody, m);
    if (m.id === changedId) row.classList.add("changed");
  }
}

function render(changedId) {
  $("revision").textContent = `at revision ${state.lastId || 0} · ${state.members.size} members`;
  renderMembers($("members").tBodies[0], state.members.values(), changedId);
  renderMesh([...state.members.values()]);
}

// The grid of who reaches whom: one row per node that publishes mesh health, one column per
// peer it reports (named by the member whose WireGuard key starts with the entry's key id).
function renderMesh(members) {
  const reports = members
    .filter((m) => m.record)
    .map((m) => [m, decodeMeshHealth(m.record)])
    .filter(([, h]) => h);
  $("mesh-section").hidden = reports.length === 0;
  if (!reports.length) return;
  const names = new Map();
  const keyOf = (m) => {
    try {
      return m.record.kubespan ? keyIdHex(fromBase64(m.record.kubespan.publicKey)) : "";
    } catch {
      return "";
    }
  };
  for (const m of members) if (m.record && keyOf(m)) names.set(keyOf(m), label(m));
  const peers = [...new Set(reports.flatMap(([m, h]) => [keyOf(m), ...h.peers.map((p) => p.keyId)]))]
    .filter(Boolean)
    .sort((a, b) => (names.get(a) || a).localeCompare(names.get(b) || b));
  const table = $("mesh");
  table.replaceChildren();
  const head = table.createTHead().insertRow();
  head.appendChild(document.createElement("th")).textContent = "from \\ to";
  for (const p of peers) head.appendChild(document.createElement("th")).textContent = names.get(p) || `key ${p}…`;
  const body = table.createTBody();
  for (const [m, health] of reports.sort(([a], [b]) => byLabel(a, b))) {
    const row = body.insertRow();
    const th = row.appendChild(document.createElement("th"));
    th.textContent = label(m);
    th.title = `observed ${new Date(health.observedAt * 1000).toLocaleString()}` +
      (health.omitted ? `, ${health.omitted} peers left out` : "");
    for (const p of peers) {
      if (p === keyOf(m)) {
        cell(row, "self", "");
        continue;
      }
      const seen = health.peers.find((h) => h.keyId === p);
      if (!seen) {
        cell(row, "", "").title = "not reported";
        continue;
      }
      const age = seen.handshakeAge == null ? "no handshake" : `handshake ${seen.handshakeAge} s ago`;
      const arrows = `${seen.session ? "⇄" : ""}${seen.receiving ? "↓" : ""}`;
      const td = cell(row, seen.state, `${seen.state} ${arrows}`.trim());
      td.title = `${seen.state}; ${age}; ${seen.receiving ? "receiving" : "not receiving"}; ${seen.session ? "session" : "no session"}`;
    }
  }
}

function logChange(revision, text) {
  const li = document.createElement("li");
  li.dataset.revision = revision;
  li.textContent = `${new Date().toLocaleTimeString()}  r${revision}  ${text}`;
  $("changes").prepend(li);
  while ($("changes").children.length > 200) $("changes").lastChild.remove();
  clearTimeout(timelineTimer);
  timelineTimer = setTimeout(loadTimeline, 500);
}

// Handlers open records asynchronously; the queue keeps changes in the order they came.
function enqueue(task) {
  state.queue = state.queue.then(task).catch((err) => problem(String(err)));
}

function connect() {
  // A fresh EventSource resumes with ?since=; the browser's own reconnects send Last-Event-ID.
  const since = state.lastId ? `?since=${state.lastId}` : "";
  const source = new EventSource(api("/watch") + since);
  state.source = source;
  source.onopen = () => setLive(true);
  source.onerror = () => {
    setLive(false);
    // After an HTTP error (e.g. 503 while the service starts) the browser gives up: retry here.
    if (source.readyState === EventSource.CLOSED && state.source === source) setTimeout(connect, 1000);
  };
  source.addEventListener("snapshot", (e) => {
    state.lastId = e.lastEventId;
    const body = JSON.parse(e.data);
    enqueue(async () => {
      const opened = await Promise.all(body.affiliates.map(openAffiliate));
      state.members = new Map(opened.map((m) => [m.id, m]));
      render();
      logChange(body.revision, `snapshot: ${opened.length} members`);
    });
  });
  source.addEventListener("update", (e) => {
    state.lastId = e.lastEventId;
    const raw = JSON.parse(e.data);
    enqueue(async () => {
      const m = await openAffiliate(raw);
      const known = state.members.has(m.id);
      state.members.set(m.id, m);
      render(m.id);
      logChange(e.lastEventId, `${known ? "updated" : "joined"} ${label(m)}`);
    });
  });
  source.addEventListener("delete", (e) => {
    state.lastId = e.lastEventId;
    const { id } = JSON.parse(e.data);
    enqueue(async () => {
      const gone = state.members.get(id);
      state.members.delete(id);
      render();
      logChange(e.lastEventId, `left ${gone ? label(gone) : id}`);
    });
  });
}

async function loadTimeline() {
  const events = [];
  let after = 0;
  for (let page = 0; page < 50; page++) {
    const res = await fetch(api(`/events?after=${after}&limit=1000`));
    if (!res.ok) return;
    const body = await res.json();
    events.push(...body.events);
    if (body.events.length < 1000) break;
    after = body.events[body.events.length - 1].revision;
  }
  const shown = events.slice(-500).reverse();
  // Name each event's affiliate by its hostname where the event carries the record.
  const opened = await Promise.all(shown.map((ev) => (ev.affiliate ? openAffiliate(ev.affiliate) : null)));
  const known = new Map(opened.filter((m) => m && m.record).map((m) => [m.id, label(m)]));
  const names = shown.map((ev, i) => (opened[i] ? label(opened[i]) : known.get(ev.affiliate_id) || ev.affiliate_id || ""));
  const list = $("timeline");
  list.replaceChildren();
  for (const [i, ev] of shown.entries()) {
    const li = document.createElement("li");
    li.dataset.revision = ev.revision;
    li.textContent = `r${ev.revision}  ${ev.recorded_at}  ${ev.type}  ${names[i]}`;
    li.onclick = () => travel({ at: ev.revision });
    list.appendChild(li);
  }
  const slider = $("travel-slider");
  if (events.length) {
    slider.min = events[0].revision;
    slider.max = events[events.length - 1].revision;
    if (!$("travel-revision").value) slider.value = slider.max;
  }
}

async function travel(query) {
  if (query.at !== undefined) $("travel-revision").value = query.at;
  const res = await fetch(api("/affiliates?" + new URLSearchParams(query)));
  const body = await res.json();
  $("travel").hidden = false;
  const tbody = $("travel-members").tBodies[0];
  if (res.status === 410) {
    tbody.replaceChildren();
    $("travel-title").textContent = `Not retained: the oldest revision that can be shown is ${body.error.oldest}.`;
    return;
  }
  if (!res.ok) {
    $("travel-title").textContent = body.error ? body.error.message : `error ${res.status}`;
    return;
  }
  const opened = await Promise.all(body.affiliates.map(openAffiliate));
  renderMembers(tbody, opened);
  $("travel-title").textContent = `Membership at revision ${body.revision}: ${opened.length} members`;
}

async function start() {
  if (state.source) state.source.close();
  state.source = null;
  const { cluster, secret } = fragment();
  $("open").hidden = Boolean(cluster && secret);
  if (!cluster || !secret) return;
  state.cluster = cluster;
  state.members = new Map();
  state.lastId = "";
  $("cluster-name").textContent = cluster;
  try {
    state.key = await ClusterKey.fromSecret(secret);
  } catch (err) {
    problem(err.message);
    return;
  }
  problem("");
  for (const id of ["members-section", "changes-section", "timeline-section"]) $(id).hidden = false;
  connect();
  loadTimeline();
}

$("open").addEventListener("submit", (e) => {
  e.preventDefault();
  const form = new FormData(e.target);
  const enc = (name) => encodeURIComponent(form.get(name).trim());
  location.hash = `cluster=${enc("cluster")}&secret=${enc("secret")}`;
});
$("travel-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const time = $("travel-time").value;
  if (time) {
    $("travel-time").value = "";
    travel({ at_time: new Date(time).toISOString() });
  } else {
    travel({ at: $("travel-revision").value || "0" });
  }
});
$("travel-slider").addEventListener("input", (e) => ($("travel-revision").value = e.target.value));
$("travel-slider").addEventListener("change", (e) => travel({ at: e.target.value }));
$("travel-refresh").addEventListener("click", loadTimeline);
window.addEventListener("hashchange", start);
start();
