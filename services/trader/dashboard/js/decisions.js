// Decisions: the recent cycles, each symbol's action, what every model said and every rule
// that fired; one decision opens its price chart with indicators, the anomaly score and
// the forecast path with its interval (asked of the services now, on the bars up to it).

import { attempt, call, service } from "./api.js";
import { draw, PALETTE } from "./charts.js";
import { actionBadge, cell, change, changed, day, facts, fill, h, isNumber, money, num, pct, stateBadge, toMs, when } from "./dom.js";

const $ = (id) => document.getElementById(id);
const CHART_BARS = 250; // up to the decision: enough for the anomaly windows and the forecaster's sequence
const BARS_AFTER = 20; // what happened next, when the decision is in the past
const ZOOM_BARS = 80; // bars before the decision in sight at first
const VETO = /veto|below|contradicts|unavailable_skip|rejected/;
let decisions = [];
let selected = null;

export function init() {
  for (const id of ["f-symbol", "f-action", "f-rule", "f-degraded"]) $(id).addEventListener("change", render);
  $("f-limit").addEventListener("change", () => refresh());
}

export async function refresh() {
  const latest = await call(`/decisions?limit=${$("f-limit").value}`);
  if (!changed("decisions", latest)) return;
  decisions = latest;
  options($("f-symbol"), [...new Set(decisions.map((d) => d.symbol))].sort());
  options($("f-rule"), [...new Set(decisions.flatMap((d) => (d.rules || []).map(ruleName)))].sort());
  render();
}

const ruleName = (rule) => String(rule).split(":")[0];

function options(select, values) {
  const keep = select.value;
  const first = select.options[0];
  select.replaceChildren(first, ...values.map((v) => h("option", { value: v }, v)));
  select.value = values.includes(keep) ? keep : "";
}

function filtered() {
  const symbol = $("f-symbol").value, action = $("f-action").value, rule = $("f-rule").value, degraded = $("f-degraded").value;
  return decisions.filter((d) => (!symbol || d.symbol === symbol) && (!action || d.action === action)
    && (!rule || (d.rules || []).some((r) => ruleName(r) === rule))
    && (!degraded || (degraded === "yes") === Boolean(d.degraded)));
}

function render() {
  const rows = filtered();
  $("decision-count").textContent = `${rows.length} of the latest ${decisions.length} decisions shown, newest first, grouped by cycle.`;
  const cycles = [];
  for (const d of rows) {
    if (!cycles.length || cycles.at(-1).id !== d.cycle_id) cycles.push({ id: d.cycle_id, items: [] });
    cycles.at(-1).items.push(d);
  }
  if (!rows.length) return fill($("decisions"), h("p", { class: "empty" }, "No decisions match. Run a cycle (POST /cycle) or change the filters."));
  const head = h("tr", {}, COLUMNS.map((label) => h("th", { scope: "col" }, label)));
  const body = [];
  for (const cycle of cycles) {
    const degraded = cycle.items.some((d) => d.degraded);
    body.push(h("tr", { class: "cycle-row" }, h("th", { colspan: "10", scope: "rowgroup" },
      `Cycle ${cycle.id} · ${when(cycle.items[0].created_at, { seconds: true })} · ${cycle.items.length} symbol(s) `,
      degraded ? stateBadge("warn", "degraded") : null)));
    for (const d of cycle.items) body.push(row(d));
  }
  fill($("decisions"), h("div", { class: "table-wrap scroll", tabindex: "0", role: "region", "aria-label": "Decisions" },
    h("table", { class: "stack" }, h("caption", {}, "Decisions"), h("thead", {}, head), h("tbody", {}, body))));
}

const COLUMNS = ["Symbol", "Bar", "Action", "Technical", "Price", "Size", "Stop / target", "Model outputs", "Rules fired", "Chart"];

