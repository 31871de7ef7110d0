// The dashboard's entry: the views behind the tabs (#portfolio, #decisions, ...), the API
// key field, and live updates by polling the view in sight.

import { apiKey, call, clearNotice, notify } from "./js/api.js";
import { resizeWithin, sweep } from "./js/charts.js";
import * as backtests from "./js/backtests.js";
import * as decisions from "./js/decisions.js";
import * as health from "./js/health.js";
import * as models from "./js/models.js";
import * as portfolio from "./js/portfolio.js";

const VIEWS = { portfolio, decisions, models, backtests, health };
const POLL_MS = 5000;
const $ = (id) => document.getElementById(id);
let current = null;
let timer = null;
let busy = false;

function viewFromHash() {
  const name = location.hash.replace(/^#/, "");
  return name in VIEWS ? name : "portfolio";
}

async function show(name, { focus = false } = {}) {
  current = name;
  for (const view of Object.keys(VIEWS)) $(`view-${view}`).hidden = view !== name;
  for (const link of document.querySelectorAll(".tabs a")) {
    if (link.dataset.view === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${name[0].toUpperCase()}${name.slice(1)} · KryptoBot dashboard`;
  if (focus) $("main").focus({ preventScroll: true });
  await update();
  resizeWithin($(`view-${name}`));
}

/** Refresh the view in sight; one refresh at a time, a failure said in the notice area. */
async function update() {
  if (busy) return;
  busy = true;
  const view = $(`view-${current}`);
  view.setAttribute("aria-busy", "true");
  try {
    await VIEWS[current].refresh();
    sweep();
    $("updated").textContent = `updated ${new Date().toISOString().slice(11, 19)} UTC`;
    view.dataset.loaded = "true";
  } catch (error) {
    notify(`${current}: ${error.message}`);
  } finally {
    view.removeAttribute("aria-busy");
    busy = false;
  }
}

function schedule() {
  clearTimeout(timer);
  if (!$("live").checked) return;
  timer = setTimeout(async () => {
    if (!document.hidden) await update();
    schedule();
  }, POLL_MS);
}

function keyForm() {
  const input = $("api-key");
  const state = $("key-state");
  const say = () => { state.textContent = apiKey.get() ? "key in use (this tab only)" : "no key"; };
  input.value = apiKey.get();
  say();
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    apiKey.set(input.value.trim());
    say();
    clearNotice();
  });
  $("key-forget").addEventListener("click", () => {
    apiKey.set("");
    input.value = "";
    say();
  });
}

async function start() {
  keyForm();
  $("notice").querySelector(".notice-close").addEventListener("click", clearNotice);
  $("live").addEventListener("change", schedule);
  let config;
  try {
    config = await call("/dashboard/api/config");
  } catch (error) {
    notify(`the trader did not say which services it uses: ${error.message}`);
    return;
  }
  for (const view of Object.values(VIEWS)) if (view.init) view.init(config);
  addEventListener("hashchange", () => show(viewFromHash(), { focus: true }));
  await show(viewFromHash());
  document.body.dataset.ready = "true";
  schedule();
}

start();
