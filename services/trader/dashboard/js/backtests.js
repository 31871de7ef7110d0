// Backtests: run one from a form, its equity curves per mode against buy-and-hold, the
// metrics table, per-fold results of a walk-forward run, and two runs side by side.

import { attempt, call, notify } from "./api.js";
import { draw, line, timeAxes } from "./charts.js";
import { change, facts, fill, h, isNumber, jsonBlock, num, pct, table, when } from "./dom.js";

const $ = (id) => document.getElementById(id);
const RUNS = "kryptobot.backtests"; // the runs this browser started: the trader lists none
const BASELINE = "buy_and_hold";
// fields shown as percentages; any other number is shown as it is
const PERCENT = /return|cagr|drawdown$|win_rate|exposure|rate$/;
const SIGNED = /return|cagr|drawdown$/;
const COMPARED = ["total_return", "sharpe", "max_drawdown", "win_rate", "mean_trade_return", "trades"]; // side by side

export function init(config) {
  $("b-modes").replaceChildren(...config.backtest_modes.map((mode) =>
    h("label", {}, h("input", { type: "checkbox", name: "mode", value: mode, checked: true }), mode)));
  $("b-symbols").placeholder = config.watchlist.join(", ");
  $("backtest-form").addEventListener("submit", (e) => { e.preventDefault(); run(); });
  $("compare-form").addEventListener("submit", (e) => { e.preventDefault(); compare(); });
  runList();
}

let shownLatest = false;

export async function refresh() {
  if (shownLatest || $("backtest-result").childElementCount) return; // a run shown stays shown
  shownLatest = true;
  const latest = await attempt("/reports/backtest_report.json");
  if (latest.data) show(latest.data, "The latest backtest run on this trader");
}

function runs() {
  try { return JSON.parse(localStorage.getItem(RUNS) || "[]"); } catch { return []; }
}

function remember(report) {
  const entry = { id: report.id, at: new Date().toISOString(), symbols: report.symbols, start: report.start, end: report.end };
  localStorage.setItem(RUNS, JSON.stringify([entry, ...runs().filter((r) => r.id !== report.id)].slice(0, 30)));
  runList();
}

function runList() {
  const list = runs();
  for (const [id, pick] of [["c-a", 1], ["c-b", 0]]) {
    const select = $(id);
    const keep = select.value;
    select.replaceChildren(...list.map((r) => h("option", { value: r.id },
      `${r.id} · ${(r.symbols || []).join(",")} ${r.start || ""}→${r.end || ""} (${when(r.at)})`)));
    if (!list.length) select.append(h("option", { value: "" }, "no runs yet"));
    select.value = list.some((r) => r.id === keep) ? keep : (list[pick] || list[0] || { id: "" }).id;
  }
}

async function run() {
  const status = $("backtest-status");
  let extra;
  try {
    extra = JSON.parse($("b-extra").value || "{}");
  } catch (exc) {
    status.className = "inline-result error";
    status.textContent = `More request fields: not JSON (${exc.message})`;
    return;
  }
  const body = { ...extra, modes: [...document.querySelectorAll("#b-modes input:checked")].map((i) => i.value) };
  const symbols = $("b-symbols").value.split(",").map((s) => s.trim()).filter(Boolean);
  if (symbols.length) body.symbols = symbols;
  if ($("b-start").value) body.start = $("b-start").value;
  if ($("b-end").value) body.end = $("b-end").value;
  if ($("b-cash").value) body.initial_cash = Number($("b-cash").value);
  const button = $("b-submit");
  button.disabled = true;
  status.className = "inline-result";
  const began = Date.now();
  const tick = setInterval(() => { status.textContent = `running… ${Math.round((Date.now() - began) / 1000)} s`; }, 500);
  status.textContent = "running…";
  try {
    const report = await call("/backtest", { method: "POST", body });
    remember(report);
    show(report, `Run ${report.id}, just finished`);
    status.className = "inline-result ok";
    status.textContent = `done in ${Math.round((Date.now() - began) / 1000)} s`;
  } catch (error) {
    status.className = "inline-result error";
    status.textContent = `Backtest refused: ${error.message}`;
    notify(`backtest: ${error.message}`);
  } finally {
    clearInterval(tick);
    button.disabled = false;
  }
}

