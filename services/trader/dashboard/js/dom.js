// Building the page from data: elements are made with textContent only (a rule or a
// symbol from the ledger is never parsed as HTML), and numbers are formatted one way.

/** h("td", {class: "num"}, "1.0") -> element; attributes starting with "on" are listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

const drawn = new Map();

/**
 * Whether `value` differs from what was last drawn under `key` (and remember it). Views
 * redraw on change only: a redraw would take the keyboard focus from a control inside it.
 */
export function changed(key, value) {
  const text = JSON.stringify(value);
  if (drawn.get(key) === text) return false;
  drawn.set(key, text);
  return true;
}

/** Replace the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const isNumber = (v) => typeof v === "number" && Number.isFinite(v);

export function num(v, digits = 3) {
  if (!isNumber(v)) return v === null || v === undefined ? "–" : String(v);
  if (Number.isInteger(v) && Math.abs(v) < 1e15) return v.toLocaleString("en-US");
  const abs = Math.abs(v);
  if (abs !== 0 && (abs < 10 ** -digits || abs >= 1e9)) return v.toExponential(2);
  return v.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

export function money(v) {
  return isNumber(v) ? v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 }) : "–";
}

/** 0.0123 -> "1.23%"; a change (signed) -> "+1.23%". */
export function pct(v, digits = 2, { signed = false } = {}) {
  if (!isNumber(v)) return "–";
  return `${signed && v > 0 ? "+" : ""}${(v * 100).toFixed(digits)}%`;
}

export const change = (v, digits = 2) => pct(v, digits, { signed: true });

/** ISO text of the services (naive = UTC) -> epoch ms. */
export function toMs(iso) {
  if (iso === null || iso === undefined) return NaN;
  const s = String(iso);
  return Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(s) ? s : `${s}Z`);
}

/** "2024-12-10 14:03 UTC" (or just the day for midnight bars). */
export function when(iso, { seconds = false } = {}) {
  const ms = toMs(iso);
  if (!Number.isFinite(ms)) return iso ? String(iso) : "–";
  const d = new Date(ms).toISOString();
  if (d.endsWith("T00:00:00.000Z")) return d.slice(0, 10);
  return `${d.slice(0, 10)} ${d.slice(11, seconds ? 19 : 16)} UTC`;
}

export const day = (iso) => (iso ? String(iso).slice(0, 10) : "");

// Meaning is never in colour alone: each badge has an icon and a word.
const ACTIONS = {
  buy: ["▲", "Buy"], sell: ["▼", "Sell"], hold: ["■", "Hold"], skip: ["⊘", "Skip"],
  none: ["·", "None"], veto: ["✕", "Veto"],
};

export function actionBadge(action) {
  const [icon, word] = ACTIONS[action] || ["?", String(action)];
  return h("span", { class: `badge action-${ACTIONS[action] ? action : "other"}` },
    h("span", { "aria-hidden": "true" }, icon), ` ${word}`);
}

const STATES = {
  ok: ["✓", "ok"], bad: ["✕", "bad"], warn: ["⚠", "warn"], idle: ["○", "idle"], busy: ["◐", "busy"],
};

/** A status badge: kind in ok | bad | warn | idle | busy, with its text. */
export function stateBadge(kind, text) {
  const [icon] = STATES[kind] || STATES.idle;
  return h("span", { class: `badge state-${kind}` }, h("span", { "aria-hidden": "true" }, icon), ` ${text}`);
}

/** A cell labelled by its column (the label shows when a narrow screen stacks the table);
 * its content in one block, so it stacks as one value. */
export function cell(tag, label, content, cls) {
  return h(tag, { class: cls, scope: tag === "th" ? "row" : undefined, "data-label": label }, h("div", { class: "cell" }, content));
}

/** A table from rows: columns = [{label, value: row => node|text, class?}]. */
export function table(columns, rows, { caption, empty = "Nothing yet.", rowAttrs } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  const head = h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.class }, c.label)));
  const body = rows.map((row, i) => h("tr", rowAttrs ? rowAttrs(row, i) : {},
    columns.map((c) => cell(c.header ? "th" : "td", c.label, c.value(row, i), c.class))));
  return h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption || "table" },
    h("table", { class: "stack" }, caption ? h("caption", {}, caption) : null, h("thead", {}, head), h("tbody", {}, body)));
}

/** [[term, description], ...] as a definition list. */
export function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(Boolean).map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))));
}

/** A collapsible block of pretty JSON. */
export function jsonBlock(summary, value) {
  return h("details", { class: "json" }, h("summary", {}, summary), h("pre", {}, JSON.stringify(value, null, 2)));
}
