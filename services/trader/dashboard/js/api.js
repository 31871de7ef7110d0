// The services' public HTTP APIs, as a browser reaches them: the trader's own routes
// directly, the model services' through the trader's same-origin proxy.

const KEY = "kryptobot.apiKey";

export const apiKey = {
  get: () => sessionStorage.getItem(KEY) || "",
  set: (value) => (value ? sessionStorage.setItem(KEY, value) : sessionStorage.removeItem(KEY)),
};

/** An answer that is not 2xx, with the services' error body read: {error, detail, field}. */
export class ApiError extends Error {
  constructor(status, body, path) {
    const kind = body && body.error ? body.error : `HTTP ${status}`;
    const detail = body && body.detail ? body.detail : typeof body === "string" ? body.slice(0, 300) : "";
    let message = `${kind}${detail ? `: ${detail}` : ""}`;
    if (status === 401) message += " (enter the right API key at the top of the page)";
    super(message);
    this.status = status;
    this.body = body;
    this.path = path;
  }
}

/** The path of a model service's route: service("signal", "/models"). */
export const service = (name, path) => `/dashboard/api/${encodeURIComponent(name)}${path}`;

/**
 * JSON from `path` (or text, for `/metrics`). The key, when one is entered, goes with every
 * call: the services check it on the calls that change state (and on reads, if they do).
 */
export async function call(path, { method = "GET", body, signal } = {}) {
  const headers = { Accept: "application/json" };
  const key = apiKey.get();
  if (key) headers["X-API-Key"] = key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  } catch (exc) {
    if (exc.name === "AbortError") throw exc;
    throw new ApiError(0, { error: "NetworkError", detail: `the trader did not answer ${method} ${path}` }, path);
  }
  const type = resp.headers.get("content-type") || "";
  const data = type.includes("json") ? await resp.json().catch(() => null) : await resp.text();
  if (!resp.ok) throw new ApiError(resp.status, data, path);
  return data;
}

/** call(), but a failure is returned as {error} instead of thrown (for views that show what they can). */
export async function attempt(path, options) {
  try {
    return { data: await call(path, options) };
  } catch (error) {
    if (error.name === "AbortError") throw error;
    return { error };
  }
}

/** Prometheus text -> {metric name: [{labels, value}]}. */
export function parseMetrics(text) {
  const out = {};
  for (const line of String(text).split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const pair of (m[3] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    (out[m[1]] ||= []).push({ labels, value: Number(m[4]) });
  }
  return out;
}

// ---- the one notice area (role=alert): the latest error or confirmation, visible to all ----
export function notify(message, kind = "error") {
  const box = document.getElementById("notice");
  box.className = `notice notice-${kind}`;
  box.hidden = false;
  box.querySelector(".notice-text").textContent = `${kind === "error" ? "Error: " : ""}${message}`;
}

export function clearNotice() {
  document.getElementById("notice").hidden = true;
}
