// Models: per service, the stored versions, which is active and why, out-of-sample metrics
// next to their baselines, the reports, activation / roll-back (needs the key), training
// jobs with live progress, and a form that starts one.

import { attempt, call, notify, service } from "./api.js";
import { fill, h, isNumber, jsonBlock, num, stateBadge, table, when, day } from "./dom.js";
import { comparisons, headline, judge } from "./metrics.js";

const $ = (id) => document.getElementById(id);
const RUNNING = new Set(["queued", "running", "trained"]);
const POLL_MS = 1000;
let services = [];
const seen = new Map(); // service -> what was last drawn (to redraw only on change)
const opened = new Set(); // versions whose details are open
const polling = new Set();

export function init(config) {
  services = config.services.map((s) => s.name);
  const select = $("t-service");
  select.replaceChildren(...config.services.map((s) => h("option", { value: s.name }, s.name)));
  const examples = Object.fromEntries(config.services.map((s) => [s.name, s.training_example]));
  const prefill = () => {
    const { data = {}, activate, ...params } = examples[select.value] || {};
    $("t-symbols").value = (data.symbols || []).join(", ");
    $("t-start").value = data.start || "";
    $("t-end").value = data.end || "";
    $("t-params").value = JSON.stringify({ ...params, ...(data.source ? { data: { source: data.source } } : {}) }, null, 2);
  };
  select.addEventListener("change", prefill);
  prefill();
  $("train-form").addEventListener("submit", (e) => { e.preventDefault(); startTraining(); });
  $("models").replaceChildren(...services.map((name) => h("div", { class: "card", id: `svc-${name}` },
    h("div", { class: "service-head" }, h("h3", {}, name)), h("p", { class: "muted" }, "Loading…"))));
}

export async function refresh() {
  await Promise.all(services.map(refreshService));
}

async function refreshService(name) {
  const [models, ready, jobs] = await Promise.all([
    attempt(service(name, "/models")), attempt(service(name, "/health/ready")), attempt(service(name, "/jobs")),
  ]);
  const signature = JSON.stringify([models, ready, jobs]);
  if (seen.get(name) !== signature) {
    seen.set(name, signature);
    draw(name, models, ready, jobs);
  }
  if ((jobs.data || []).some((j) => RUNNING.has(j.state))) poll(name);
}

/** Follow a service's running jobs every second until none runs (then its versions are redrawn). */
function poll(name) {
  if (polling.has(name)) return;
  polling.add(name);
  setTimeout(async () => {
    polling.delete(name);
    await refreshService(name).catch(() => {});
  }, POLL_MS);
}

function draw(name, models, ready, jobs) {
  const card = $(`svc-${name}`);
  const versions = (models.data && models.data.models) || [];
  const active = versions.filter((v) => v.active);
  const readiness = ready.data
    ? stateBadge("ok", "ready")
    : stateBadge("bad", `not ready${ready.error ? `: ${ready.error.message}` : ""}`);
  fill(card,
    h("div", { class: "service-head" }, h("h3", {}, name), readiness,
      h("span", {}, active.length ? `active: ${active.map((v) => v.version).join(", ")}` : "no active version")),
    models.error ? h("p", { class: "inline-result error" }, models.error.message) : versionTable(name, versions),
    jobs.error ? h("p", { class: "inline-result error" }, jobs.error.message) : jobTable(jobs.data || []),
  );
}

const number = (version) => Number((String(version).match(/-v(\d+)$/) || [])[1] || NaN);

function versionTable(name, versions) {
  const activeOf = Object.fromEntries(versions.filter((v) => v.active).map((v) => [v.line, v]));
  const rows = [...versions].sort((a, b) => (a.line === b.line ? number(b.version) - number(a.version) : a.line.localeCompare(b.line)));
  const tableEl = table([
    { label: "Version", value: (v) => v.version, header: true },
    { label: "Status", value: (v) => (v.active ? stateBadge("ok", "active") : stateBadge("idle", "inactive")) },
    { label: "Why", value: (v) => promotion(v) },
    { label: "Created", value: (v) => when(v.created_at) },
    { label: "Trained on", value: (v) => trainedOn(v.data_range) },
    { label: "Out of sample vs baseline", value: (v) => headlineCell(v) },
    { label: "Actions", value: (v) => h("div", { class: "actions" }, activateButton(name, v, activeOf[v.line]), detailsButton(name, v)) },
  ], rows, { caption: `${name}: stored versions`, empty: "No versions yet: start a training job above." });
  const details = rows.filter((v) => opened.has(v.version)).map((v) => versionDetails(name, v));
  return h("div", {}, tableEl, details);
}

