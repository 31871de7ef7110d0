// Portfolio: equity from the ledger, cash, open positions with their barriers, orders.

import { attempt, call } from "./api.js";
import { draw, PALETTE } from "./charts.js";
import { actionBadge, change, changed, day, fill, h, isNumber, money, num, table, toMs, when } from "./dom.js";

const $ = (id) => document.getElementById(id);

export async function refresh() {
  const [portfolio, equity, orders, decisions] = await Promise.all([
    call("/portfolio"), attempt("/equity"), call("/orders?limit=200"), attempt("/decisions?limit=500"),
  ]);
  // the curve's last point is stamped with the request's time: its values say whether it changed
  const curveValues = equity.data ? equity.data.points.map((p) => [p.bar, p.equity]) : equity.error.message;
  if (!changed("portfolio", [portfolio, curveValues, orders, decisions.data && decisions.data[0]])) return;
  kpis(portfolio);
  curve(equity);
  await positions(portfolio, decisions.data || []);
  fill($("orders"), orderTable(orders));
}

function kpis(p) {
  const cards = [
    ["Equity", money(p.equity)], ["Cash", money(p.cash)], ["Market value", money(p.market_value)],
    ["Return", change(p.return, 3)], ["Initial cash", money(p.initial_cash)], ["Open positions", num(Object.keys(p.positions || {}).length)],
  ];
  fill($("portfolio-kpis"), cards.map(([label, value]) =>
    h("div", { class: "kpi" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value))));
}

/** Equity after each cycle, evenly spaced (a bot idle for a week is not a flat week of trading). */
function curve({ data, error }) {
  const el = $("equity-chart");
  if (error) return fill(el, h("p", { class: "empty" }, `No equity curve: ${error.message}`));
  const points = [...(data.points || [])];
  const now = points.pop(); // the account as the broker has it now: shown when it differs from the last cycle
  if (now && (!points.length || Math.abs(now.equity - points.at(-1).equity) > 1e-6)) points.push({ ...now, bar: "now" });
  const labels = points.map((p) => (p.bar === "now" ? "now" : `${when(p.time, { seconds: true })}\nbar ${day(p.bar) || "–"}`));
  draw(el, {
    grid: { left: 80, right: 24, top: 40, bottom: points.length > 30 ? 84 : 60 },
    legend: { top: 4 },
    tooltip: { trigger: "axis", formatter: (items) => {
      const p = points[items[0].dataIndex];
      return [labels[items[0].dataIndex].replace("\n", " · "),
        `equity ${money(p.equity)}`, `cash ${money(p.cash)}`, `market value ${money(p.market_value)}`].join("<br>");
    } },
    xAxis: { type: "category", data: labels, name: "decision cycle", nameLocation: "middle", nameGap: 40, axisLabel: { hideOverlap: true } },
    yAxis: { type: "value", scale: true, name: "equity", nameLocation: "middle", nameGap: 64, nameRotate: 90 },
    dataZoom: points.length > 30 ? [{ type: "inside" }, { type: "slider", bottom: 8, height: 20 }] : [],
    series: [
      { name: "equity", type: "line", data: points.map((p) => p.equity), showSymbol: points.length < 80, symbol: "circle", symbolSize: 7,
        lineStyle: { color: PALETTE.blue, width: 2.5 }, itemStyle: { color: PALETTE.blue } },
      { name: "initial cash", type: "line", data: points.map(() => data.initial_cash), showSymbol: false,
        lineStyle: { color: PALETTE.grey, width: 1, type: "dotted" }, itemStyle: { color: PALETTE.grey } },
    ],
  });
}

/** Bars held: bars after the entry bar, up to the symbol's latest decided bar (as a cycle counts them). */
async function barsHeld(position, decisions) {
  if (!position.opened_bar) return null;
  const latest = decisions.find((d) => d.symbol === position.symbol && d.last_bar);
  const end = latest ? `&end=${encodeURIComponent(latest.last_bar)}` : "";
  const { data } = await attempt(`/bars/${encodeURIComponent(position.symbol)}?start=${encodeURIComponent(position.opened_bar)}${end}&n=2000`);
  if (!data) return null;
  const opened = toMs(position.opened_bar);
  return data.bars.timestamp.filter((t) => toMs(t) > opened).length;
}

async function positions(portfolio, decisions) {
  const rows = Object.values(portfolio.positions || {});
  const held = await Promise.all(rows.map((p) => barsHeld(p, decisions)));
  rows.forEach((p, i) => { p.bars_held = held[i]; });
  const pnl = (p) => p.quantity * (p.last_price - p.avg_price);
  fill($("positions"), table([
    { label: "Symbol", value: (p) => p.symbol, header: true },
    { label: "Quantity", value: (p) => num(p.quantity, 4), class: "num" },
    { label: "Entry (avg)", value: (p) => money(p.avg_price), class: "num" },
    { label: "Last", value: (p) => money(p.last_price), class: "num" },
    { label: "Stop", value: (p) => money(p.stop), class: "num" },
    { label: "Target", value: (p) => money(p.target), class: "num" },
    { label: "Opened on bar", value: (p) => when(p.opened_bar) },
    { label: "Bars held", value: (p) => num(p.bars_held), class: "num" },
    { label: "Unrealised P&L", value: (p) => signed(pnl(p), money(pnl(p))), class: "num" },
    { label: "P&L %", value: (p) => signed(pnl(p), change(p.last_price / p.avg_price - 1)), class: "num" },
  ], rows, { caption: "Open positions", empty: "No open positions." }));
}

/** A gain or a loss, said with a sign and an arrow as well as a colour. */
export function signed(v, text) {
  if (!isNumber(v) || v === 0) return text;
  return h("span", { class: v > 0 ? "better" : "worse" }, `${v > 0 ? "▲" : "▼"} ${text}`);
}

function orderTable(orders) {
  return table([
    { label: "Time", value: (o) => when(o.created_at, { seconds: true }) },
    { label: "Symbol", value: (o) => o.symbol, header: true },
    { label: "Side", value: (o) => actionBadge(o.side) },
    { label: "Quantity", value: (o) => num(o.quantity, 4), class: "num" },
    { label: "Fill price", value: (o) => money(o.price), class: "num" },
    { label: "Notional", value: (o) => money(o.quantity * o.price), class: "num" },
    { label: "Commission", value: (o) => money(o.commission), class: "num" },
    { label: "Status", value: (o) => o.status },
    { label: "Order id", value: (o) => o.client_order_id },
    { label: "Rules", value: (o) => ((o.decision && o.decision.rules) || []).map((r) => h("span", { class: "rule" }, r)) },
  ], orders, { caption: "Orders, newest first", empty: "No orders yet." });
}
