// hoptrace web: the request list (live, through server-sent events), one request's waterfall, the
// stats of the requests in view. Everything read from the logs goes into the page as text
// (textContent, never innerHTML), and the server's Content-Security-Policy allows this file only.
"use strict";

// A request is its id and its trace id: a client may send an id again, and each request that carried it is its own.
const state = { requests: [], selected: null };
const $ = (id) => document.getElementById(id);
const keyOf = (request) => request.request_id + " " + request.trace_id;
const rowKey = (row) => row.dataset.requestId + " " + row.dataset.traceId;
const query = (request) => "?trace=" + encodeURIComponent(request.trace_id);

function el(tag, attributes = {}, text = null) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== null) node.textContent = String(text);
  return node;
}

function filters() {
  return { app: $("f-app").value, server: $("f-server").value, status: $("f-status").value,
           path: $("f-path").value.trim(), id: $("f-id").value.trim().toLowerCase() };
}

function matches(request, f) {
  return (!f.app || request.app === f.app) && (!f.server || request.server === f.server)
    && (!f.status || String(request.status).startsWith(f.status))
    && (!f.path || request.path.includes(f.path))
    && (!f.id || request.request_id.toLowerCase().includes(f.id));
}

function clock(tsUs) {
  const when = new Date(tsUs / 1000);
  return when.toLocaleTimeString([], { hour12: false }) + "." + String(when.getMilliseconds()).padStart(3, "0");
}

function requestRow(request) {
  const row = el("tr", { tabindex: "0", "data-request-id": request.request_id, "data-trace-id": request.trace_id,
                         "aria-selected": String(keyOf(request) === state.selected) });
  const cells = [clock(request.ts_us), request.method, request.uri, request.status ?? "?",
                 request.duration_ms.toFixed(1), request.app, request.server];
  cells.forEach((text, index) => {
    const cell = el("td", {}, text);
    if (index === 3) cell.className = "status-" + String(request.status).charAt(0);
    row.append(cell);
  });
  row.addEventListener("click", () => select(request));
  row.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); select(request); }
    if (event.key === "ArrowDown" && row.nextElementSibling) row.nextElementSibling.focus();
    if (event.key === "ArrowUp" && row.previousElementSibling) row.previousElementSibling.focus();
  });
  return row;
}

function visible() {
  const f = filters();
  return state.requests.filter((request) => matches(request, f));
}

function renderList() {
  const body = $("requests").tBodies[0];
  const shown = visible();
  // The rows are drawn anew: keep the keyboard's place on the row it was on.
  const focused = document.activeElement && document.activeElement.dataset
    && document.activeElement.dataset.requestId !== undefined ? rowKey(document.activeElement) : undefined;
  body.replaceChildren(...shown.slice(0, 500).map(requestRow));
  if (focused) {
    const again = [...body.rows].find((row) => rowKey(row) === focused);
    if (again) again.focus();
  }
  $("empty").hidden = state.requests.length > 0;
  renderHistogram(shown);
  scheduleStats(shown);
}

function add(request) {
  state.requests = state.requests.filter((known) => keyOf(known) !== keyOf(request));
  // Newest first, by when the request came: a slow request completes after quicker, later ones.
  const at = state.requests.findIndex((known) => known.ts_us <= request.ts_us);
  state.requests.splice(at === -1 ? state.requests.length : at, 0, request);
  if (state.requests.length > 5000) state.requests.length = 5000;
  renderList();
}

async function select(request) {
  const key = state.selected = keyOf(request);
  for (const row of $("requests").tBodies[0].rows) {
    row.setAttribute("aria-selected", String(rowKey(row) === key));
  }
  const reply = await fetch("/api/requests/" + encodeURIComponent(request.request_id) + query(request));
  if (!reply.ok) { $("heading").textContent = "That request is no longer in view."; return; }
  const detail = await reply.json();
  if (state.selected !== key) return; // another was chosen meanwhile
  $("heading").textContent = detail.heading;
  $("warnings").replaceChildren(...detail.warnings.map((text) => el("li", { class: "warning" }, text)),
                                 ...detail.notes.map((text) => el("li", { class: "note" }, text)));
  renderBars(detail.spans);
  renderRows(detail);
  $("fields").textContent = "";
  renderExports(request);
}

