// rivulet status page: polls the JSON API every second and updates the page in place.
//
// Two views in one page, chosen by the URL's hash: the overview (`#/`, the default) and a
// batch's page (`#/batch/<batch time in ms>`), which a batch row links to and which can be
// opened or typed directly.
//
// Each refresh fetches `/statistics` and `/receivers` (small); `/batches` only when the
// statistics say a batch was added, finished or dropped, or while a batch is active (its
// status may change); `/graph` once. Table rows are kept by key and only their changed cells
// are rewritten, so a refresh with one new batch adds one row, not the whole table (the body's
// `data-nodes-added` says how many elements the last refresh added).
"use strict";
const API = "/api/v1/streaming";
const CHART_HEIGHT = 180;
const FONT = "12px system-ui, sans-serif";

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
const bytes = (n) => {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
};
// A number as the API gave it: whole numbers as they are, fractions (sub-millisecond
// durations, rates) with up to three decimals.
const num = (v) => {
  if (v === null || v === undefined) return "–";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(3).replace(/\.?0+$/, "");
};

// Local time, with the zone named once on the page. Batch times are milliseconds since the
// Unix epoch under the system clock; under a manual clock (tests) they are small numbers,
// shown as milliseconds.
const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "local";
function utcOffset() {
  const m = -new Date().getTimezoneOffset();
  const pad = (n) => String(Math.floor(Math.abs(n))).padStart(2, "0");
  return "UTC" + (m < 0 ? "-" : "+") + pad(m / 60) + ":" + pad(m % 60);
}
const isEpoch = (ms) => ms > 1e11;
const pad2 = (n) => String(n).padStart(2, "0");
function localTime(ms, withMs) {
  if (!isEpoch(ms)) return ms + " ms";
  const d = new Date(ms);
  const s = pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds());
  return withMs ? s + "." + String(d.getMilliseconds()).padStart(3, "0") : s;
}

async function getJson(path) {
  const r = await fetch(API + path, { cache: "no-store" });
  if (!r.ok) {
    let message = "HTTP " + r.status;
    try { message = (await r.json()).error || message; } catch (_) { /* not JSON */ }
    const e = new Error(path + ": " + message);
    e.status = r.status;
    throw e;
  }
  return r.json();
}

// ---- Charts -------------------------------------------------------------------------------

const measure = document.createElement("canvas").getContext("2d");
measure.font = FONT;
const textWidth = (s) => measure.measureText(s).width;
// The minimum distance between two x ticks: the widest label this axis can print, plus a gap,
// so labels never overlap whatever the width (uPlot drops ticks to keep this spacing).
const TIME_SPACE = Math.ceil(textWidth("00:00:00.000")) + 24;

function timeLabels(u, splits, axisIdx, foundSpace, foundIncr) {
  return splits.map((v) => {
    const ms = Math.round(v * 1000);
    if (!isEpoch(ms)) return ms + " ms";
    return localTime(ms, foundIncr < 1);
  });
}

const plots = [];
const resizer = new ResizeObserver((entries) => {
  for (const e of entries) {
    const u = e.target._uplot;
    const width = Math.floor(e.contentRect.width);
    if (u && width > 0 && width !== u.width) u.setSize({ width, height: CHART_HEIGHT });
  }
});

// Checks after each draw that no two x-axis labels overlap, from where uPlot put them and how
// wide they are; the result is in the chart's `data-x-labels` and `data-x-label-gap` (the
// smallest gap between neighbouring labels, in CSS pixels; negative would be an overlap).
function recordLabelGap(u) {
  const axis = u.axes[0];
  const splits = axis._splits || [];
  const values = axis._values || [];
  const boxes = [];
  splits.forEach((v, i) => {
    const label = values[i];
    if (label === null || label === undefined || label === "") return;
    const x = u.valToPos(v, "x");
    const w = textWidth(String(label));
    boxes.push([x - w / 2, x + w / 2]);
  });
  boxes.sort((a, b) => a[0] - b[0]);
  let gap = Infinity;
  for (let i = 1; i < boxes.length; i++) gap = Math.min(gap, boxes[i][0] - boxes[i - 1][1]);
  const box = u.root.parentElement;
  // Labels that would stick out of the chart (and be cut off).
  const left = u.bbox.left / uPlot.pxRatio;
  const clipped = boxes.filter(([a, b]) => left + a < 0 || left + b > u.width).length;
  box.setAttribute("data-x-labels", boxes.length);
  box.setAttribute("data-x-label-gap", gap === Infinity ? "none" : gap.toFixed(1));
  box.setAttribute("data-x-labels-clipped", clipped);
  box.setAttribute("data-width", u.width);
}

