// The run viewer: an episode list from /api/episodes, and one episode (fetched lazily from /api/episode/<uid>)
// replayed step by step: frame, top-down map, model input and answer, distance plot.
"use strict";

const state = {
  episodes: [],
  sortKey: "episode_id",
  sortDir: 1,
  filter: "all",
  query: "",
  rec: null, // the open record.json (+ base, missing)
  t: 0,
  playing: null, // interval id while playing
  mapImg: null,
  frameCache: new Map(),
};
window.viewer = state; // for debugging and browser tests

const $ = (id) => document.getElementById(id);
const { fmt, escapeHtml } = Draw;

async function getJSON(url) {
  const r = await fetch(url);
  let body = null;
  try { body = await r.json(); } catch (e) { body = { error: `bad response from ${url}` }; }
  if (!r.ok) throw new Error(body && body.error ? body.error : `${url}: HTTP ${r.status}`);
  return body;
}

// ---------------- episode list ----------------
function metricOf(e, key) {
  if (key === "episode_id") {
    const n = Number(e.episode_id);
    return Number.isFinite(n) && e.episode_id !== "" ? n : e.uid;
  }
  if (key === "parse_failures") return e.parse_failures;
  const v = e.metrics ? e.metrics[key] : undefined;
  return v === undefined ? null : v;
}

function passesFilter(e) {
  const sr = e.metrics ? e.metrics.sr : null;
  switch (state.filter) {
    case "success": return e.status === "ok" && sr === 1;
    case "failure": return e.status === "ok" && sr !== 1;
    case "parse": return e.parse_failures > 0;
    case "error": return e.status === "error";
    default: return true;
  }
}

function visibleEpisodes() {
  const q = state.query.trim().toLowerCase();
  const rows = state.episodes.filter((e) => passesFilter(e) &&
    (!q || e.instruction.toLowerCase().includes(q) || e.uid.toLowerCase().includes(q)));
  const k = state.sortKey, dir = state.sortDir;
  rows.sort((a, b) => {
    const va = metricOf(a, k), vb = metricOf(b, k);
    if (va === null && vb === null) return 0;
    if (va === null) return 1; // missing values last in both directions
    if (vb === null) return -1;
    if (typeof va === "number" && typeof vb === "number") return (va - vb) * dir;
    return String(va).localeCompare(String(vb), undefined, { numeric: true }) * dir;
  });
  return rows;
}

// One row's HTML, built once per episode and cached: filtering, sorting and searching a 1000-episode run then
// only joins strings (one innerHTML assignment) instead of rebuilding DOM nodes row by row.
const rowCache = new Map();

function rowHtml(e) {
  let html = rowCache.get(e.uid);
  if (html !== undefined) return html;
  const m = e.metrics || {};
  const cls = [e.status === "error" ? "row-error" : m.sr === 1 ? "row-success" : "row-failure"];
  if (!e.has_record) cls.push("no-record");
  const err = e.status === "error" ? "error: " + (e.error || "").split("\n").pop() : null;
  html =
    `<tr data-uid="${escapeHtml(e.uid)}" class="${cls.join(" ")}" title="${escapeHtml(err || e.instruction)}">` +
    `<td><span class="dot"></span>${escapeHtml(e.episode_id || e.uid)}` +
    `<div class="instr-snippet">${escapeHtml(err || e.instruction)}</div></td>` +
    `<td>${err ? "err" : fmt(m.sr, 0)}</td><td>${fmt(m.ne)}</td><td>${fmt(m.spl)}</td>` +
    `<td>${fmt(m.ndtw)}</td><td>${fmt(m.steps)}</td>` +
    `<td class="${e.parse_failures > 0 ? "pf" : ""}">${e.parse_failures}</td></tr>`;
  rowCache.set(e.uid, html);
  return html;
}