function renderBars(spans) {
  const end = Math.max(0.001, ...spans.map((span) => span.end_ms));
  $("bars").replaceChildren(...spans.map((span) => {
    const row = el("div", { class: "bar-row" });
    const label = el("span", { class: "bar-label", title: span.name }, span.name);
    const track = el("span", { class: "bar-track" });
    const bar = el("span", { class: `bar hop-${span.hop}` + (span.error ? " error" : ""),
                             title: `${span.name}: ${span.start_ms.toFixed(3)} to ${span.end_ms.toFixed(3)} ms` });
    bar.style.left = (100 * span.start_ms / end) + "%";
    bar.style.width = (100 * (span.end_ms - span.start_ms) / end) + "%";
    track.append(bar);
    row.append(label, track);
    return row;
  }));
}

function renderRows(detail) {
  $("rows").tBodies[0].replaceChildren(...detail.rows.map((row, index) => {
    const line = el("tr", { tabindex: "0", "data-event": row.event });
    line.append(el("td", {}, "+" + row.offset_ms.toFixed(3)), el("td", {}, row.hop), el("td", {}, row.text));
    const show = () => { $("fields").textContent = JSON.stringify(detail.events[index], null, 2); };
    line.addEventListener("click", show);
    line.addEventListener("keydown", (event) => { if (event.key === "Enter") show(); });
    return line;
  }));
}

function renderExports(request) {
  const url = "/api/export/" + encodeURIComponent(request.request_id) + query(request);
  const name = request.request_id;
  $("exports").replaceChildren(
    el("span", {}, "Export: "),
    el("a", { href: `${url}&format=otlp`, download: `${name}.otlp.json` }, "OTLP/JSON"),
    el("span", {}, " · "),
    el("a", { href: `${url}&format=chrome`, download: `${name}.perfetto.json` },
       "Perfetto (ui.perfetto.dev, Open trace file)"));
}

// The stats table: hoptrace stats over the requests in view, asked for at most every second.
let statsTimer = null;
function scheduleStats(shown) {
  clearTimeout(statsTimer);
  statsTimer = setTimeout(() => loadStats(shown.slice(0, 500)), 300);
}

async function loadStats(shown) {
  const named = shown.map((request) => "id=" + encodeURIComponent(request.request_id)
                                      + "&trace=" + encodeURIComponent(request.trace_id)).join("&");
  const reply = await fetch("/api/stats?" + named);
  if (!reply.ok) return;
  const stats = await reply.json();
  $("stats").tBodies[0].replaceChildren(...stats.segments.map((row) => {
    const line = el("tr");
    for (const text of [row.service, row.server, row.segment, row.count, row.p50_ms.toFixed(2),
                        row.p90_ms.toFixed(2), row.p99_ms.toFixed(2), row.max_ms.toFixed(2)]) {
      line.append(el("td", {}, text));
    }
    return line;
  }));
}

// Latency histogram per app and server: counts in buckets of the request's whole time.
const BUCKETS_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, Infinity];
function renderHistogram(shown) {
  const groups = new Map();
  for (const request of shown) {
    const key = request.app ? `${request.app} on ${request.server}` : "nginx alone";
    if (!groups.has(key)) groups.set(key, new Array(BUCKETS_MS.length).fill(0));
    groups.get(key)[BUCKETS_MS.findIndex((limit) => request.duration_ms < limit)] += 1;
  }
  $("histogram").replaceChildren(...[...groups.entries()].sort().map(([key, counts]) => {
    const most = Math.max(...counts);
    const grid = el("div", { class: "histogram", "aria-label": `latency of ${key}` });
    grid.append(el("strong", {}, key), el("span"), el("span"));
    counts.forEach((count, index) => {
      if (!count) return;
      const low = index ? BUCKETS_MS[index - 1] : 0;
      const high = BUCKETS_MS[index];
      const fill = el("span", { class: "fill" });
      fill.style.width = (100 * count / most) + "%";
      grid.append(el("span", {}, high === Infinity ? `${low} ms and more` : `${low} to ${high} ms`),
                  fill, el("span", {}, count));
    });
    return grid;
  }));
}

async function start() {
  for (const id of ["f-app", "f-server", "f-status", "f-path", "f-id"]) {
    $(id).addEventListener("input", renderList);
    $(id).addEventListener("change", renderList);
  }
  const reply = await fetch("/api/requests");
  state.requests = await reply.json();
  renderList();
  const stream = new EventSource("/api/stream");
  stream.onopen = () => { $("status").textContent = "live"; };
  stream.onerror = () => { $("status").textContent = "reconnecting"; };
  stream.onmessage = (message) => add(JSON.parse(message.data));
}

start();
