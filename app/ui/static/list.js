// The list of workflows: newest first, filtered by state and by the start of the key (both by
// the API, across every page), paged with the API's cursor, kept live by following the
// unfinished workflows' event streams (a handful at most: each holds a connection) and by
// refreshing the shown page every few seconds to pick up new workflows.

import { ApiError, get, path, post, streamEvents } from "./api.js";
import { age, badge, byId, formatElapsed, formatSeconds, h, say, secondsSince } from "./dom.js";

const PAGE_SIZE = 25;
const REFRESH_SECONDS = 5;
const SEARCH_DELAY_MS = 300; // typing pauses this long before the list is read again
// Browsers open at most six connections to one server over HTTP/1.1; keep room for the rest.
const MAX_STREAMS = 4;
const UNFINISHED = new Set(["pending", "running", "waiting"]);
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

const state = {
  status: "",
  cursors: [null], // the cursor of each page visited; the last one is shown
  items: [],
  nextCursor: null,
  search: "", // the key prefix the list is filtered by, as sent
  searchTimer: null,
  failed: false,
  streams: new Map(), // key -> AbortController
  deliveries: new Map(), // key -> Map(subscription id -> status), from the streams
  timer: null,
  active: false,
  loading: null,
  navigate: null,
};

function newKey() {
  const random = crypto.getRandomValues(new Uint8Array(3));
  return `run-${Array.from(random, (byte) => byte.toString(16).padStart(2, "0")).join("")}`;
}

function row(item) {
  const href = `/ui/workflows/${path(item.key)}`;
  const duration =
    item.duration_seconds !== null && item.duration_seconds !== undefined
      ? h("span", {}, formatSeconds(item.duration_seconds))
      : h(
          "span",
          { class: "muted", dataset: { since: item.created_at, running: "1" } },
          `${formatElapsed(secondsSince(item.created_at))} so far`,
        );
  const everyone = item.subscribers > 0 && item.notified === item.subscribers;
  return h(
    "tr",
    { dataset: { key: item.key, status: item.status } },
    h("td", {}, badge(item.status)),
    h("td", { class: "key" }, h("a", { href, "data-nav": true }, item.key)),
    h(
      "td",
      { class: "query" },
      h("span", { class: "query-text", title: item.query }, item.query),
      item.error && item.status === "failed"
        ? h("span", { class: "row-error", title: item.error }, item.error)
        : null,
    ),
    h("td", { class: "age" }, age(item.created_at)),
    h("td", { class: "duration" }, duration),
    h("td", { class: "number subscribers" }, String(item.subscribers)),
    h(
      "td",
      { class: `number notified${everyone ? " all" : ""}` },
      String(item.notified),
    ),
  );
}

function emptyText() {
  if (state.failed) return "The list could not be loaded: see the message above.";
  const which = state.status ? `${state.status} workflows` : "workflows";
  if (state.search) return `No ${which} with a key starting with "${state.search}".`;
  return state.status ? `No ${which}.` : "No workflows yet: start one above.";
}

function render() {
  byId("workflow-rows").replaceChildren(...state.items.map(row));
  const empty = byId("list-empty");
  empty.hidden = state.items.length > 0;
  empty.textContent = emptyText();
  const page = state.cursors.length;
  byId("page-label").textContent = `Page ${page}`;
  byId("page-newer").disabled = page === 1;
  byId("page-older").disabled = !state.nextCursor;
  const following = state.streams.size;
  byId("live-note").textContent =
    `Live: ${following ? `following ${following} unfinished workflow${following === 1 ? "" : "s"} ` +
      "over Server-Sent Events; " : ""}this page refreshes every ${REFRESH_SECONDS} s for new ones.`;
}

function applyWorkflow(key, workflow) {
  const item = state.items.find((candidate) => candidate.key === key);
  if (!item) return;
  Object.assign(item, {
    status: workflow.status,
    error: workflow.error,
    attempts: workflow.attempts,
    updated_at: workflow.updated_at,
    finished_at: workflow.finished_at,
    duration_seconds: workflow.duration_seconds,
  });
  const deliveries = new Map(workflow.subscriptions.map((s) => [s.id, s.status]));
  state.deliveries.set(key, deliveries);
  countDeliveries(item, deliveries);
}

function applySubscription(key, subscription) {
  const item = state.items.find((candidate) => candidate.key === key);
  if (!item) return;
  const deliveries = state.deliveries.get(key) || new Map();
  deliveries.set(subscription.id, subscription.status);
  state.deliveries.set(key, deliveries);
  countDeliveries(item, deliveries);
}

function countDeliveries(item, deliveries) {
  // The stream knows every subscription it announced; never count fewer than the list did.
  item.subscribers = Math.max(item.subscribers, deliveries.size);
  const sent = [...deliveries.values()].filter((status) => status === "sent").length;
  item.notified = Math.max(item.notified, sent);
}

async function follow(key, controller) {
  try {
    await streamEvents(
      `/workflows/${path(key)}/events`,
      (name, data) => {
        if (name === "subscription") applySubscription(key, data);
        else applyWorkflow(key, data);
        if (state.active) render();
      },
      controller.signal,
    );
  } catch (error) {
    if (error.name !== "AbortError") console.warn(`events of ${key}:`, String(error));
  } finally {
    // Ended: finished and its emails out, or the connection dropped; the periodic refresh
    // re-reads the row and opens a new stream if it is still unfinished.
    if (state.streams.get(key) === controller) state.streams.delete(key);
  }
}