function markSelected() {
  const openUid = state.openUid;
  document.querySelectorAll("#episodes tbody tr.selected").forEach((tr) => tr.classList.remove("selected"));
  if (!openUid) return;
  for (const tr of document.querySelectorAll("#episodes tbody tr")) {
    if (tr.dataset.uid === openUid) { tr.classList.add("selected"); break; }
  }
}

function renderList() {
  const rows = visibleEpisodes();
  document.querySelector("#episodes tbody").innerHTML = rows.map(rowHtml).join("");
  markSelected();
  $("list-count").textContent = `${rows.length} of ${state.episodes.length} episodes`;
  document.querySelectorAll("#episodes th").forEach((th) => {
    th.classList.toggle("sorted", th.dataset.key === state.sortKey);
    th.dataset.dir = th.dataset.key === state.sortKey ? (state.sortDir > 0 ? "asc" : "desc") : "";
  });
}

function renderSummary(run) {
  $("run-name").textContent = run.name;
  const s = run.summary || {};
  const keys = [["sr", "SR"], ["spl", "SPL"], ["ne", "NE"], ["ndtw", "nDTW"], ["os", "OS"], ["episodes", "episodes"], ["errors", "errors"]];
  $("summary").innerHTML = keys.filter(([k]) => s[k] !== undefined)
    .map(([k, label]) => `<span class="chip"><b>${label}</b> ${fmt(s[k], 3)}</span>`).join("");
}

// ---------------- one episode ----------------
function decisionAt(t) {
  // The decision in force at step t: the latest one made at or before t.
  let cur = null;
  for (const d of state.rec.decisions) if (d.t <= t) cur = d;
  return cur;
}

function showBanner(msg) {
  const b = $("banner");
  b.textContent = msg || "";
  b.classList.toggle("hidden", !msg);
}

async function openEpisode(uid) {
  stop();
  state.openUid = uid;
  const row = state.episodes.find((e) => e.uid === uid);
  history.replaceState(null, "", `#${encodeURIComponent(uid)}`);
  $("empty").classList.add("hidden");
  $("episode").classList.remove("hidden");
  if (row && row.status === "error") {
    state.rec = null;
    markSelected();
    $("ep-title").textContent = uid;
    $("episode").classList.add("no-data");
    showBanner(`This episode failed with an error:\n${row.error || "(no traceback recorded)"}`);
    return;
  }
  let rec;
  try {
    rec = await getJSON(`/api/episode/${encodeURIComponent(uid)}`);
  } catch (err) {
    state.rec = null;
    $("ep-title").textContent = uid;
    $("episode").classList.add("no-data");
    showBanner(String(err.message || err));
    markSelected();
    return;
  }
  $("episode").classList.remove("no-data");
  state.rec = rec;
  state.frameCache.clear();
  showBanner(rec.missing && rec.missing.length
    ? `${rec.missing.length} file(s) named in record.json are missing (e.g. ${rec.missing[0]}); placeholders are shown.`
    : "");
  $("ep-title").textContent = `${rec.uid}`;
  $("instruction").textContent = rec.instruction || "(no instruction recorded)";
  $("ep-metrics").innerHTML = Object.entries(rec.metrics || {})
    .map(([k, v]) => `<span class="chip ${k === "sr" ? (v === 1 ? "ok" : "bad") : ""}"><b>${k}</b> ${fmt(v)}</span>`).join("");
  const slider = $("slider");
  slider.max = rec.steps.length - 1;
  renderTicks();
  renderDecisionList();
  // Map: size the canvas to the map's aspect ratio, then draw once the image arrives (or fails).
  const map = rec.map;
  const canvas = $("map");
  if (map) {
    const w = map.width || 200, h = map.height || 200;
    const sc = Draw.fitScale(w, h, 420, 340);
    canvas.width = Math.round(w * sc);
    canvas.height = Math.round(h * sc);
    map.width = w; map.height = h;
    const img = new Image();
    img.onload = () => { if (!map.width) map.width = img.naturalWidth; render(); };
    img.onerror = () => render();
    img.src = rec.base + map.image;
    state.mapImg = img;
  } else {
    state.mapImg = null;
  }
  markSelected();
  seek(0);
}

