// A version's out-of-sample metrics next to its baselines, read from the conventions the
// services' metadata follows (each service stores its own shape):
//   {f1, ..., baseline: {f1, ...}}       a baseline (or "naive", "chance") measured alike
//   {accuracy, baseline_accuracy}        a sibling named after the metric
//   {brier, brier_coin_flip}             a sibling named after the baseline
//   {baselines: {name: what}, model: {...}, name: {...}}  models compared on one holdout

import { isNumber } from "./dom.js";

const BASELINE_KEYS = ["baseline", "naive", "chance"];
const BASELINE_SUFFIXES = ["coin_flip", "chance", "naive", "random", "baseline"];
const LOWER_IS_BETTER = /brier|mse|mae|rmse|loss|error|drawdown_duration/;
const SKIP = new Set(["confusion_matrix", "feature_importance", "per_step", "reliability", "threshold_sweep"]);

/** [{path, metric, value, baseline, against, better}] for every metric that has a baseline. */
export function comparisons(metrics) {
  const out = [];
  walk(metrics || {}, [], out);
  return out;
}

function walk(node, path, out) {
  if (!node || typeof node !== "object" || Array.isArray(node)) return;
  for (const key of BASELINE_KEYS) {
    const base = node[key];
    if (base && typeof base === "object" && !Array.isArray(base)) {
      const against = describe(node, key);
      for (const [metric, value] of Object.entries(node)) {
        if (isNumber(value) && isNumber(base[metric])) out.push(row(path, metric, value, base[metric], against));
      }
    }
  }
  for (const [metric, value] of Object.entries(node)) {
    if (!isNumber(value)) continue;
    for (const [name, against] of [[`baseline_${metric}`, describe(node, "baseline")], [`naive_${metric}`, "naive"]]) {
      if (isNumber(node[name])) out.push(row(path, metric, value, node[name], against));
    }
    for (const suffix of BASELINE_SUFFIXES) {
      if (isNumber(node[`${metric}_${suffix}`])) out.push(row(path, metric, value, node[`${metric}_${suffix}`], suffix.replaceAll("_", " ")));
    }
  }
  const named = node.baselines && typeof node.baselines === "object" ? Object.keys(node.baselines) : [];
  const peers = named.filter((n) => node[n] && typeof node[n] === "object");
  if (peers.length) {
    const models = Object.keys(node).filter((k) => !named.includes(k) && k !== "baselines" && node[k] && typeof node[k] === "object"
      && !Array.isArray(node[k]) && Object.values(node[k]).some(isNumber));
    for (const model of models) {
      for (const peer of peers) {
        for (const [metric, value] of Object.entries(node[model])) {
          if (isNumber(value) && isNumber(node[peer][metric]) && !/^(windows|events|flags)$/.test(metric)) {
            out.push(row([...path, model], metric, value, node[peer][metric], peer.replaceAll("_", " ")));
          }
        }
      }
    }
  }
  for (const [key, child] of Object.entries(node)) {
    if (BASELINE_KEYS.includes(key) || SKIP.has(key) || key === "baselines" || peers.includes(key)) continue;
    if (child && typeof child === "object" && !Array.isArray(child)) walk(child, [...path, key], out);
  }
}

function describe(node, key) {
  const text = node[key];
  if (typeof text === "string") return text; // e.g. "naive last value: no change (0) at every step"
  if (key === "naive" && typeof node.baseline === "string") return node.baseline;
  return key;
}

/** "better", "worse" or "same": `value` of `metric` against `baseline`. */
export function judge(metric, value, baseline) {
  if (value === baseline) return "same";
  return (value < baseline) === LOWER_IS_BETTER.test(metric) ? "better" : "worse";
}

function row(path, metric, value, baseline, against) {
  return { path: path.join(" › "), metric, value, baseline, against, better: judge(metric, value, baseline) };
}

/** The one metric a version is judged by, for the versions table: the first comparison found. */
export function headline(metrics) {
  const all = comparisons(metrics);
  const preferred = ["roc_auc", "skill", "f1", "rmse", "accuracy"];
  const depth = (c) => (c.path ? c.path.split(" › ").length : 0);
  for (const name of preferred) {
    const hits = all.filter((c) => c.metric === name).sort((x, y) => depth(x) - depth(y));
    if (hits.length) return hits[0];
  }
  return all[0] || null;
}