/** Why a version is (not) active: the promotion gate's verdict, when the service records one. */
function promotion(v) {
  const p = v.promotion;
  if (p === undefined || p === null) return h("span", { class: "muted" }, v.active ? "active (no verdict recorded)" : "–");
  if (typeof p !== "object") return h("span", { class: "promotion" }, String(p));
  const verdictBadge = "promote" in p ? (p.promote ? stateBadge("ok", "passed the gate") : stateBadge("warn", "did not pass")) : null;
  const values = [["metric", p.metric], ["this", p.candidate], ["baseline", p.baseline],
    ["champion", p.champion === null || p.champion === undefined ? null : `${num(p.champion)}${p.champion_version ? ` (${p.champion_version})` : ""}`],
    ["tolerance", p.tolerance]]
    .filter(([, x]) => x !== null && x !== undefined).map(([k, x]) => `${k} ${isNumber(x) ? num(x, 4) : x}`).join(" · ");
  const said = p.outcome && p.reason && p.outcome.includes(p.reason) ? [p.outcome] : [p.reason, p.outcome].filter(Boolean);
  return h("div", { class: "promotion" }, verdictBadge, " ", said.map((text) => h("div", {}, text)),
    values ? h("div", { class: "muted" }, values) : null);
}

function trainedOn(range) {
  if (!range) return "–";
  const symbols = Array.isArray(range.symbols) ? range.symbols.join(", ") : "";
  return `${day(range.start)} → ${day(range.end)}${symbols ? ` (${symbols})` : ""}`;
}

/** The metric the version is judged by: the promotion gate's, else the first one with a baseline. */
function headlineCell(v) {
  const p = v.promotion;
  const c = p && p.metric && isNumber(p.candidate) && isNumber(p.baseline)
    ? { path: "", metric: p.metric, value: p.candidate, baseline: p.baseline, better: judge(p.metric, p.candidate, p.baseline) }
    : headline(v.metrics);
  if (!c) return h("span", { class: "muted" }, "no baseline recorded");
  return h("span", {}, `${c.path ? `${c.path} › ` : ""}${c.metric} ${num(c.value, 4)} vs ${num(c.baseline, 4)} `, verdict(c.better));
}

function verdict(better) {
  if (better === "better") return h("span", { class: "better" }, "▲ better");
  if (better === "worse") return h("span", { class: "worse" }, "▼ worse");
  return h("span", { class: "muted" }, "= same");
}

function activateButton(name, v, current) {
  if (v.active) return null;
  const back = current && number(v.version) < number(current.version);
  const label = back ? `Roll back to ${v.version}` : `Activate ${v.version}`;
  const result = h("span", { class: "inline-result", "aria-live": "polite" });
  const button = h("button", { type: "button", class: "small", dataset: { activate: v.version }, onclick: async () => {
    button.disabled = true;
    result.className = "inline-result";
    result.textContent = "activating…";
    try {
      await call(service(name, `/models/${encodeURIComponent(v.version)}/activate`), { method: "POST" });
      notify(`${name}: ${v.version} is now active`, "info");
      seen.delete(name);
      await refreshService(name);
    } catch (error) {
      button.disabled = false;
      result.className = "inline-result error";
      result.textContent = `Activation refused: ${error.message}`;
      notify(`${name}: activating ${v.version} was refused: ${error.message}`);
    }
  } }, label);
  return h("span", {}, button, " ", result);
}

function detailsButton(name, v) {
  const open = opened.has(v.version);
  return h("button", { type: "button", class: "small secondary", "aria-expanded": String(open), onclick: () => {
    if (open) opened.delete(v.version); else opened.add(v.version);
    seen.delete(name);
    refreshService(name);
  } }, open ? `Hide ${v.version}` : `Details of ${v.version}`);
}