function renderTicks() {
  const n = Math.max(state.rec.steps.length - 1, 1);
  $("ticks").innerHTML = state.rec.decisions.map((d) =>
    `<span class="tick ${hadFailure(d) ? "fail" : ""}" style="left:${(100 * d.t) / n}%" title="decision ${d.k} at t=${d.t}"></span>`).join("");
}

// The progress monitor's estimate (a model trained with --progress-loss-weight), and why the agent stopped when the
// monitor made it stop (eval --monitor-stop).
function progressTag(x) {
  if (typeof x.progress !== "number") return "";
  const stopped = x.reason && x.reason.includes("progress monitor");
  return ` <span class="tag progress${stopped ? " monitor-stop" : ""}" title="progress monitor: the share of the route ` +
    `the model thinks is done${stopped ? "; " + escapeHtml(x.reason) : ""}">progress ${x.progress.toFixed(2)}` +
    `${stopped ? " · monitor stop" : ""}</span>`;
}

// An unparsable answer happened at this decision: either it is the failed decision itself (parse_ok false,
// the doc's form) or the agent asked again and kept the unparsable first answer (first_raw_text).
function hadFailure(d) {
  return !d.parse_ok || !!d.first_raw_text;
}

// "forward 75 cm", "left 30°", "stop"; an unparsable answer says so, with the fallback the agent took if any.
function actionLabel(d) {
  let label;
  if (!d.action) label = d.low_level && d.low_level.length ? `low-level ${d.low_level.join(",")}` : "";
  else {
    const unit = d.action === "forward" ? " cm" : "°";
    const showAmount = d.action !== "stop" && d.amount !== null && d.amount !== undefined;
    label = `${d.action}${showAmount ? " " + d.amount + unit : ""}`;
  }
  if (!d.parse_ok) return label ? `unparsable → fallback ${label}` : "unparsable";
  return label || "–";
}

function renderDecisionList() {
  $("decisions").innerHTML = state.rec.decisions.map((d) =>
    `<li data-k="${d.k}" data-t="${d.t}" class="${hadFailure(d) ? "parse-fail" : ""}">` +
    `<span class="dk">#${d.k}</span> <span class="dt">t=${d.t}</span> <span class="da">${escapeHtml(actionLabel(d))}</span>` +
    `${d.retried ? ' <span class="tag">retry</span>' : ""}</li>`).join("");
}

function frameUrl(t) {
  const s = state.rec.steps[t];
  return s && s.frame ? state.rec.base + s.frame : null;
}

function setFrame(img, missingEl, t) {
  const url = t >= 0 ? frameUrl(t) : null;
  const missing = !url || (state.rec.missing || []).includes(state.rec.steps[t].frame);
  if (missingEl) {
    missingEl.classList.toggle("hidden", !missing);
    missingEl.textContent = url ? `frame missing: ${state.rec.steps[t].frame}` : "no frame recorded";
  }
  img.classList.toggle("hidden", missing);
  if (!missing && img.getAttribute("src") !== url) img.src = url;
  if (missing) img.removeAttribute("src");
}

// Fetch the next few frames ahead of the timeline so that playback at high speed does not stall on loads.
function prefetch(t) {
  for (let k = 1; k <= 4; k++) {
    const s = state.rec.steps[t + k];
    if (!s || !s.frame || (state.rec.missing || []).includes(s.frame)) continue;
    const url = state.rec.base + s.frame;
    if (state.frameCache.has(url)) continue;
    if (state.frameCache.size > 64) state.frameCache.delete(state.frameCache.keys().next().value);
    const img = new Image();
    img.src = url;
    state.frameCache.set(url, img);
  }
}

