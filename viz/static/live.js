// Live mode: the server holds one env + agent; this page steps it (step / run / reset) or drives it by keyboard
// in manual mode, and redraws frame, map, answers and the distance plot from each returned state.
"use strict";

const live = { state: null, running: false, busy: false, mapImg: null, mapKey: null };
window.live = live; // for debugging and browser tests

const $ = (id) => document.getElementById(id);
const { fmt, escapeHtml } = Draw;
const KEY_ACTIONS = { w: "forward", arrowup: "forward", a: "left", arrowleft: "left", d: "right", arrowright: "right", s: "stop" };

async function call(method, url, body) {
  const r = await fetch(url, { method, headers: { "Content-Type": "application/json" }, body: body ? JSON.stringify(body) : undefined });
  let data = null;
  try { data = await r.json(); } catch (e) { data = { error: `bad response from ${url}` }; }
  if (!r.ok) throw new Error(data && data.error ? data.error : `${url}: HTTP ${r.status}`);
  return data;
}

function banner(msg) {
  $("banner").textContent = msg || "";
  $("banner").classList.toggle("hidden", !msg);
}

function loadMap(s) {
  if (!s.map) return;
  const canvas = $("map");
  const sc = Draw.fitScale(s.map.width, s.map.height, 420, 340);
  canvas.width = Math.round(s.map.width * sc);
  canvas.height = Math.round(s.map.height * sc);
  if (s.has_map_image && live.mapKey !== s.uid) {
    live.mapKey = s.uid;
    const img = new Image();
    img.onload = () => render();
    img.src = `/api/live/topdown.png?uid=${encodeURIComponent(s.uid)}`;
    live.mapImg = img;
  } else if (!s.has_map_image) {
    live.mapImg = null;
  }
}

function actionLabel(d) {
  if (!d.action) return "–";
  const unit = d.action === "forward" ? " cm" : d.action === "stop" ? "" : "°";
  return `${d.action}${d.action !== "stop" && d.amount ? " " + d.amount + unit : ""}`;
}

function render() {
  const s = live.state;
  if (!s || !s.started) return;
  const step = s.steps[s.steps.length - 1];
  $("frame").src = `/api/live/frame.jpg?v=${s.frame_version}`;
  $("frame").dataset.version = s.frame_version;
  $("instruction").textContent = s.instruction;
  $("run-name").textContent = s.uid || "";
  $("summary").innerHTML = [`<span class="chip"><b>agent</b> ${escapeHtml(s.agent || "manual only")}</span>`,
    `<span class="chip"><b>decisions</b> ${s.n_decisions}</span>`,
    `<span class="chip"><b>parse ✗</b> ${s.parse_failures}</span>`].join("");
  $("frame-caption").textContent = `t=${s.t} · ${step.action === null ? "start" : ["STOP", "FORWARD", "LEFT", "RIGHT"][step.action]}` +
    `${step.source === "manual" ? " (manual)" : ""}${step.collided ? " · collided" : ""} · ${fmt(step.distance_to_goal)} m to goal`;
  $("status").textContent = s.done ? `episode over: ${s.outcome}` : `step ${s.t}`;
  $("status").className = "live-status " + (s.done ? (s.outcome === "success" ? "ok" : "bad") : "");
  if (s.map) {
    const marker = Draw.drawMap($("map"), live.mapImg, s.map, {
      path: s.steps.map((x) => x.position), reference: s.reference_path, goal: s.goal,
      radius: s.success_distance, pose: step, collided: step.collided,
      placeholder: s.has_map_image ? "loading map…" : "no map image for this scene: path only",
    });
    $("map").dataset.marker = marker ? marker.join(",") : "";
  }
  $("answers").innerHTML = s.decisions.slice(-4).reverse().map((d) =>
    `<div class="answer ${d.parse_ok === false ? "parse-fail" : "ok"}">` +
    `${d.first_raw_text ? `<div class="raw first">first answer (unparsable): “${escapeHtml(d.first_raw_text)}”</div>` : ""}` +
    `<div class="raw">#${d.k} t=${d.t}: ${d.raw_text === null || d.raw_text === undefined ? '<span class="muted">(no model text)</span>' : "“" + escapeHtml(d.raw_text) + "”"}</div>` +
    `<div class="parsed">→ ${d.parse_ok === false ? "<b>parse failure</b> · fallback " : ""}${escapeHtml(actionLabel(d))}` +
    `${typeof d.progress === "number" ? ` <span class="tag progress">progress ${d.progress.toFixed(2)}</span>` : ""}</div></div>`).join("") ||
    '<div class="muted small">no decisions yet</div>';
  Draw.distancePlot($("plot"), s.steps.map((x) => x.distance_to_goal), s.t, s.success_distance);
  $("btn-step").disabled = s.done || !s.agent;
  $("btn-run").disabled = (s.done && !live.running) || !s.agent;
}

async function apply(promise) {
  live.busy = true;
  try {
    const s = await promise;
    const first = !live.state || live.state.uid !== s.uid || s.t === 0;
    live.state = s;
    if (first) loadMap(s);
    banner("");
    render();
    return s;
  } catch (err) {
    banner(String(err.message || err));
    throw err;
  } finally {
    live.busy = false;
  }
}

async function runLoop() {
  if (live.running) { live.running = false; $("btn-run").textContent = "Run"; return; }
  live.running = true;
  $("btn-run").textContent = "Pause";
  try {
    while (live.running && live.state && !live.state.done) {
      await apply(call("POST", "/api/live/step", { n: 1 }));
    }
  } catch (e) { /* shown in the banner */ }
  live.running = false;
  $("btn-run").textContent = "Run";
  render();
}

function wire() {
  $("btn-reset").onclick = () => { live.running = false; apply(call("POST", "/api/live/reset")); };
  $("btn-step").onclick = () => { if (!live.busy) apply(call("POST", "/api/live/step", { n: 1 })); };
  $("btn-run").onclick = runLoop;
  document.addEventListener("keydown", (ev) => {
    if (!$("manual").checked || ev.target.tagName === "INPUT" && ev.target.type !== "checkbox") return;
    const a = KEY_ACTIONS[ev.key.toLowerCase()];
    if (!a) return;
    ev.preventDefault();
    if (live.busy || !live.state || live.state.done) return;
    apply(call("POST", "/api/live/action", { action: a })).catch(() => {});
  });
}

async function main() {
  wire();
  try {
    const s = await call("GET", "/api/live/state");
    if (!s.started) await apply(call("POST", "/api/live/reset"));
    else { live.state = s; loadMap(s); render(); }
  } catch (err) {
    banner(String(err.message || err));
  }
}

main();
