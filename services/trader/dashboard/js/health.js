// Health: each service's readiness and model versions, the trader's circuit breakers and
// Redis, and the forecast cache's hit rate (from the trader's /metrics).

import { attempt, parseMetrics, service } from "./api.js";
import { changed, facts, fill, h, num, pct, stateBadge, table } from "./dom.js";

let services = [];

export function init(config) {
  services = config.services.map((s) => s.name);
}

const BREAKER = { closed: ["ok", "closed (calls go through)"], open: ["bad", "open (failing fast)"], "half-open": ["warn", "half-open (one trial call)"] };

export async function refresh() {
  const [trader, metrics, ...ready] = await Promise.all([
    attempt("/health/ready"), attempt("/metrics"), ...services.map((n) => attempt(service(n, "/health/ready"))),
  ]);
  const cache = cacheStats(metrics.data); // the rest of /metrics changes with every request
  if (!changed("health", [trader, cache, ready])) return;
  const cards = [traderCard(trader, cache)];
  services.forEach((name, i) => cards.push(serviceCard(name, ready[i], trader.data)));
  fill(document.getElementById("health"), cards);
}

function traderCard(trader, cache) {
  const t = trader.data;
  return h("div", { class: "card", id: "health-trader" },
    h("div", { class: "service-head" }, h("h3", {}, "trader"), t ? stateBadge("ok", t.status) : stateBadge("bad", trader.error.message)),
    t ? facts([
      ["Redis (forecast cache)", t.redis ? stateBadge("ok", "answers") : stateBadge("bad", "down")],
      ["Forecast cache hit rate", cache.text],
      ...others(t, ["status", "redis", "services"]),
    ]) : null,
    t ? table([
      { label: "Service", value: ([n]) => n, header: true },
      { label: "Circuit breaker", value: ([, s]) => stateBadge(...(BREAKER[s] || ["idle", s])) },
    ], Object.entries(t.services || {}), { caption: "The trader's circuit breakers" }) : null,
    cache.rows.length ? table([
      { label: "Outcome", value: (r) => r.labels.outcome || "–", header: true },
      { label: "Lookups", value: (r) => num(r.value), class: "num" },
    ], cache.rows, { caption: "Forecast cache lookups" }) : null);
}

/** The fields of a readiness answer this page does not know yet, as they are. */
function others(body, known) {
  return Object.entries(body).filter(([k]) => !known.includes(k))
    .map(([k, v]) => [k.replaceAll("_", " "), typeof v === "object" ? JSON.stringify(v) : String(v)]);
}

function cacheStats(text) {
  if (!text) return { text: "no metrics", rows: [] };
  const rows = parseMetrics(text).kryptobot_forecast_cache_total || [];
  const count = (outcome) => rows.filter((r) => r.labels.outcome === outcome).reduce((s, r) => s + r.value, 0);
  const total = rows.reduce((s, r) => s + r.value, 0);
  if (!total) return { text: "no lookups yet", rows };
  return { text: `${pct(count("hit") / total, 1)} (${num(count("hit"))} of ${num(total)} lookups)`, rows };
}

function serviceCard(name, ready, trader) {
  const r = ready.data;
  const breaker = trader && trader.services ? trader.services[name] : null;
  return h("div", { class: "card", id: `health-${name}` },
    h("div", { class: "service-head" }, h("h3", {}, name), r ? stateBadge("ok", r.status) : stateBadge("bad", "not ready")),
    r ? facts([...Object.entries(r.model_versions || {}).map(([line, version]) => [`active ${line}`, version]),
      ...others(r, ["status", "model_versions"])])
      : h("p", { class: "inline-result error" }, ready.error.message),
    breaker ? h("p", {}, "Trader's breaker: ", stateBadge(...(BREAKER[breaker] || ["idle", breaker]))) : null);
}