function render() {
  const rec = state.rec;
  if (!rec) return;
  const t = state.t;
  const step = rec.steps[t];
  setFrame($("frame"), $("frame-missing"), t);
  prefetch(t);
  $("frame-caption").textContent =
    `t=${t} · ${step.action === null ? "start pose" : "after " + (["STOP", "FORWARD", "LEFT", "RIGHT"][step.action] ?? step.action)}` +
    `${step.collided ? " · collided" : ""} · ${fmt(step.distance_to_goal)} m to goal`;
  $("slider").value = t;
  $("step-label").textContent = `step ${t} / ${rec.steps.length - 1}`;

  // Map overlay.
  if (rec.map) {
    const marker = Draw.drawMap($("map"), state.mapImg, rec.map, {
      path: rec.steps.slice(0, t + 1).map((s) => s.position),
      reference: rec.reference_path,
      goal: rec.goal,
      radius: rec.success_distance,
      pose: step,
      collided: step.collided,
    });
    $("map").dataset.marker = marker ? marker.join(",") : "";
  }

  // Model input and answer at the decision in force.
  const d = decisionAt(t);
  $("dec-label").textContent = d ? `#${d.k} (t=${d.t})` : "–";
  const seen = $("seen");
  if (!d || !d.frames_seen || !d.frames_seen.length) {
    seen.innerHTML = `<div class="muted small">${d ? "no model input: this agent decides without frames (baseline)" : "no model decision yet"}</div>`;
  } else {
    seen.innerHTML = d.frames_seen.map((fi, i) => {
      const cur = i === d.frames_seen.length - 1 ? " current" : "";
      if (fi < 0) return `<div class="thumb pad${cur}"><span>pad</span></div>`;
      const u = frameUrl(fi);
      const gone = (rec.missing || []).includes((rec.steps[fi] || {}).frame);
      return gone || !u ? `<div class="thumb missing${cur}"><span>t=${fi}<br>missing</span></div>`
        : `<div class="thumb${cur}"><img src="${u}" alt="t=${fi}"><span>t=${fi}</span></div>`;
    }).join("");
  }
  const same = d ? rec.decisions.filter((x) => x.t === d.t) : [];
  $("answers").innerHTML = same.map((x) =>
    (x.first_raw_text ? `<div class="answer parse-fail first"><div class="raw">“${escapeHtml(x.first_raw_text)}”</div>` +
      `<div class="parsed">→ <b>parse failure</b>${x.reason ? " · " + escapeHtml(x.reason) : ""} · asked again</div></div>` : "") +
    `<div class="answer ${x.parse_ok ? "ok" : "parse-fail"}">` +
    `<div class="raw">${x.raw_text === null || x.raw_text === undefined ? '<span class="muted">(no model text: baseline agent)</span>' : "“" + escapeHtml(x.raw_text) + "”"}</div>` +
    `<div class="parsed">→ ${x.parse_ok ? "" : "<b>parse failure</b> · "}${escapeHtml(actionLabel(x))}` +
    `${x.low_level && x.low_level.length ? ` <span class="muted">[${x.low_level.join(", ")}]</span>` : ""}` +
    `${x.retried ? ' <span class="tag">retry</span>' : ""}${progressTag(x)}</div></div>`).join("");

  // Instruction, with the decision list marking the current decision.
  document.querySelectorAll("#decisions li").forEach((li) => {
    const on = d && Number(li.dataset.k) === d.k;
    li.classList.toggle("current", !!on);
    if (on) { // scroll only the decision list, never the page (scrollIntoView would move the whole panel)
      const ol = li.parentElement;
      if (li.offsetTop < ol.scrollTop || li.offsetTop + li.offsetHeight > ol.scrollTop + ol.clientHeight) {
        ol.scrollTop = li.offsetTop - ol.clientHeight / 2;
      }
    }
  });
  $("instruction").classList.toggle("done", t === rec.steps.length - 1);
  const mark = $("instr-decision");
  mark.textContent = d ? `· decision #${d.k} of ${rec.decisions.length} (t=${d.t}): ${actionLabel(d)}` : "";
  mark.classList.toggle("fail", !!(d && hadFailure(d)));

  Draw.distancePlot($("plot"), rec.steps.map((s) => s.distance_to_goal ?? null), t, rec.success_distance);
}

