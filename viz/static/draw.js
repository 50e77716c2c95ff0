// Drawing helpers shared by the run viewer (app.js) and live mode (live.js): the top-down map overlay and the
// distance-to-goal plot. Pure functions of their arguments; no fetches, no global state.
"use strict";

const Draw = (() => {
  // World (x, z) -> map pixel (col, row), as docs/rollout_format.md defines it.
  function worldToPixel(map, x, z) {
    return [(x - map.origin[0]) / map.resolution, (z - map.origin[1]) / map.resolution];
  }

  // The agent looks along its local -z axis; rotate (0, 0, -1) by quaternion [x, y, z, w] and keep (x, z).
  function headingXZ(q) {
    if (!q || q.length !== 4) return [0, -1];
    const [x, y, z, w] = q;
    const fx = -2 * (x * z + w * y);
    const fz = -(1 - 2 * (x * x + y * y));
    const n = Math.hypot(fx, fz) || 1;
    return [fx / n, fz / n];
  }

  // Canvas size for a map: fit (maxW, maxH) keeping the aspect ratio; small maps are scaled up.
  function fitScale(mapW, mapH, maxW, maxH) {
    return Math.max(0.1, Math.min(maxW / mapW, maxH / mapH));
  }

  function polyline(ctx, map, pts, scale, style, width, dash) {
    if (!pts || pts.length === 0) return;
    ctx.save();
    ctx.strokeStyle = style;
    ctx.lineWidth = width;
    ctx.lineJoin = "round";
    ctx.lineCap = "round";
    ctx.setLineDash(dash || []);
    ctx.beginPath();
    pts.forEach((p, i) => {
      const [c, r] = worldToPixel(map, p[0], p[2]);
      if (i === 0) ctx.moveTo(c * scale, r * scale);
      else ctx.lineTo(c * scale, r * scale);
    });
    ctx.stroke();
    ctx.restore();
  }

  // Draw the map image (or a grey placeholder), the reference path, the goal radius, the path so far and
  // the current pose. Returns the marker's canvas pixel position so callers (and tests) can read it back.
  function drawMap(canvas, img, map, o) {
    const ctx = canvas.getContext("2d");
    const scale = canvas.width / map.width;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (img && img.complete && img.naturalWidth > 0) {
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    } else {
      ctx.fillStyle = "#3a3d44";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      ctx.fillStyle = "#e6e6e6";
      ctx.font = "13px sans-serif";
      ctx.fillText(o.placeholder || "top-down map missing", 10, 20);
    }
    if (o.goal) {
      const [gc, gr] = worldToPixel(map, o.goal[0], o.goal[2]);
      const rad = (o.radius || 3) / map.resolution * scale;
      ctx.save();
      ctx.fillStyle = "rgba(46, 160, 67, 0.16)";
      ctx.strokeStyle = "rgba(46, 160, 67, 0.9)";
      ctx.setLineDash([5, 4]);
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.arc(gc * scale, gr * scale, rad, 0, 2 * Math.PI);
      ctx.fill();
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = "#2ea043";
      ctx.beginPath();
      ctx.arc(gc * scale, gr * scale, 4, 0, 2 * Math.PI);
      ctx.fill();
      ctx.restore();
    }
    polyline(ctx, map, o.reference, scale, "rgba(30, 100, 220, 0.85)", 2.5, [6, 4]);
    polyline(ctx, map, o.path, scale, "rgba(230, 80, 20, 0.95)", 3, []);
    let marker = null;
    if (o.pose && o.pose.position) {
      const p = o.pose.position;
      const [c, r] = worldToPixel(map, p[0], p[2]);
      const [hx, hz] = headingXZ(o.pose.rotation);
      const x = c * scale, y = r * scale, s = 9;
      ctx.save();
      ctx.translate(x, y);
      ctx.rotate(Math.atan2(hz, hx));
      ctx.fillStyle = o.collided ? "#d1242f" : "#ffb000";
      ctx.strokeStyle = "#1b1b1b";
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.moveTo(s * 1.4, 0);
      ctx.lineTo(-s * 0.8, s * 0.8);
      ctx.lineTo(-s * 0.4, 0);
      ctx.lineTo(-s * 0.8, -s * 0.8);
      ctx.closePath();
      ctx.fill();
      ctx.stroke();
      ctx.restore();
      marker = [Math.round(x), Math.round(y)];
    }
    return marker;
  }

  // Distance-to-goal over time as inline SVG: the line, the success radius, and the current step marked.
  function distancePlot(svg, values, t, radius) {
    const W = svg.clientWidth || 360, H = svg.clientHeight || 140;
    const pad = { l: 34, r: 8, t: 8, b: 20 };
    const finite = values.filter((v) => v !== null && Number.isFinite(v));
    const ymax = Math.max(radius || 0, ...finite, 1) * 1.08;
    const n = Math.max(values.length - 1, 1);
    const X = (i) => pad.l + (i / n) * (W - pad.l - pad.r);
    const Y = (v) => pad.t + (1 - v / ymax) * (H - pad.t - pad.b);
    const parts = [];
    const ticks = 4;
    for (let k = 0; k <= ticks; k++) {
      const v = (ymax / ticks) * k;
      parts.push(`<line class="grid" x1="${pad.l}" x2="${W - pad.r}" y1="${Y(v)}" y2="${Y(v)}"/>`);
      parts.push(`<text class="axis" x="${pad.l - 4}" y="${Y(v) + 4}" text-anchor="end">${v.toFixed(1)}</text>`);
    }
    parts.push(`<text class="axis" x="${W - pad.r}" y="${H - 4}" text-anchor="end">step ${values.length - 1}</text>`);
    parts.push(`<text class="axis" x="${pad.l}" y="${H - 4}">0</text>`);
    if (radius) {
      parts.push(`<line class="radius" x1="${pad.l}" x2="${W - pad.r}" y1="${Y(radius)}" y2="${Y(radius)}"/>`);
    }
    let d = "";
    values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) return;
      d += `${d ? "L" : "M"}${X(i).toFixed(1)},${Y(v).toFixed(1)}`;
    });
    parts.push(`<path class="dist" d="${d}"/>`);
    if (t !== null && t !== undefined && values.length) {
      const v = values[Math.min(t, values.length - 1)];
      parts.push(`<line class="now" x1="${X(t)}" x2="${X(t)}" y1="${pad.t}" y2="${H - pad.b}"/>`);
      if (v !== null && Number.isFinite(v)) {
        parts.push(`<circle class="now-dot" cx="${X(t)}" cy="${Y(v)}" r="4"/>`);
        parts.push(`<text class="now-label" x="${Math.min(X(t) + 6, W - 60)}" y="${pad.t + 12}">${v.toFixed(2)} m</text>`);
      }
    }
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.innerHTML = parts.join("");
  }

  function fmt(v, digits = 2) {
    if (v === null || v === undefined) return "–";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(digits);
    return String(v);
  }

  function escapeHtml(s) {
    return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }

  return { worldToPixel, headingXZ, fitScale, drawMap, distancePlot, fmt, escapeHtml };
})();
