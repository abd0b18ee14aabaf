// The service's public API, as the page calls it: JSON requests, errors as ApiError, and
// Server-Sent Events read with fetch() so that the API token can travel in a header
// (EventSource cannot send one).

const TOKEN_KEY = "agent-notify.token";

/** The API token typed into the page, kept for this browser tab's session only. */
export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An answer other than 2xx, with the service's error code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** "409 key_conflict: workflow 'x' exists with another input", or the network failure. */
  toString() {
    return this.status ? `${this.status} ${this.code}: ${this.message}` : this.message;
  }
}

const listeners = { unauthorized: [] };

/** Call `callback(error)` whenever the service answers 401 (a token is missing or wrong). */
export function onUnauthorized(callback) {
  listeners.unauthorized.push(callback);
}

function headers(extra = {}) {
  const all = { ...extra };
  if (token()) all.Authorization = `Bearer ${token()}`;
  return all;
}

export function path(...segments) {
  return segments.map((segment) => encodeURIComponent(segment)).join("/");
}

async function failure(response) {
  let code = "http_error";
  let message = response.statusText || "the request failed";
  try {
    const body = await response.json();
    if (body && body.error) ({ code, message } = body.error);
  } catch {
    // Not the service's JSON (a proxy's page, say): keep the status line.
  }
  const error = new ApiError(response.status, code, message);
  if (response.status === 401) for (const callback of listeners.unauthorized) callback(error);
  return error;
}

async function send(method, url, { body, signal, accept = "application/json" } = {}) {
  const init = { method, headers: headers({ Accept: accept }), signal, cache: "no-store" };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network", `could not reach the service (${error.message})`);
  }
  if (!response.ok) throw await failure(response);
  return response;
}

/** GET or POST the API; resolves with the parsed JSON body (null for 204). */
export async function request(method, url, body, signal) {
  const response = await send(method, url, { body, signal });
  if (response.status === 204) return null;
  return response.json();
}

export function get(url, signal) {
  return request("GET", url, undefined, signal);
}

export function post(url, body, signal) {
  return request("POST", url, body, signal);
}

/** The Prometheus text of GET /metrics. */
export async function metricsText(signal) {
  const response = await send("GET", "/metrics", { signal, accept: "text/plain" });
  return response.text();
}

/**
 * Read the Server-Sent Events of `url`, calling `onEvent(name, data)` for each, until the server
 * ends the stream (resolves) or `signal` aborts it (rejects with AbortError).
 * Comments (the server's keep-alive pings) are skipped; `data` is the parsed JSON.
 */
export async function streamEvents(url, onEvent, signal) {
  const response = await send("GET", url, { signal, accept: "text/event-stream" });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let name = "";
  let data = [];
  const dispatch = () => {
    if (data.length) onEvent(name || "message", JSON.parse(data.join("\n")));
    name = "";
    data = [];
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      // Lines end in \n, \r\n or \r; the last piece may be a partial line: keep it.
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line === "") dispatch();
        else if (line.startsWith(":")) continue;
        else {
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let text = colon < 0 ? "" : line.slice(colon + 1);
          if (text.startsWith(" ")) text = text.slice(1);
          if (field === "event") name = text;
          else if (field === "data") data.push(text);
        }
      }
    }
  } finally {
    reader.releaseLock();
  }
}