function seek(t) {
  if (!state.rec) return;
  state.t = Math.max(0, Math.min(state.rec.steps.length - 1, t | 0));
  render();
}

function stop() {
  if (state.playing) clearInterval(state.playing);
  state.playing = null;
  $("btn-play").textContent = "▶";
}

function play() {
  if (!state.rec) return;
  if (state.playing) return stop();
  if (state.t >= state.rec.steps.length - 1) seek(0);
  const fps = Number($("speed").value) || 4;
  $("btn-play").textContent = "❚❚";
  state.playing = setInterval(() => {
    if (state.t >= state.rec.steps.length - 1) return stop();
    seek(state.t + 1);
  }, 1000 / fps);
}

// ---------------- wiring ----------------
function wire() {
  document.querySelector("#episodes thead").addEventListener("click", (ev) => {
    const th = ev.target.closest("th");
    if (!th) return;
    const k = th.dataset.key;
    if (state.sortKey === k) state.sortDir = -state.sortDir;
    else { state.sortKey = k; state.sortDir = k === "episode_id" || k === "ne" ? 1 : -1; }
    renderList();
  });
  document.querySelector("#episodes tbody").addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr");
    if (tr) openEpisode(tr.dataset.uid);
  });
  $("filters").addEventListener("click", (ev) => {
    const b = ev.target.closest("button");
    if (!b) return;
    state.filter = b.dataset.filter;
    $("filters").querySelectorAll("button").forEach((x) => x.classList.toggle("active", x === b));
    renderList();
  });
  $("search").addEventListener("input", (ev) => { state.query = ev.target.value; renderList(); });
  $("slider").addEventListener("input", (ev) => { stop(); seek(Number(ev.target.value)); });
  $("btn-first").onclick = () => { stop(); seek(0); };
  $("btn-prev").onclick = () => { stop(); seek(state.t - 1); };
  $("btn-next").onclick = () => { stop(); seek(state.t + 1); };
  $("btn-last").onclick = () => { stop(); seek(1e9); };
  $("btn-play").onclick = play;
  $("speed").onchange = () => { if (state.playing) { stop(); play(); } };
  $("decisions").addEventListener("click", (ev) => {
    const li = ev.target.closest("li");
    if (li) { stop(); seek(Number(li.dataset.t)); }
  });
  window.addEventListener("resize", () => render()); // the plot is drawn for the current width
  document.addEventListener("keydown", (ev) => {
    if (ev.target.tagName === "INPUT" && ev.target.type !== "range") return;
    if (ev.target.tagName === "SELECT") return;
    const keys = { ArrowRight: () => seek(state.t + 1), ArrowLeft: () => seek(state.t - 1),
      Home: () => seek(0), End: () => seek(1e9) };
    if (keys[ev.key]) { ev.preventDefault(); stop(); keys[ev.key](); }
    else if (ev.key === " ") { ev.preventDefault(); play(); }
  });
}

async function main() {
  wire();
  try {
    const [run, eps] = await Promise.all([getJSON("/api/run"), getJSON("/api/episodes")]);
    renderSummary(run);
    state.episodes = eps.episodes;
    renderList();
    if (run.warnings && run.warnings.length) showBanner(run.warnings.join("\n"));
    const want = decodeURIComponent(location.hash.slice(1));
    if (want && state.episodes.some((e) => e.uid === want)) openEpisode(want);
  } catch (err) {
    $("list-count").textContent = `could not load the run: ${err.message || err}`;
  }
}

main();