function makePlot(id, opts, data) {
  const box = document.getElementById(id);
  const width = Math.max(200, Math.floor(box.clientWidth) || 480);
  opts.width = width;
  opts.height = CHART_HEIGHT;
  opts.hooks = { draw: [recordLabelGap] };
  const u = new uPlot(opts, data, box);
  box._uplot = u;
  resizer.observe(box);
  plots.push(u);
  return u;
}

// y from 0 (rates and delays are never negative), a little head room above the largest.
const fromZero = (u, min, max) => [0, max > 0 ? max * 1.08 : 1];

const timelines = {};
function timeline(id, label, withInterval, epoch) {
  if (timelines[id]) return timelines[id];
  const series = [{ label: "time", value: (u, v) => (v === null ? "–" : timeLabels(u, [v], 0, 0, 0.001)[0]) },
    { label, stroke: "#4a6fb5", width: 1.5, points: { show: true, size: 4 }, value: (u, v) => num(v) }];
  if (withInterval) series.push({ label: "batch interval", stroke: "#c33", dash: [6, 4], width: 1, points: { show: false } });
  const opts = {
    series,
    // Room on the right for half the last label, which is centred on its tick.
    padding: [10, Math.ceil(TIME_SPACE / 2), 0, 0],
    scales: { x: { time: epoch }, y: { range: fromZero } },
    legend: { show: true },
    axes: [
      { font: FONT, space: TIME_SPACE, values: epoch ? timeLabels : (u, vals) => vals.map((v) => Math.round(v * 1000) + " ms") },
      { font: FONT, size: 60, values: (u, vals) => vals.map(num) },
    ],
  };
  timelines[id] = makePlot(id, opts, withInterval ? [[], [], []] : [[], []]);
  return timelines[id];
}