/**
 * The equity curves of a report, {mode: [[iso, equity], ...]}, in whichever shape it
 * carries them: {mode: {timestamp, equity}}, {timestamp, mode: [..]} or {mode: [[t, v]]}.
 * None (today's report keeps them in its PNG only): null.
 */
export function curvesOf(report) {
  const raw = report.curves || report.equity_curves || report.equity;
  if (!raw || typeof raw !== "object") return null;
  const out = {};
  const stamps = raw.timestamp || raw.index || raw.dates;
  for (const [mode, value] of Object.entries(raw)) {
    if (["timestamp", "index", "dates"].includes(mode)) continue;
    if (Array.isArray(value) && stamps && value.length === stamps.length && value.every((v) => v === null || isNumber(v))) {
      out[mode] = value.map((v, i) => [stamps[i], v]);
    } else if (Array.isArray(value) && value.every((p) => Array.isArray(p) && p.length === 2)) {
      out[mode] = value;
    } else if (value && typeof value === "object") {
      const t = value.timestamp || value.index || value.dates;
      const v = value.equity || value.values || value.value;
      if (Array.isArray(t) && Array.isArray(v)) out[mode] = t.map((ts, i) => [ts, v[i]]);
    }
  }
  return Object.keys(out).length ? out : null;
}

function curveChart(report, title) {
  const curves = curvesOf(report);
  if (!curves) {
    // the trader draws the same curves as a PNG for every run
    const file = report.reports && report.reports.find((n) => /^equity_curve.*\.png$/.test(n) && n.includes(report.id))
      || `equity_curve_${report.id}.png`;
    return h("figure", { class: "curve" }, h("img", { class: "curve-img", src: `/reports/${encodeURIComponent(file)}`,
      alt: `Equity curves of run ${report.id}: each mode against buy-and-hold`, dataset: { curves: "png" } }),
    h("figcaption", { class: "muted" }, `${title} (the trader's plot; an interactive chart when the report carries its curves)`));
  }
  const el = h("div", { class: "chart", role: "img", "aria-label": `Equity curves of run ${report.id}`, dataset: { curves: "chart" } });
  const modes = Object.keys(curves).sort((a, b) => (a === BASELINE) - (b === BASELINE));
  requestAnimationFrame(() => draw(el, {
    ...timeAxes({ yName: "equity (start = 1)" }),
    series: modes.map((mode, i) => {
      const points = curves[mode];
      const first = points.find(([, v]) => isNumber(v));
      const norm = points.map(([t, v]) => [t, isNumber(v) && first ? v / first[1] : null]);
      return line(mode === BASELINE ? "buy & hold (baseline)" : mode, norm, i, { showSymbol: false });
    }),
  }));
  return el;
}

/** Every field the results carry (new ones included), the known ones first. */
function metricKeys(results) {
  const known = ["total_return", "cagr", "sharpe", "sortino", "calmar", "max_drawdown", "win_rate", "profit_factor",
    "mean_trade_return", "mean_trade_return_ci95", "trades", "exposure", "final_equity", "degraded_decisions"];
  const all = new Set(Object.values(results).flatMap((r) => Object.keys(r || {})));
  const simple = (k) => Object.values(results).some((r) => r && (isNumber(r[k]) || (Array.isArray(r[k]) && r[k].length === 2 && r[k].every(isNumber))));
  return [...known.filter((k) => all.has(k)), ...[...all].filter((k) => !known.includes(k))].filter(simple);
}