function versionDetails(name, v) {
  const rows = comparisons(v.metrics);
  const reports = v.reports || [];
  const reportUrl = (file) => service(name, `/reports/${encodeURIComponent(file)}?version=${encodeURIComponent(v.version)}`);
  const jsonOut = h("div", {});
  return h("section", { class: "card", "aria-label": `${v.version} details` },
    h("h4", {}, `${v.version}: out-of-sample metrics next to their baselines`),
    table([
      { label: "Where", value: (c) => c.path || "–" },
      { label: "Metric", value: (c) => c.metric, header: true },
      { label: "This version", value: (c) => num(c.value, 4), class: "num" },
      { label: "Baseline", value: (c) => num(c.baseline, 4), class: "num" },
      { label: "Baseline is", value: (c) => c.against },
      { label: "Verdict", value: (c) => verdict(c.better) },
    ], rows, { caption: "Metrics vs baselines", empty: "This version records no baseline to compare with." }),
    h("h4", {}, "Reports"),
    h("div", { class: "actions" }, reports.filter((f) => f.endsWith(".json")).map((file) =>
      h("button", { type: "button", class: "small secondary", onclick: async () => {
        const { data, error } = await attempt(reportUrl(file));
        fill(jsonOut, error ? h("p", { class: "inline-result error" }, error.message) : jsonBlock(file, data));
        const details = jsonOut.querySelector("details");
        if (details) details.open = true;
      } }, `Show ${file}`))),
    jsonOut,
    h("div", { class: "reports" }, reports.filter((f) => f.endsWith(".png")).map((file) =>
      h("figure", {}, h("a", { href: reportUrl(file), target: "_blank", rel: "noopener" },
        h("img", { src: reportUrl(file), alt: `${file} of ${v.version}`, loading: "lazy" })), h("figcaption", {}, file)))),
    jsonBlock("Parameters", v.params || {}),
    jsonBlock("All metrics", v.metrics || {}),
  );
}

function jobTable(jobs) {
  const rows = [...jobs].sort((a, b) => String(b.created_at).localeCompare(String(a.created_at))).slice(0, 10);
  return table([
    { label: "Job", value: (j) => j.id, header: true },
    { label: "Kind", value: (j) => j.kind },
    { label: "State", value: (j) => jobState(j.state) },
    { label: "Progress", value: (j) => h("span", {}, h("progress", { max: "1", value: String(j.progress || 0),
      "aria-label": `job ${j.id} progress` }), ` ${Math.round((j.progress || 0) * 100)}%`) },
    { label: "Message", value: (j) => [j.message || "", j.details && detailsText(j.details) ? h("div", { class: "muted" }, detailsText(j.details)) : null,
      j.error ? h("div", { class: "inline-result error" }, j.error) : null] },
    { label: "Versions", value: (j) => (j.versions || []).join(", ") || "–" },
    { label: "Started", value: (j) => when(j.started_at || j.created_at, { seconds: true }) },
    { label: "Finished", value: (j) => when(j.finished_at, { seconds: true }) },
  ], rows, { caption: "Training jobs, newest first", empty: "No training jobs." });
}

function detailsText(details) {
  // the promotion verdicts are in the versions table (and the job's message says the outcome)
  return Object.entries(details).filter(([k]) => k !== "promotion")
    .map(([k, v]) => `${k} ${v && typeof v === "object" ? JSON.stringify(v) : isNumber(v) ? num(v, 4) : v}`).join(" · ");
}

function jobState(state) {
  if (state === "succeeded") return stateBadge("ok", state);
  if (state === "failed") return stateBadge("bad", state);
  if (state === "cancelled") return stateBadge("idle", state);
  return stateBadge("busy", state);
}

async function startTraining() {
  const name = $("t-service").value;
  const result = $("train-result");
  let params;
  try {
    params = JSON.parse($("t-params").value || "{}");
  } catch (exc) {
    result.className = "inline-result error";
    result.textContent = `Model parameters are not JSON: ${exc.message}`;
    return;
  }
  const symbols = $("t-symbols").value.split(",").map((s) => s.trim()).filter(Boolean);
  const data = { ...(params.data || {}) };
  if (symbols.length) data.symbols = symbols;
  if ($("t-start").value) data.start = $("t-start").value;
  if ($("t-end").value) data.end = $("t-end").value;
  const body = { ...params, data };
  const activate = $("t-activate").value;
  if (activate) body.activate = activate === "true" ? true : activate === "false" ? false : activate;
  const button = $("t-submit");
  button.disabled = true;
  result.className = "inline-result";
  result.textContent = "starting…";
  try {
    const job = await call(service(name, "/train"), { method: "POST", body });
    result.className = "inline-result ok";
    result.textContent = `${name}: job ${job.id} ${job.state}; its progress is in the ${name} card below.`;
    seen.delete(name);
    await refreshService(name);
  } catch (error) {
    result.className = "inline-result error";
    result.textContent = `Training refused: ${error.message}`;
    notify(`${name}: training refused: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}