function row(d) {
  const isSelected = selected && selected.id === d.id;
  const values = [
    [d.symbol, d.degraded ? [" ", stateBadge("warn", `degraded${d.unavailable && d.unavailable.length ? `: ${d.unavailable.join(", ")} unavailable` : ""}`)] : null],
    day(d.last_bar) || "–",
    [actionBadge(d.action), d.order ? h("div", { class: "muted" }, `filled ${num(d.order.quantity, 4)} @ ${money(d.order.price)}`) : null],
    d.technical && d.technical !== "none" ? actionBadge(d.technical) : h("span", { class: "muted" }, "no signal"),
    money(d.price),
    isNumber(d.size_fraction) && d.size_fraction > 0 ? pct(d.size_fraction, 1) : "–",
    `${money(d.stop)} / ${money(d.target)}`,
    outputs(d.outputs),
    (d.rules || []).map((r) => h("span", { class: `rule${VETO.test(r) ? " veto" : ""}` }, r)),
    h("button", { type: "button", class: "small secondary", onclick: () => open(d),
      "aria-label": `Chart ${d.symbol} around ${day(d.last_bar)}`, disabled: !d.last_bar }, "Chart"),
  ];
  const numeric = new Set(["Price", "Size", "Stop / target"]);
  const cells = values.map((v, i) => cell(i === 0 ? "th" : "td", COLUMNS[i], v, numeric.has(COLUMNS[i]) ? "num" : undefined));
  return h("tr", { class: isSelected ? "selected" : "", dataset: { decision: d.id } }, cells);
}

const OUTPUT_LABELS = {
  signal_probability: ["signal P(success)", (v) => num(v, 3)],
  ensemble_score: ["ensemble score", (v) => num(v, 3)],
  anomaly: ["anomaly", (v) => (v ? "⚠ yes" : "no")],
  anomaly_score: ["anomaly score", (v) => num(v, 3)],
  forecast_trend: ["forecast trend", (v) => change(v)],
  forecast_confidence: ["forecast confidence", (v) => num(v, 3)],
};

/** Every model output the decision recorded (null: not asked, or no answer), known ones first. */
function outputs(values) {
  if (!values) return "–";
  const keys = [...Object.keys(OUTPUT_LABELS).filter((k) => k in values), ...Object.keys(values).filter((k) => !(k in OUTPUT_LABELS))];
  const shown = keys.filter((k) => values[k] !== null && values[k] !== undefined);
  if (!shown.length) return h("span", { class: "muted" }, "no model asked");
  return h("div", { class: "outputs" }, shown.map((k) => {
    const [label, format] = OUTPUT_LABELS[k] || [k, (v) => (typeof v === "object" ? JSON.stringify(v) : num(v))];
    return h("div", {}, h("span", {}, label), h("span", {}, format(values[k])));
  }));
}

// ---- one decision's chart ------------------------------------------------------------------

async function open(d) {
  selected = d;
  render();
  const panel = $("decision-detail");
  panel.hidden = false;
  const status = h("p", { class: "muted", "aria-live": "polite" }, "Loading bars and asking the anomaly and forecast services…");
  const chart = h("div", { class: "chart tall", role: "img",
    "aria-label": `${d.symbol} price around the decision of ${day(d.last_bar)}, with Bollinger bands, the anomaly score and the forecast` });
  fill(panel,
    h("div", { class: "detail-head" }, h("h3", {}, `${d.symbol} at ${day(d.last_bar)}: `, actionBadge(d.action)),
      h("button", { type: "button", class: "small secondary", onclick: close }, "Close chart")),
    status, chart, h("div", { id: "decision-facts" }));
  panel.focus();
  panel.scrollIntoView({ block: "start" });

  const bars = await attempt(`/bars/${encodeURIComponent(d.symbol)}?end=${encodeURIComponent(d.last_bar)}&n=${CHART_BARS}&after=${BARS_AFTER}`);
  if (bars.error) return fill(status, `No bars: ${bars.error.message}`);
  const history = bars.data;
  const upto = history.end_index;
  const input = Object.fromEntries(Object.entries(history.bars).map(([k, v]) => [k, v.slice(0, upto + 1)]));
  // no look-ahead: the services see only the bars up to the decision
  const instance = { symbol: d.symbol, bars: input };
  const [anomaly, forecast] = await Promise.all([
    attempt(service("anomaly", "/predict"), { method: "POST", body: { instances: [instance] } }),
    attempt(service("forecast", "/predict"), { method: "POST", body: { instances: [instance], options: { coverage: 0.9 } } }),
  ]);
  if (selected !== d) return; // another decision was opened meanwhile
  const notes = [];
  if (anomaly.error) notes.push(`anomaly service: ${anomaly.error.message}`);
  if (forecast.error) notes.push(`forecast service: ${forecast.error.message}`);
  fill(status, notes.length ? `Shown without: ${notes.join("; ")}` : "Bars from the trader; anomaly and forecast asked now of the active models, on the bars up to the decision only.");
  const a = anomaly.data && anomaly.data.predictions[0];
  const f = forecast.data && forecast.data.predictions[0];
  drawDecision(chart, d, history, a, f);
  fill($("decision-facts"), factsOf(d, a, f, anomaly.data, forecast.data));
}

