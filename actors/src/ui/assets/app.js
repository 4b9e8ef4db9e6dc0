// rivulet status page: polls the JSON API every second and redraws without reloading.
"use strict";
const API = "/api/v1/streaming";
const charts = {};
let selected = null; // the batch time whose output operations are shown
let batchInterval = null;

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
const fmt = (v) => (v === null || v === undefined ? "–" : typeof v === "number" ? (Number.isInteger(v) ? v : v.toFixed(1)) : v);
const bytes = (n) => {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
};
const clock = (ms) => new Date(ms).toISOString().substring(11, 23);

async function getJson(path) {
  const r = await fetch(API + path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

function chart(id, withInterval, label) {
  if (charts[id]) return charts[id];
  const box = document.getElementById(id);
  const width = Math.max(300, box.clientWidth || 480);
  const series = [{}, { label, stroke: "#4a6fb5", width: 1.5, points: { show: true, size: 4 } }];
  if (withInterval) series.push({ label: "batch interval", stroke: "#c33", dash: [6, 4], width: 1, points: { show: false } });
  const opts = { width, height: 180, series, scales: { x: { time: false } }, legend: { show: true },
    axes: [{ values: (u, vals) => vals.map((v) => clock(v)) }, {}] };
  const data = withInterval ? [[], [], []] : [[], []];
  charts[id] = new uPlot(opts, data, box);
  return charts[id];
}

function drawCharts(batches) {
  const done = batches.filter((b) => b.processingTime !== null).slice().reverse();
  const x = done.map((b) => b.batchTime);
  const line = done.map(() => batchInterval);
  chart("chart-input-rate", false, "records/s").setData([x, done.map((b) => b.inputRate)]);
  chart("chart-scheduling-delay", false, "scheduling delay (ms)").setData([x, done.map((b) => b.schedulingDelay)]);
  chart("chart-processing-time", true, "processing time (ms)").setData([x, done.map((b) => b.processingTime), line]);
  chart("chart-total-delay", true, "total delay (ms)").setData([x, done.map((b) => b.totalDelay), line]);
}

function drawSummary(s) {
  document.getElementById("app-name").textContent = s.appName;
  const box = document.getElementById("summary");
  box.replaceChildren(
    el("span", {}, "batch interval " + s.batchDuration + " ms"),
    el("span", {}, "batches " + s.numTotalCompletedBatches + " (" + s.numTotalFailedBatches + " failed)"),
    el("span", {}, "records " + s.numProcessedRecords),
    el("span", {}, "receivers " + s.numActiveReceivers + "/" + s.numReceivers + " active"),
    el("span", {}, "avg total delay " + fmt(s.avgTotalDelay) + " ms"),
    el("span", {}, "executors lost " + s.executorsLost + ", tasks retried " + s.taskRetries +
      ", rerun " + s.tasksRerunAfterLoss + ", speculated " + s.speculativeTasks),
  );
}

// The checkpoint directory's size against what it holds: shown only with a directory (a
// store in memory has no size).
function drawCheckpointStore(c) {
  const box = document.getElementById("checkpoint-store");
  if (!c || c.sizeBytes === null) { box.hidden = true; box.replaceChildren(); return; }
  box.hidden = false;
  box.setAttribute("data-size-bytes", c.sizeBytes);
  box.setAttribute("data-live-bytes", c.liveBytes);
  box.setAttribute("data-compactions", c.compactions);
  const ratio = c.liveBytes > 0 ? (c.sizeBytes / c.liveBytes).toFixed(1) + "×" : "–";
  box.replaceChildren(
    el("span", {}, "Checkpoint store: " + bytes(c.sizeBytes) + " on disk"),
    el("span", {}, "live " + bytes(c.liveBytes)),
    el("span", { title: "bytes on disk per live byte" }, "on disk / live " + ratio),
    el("span", {}, "compactions " + c.compactions +
      (c.lastCompactionMs === null ? "" : " (last took " + c.lastCompactionMs + " ms)")),
  );
}

function drawBatches(batches) {
  const body = document.querySelector("#batches tbody");
  body.replaceChildren(...batches.map((b) => {
    const tr = el("tr", { class: "batch" + (b.status === "FAILED" ? " failed" : "") + (b.batchTime === selected ? " selected" : ""),
      "data-batch-time": b.batchTime, "data-records": b.inputSize, "data-status": b.status });
    tr.append(el("td", {}, clock(b.batchTime) + " (" + b.batchTime + ")"), el("td", {}, b.inputSize),
      el("td", {}, fmt(b.schedulingDelay)), el("td", {}, fmt(b.processingTime)), el("td", {}, fmt(b.totalDelay)),
      el("td", {}, b.numFailedOutputOps + "/" + b.numCompletedOutputOps),
      el("td", { class: "status-" + b.status }, b.status),
      el("td", { class: "error" }, b.failures.map((f) => f.outputOp + ": " + f.message).join("; ")));
    tr.addEventListener("click", () => { selected = b.batchTime; refresh(); });
    return tr;
  }));
}

async function drawOutputs(batches) {
  if (selected === null && batches.length > 0) {
    const failed = batches.find((b) => b.status === "FAILED");
    selected = (failed || batches[0]).batchTime;
  }
  if (selected === null) return;
  let b;
  try { b = await getJson("/batches/" + selected); } catch (e) { selected = null; return; }
  document.getElementById("batch-detail-time").textContent = clock(b.batchTime) + " (" + b.batchTime + ", " + b.status + ")";
  document.querySelector("#outputs tbody").replaceChildren(...b.outputOperations.map((o) => {
    const tr = el("tr", o.failureReason ? { class: "failed" } : {});
    tr.append(el("td", {}, o.outputOpId), el("td", {}, o.name), el("td", {}, o.duration),
      el("td", { class: o.failureReason ? "error" : "" }, o.failureReason ? "FAILED: " + o.failureReason : "succeeded"));
    return tr;
  }));
  const rows = [];
  (b.jobs || []).forEach((j) => {
    j.stages.forEach((s, i) => {
      const tr = el("tr", j.failureReason ? { class: "failed" } : {});
      tr.append(el("td", {}, i === 0 ? j.operator + " (" + j.duration + " ms)" : ""),
        el("td", {}, s.stageId), el("td", {}, s.kind), el("td", {}, s.operator),
        el("td", {}, s.numTasks), el("td", {}, s.numLaunched), el("td", {}, s.numRetries),
        el("td", {}, s.numSpeculative), el("td", {}, s.duration));
      rows.push(tr);
    });
  });
  document.querySelector("#jobs tbody").replaceChildren(...rows);
}

function drawReceivers(receivers) {
  document.querySelector("#receivers tbody").replaceChildren(...receivers.map((r) => {
    const tr = el("tr", { "data-stream": r.streamId });
    tr.append(el("td", {}, r.streamId), el("td", {}, r.streamName), el("td", {}, r.isActive ? "yes" : "no"),
      el("td", {}, r.records), el("td", {}, r.errors), el("td", {}, r.restarts),
      el("td", {}, r.rateLimit === null ? "none" : r.rateLimit + "/s"), el("td", { class: "error" }, r.lastError || ""));
    return tr;
  }));
}

function drawInputs(inputs) {
  document.querySelector("#inputs tbody").replaceChildren(...inputs.map((p) => {
    const tr = el("tr", { "data-stream": p.streamId });
    const last = p.lastSkipped.map((s) => s.batchTime + " " + s.path + ": " + s.reason).join("; ");
    tr.append(el("td", {}, p.streamId), el("td", {}, p.streamName), el("td", {}, p.splits),
      el("td", {}, p.records), el("td", {}, p.skipped), el("td", { class: "error" }, last),
      el("td", { class: "error" }, p.failure || ""));
    return tr;
  }));
}

// The DStream graph as a layered DAG: each stream one level below its deepest parent,
// outputs below the stream they consume.
function drawGraph(g) {
  const ns = "http://www.w3.org/2000/svg";
  const level = {};
  const nodes = [];
  for (const s of g.streams) {
    level["s" + s.id] = s.parents.length ? Math.max(...s.parents.map((p) => level["s" + p] || 0)) + 1 : 0;
    nodes.push({ key: "s" + s.id, label: s.op + " #" + s.id, site: s.callSite, parents: s.parents.map((p) => "s" + p), output: false });
  }
  for (const o of g.outputs) {
    level["o" + o.id] = (level["s" + o.stream] || 0) + 1;
    nodes.push({ key: "o" + o.id, label: o.op + " (output " + o.id + ")", site: o.callSite, parents: ["s" + o.stream], output: true });
  }
  const rows = {};
  const pos = {};
  const W = 300, H = 38, GX = 30, GY = 34;
  for (const n of nodes) {
    const l = level[n.key];
    rows[l] = (rows[l] || 0) + 1;
    pos[n.key] = { x: 10 + (rows[l] - 1) * (W + GX), y: 10 + l * (H + GY) };
  }
  const width = 20 + Math.max(1, ...Object.values(rows)) * (W + GX);
  const height = 20 + (Math.max(0, ...Object.values(level)) + 1) * (H + GY);
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.innerHTML = '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0L10,5L0,10z" fill="#888"/></marker></defs>';
  for (const n of nodes) for (const p of n.parents) {
    if (!pos[p]) continue;
    const line = document.createElementNS(ns, "line");
    line.setAttribute("x1", pos[p].x + W / 2); line.setAttribute("y1", pos[p].y + H);
    line.setAttribute("x2", pos[n.key].x + W / 2); line.setAttribute("y2", pos[n.key].y);
    svg.append(line);
  }
  for (const n of nodes) {
    const g2 = document.createElementNS(ns, "g");
    g2.setAttribute("class", "dag-node");
    g2.setAttribute("data-op", n.label);
    const rect = document.createElementNS(ns, "rect");
    rect.setAttribute("x", pos[n.key].x); rect.setAttribute("y", pos[n.key].y);
    rect.setAttribute("width", W); rect.setAttribute("height", H); rect.setAttribute("rx", 5);
    if (n.output) rect.setAttribute("class", "output");
    const t1 = document.createElementNS(ns, "text");
    t1.setAttribute("x", pos[n.key].x + 6); t1.setAttribute("y", pos[n.key].y + 15); t1.textContent = n.label;
    const t2 = document.createElementNS(ns, "text");
    t2.setAttribute("x", pos[n.key].x + 6); t2.setAttribute("y", pos[n.key].y + 30); t2.textContent = n.site;
    g2.append(rect, t1, t2);
    svg.append(g2);
  }
  document.getElementById("dag").replaceChildren(svg);
}

let graphDrawn = false;
async function refresh() {
  try {
    const [stats, batches, receivers, inputs] = await Promise.all([getJson("/statistics"), getJson("/batches"), getJson("/receivers"), getJson("/inputs")]);
    batchInterval = stats.batchDuration;
    drawSummary(stats);
    drawCheckpointStore(stats.checkpointStore);
    drawCharts(batches);
    drawBatches(batches);
    drawReceivers(receivers);
    drawInputs(inputs);
    await drawOutputs(batches);
    if (!graphDrawn) { drawGraph(await getJson("/graph")); graphDrawn = true; }
    document.body.setAttribute("data-refreshed", String(Date.now()));
  } catch (e) {
    document.getElementById("summary").textContent = "Cannot reach the streaming context: " + e.message;
  }
}
refresh();
setInterval(refresh, 1000);