function value(key, v) {
  if (Array.isArray(v)) return `[${v.map((x) => value(key, x)).join(", ")}]`;
  if (!isNumber(v)) return v === null || v === undefined ? "–" : String(v);
  if (!PERCENT.test(key)) return num(v, 3);
  return SIGNED.test(key) ? change(v) : pct(v);
}

const label = (mode) => (mode === BASELINE ? "buy & hold (baseline)" : mode);

function metricsTable(results) {
  const keys = metricKeys(results);
  const modes = Object.keys(results).sort((a, b) => (a === BASELINE) - (b === BASELINE));
  return table([
    { label: "Mode", value: (m) => label(m), header: true },
    ...keys.map((k) => ({ label: k.replaceAll("_", " "), value: (m) => value(k, results[m] && results[m][k]), class: "num" })),
  ], modes, { caption: "Metrics per mode (out of sample: after the models' training data)" });
}

/** A walk-forward run's folds, in whichever list the report keeps them. */
function foldsOf(report) {
  const folds = report.folds || (report.walk_forward && report.walk_forward.folds) || (report.walkforward && report.walkforward.folds);
  return Array.isArray(folds) && folds.length ? folds : null;
}

/** {a: {b: 1}} -> {"a.b": 1}; lists of records (a fold's trades) are left to the JSON view. */
function flatten(obj, prefix = "", out = {}) {
  for (const [k, v] of Object.entries(obj || {})) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, key, out);
    else if (!(Array.isArray(v) && v.some((x) => x && typeof x === "object"))) out[key] = v;
  }
  return out;
}

function foldTable(folds) {
  const flat = folds.map((f) => flatten(f));
  const keys = [...new Set(flat.flatMap(Object.keys))].filter((k) => flat.some((f) => !Array.isArray(f[k]) || f[k].length <= 4)).slice(0, 60);
  return h("div", {}, table(keys.map((k, i) => ({ label: k, value: (f) => value(k, f[k]), class: isNumber(flat[0][k]) ? "num" : undefined, header: i === 0 })),
    flat, { caption: "Per fold (walk-forward)" }), jsonBlock("Folds as JSON", folds));
}

function show(report, title) {
  const results = report.results || {};
  const folds = foldsOf(report);
  fill($("backtest-result"), h("div", { class: "card", id: "backtest-report", dataset: { run: report.id } },
    h("h3", {}, title),
    facts([
      ["Run", `${report.id}${report.kind ? ` (${report.kind.replaceAll("_", " ")})` : ""}`], ["Symbols", (report.symbols || []).join(", ")],
      ["Period", `${report.start} → ${report.end}`],
      ["Bars", num(report.bars)], ["Models trained until", report.models_trained_until || "–"],
      ["Model versions", Object.entries(report.model_versions || {}).map(([k, v]) => `${k}: ${v || "none"}`).join(", ")],
      ["Note", report.note || "–"],
    ]),
    Array.isArray(report.summary) && report.summary.length
      ? h("div", {}, h("h4", {}, "What the run says"), h("ul", { class: "summary" }, report.summary.map((line) => h("li", {}, String(line)))))
      : null,
    curveChart(report, "Equity of every mode against buy-and-hold"),
    metricsTable(results),
    monthlyTable(results),
    folds ? foldTable(folds) : null,
    outputTable(report.model_outputs || {}),
    rulesTable(results),
    jsonBlock("The whole report", report),
  ));
}

/** Monthly returns per mode, when the results carry them ({mode: {monthly_returns: {"2024-01": r}}}). */
function monthlyTable(results) {
  const modes = Object.keys(results).filter((m) => results[m] && results[m].monthly_returns && typeof results[m].monthly_returns === "object");
  const months = [...new Set(modes.flatMap((m) => Object.keys(results[m].monthly_returns)))].sort();
  if (!months.length) return null;
  return h("details", {}, h("summary", {}, `Monthly returns per mode (${months.length} months)`),
    table([{ label: "Month", value: (month) => month, header: true },
      ...modes.map((m) => ({ label: label(m), value: (month) => { const v = results[m].monthly_returns[month]; return isNumber(v) ? change(v) : "–"; }, class: "num" }))],
    months, { caption: "Monthly returns per mode" }));
}