function syncStreams() {
  const shown = new Set(state.items.map((item) => item.key));
  for (const [key, controller] of state.streams) {
    if (!shown.has(key)) {
      controller.abort();
      state.streams.delete(key);
    }
  }
  for (const item of state.items) {
    if (state.streams.size >= MAX_STREAMS) break;
    if (!UNFINISHED.has(item.status) || state.streams.has(item.key)) continue;
    const controller = new AbortController();
    state.streams.set(item.key, controller);
    follow(item.key, controller);
  }
}

async function load() {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (state.status) query.set("status", state.status);
  if (state.search) query.set("key_prefix", state.search);
  const cursor = state.cursors[state.cursors.length - 1];
  if (cursor) query.set("cursor", cursor);
  const loading = get(`/workflows?${query}`);
  state.loading = loading;
  try {
    const page = await loading;
    if (state.loading !== loading || !state.active) return; // a newer load took over
    if (state.failed) say(byId("search-result"), ""); // the message was this list's failure
    state.items = page.items;
    state.nextCursor = page.next_cursor;
    state.failed = false;
    for (const item of state.items) {
      if (TERMINAL.has(item.status) && !state.streams.has(item.key)) {
        state.deliveries.delete(item.key);
      }
    }
    syncStreams();
    render();
  } catch (error) {
    if (state.loading !== loading || !state.active) return;
    state.failed = true;
    state.items = [];
    state.nextCursor = null;
    syncStreams();
    render();
    say(byId("search-result"), `Could not list workflows: ${error}`, "error");
  }
}

/** Filter by the search box's text now: a new prefix starts again at the first page; the same
 * one is read again only when `again` (Enter). */
function search(again = false) {
  clearTimeout(state.searchTimer);
  state.searchTimer = null;
  const prefix = byId("search-key").value.trim();
  if (prefix !== state.search) {
    state.search = prefix;
    state.cursors = [null];
    say(byId("search-result"), "");
  } else if (!again) {
    return;
  }
  load();
}

function setFilter(status) {
  state.status = status;
  state.cursors = [null];
  for (const button of byId("filters").querySelectorAll("button")) {
    button.setAttribute("aria-pressed", String(button.dataset.status === status));
  }
  load();
}

async function startRun(event) {
  event.preventDefault();
  const result = byId("start-result");
  const key = byId("start-key").value.trim();
  const query = byId("start-query").value;
  const email = byId("start-email").value.trim();
  if (!key) {
    say(result, "Enter a key: 1 to 256 letters, digits, '.', '_', '~' or '-'.", "error");
    return;
  }
  const button = event.target.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const accepted = await post(`/workflows/${path(key)}/run/send`, { query });
    const started = accepted.status === "accepted" ? "Started" : "Already started";
    let text = `${started} ${key}.`;
    if (email) {
      try {
        const subscription = await post(`/workflows/${path(key)}/on_notify/send`, { email });
        text += ` ${subscription.email} will get the answer (${subscription.status}).`;
      } catch (error) {
        say(result, `${text} Subscribing ${email} failed: ${error}`, "error");
        await load();
        return;
      }
    }
    say(result, text, "ok");
    byId("start-key").value = newKey();
    await load();
  } catch (error) {
    say(result, `Could not start ${key}: ${error}`, "error");
  } finally {
    button.disabled = false;
  }
}

async function openKey(event) {
  event.preventDefault();
  search(); // what was typed filters the list too, without waiting for the pause
  const key = byId("search-key").value.trim();
  const result = byId("search-result");
  if (!key) {
    say(result, "Type a workflow's key to open it.", "error");
    return;
  }
  try {
    await get(`/workflows/${path(key)}`);
    state.navigate(`/ui/workflows/${path(key)}`);
  } catch (error) {
    say(
      result,
      error instanceof ApiError && error.status === 404 ? `No workflow ${key}.` : `${error}`,
      "error",
    );
  }
}

let wired = false;

function wire() {
  if (wired) return;
  wired = true;
  byId("start-key").value = newKey();
  byId("start-form").addEventListener("submit", startRun);
  byId("search-form").addEventListener("submit", openKey);
  byId("search-key").addEventListener("input", () => {
    clearTimeout(state.searchTimer);
    state.searchTimer = setTimeout(() => search(), SEARCH_DELAY_MS);
  });
  byId("search-key").addEventListener("keydown", (event) => {
    // Enter searches at once; the Open button (or its own Enter) opens the exact key.
    if (event.key !== "Enter" || event.isComposing) return;
    event.preventDefault();
    search(true);
  });
  byId("filters").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-status]");
    if (button) setFilter(button.dataset.status);
  });
  byId("page-older").addEventListener("click", () => {
    if (!state.nextCursor) return;
    state.cursors.push(state.nextCursor);
    load();
  });
  byId("page-newer").addEventListener("click", () => {
    if (state.cursors.length > 1) state.cursors.pop();
    load();
  });
}

export const listView = {
  element: () => byId("list-view"),

  start({ navigate }) {
    state.navigate = navigate;
    state.active = true;
    wire();
    // A search typed just before leaving the page, whose pause had not yet passed.
    const typed = byId("search-key").value.trim();
    if (typed !== state.search) {
      state.search = typed;
      state.cursors = [null];
    }
    render();
    load();
    state.timer = setInterval(() => {
      if (!document.hidden) load();
    }, REFRESH_SECONDS * 1000);
  },

  stop() {
    state.active = false;
    clearInterval(state.timer);
    clearTimeout(state.searchTimer);
    state.searchTimer = null;
    for (const controller of state.streams.values()) controller.abort();
    state.streams.clear();
  },

  reload: load,
};