// 1, 2, 2.5 or 5 times a power of ten, at least `x`.
function niceCeil(x) {
  if (!(x > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(x)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= x * (1 - 1e-9)) return m * p;
  return 10 * p;
}

// Bins `values` from 0 in about √n bins (5 to 30) of a round width: [bin centres, counts,
// the last bin's end].
function histogram(values) {
  const v = values.filter((x) => x !== null && x !== undefined && Number.isFinite(x));
  const max = v.length ? Math.max(...v) : 0;
  const target = Math.max(5, Math.min(30, Math.ceil(Math.sqrt(v.length))));
  const width = niceCeil(max / target);
  const bins = Math.max(1, Math.floor(max / width) + 1);
  const counts = new Array(bins).fill(0);
  for (const x of v) counts[Math.min(bins - 1, Math.floor(x / width))]++;
  return [counts.map((_, i) => (i + 0.5) * width), counts, width * bins];
}

// A histogram's x ticks: uPlot's round steps from 0, or both ends when one step is wider
// than the whole axis (a narrow chart).
function histogramSplits(u, axisIdx, min, max, incr) {
  if (!(incr > 0) || incr >= max) return [0, max];
  const out = [];
  for (let x = 0; x <= max * (1 + 1e-9); x += incr) out.push(x);
  return out;
}

const histograms = {};
function drawHistogram(id, label, values) {
  const [centres, counts, top] = histogram(values);
  let u = histograms[id];
  if (!u) {
    const opts = {
      series: [{ label, value: (u, v) => (v === null ? "–" : num(v)) },
        { label: "batches", fill: "rgba(74,111,181,0.5)", stroke: "#4a6fb5", width: 1,
          paths: uPlot.paths.bars({ size: [0.95, Infinity] }), points: { show: false } }],
      padding: [10, Math.ceil(textWidth("0000.000") / 2) + 4, 0, 0],
      scales: { x: { time: false, range: (u) => [0, u._top || 1] }, y: { range: fromZero } },
      legend: { show: false },
      axes: [
        { font: FONT, space: Math.ceil(textWidth("0000.000")) + 20, splits: histogramSplits, values: (u, vals) => vals.map(num) },
        { font: FONT, size: 50, values: (u, vals) => vals.map(num) },
      ],
    };
    u = histograms[id] = makePlot(id, opts, [[], []]);
  }
  u._top = top;
  u.setData([centres, counts]);
}

function drawCharts(done, batchInterval) {
  // Oldest first, as the time axis runs.
  const b = done.slice().reverse();
  const epoch = b.length === 0 || isEpoch(b[0].batchTime);
  const x = b.map((x) => x.batchTime / 1000);
  const line = b.map(() => batchInterval);
  const series = [
    ["input-rate", "records/s", false, (x) => x.inputRate],
    ["scheduling-delay", "scheduling delay (ms)", false, (x) => x.schedulingDelayMs ?? x.schedulingDelay],
    ["processing-time", "processing time (ms)", true, (x) => x.processingTimeMs ?? x.processingTime],
    ["total-delay", "total delay (ms)", true, (x) => x.totalDelayMs ?? x.totalDelay],
  ];
  for (const [id, label, withInterval, get] of series) {
    const ys = b.map(get);
    const data = withInterval ? [x, ys, line] : [x, ys];
    timeline("chart-" + id, label, withInterval, epoch).setData(data);
    drawHistogram("hist-" + id, label, ys);
  }
}

// ---- Tables, updated in place ---------------------------------------------------------------

// Makes `tbody` hold one row per item of `items`, in order, keyed by `key(item)`: existing rows
// are kept (and moved only when out of place), rows of items gone are removed, new ones made
// by `make(item)`. `update(row, item)` then brings each row up to date.
function syncRows(tbody, items, key, make, update) {
  if (!tbody._rows) { tbody.replaceChildren(); tbody._rows = new Map(); }
  const rows = tbody._rows;
  const keep = new Set(items.map(key));
  for (const [k, tr] of rows) if (!keep.has(k)) { tr.remove(); rows.delete(k); }
  let prev = null;
  for (const item of items) {
    const k = key(item);
    let tr = rows.get(k);
    if (!tr) { tr = make(item); rows.set(k, tr); }
    const at = prev ? prev.nextSibling : tbody.firstChild;
    if (at !== tr) tbody.insertBefore(tr, at);
    update(tr, item);
    prev = tr;
  }
}
// Sets a cell's text, or an attribute, only when it changed.
function setText(node, text) {
  const s = String(text);
  if (node.textContent !== s) node.textContent = s;
}
function setAttr(node, name, value) {
  const s = String(value);
  if (node.getAttribute(name) !== s) node.setAttribute(name, s);
}
function cells(tr, n, numeric) {
  if (!tr._cells) {
    tr._cells = [];
    for (let i = 0; i < n; i++) {
      const td = el("td", numeric && numeric.includes(i) ? { class: "num" } : {});
      tr.append(td);
      tr._cells.push(td);
    }
  }
  return tr._cells;
}

const batchHref = (t) => "#/batch/" + t;
function makeBatchRow(b) {
  const tr = el("tr", { class: "batch" });
  const c = cells(tr, 8, [1, 2, 3, 4]);
  const a = el("a", { href: batchHref(b.batchTime) });
  c[0].append(a);
  tr._link = a;
  tr.addEventListener("click", (e) => {
    if (e.target.tagName !== "A") location.hash = batchHref(b.batchTime);
  });
  return tr;
}
function updateBatchRow(tr, b) {
  setAttr(tr, "class", "batch" + (b.status === "FAILED" ? " failed" : ""));
  setAttr(tr, "data-batch-time", b.batchTime);
  setAttr(tr, "data-records", b.inputSize);
  setAttr(tr, "data-status", b.status);
  const c = tr._cells;
  setText(tr._link, localTime(b.batchTime, true));
  setAttr(tr._link, "title", "batch " + b.batchTime + " (ms since the Unix epoch): its page");
  setText(c[1], b.inputSize);
  setText(c[2], num(b.schedulingDelayMs ?? b.schedulingDelay));
  setText(c[3], num(b.processingTimeMs ?? b.processingTime));
  setText(c[4], num(b.totalDelayMs ?? b.totalDelay));
  setText(c[5], b.numFailedOutputOps + "/" + b.numTotalOutputOps);
  setAttr(c[6], "class", "status-" + b.status);
  setText(c[6], b.status);
  setAttr(c[7], "class", "error");
  setText(c[7], b.failures.map((f) => f.outputOp + ": " + f.message).join("; "));
}

const isActive = (b) => b.status === "QUEUED" || b.status === "PROCESSING";
function drawBatches(batches) {
  const active = batches.filter(isActive);
  const done = batches.filter((b) => !isActive(b));
  syncRows(document.querySelector("#active-batches tbody"), active, (b) => b.batchTime, makeBatchRow, updateBatchRow);
  syncRows(document.querySelector("#batches tbody"), done, (b) => b.batchTime, makeBatchRow, updateBatchRow);
  setText(document.getElementById("active-count"), active.length);
  setText(document.getElementById("completed-count"), done.length);
  return done.filter((b) => b.processingTime !== null);
}

// Per-receiver rate now: records counted between two polls over the time between them.
const lastCount = new Map();
// The average rate of a stopped receiver: the API's divides by the time since the start, which
// keeps growing after the stop; the page divides by the run's span (start to its last batch).
let runSpan = null; // { startTime, end } in ms, from the statistics and the newest batch
function averageRate(r) {
  if (r.isActive || !runSpan || !isEpoch(runSpan.end) || runSpan.end <= runSpan.startTime) return r.avgEventRate;
  return (r.records * 1000) / (runSpan.end - runSpan.startTime);
}
// Each receiver's rate at each refresh, kept for the last RATE_SAMPLES refreshes: the API
// gives a receiver's records so far, not per batch, so this history starts with the page.
const RATE_SAMPLES = 300;
const rateHistory = { at: [], streams: new Map() }; // streamId -> { name, rates: [] }
let rateChart = null, rateChartKey = null;
function drawReceiverRates(receivers, rates) {
  rateHistory.at.push(Date.now() / 1000);
  for (const r of receivers) {
    if (!rateHistory.streams.has(r.streamId)) {
      rateHistory.streams.set(r.streamId, { name: r.streamName, rates: rateHistory.at.slice(1).map(() => null) });
    }
  }
  for (const [id, s] of rateHistory.streams) s.rates.push(rates.has(id) ? rates.get(id) : null);
  if (rateHistory.at.length > RATE_SAMPLES) {
    rateHistory.at.shift();
    for (const s of rateHistory.streams.values()) s.rates.shift();
  }
  const ids = [...rateHistory.streams.keys()];
  const key = ids.join(",");
  if (rateChartKey !== key) {
    // A receiver came: draw anew with one series per receiver.
    if (rateChart) { resizer.unobserve(rateChart.root.parentElement); plots.splice(plots.indexOf(rateChart), 1); rateChart.destroy(); }
    const colours = ["#4a6fb5", "#c36b2b", "#3a8a4f", "#8a3a8a", "#b5a34a", "#2bb5b0"];
    const series = [{ label: "time", value: (u, v) => (v === null ? "–" : localTime(Math.round(v * 1000), true)) }].concat(ids.map((id, i) => ({
      label: "#" + id + " " + rateHistory.streams.get(id).name, stroke: colours[i % colours.length], width: 1.5,
      points: { show: false }, value: (u, v) => num(v) })));
    rateChart = makePlot("chart-receiver-rates", {
      series, padding: [10, Math.ceil(TIME_SPACE / 2), 0, 0],
      // At least the last minute, so that the first samples have an axis to sit on.
      scales: { x: { time: true, range: (u, min, max) => (max === null ? [Date.now() / 1000 - 60, Date.now() / 1000] : [Math.min(min, max - 60), max]) },
        y: { range: fromZero } }, legend: { show: true },
      axes: [{ font: FONT, space: TIME_SPACE, values: timeLabels }, { font: FONT, size: 60, values: (u, vals) => vals.map(num) }],
    }, [[]].concat(ids.map(() => [])));
    rateChartKey = key;
  }
  rateChart.setData([rateHistory.at.slice()].concat(ids.map((id) => rateHistory.streams.get(id).rates.slice())));
}

function drawReceivers(receivers) {
  const rates = new Map();
  const now = performance.now();
  syncRows(document.querySelector("#receivers tbody"), receivers, (r) => r.streamId,
    (r) => { const tr = el("tr", { "data-stream": r.streamId }); cells(tr, 10, [3, 4, 5, 6, 7]); return tr; },
    (tr, r) => {
      const prev = lastCount.get(r.streamId);
      let rate = null;
      if (prev && now > prev.at) rate = ((r.records - prev.records) * 1000) / (now - prev.at);
      if (!prev || now - prev.at >= 500) lastCount.set(r.streamId, { at: now, records: r.records, rate });
      else rate = prev.rate;
      if (!r.isActive && rate !== null) rate = 0;
      if (rate !== null) rates.set(r.streamId, rate);
      const c = tr._cells;
      setAttr(tr, "data-active", r.isActive);
      setText(c[0], r.streamId);
      setText(c[1], r.streamName);
      setText(c[2], r.isActive ? "yes" : "no (stopped)");
      setText(c[3], r.records);
      setText(c[4], rate === null ? "–" : num(Math.round(rate)));
      const avg = averageRate(r);
      setText(c[5], avg === null || avg === undefined ? "–" : num(Math.round(avg)));
      setText(c[6], r.errors);
      setText(c[7], r.restarts);
      setText(c[8], r.rateLimit === null ? "none" : r.rateLimit + "/s");
      setAttr(c[9], "class", "error");
      setText(c[9], r.lastError || "");
    });
  drawReceiverRates(receivers, rates);
}

function drawInputs(inputs) {
  syncRows(document.querySelector("#inputs tbody"), inputs, (p) => p.streamId,
    (p) => { const tr = el("tr", { "data-stream": p.streamId }); cells(tr, 7, [2, 3, 4]); return tr; },
    (tr, p) => {
      const c = tr._cells;
      const last = p.lastSkipped.map((s) => localTime(s.batchTime, true) + " " + s.path + ": " + s.reason).join("; ");
      setText(c[0], p.streamId);
      setText(c[1], p.streamName);
      setText(c[2], p.splits);
      setText(c[3], p.records);
      setText(c[4], p.skipped);
      setAttr(c[5], "class", "error");
      setText(c[5], last);
      setAttr(c[6], "class", "error");
      setText(c[6], p.failure || "");
    });
}

function drawSummary(s) {
  setText(document.getElementById("app-name"), s.appName);
  const line = ["batch interval " + s.batchDuration + " ms",
    "started " + localTime(s.startTime, false),
    "batches " + s.numTotalCompletedBatches + " (" + s.numTotalFailedBatches + " failed)",
    "records " + s.numProcessedRecords,
    "receivers " + s.numActiveReceivers + "/" + s.numReceivers + " active",
    "avg input rate " + num(s.avgInputRate) + " records/s",
    "avg total delay " + num(s.avgTotalDelay) + " ms",
    "executors lost " + s.executorsLost + ", tasks retried " + s.taskRetries +
      ", rerun " + s.tasksRerunAfterLoss + ", speculated " + s.speculativeTasks];
  const box = document.getElementById("summary");
  syncRows(box, line.map((text, i) => ({ i, text })), (x) => x.i, () => el("span"), (span, x) => setText(span, x.text));
}

// The checkpoint directory's size against what it holds: shown only with a directory (a
// store in memory has no size).
function drawCheckpointStore(c) {
  const box = document.getElementById("checkpoint-store");
  if (!c || c.sizeBytes === null) { box.hidden = true; box.replaceChildren(); return; }
  box.hidden = false;
  setAttr(box, "data-size-bytes", c.sizeBytes);
  setAttr(box, "data-live-bytes", c.liveBytes);
  setAttr(box, "data-compactions", c.compactions);
  const ratio = c.liveBytes > 0 ? (c.sizeBytes / c.liveBytes).toFixed(1) + "×" : "–";
  const parts = ["Checkpoint store: " + bytes(c.sizeBytes) + " on disk", "live " + bytes(c.liveBytes),
    "on disk / live " + ratio,
    "compactions " + c.compactions + (c.lastCompactionMs === null ? "" : " (last took " + num(c.lastCompactionMs) + " ms)")];
  syncRows(box, parts.map((text, i) => ({ i, text })), (x) => x.i, () => el("span"), (span, x) => setText(span, x.text));
}

// ---- A batch's page -----------------------------------------------------------------------

let shownBatch = null; // { time, final } of the batch page's last fetch
async function drawBatchPage(time) {
  if (shownBatch && shownBatch.time === time && shownBatch.final) return;
  const missing = document.getElementById("batch-missing");
  let b;
  try {
    b = await getJson("/batches/" + encodeURIComponent(time));
  } catch (e) {
    if (e.status !== 404 && e.status !== 400) throw e;
    missing.hidden = false;
    setText(missing, e.message + " (only the last retained batches are kept)");
    setText(document.getElementById("batch-detail-time"), time);
    document.querySelector("#batch-info tbody").replaceChildren();
    document.querySelector("#outputs tbody").replaceChildren();
    document.querySelector("#jobs tbody").replaceChildren();
    shownBatch = { time, final: false };
    return;
  }
  missing.hidden = true;
  shownBatch = { time, final: !isActive(b) };
  const view = document.getElementById("batch-view");
  setAttr(view, "data-batch-time", b.batchTime);
  setAttr(view, "data-status", b.status);
  setText(document.getElementById("batch-detail-time"),
    localTime(b.batchTime, true) + (isEpoch(b.batchTime) ? " " + ZONE : "") + " (" + b.batchTime + ", " + b.status + ")");
  const info = [["Batch time (ms)", b.batchTime], ["Status", b.status], ["Batch duration (ms)", b.batchDuration],
    ["Records", b.inputSize], ["Input rate (records/s)", num(b.inputRate)],
    ["Submitted", isEpoch(b.submissionTime) ? localTime(b.submissionTime, true) + " " + ZONE : b.submissionTime],
    ["Scheduling delay (ms)", num(b.schedulingDelayMs ?? b.schedulingDelay)],
    ["Processing time (ms)", num(b.processingTimeMs ?? b.processingTime)],
    ["Total delay (ms)", num(b.totalDelayMs ?? b.totalDelay)],
    ["Output operations", b.numCompletedOutputOps + " succeeded, " + b.numFailedOutputOps + " failed, of " + b.numTotalOutputOps]];
  if (b.failures.length) info.push(["Failures", b.failures.map((f) => f.outputOp + ": " + f.message).join("; ")]);
  document.querySelector("#batch-info tbody").replaceChildren(...info.map(([k, v]) => {
    const tr = el("tr");
    tr.append(el("th", {}, k), el("td", k === "Failures" ? { class: "error" } : {}, v));
    return tr;
  }));
  document.querySelector("#outputs tbody").replaceChildren(...(b.outputOperations || []).map((o) => {
    const tr = el("tr", o.failureReason ? { class: "failed", "data-output-op": o.outputOpId } : { "data-output-op": o.outputOpId });
    tr.append(el("td", {}, o.outputOpId), el("td", {}, o.name), el("td", { class: "num" }, num(o.duration)),
      el("td", { class: o.failureReason ? "error" : "" }, o.failureReason ? "FAILED: " + o.failureReason : "succeeded"));
    return tr;
  }));
  const rows = [];
  // A job is named by the user's output operation that ran it (e.g. `send_to at
  // src/main.rs:40`), then by the action inside it (e.g. `collect at ...`).
  const outputNames = new Map((b.outputOperations || []).map((o) => [o.outputOpId, o.name]));
  (b.jobs || []).forEach((j) => {
    const output = j.outputOpId != null ? outputNames.get(j.outputOpId) : undefined;
    const name = (output ? output + " — job " + j.jobId + ": " : "job " + j.jobId + ": ") + j.operator;
    j.stages.forEach((s, i) => {
      const tr = el("tr", j.failureReason ? { class: "failed" } : {});
      tr.append(el("td", {}, i === 0 ? name + " (" + num(j.duration) + " ms)" : ""),
        el("td", {}, s.stageId), el("td", {}, s.kind), el("td", {}, s.operator),
        el("td", { class: "num" }, s.numTasks), el("td", { class: "num" }, s.numLaunched), el("td", { class: "num" }, s.numRetries),
        el("td", { class: "num" }, s.numSpeculative), el("td", { class: "num" }, num(s.duration)));
      rows.push(tr);
    });
  });
  document.querySelector("#jobs tbody").replaceChildren(...rows);
}

// ---- The DStream graph ----------------------------------------------------------------------

// A layered drawing: each stream one layer below its deepest parent, each output below its
// stream. An edge that spans several layers passes through a slot of its own in every layer
// between (a dummy node), and between two layers an edge is a curve inside the gap, where no
// node is: so no edge crosses a node. Layers after the first are ordered by their parents'
// mean position, which keeps most edges short and uncrossed.
function layoutGraph(g) {
  const nodes = new Map();
  const add = (key, n) => { nodes.set(key, Object.assign({ key, layer: 0, dummy: false, parents: [] }, n)); };
  for (const s of g.streams) add("s" + s.id, { label: s.op + " #" + s.id, site: s.callSite, parents: s.parents.map((p) => "s" + p) });
  for (const o of g.outputs) add("o" + o.id, { label: o.op + " (output " + o.id + ")", site: o.callSite, parents: ["s" + o.stream], output: true });
  // Layers: longest path from a source (the graph is acyclic; parents come first in `streams`).
  const layerOf = (key, seen) => {
    const n = nodes.get(key);
    if (n._layered) return n.layer;
    if (seen.has(key)) return 0;
    seen.add(key);
    n.layer = n.parents.filter((p) => nodes.has(p)).reduce((m, p) => Math.max(m, layerOf(p, seen) + 1), 0);
    n._layered = true;
    return n.layer;
  };
  for (const key of [...nodes.keys()]) layerOf(key, new Set());
  // Edges, with a dummy node in each layer a long edge crosses.
  const edges = [];
  let dummies = 0;
  for (const n of [...nodes.values()]) {
    for (const p of n.parents) {
      if (!nodes.has(p)) continue;
      const chain = [p];
      for (let l = nodes.get(p).layer + 1; l < n.layer; l++) {
        const key = "d" + dummies++;
        nodes.set(key, { key, layer: l, dummy: true, parents: [chain[chain.length - 1]] });
        chain.push(key);
      }
      chain.push(n.key);
      edges.push(chain);
    }
  }
  const layers = [];
  for (const n of nodes.values()) (layers[n.layer] = layers[n.layer] || []).push(n);
  const order = new Map();
  layers.forEach((layer, l) => {
    if (l > 0) {
      const at = (n) => {
        const ps = n.parents.filter((p) => order.has(p));
        return ps.length ? ps.reduce((s, p) => s + order.get(p), 0) / ps.length : 0;
      };
      layer.forEach((n, i) => { n._at = at(n); n._i = i; });
      layer.sort((a, b) => a._at - b._at || a._i - b._i);
    }
    layer.forEach((n, i) => order.set(n.key, i));
  });
  return { nodes, edges, layers };
}

function drawGraph(g) {
  const ns = "http://www.w3.org/2000/svg";
  const W = 300, H = 38, DW = 16, GX = 24, GY = 44, PAD = 10;
  const { nodes, edges, layers } = layoutGraph(g);
  const rowWidth = (layer) => layer.reduce((s, n) => s + (n.dummy ? DW : W), 0) + GX * Math.max(0, layer.length - 1);
  const width = 2 * PAD + Math.max(W, ...layers.map(rowWidth));
  layers.forEach((layer, l) => {
    let x = PAD + (width - 2 * PAD - rowWidth(layer)) / 2;
    for (const n of layer) {
      n.w = n.dummy ? DW : W;
      n.x = x;
      n.y = PAD + l * (H + GY);
      x += n.w + GX;
    }
  });
  const height = 2 * PAD + layers.length * (H + GY) - GY;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", Math.max(height, 2 * PAD));
  svg.innerHTML = '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0L10,5L0,10z" fill="#888"/></marker></defs>';
  const cx = (n) => n.x + n.w / 2;
  for (const chain of edges) {
    let d = "";
    for (let i = 0; i + 1 < chain.length; i++) {
      const a = nodes.get(chain[i]), b = nodes.get(chain[i + 1]);
      const y1 = a.dummy ? a.y + H : a.y + H, y2 = b.y;
      if (i === 0) d += "M" + cx(a) + "," + y1;
      else d += "L" + cx(a) + "," + y1; // through the dummy's own slot
      const mid = (y1 + y2) / 2;
      d += " C" + cx(a) + "," + mid + " " + cx(b) + "," + mid + " " + cx(b) + "," + y2;
      if (b.dummy) d += " L" + cx(b) + "," + (b.y + H);
    }
    const path = document.createElementNS(ns, "path");
    path.setAttribute("d", d);
    path.setAttribute("data-from", chain[0]);
    path.setAttribute("data-to", chain[chain.length - 1]);
    svg.append(path);
  }
  for (const n of nodes.values()) {
    if (n.dummy) continue;
    const g2 = document.createElementNS(ns, "g");
    g2.setAttribute("class", "dag-node");
    g2.setAttribute("data-op", n.label);
    const rect = document.createElementNS(ns, "rect");
    rect.setAttribute("x", n.x); rect.setAttribute("y", n.y);
    rect.setAttribute("width", W); rect.setAttribute("height", H); rect.setAttribute("rx", 5);
    if (n.output) rect.setAttribute("class", "output");
    const t1 = document.createElementNS(ns, "text");
    t1.setAttribute("x", n.x + 6); t1.setAttribute("y", n.y + 15); t1.textContent = n.label;
    const t2 = document.createElementNS(ns, "text");
    t2.setAttribute("x", n.x + 6); t2.setAttribute("y", n.y + 30); t2.textContent = n.site;
    const title = document.createElementNS(ns, "title");
    title.textContent = n.label + "\n" + n.site;
    g2.append(title, rect, t1, t2);
    svg.append(g2);
  }
  const box = document.getElementById("dag");
  box.replaceChildren(svg);
  box.setAttribute("data-edges-through-nodes", edgesThroughNodes(svg));
}

// How many edges pass through a node other than their own two ends, sampled along each
// path: the page's own check of its layout (0 expected).
function edgesThroughNodes(svg) {
  const rects = [...svg.querySelectorAll("g.dag-node rect")].map((r) => ({
    x: +r.getAttribute("x"), y: +r.getAttribute("y"), w: +r.getAttribute("width"), h: +r.getAttribute("height"),
    op: r.parentNode.getAttribute("data-op") }));
  let crossing = 0;
  for (const path of svg.querySelectorAll("path[data-from]")) {
    if (typeof path.getTotalLength !== "function") return "unknown";
    const len = path.getTotalLength();
    const hits = new Set();
    for (let s = 2; s < len - 2; s += 3) {
      const p = path.getPointAtLength(s);
      rects.forEach((r, i) => {
        if (p.x > r.x + 1 && p.x < r.x + r.w - 1 && p.y > r.y + 1 && p.y < r.y + r.h - 1) hits.add(i);
      });
    }
    if (hits.size > 0) crossing++;
  }
  return crossing;
}

// ---- Refresh --------------------------------------------------------------------------------

const route = () => {
  const m = /^#\/batch\/(.+)$/.exec(location.hash);
  return m ? { batch: decodeURIComponent(m[1]) } : { batch: null };
};

let batchesKey = null;   // the statistics' counts at the last /batches fetch
let batchesActive = 0;   // active batches in that answer
// The retained batches, by time. After the first fetch only the batches after the newest
// completed one are fetched (`?since=`): batches complete in order, so the older ones are
// final.
const batchCache = new Map();
async function fetchBatches(stats) {
  let newestDone = null;
  for (const b of batchCache.values()) {
    if (!isActive(b) && (newestDone === null || b.batchTime > newestDone)) newestDone = b.batchTime;
  }
  const fresh = await getJson(newestDone === null ? "/batches" : "/batches?since=" + newestDone);
  for (const b of fresh) batchCache.set(b.batchTime, b);
  const all = [...batchCache.values()].sort((a, b) => b.batchTime - a.batchTime);
  const keep = stats.numRetainedCompletedBatches + stats.numActiveBatches;
  for (const b of all.slice(keep)) batchCache.delete(b.batchTime);
  return all.slice(0, keep);
}
let graphDrawn = false;
let addedElements = 0;
const addedHistory = []; // elements added by each of the last 10 refreshes, oldest first
const countAdded = (records) => {
  for (const r of records) for (const n of r.addedNodes) {
    if (n.nodeType === 1) addedElements += 1 + n.getElementsByTagName("*").length;
  }
};
const mutations = new MutationObserver(countAdded);
mutations.observe(document.body, { childList: true, subtree: true });

let refreshing = false;
async function refresh() {
  if (refreshing) return;
  refreshing = true;
  const before = addedElements;
  const started = performance.now();
  const fetched = [];
  try {
    const r = route();
    document.getElementById("main-view").hidden = r.batch !== null;
    document.getElementById("batch-view").hidden = r.batch === null;
    const stats = await getJson("/statistics");
    fetched.push("statistics");
    drawSummary(stats);
    drawCheckpointStore(stats.checkpointStore);
    setText(document.getElementById("time-zone"), "Times in local time: " + ZONE + " (" + utcOffset() + ")");
    if (r.batch !== null) {
      await drawBatchPage(r.batch);
      fetched.push("batch");
    } else {
      shownBatch = null;
      const key = [stats.numTotalCompletedBatches, stats.numActiveBatches, stats.numRetainedCompletedBatches].join("/");
      const wantBatches = key !== batchesKey || batchesActive > 0;
      const [receivers, inputs, batches] = await Promise.all([getJson("/receivers"), wantBatches ? getJson("/inputs") : null,
        wantBatches ? fetchBatches(stats) : null]);
      fetched.push("receivers");
      if (batches && batches.length) runSpan = { startTime: stats.startTime, end: batches[0].batchTime + stats.batchDuration };
      drawReceivers(receivers);
      if (inputs) drawInputs(inputs);
      if (batches) {
        fetched.push("inputs", "batches");
        batchesKey = key;
        batchesActive = batches.filter(isActive).length;
        drawCharts(drawBatches(batches), stats.batchDuration);
      }
      if (!graphDrawn) { drawGraph(await getJson("/graph")); graphDrawn = true; fetched.push("graph"); }
    }
    document.getElementById("unreachable").hidden = true;
    countAdded(mutations.takeRecords());
    document.body.setAttribute("data-fetched", fetched.join(" "));
    document.body.setAttribute("data-nodes-added", addedElements - before);
    addedHistory.push(addedElements - before);
    if (addedHistory.length > 10) addedHistory.shift();
    document.body.setAttribute("data-nodes-added-history", addedHistory.join(" "));
    document.body.setAttribute("data-refresh-ms", (performance.now() - started).toFixed(1));
    document.body.setAttribute("data-refreshed", String(Date.now()));
  } catch (e) {
    // Keep the last state on screen: the run may have ended and its server with it.
    const box = document.getElementById("unreachable");
    box.hidden = false;
    box.textContent = "Cannot reach the streaming context (showing the last state received): " + e.message;
  } finally {
    refreshing = false;
  }
}
window.addEventListener("hashchange", () => { shownBatch = null; refresh(); });
document.querySelectorAll(".batch-time-head").forEach((th) => { th.textContent = "Batch time (" + ZONE + ")"; });
refresh();
setInterval(refresh, 1000);