function close() {
  selected = null;
  $("decision-detail").hidden = true;
  render();
}

function factsOf(d, a, f, anomalyAnswer, forecastAnswer) {
  const items = [
    ["Decided at", when(d.created_at, { seconds: true })], ["Cycle", d.cycle_id],
    ["Layers", (d.layers || []).join(", ") || "none"], ["Rules", (d.rules || []).join(", ")],
  ];
  if (a) items.push(["Anomaly score (last window)", `${num(a.score)} ${a.anomaly ? "⚠ anomalous" : "(below 1: normal)"}`],
    ["Anomaly model", anomalyAnswer.model_version]);
  if (f) items.push(["Forecast over " + f.combined.horizon + " bars", `${change(f.combined.trend)} (${f.combined.direction}), confidence ${num(f.combined.confidence)}`],
    ["Forecast interval", `${Math.round(f.coverage * 100)}% coverage`], ["Forecast model", forecastAnswer.model_version]);
  return facts(items);
}

function drawDecision(el, d, history, a, f) {
  const t = history.bars.timestamp.map(toMs);
  const ind = history.indicators;
  const upto = history.end_index;
  const decidedAt = t[upto];
  const close = history.bars.close;
  const pair = (values, from = 0, to = t.length) => values.slice(from, to).map((v, i) => [t[from + i], v]);
  const marks = (side) => ind.technical.map((s, i) => (s === side ? [t[i], close[i]] : null)).filter(Boolean);
  const series = [
    { name: "close (up to the decision)", type: "line", data: pair(close, 0, upto + 1), showSymbol: false,
      lineStyle: { color: PALETTE.black, width: 2 }, itemStyle: { color: PALETTE.black },
      markLine: { symbol: "none", label: { formatter: `decision: ${d.action}` }, lineStyle: { color: PALETTE.purple, type: "solid", width: 2 },
        data: [{ xAxis: decidedAt }] } },
    { name: "close (after: what happened next)", type: "line", data: pair(close, upto, t.length), showSymbol: false,
      lineStyle: { color: PALETTE.grey, width: 2, type: "dotted" }, itemStyle: { color: PALETTE.grey } },
    { name: "Bollinger upper", type: "line", data: pair(ind.bb_upper), showSymbol: false, lineStyle: { color: PALETTE.sky, type: "dashed", width: 1 }, itemStyle: { color: PALETTE.sky } },
    { name: "Bollinger lower", type: "line", data: pair(ind.bb_lower), showSymbol: false, lineStyle: { color: PALETTE.sky, type: "dashed", width: 1 }, itemStyle: { color: PALETTE.sky } },
    { name: "▲ technical buy", type: "scatter", data: marks("buy"), symbol: "triangle", symbolSize: 9, itemStyle: { color: PALETTE.blue } },
    { name: "▼ technical sell", type: "scatter", data: marks("sell"), symbol: "triangle", symbolRotate: 180, symbolSize: 9, itemStyle: { color: PALETTE.vermillion } },
  ];
  let last = t.at(-1);
  if (f) {
    const c = f.combined;
    const step = median(t.slice(1).map((v, i) => v - t[i])) || 86400000;
    const future = c.price.map((_, i) => (upto + 1 + i < t.length ? t[upto + 1 + i] : decidedAt + (i + 1) * step));
    last = Math.max(last, future.at(-1));
    const start = [decidedAt, close[upto]];
    series.push(
      { name: "forecast interval (lower)", type: "line", stack: "interval", data: [[decidedAt, close[upto]], ...c.lower.map((v, i) => [future[i], v])],
        showSymbol: false, lineStyle: { opacity: 0 }, itemStyle: { color: PALETTE.orange }, tooltip: { show: false } },
      { name: `forecast ${Math.round(f.coverage * 100)}% interval`, type: "line", stack: "interval",
        data: [[decidedAt, 0], ...c.upper.map((v, i) => [future[i], v - c.lower[i]])], showSymbol: false,
        lineStyle: { opacity: 0 }, areaStyle: { color: PALETTE.orange, opacity: 0.25 }, itemStyle: { color: PALETTE.orange }, tooltip: { show: false } },
      { name: "forecast path", type: "line", data: [start, ...c.price.map((v, i) => [future[i], v])], symbol: "diamond", symbolSize: 7,
        lineStyle: { color: PALETTE.orange, width: 2.5, type: "dashed" }, itemStyle: { color: PALETTE.orange } },
    );
  }
  if (a) {
    const w = a.windows;
    series.push(
      { name: "anomaly score", type: "line", xAxisIndex: 1, yAxisIndex: 1, data: w.timestamp.map((ts, i) => [toMs(ts), w.score[i]]), showSymbol: false,
        lineStyle: { color: PALETTE.green, width: 1.5 }, itemStyle: { color: PALETTE.green },
        markLine: { symbol: "none", label: { formatter: "threshold", position: "insideStartTop" }, lineStyle: { color: PALETTE.vermillion, type: "dashed" }, data: [{ yAxis: 1 }] } },
      { name: "✕ anomalous window", type: "scatter", xAxisIndex: 1, yAxisIndex: 1, symbol: "rect", symbolSize: 8,
        data: w.timestamp.map((ts, i) => (w.anomaly[i] ? [toMs(ts), w.score[i]] : null)).filter(Boolean), itemStyle: { color: PALETTE.vermillion } },
    );
  }
  series.push({ name: "RSI", type: "line", xAxisIndex: 2, yAxisIndex: 2, data: pair(ind.rsi), showSymbol: false,
    lineStyle: { color: PALETTE.purple, width: 1.5 }, itemStyle: { color: PALETTE.purple } });
  // one time range on the three panes, so a bar lines up with its anomaly score and RSI
  const axis = (i) => ({ type: "time", gridIndex: i, axisLabel: { show: i === 2, hideOverlap: true }, min: t[0], max: last });
  const small = (name, extra) => ({ type: "value", name, nameLocation: "middle", nameGap: 40, nameRotate: 90, splitNumber: 2, ...extra });
  draw(el, {
    legend: { top: 0, type: "scroll", data: series.map((x) => x.name).filter((n) => n !== "forecast interval (lower)") },
    tooltip: { trigger: "axis", axisPointer: { link: [{ xAxisIndex: "all" }] },
      valueFormatter: (v) => (typeof v === "number" ? v.toLocaleString("en-US", { maximumFractionDigits: 3 }) : v) },
    axisPointer: { link: [{ xAxisIndex: "all" }] },
    grid: [{ left: 64, right: 20, top: 56, height: "44%" }, { left: 64, right: 20, top: "62%", height: "11%" }, { left: 64, right: 20, top: "76%", height: "10%" }],
    xAxis: [axis(0), axis(1), axis(2)],
    yAxis: [{ type: "value", scale: true, gridIndex: 0, name: "price", nameLocation: "middle", nameGap: 44, nameRotate: 90 },
      small("anomaly", { gridIndex: 1, min: 0, max: (range) => Math.max(1.25, Math.ceil(range.max * 4) / 4) }), small("RSI", { gridIndex: 2, min: 0, max: 100 })],
    // opens on the last months before the decision and what followed; zoom out with the wheel or the slider
    dataZoom: [{ type: "inside", xAxisIndex: [0, 1, 2], startValue: t[Math.max(0, upto - ZOOM_BARS)], endValue: last },
      { type: "slider", xAxisIndex: [0, 1, 2], bottom: 0, height: 18, startValue: t[Math.max(0, upto - ZOOM_BARS)], endValue: last }],
    series,
  });
}

function median(values) {
  if (!values.length) return 0;
  const s = [...values].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)];
}