function outputTable(outputs) {
  const names = Object.keys(outputs);
  const keys = [...new Set(names.flatMap((n) => Object.keys(outputs[n] || {})))];
  return table([{ label: "Service", value: (n) => n, header: true }, ...keys.map((k) => ({ label: k.replaceAll("_", " "),
    value: (n) => value(k, outputs[n][k]), class: "num" }))], names, { caption: "What each service answered on the traded days", empty: "" });
}

function rulesTable(results) {
  const modes = Object.keys(results).filter((m) => results[m] && results[m].rules);
  const rules = [...new Set(modes.flatMap((m) => Object.keys(results[m].rules)))].sort();
  if (!rules.length) return null;
  return table([{ label: "Rule", value: (r) => r, header: true }, ...modes.map((m) => ({ label: m, value: (r) => num(results[m].rules[r] || 0), class: "num" }))],
    rules, { caption: "How often each rule fired, per mode" });
}

async function compare() {
  const out = $("compare-result");
  const [a, b] = [$("c-a").value, $("c-b").value];
  if (!a || !b) return fill(out, h("p", { class: "empty" }, "Run two backtests first: the runs this browser started are listed."));
  const [ra, rb] = await Promise.all([a, b].map((id) => attempt(`/reports/backtest_${encodeURIComponent(id)}.json`)));
  if (ra.error || rb.error) return fill(out, h("p", { class: "inline-result error" }, (ra.error || rb.error).message));
  const A = ra.data, B = rb.data;
  const modes = [...new Set([...Object.keys(A.results || {}), ...Object.keys(B.results || {})])]
    .sort((x, y) => (x === BASELINE) - (y === BASELINE));
  const both = Object.fromEntries(modes.flatMap((m) => [[`${m} A`, A.results[m]], [`${m} B`, B.results[m]]]));
  const keys = metricKeys(both).filter((k) => Object.values(both).every((r) => !r || !Array.isArray(r[k])));
  const headline = keys.filter((k) => COMPARED.includes(k));
  const cell = (k, a, b) => (isNumber(a) && isNumber(b) ? `${value(k, a)} → ${value(k, b)} (Δ ${value(k, b - a)})` : `${value(k, a)} → ${value(k, b)}`);
  const rows = modes.flatMap((m) => keys.map((k) => ({ m, k, a: A.results[m]?.[k], b: B.results[m]?.[k] })));
  fill(out,
    h("p", {}, `A: ${A.id} (${A.symbols.join(", ")}, ${A.start} → ${A.end}) · B: ${B.id} (${B.symbols.join(", ")}, ${B.start} → ${B.end})`),
    h("div", { class: "split" }, curveChart(A, `A: ${A.id}`), curveChart(B, `B: ${B.id}`)),
    table([{ label: "Mode", value: (m) => label(m), header: true },
      ...headline.map((k) => ({ label: `${k.replaceAll("_", " ")}: A → B`, value: (m) => cell(k, A.results[m]?.[k], B.results[m]?.[k]), class: "num" }))],
    modes, { caption: "Run B against run A (a mode only one ran shows –)" }),
    h("details", {}, h("summary", {}, `Every metric (${keys.length})`), table([
      { label: "Mode", value: (r) => label(r.m), header: true }, { label: "Metric", value: (r) => r.k.replaceAll("_", " ") },
      { label: "A", value: (r) => value(r.k, r.a), class: "num" }, { label: "B", value: (r) => value(r.k, r.b), class: "num" },
      { label: "B − A", value: (r) => (isNumber(r.a) && isNumber(r.b) ? value(r.k, r.b - r.a) : "–"), class: "num" },
    ], rows, { caption: "Every metric of run B against run A" })));
}
