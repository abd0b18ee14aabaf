// One workflow's page: input, output, error, timeline (with the run's steps), promises and
// subscribers, kept live by
// its event stream while it runs (and by a light poll while emails are still owed after the
// stream ended), with the actions of the public API: subscribe, complete a promise, cancel.

import { ApiError, get, path, post, streamEvents } from "./api.js";
import {
  badge,
  byId,
  formatSeconds,
  formatTime,
  h,
  jsonText,
  offset,
  say,
  setBadge,
  when,
} from "./dom.js";

const AGENT_PROMISE = "agent_response";
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const IN_FLIGHT = new Set(["waiting", "ready"]);
const POLL_SECONDS = 3;

const state = {
  key: null,
  workflow: null, // GET /workflows/{key}, updated by the stream
  steps: new Map(), // seq -> step JSON (GET …/steps, then the stream's `step` events)
  promises: new Map(), // name -> promise JSON, for promises other than the agent's
  controller: null, // aborts the stream, the poll and pending requests on leaving the page
  streaming: false,
  following: null, // the controller of the loop that follows the stream, while one runs
  poll: null,
};

function base() {
  return `/workflows/${path(state.key)}`;
}

/** The workflow is over and nothing it owes is still on its way. */
function settled(workflow) {
  if (!workflow) return false;
  const finished = TERMINAL.has(workflow.status);
  return finished && !workflow.subscriptions.some((s) => IN_FLIGHT.has(s.status) && s.promise === AGENT_PROMISE);
}

function somethingOwed(workflow) {
  if (!workflow) return true;
  return !TERMINAL.has(workflow.status) || workflow.subscriptions.some((s) => s.status === "ready");
}

function fact(term, ...value) {
  return h("div", {}, h("dt", {}, term), h("dd", {}, ...value));
}

function renderFacts(workflow) {
  const running = workflow.status && !TERMINAL.has(workflow.status);
  byId("detail-facts").replaceChildren(
    fact("Created", workflow.created_at ? formatTime(workflow.created_at) : "–"),
    fact("Started", workflow.started_at ? formatTime(workflow.started_at) : "–"),
    fact("Finished", workflow.finished_at ? formatTime(workflow.finished_at) : "–"),
    fact(
      "Duration",
      workflow.duration_seconds !== null && workflow.duration_seconds !== undefined
        ? formatSeconds(workflow.duration_seconds)
        : running && workflow.created_at
          ? h("span", { class: "muted", dataset: { since: workflow.created_at, running: "1" } }, "…")
          : "–",
    ),
    fact("Attempts", String(workflow.attempts ?? 0)),
    fact("Model", workflow.model || "default (AGENT_MODEL)"),
    fact("Usage", h("span", { id: "detail-usage" }, usageText(workflow))),
  );
}

/** The run's tokens and cost: summed over the steps seen so far while it runs. */
function usageText(workflow) {
  let usage = workflow.usage;
  if (state.steps.size && !TERMINAL.has(workflow.status)) {
    usage = { input_tokens: 0, output_tokens: 0, cost_usd: null };
    for (const step of state.steps.values()) {
      usage.input_tokens += step.input_tokens || 0;
      usage.output_tokens += step.output_tokens || 0;
      if (step.cost_usd !== null && step.cost_usd !== undefined) usage.cost_usd = (usage.cost_usd || 0) + step.cost_usd;
    }
  }
  if (!usage) return "–";
  const cost = usage.cost_usd === null || usage.cost_usd === undefined ? "" : `, $${usage.cost_usd.toFixed(4)}`;
  return `${usage.input_tokens} in / ${usage.output_tokens} out tokens${cost}`;
}

function tokens(step) {
  if (step.input_tokens === null && step.output_tokens === null) return "";
  return `, ${step.input_tokens ?? 0} in / ${step.output_tokens ?? 0} out tokens`;
}

/** A step of the run in the timeline: when it began, how long it took, its tokens. */
function addSteps(add) {
  for (const step of [...state.steps.values()].sort((a, b) => a.seq - b.seq)) {
    const label = step.kind === "llm" ? "model turn" : `tool ${step.name}`;
    const took = step.finished_at
      ? `took ${formatSeconds((Date.parse(step.finished_at) - Date.parse(step.started_at)) / 1000)}`
      : "in flight";
    const attempts = step.attempts > 1 ? `, attempt ${step.attempts}` : "";
    const error = step.error ? ` — ${step.error}` : "";
    const entry = add(step.started_at, step.status, label, `step ${step.seq} (${step.name}): ${step.status}, ${took}${tokens(step)}${attempts}${error}`);
    entry.step = String(step.seq);
  }
}

function text(element, value, placeholder) {
  element.textContent = value ?? placeholder;
  element.classList.toggle("placeholder", value === null || value === undefined);
}

function timeline(workflow) {
  const start = workflow.created_at;
  const entries = [];
  const add = (at, state, label, ...details) => {
    const entry = { at, state, label, details };
    entries.push(entry);
    return entry;
  };
  if (workflow.status === null) {
    add(null, "none", "not started", "subscribers wait for a run with this key");
  }
  if (workflow.created_at) add(workflow.created_at, "pending", "accepted", "the run was stored");
  if (workflow.started_at) {
    add(workflow.started_at, "running", "running", `the agent was called (attempt ${workflow.attempts || 1})`);
  }
  if (workflow.finished_at && TERMINAL.has(workflow.status)) {
    const promise = workflow.promise;
    const how = promise ? `promise ${promise.name} ${promise.state}` : "";
    add(workflow.finished_at, workflow.status, workflow.status, how);
  } else if (workflow.status === "running" && workflow.error) {
    add(workflow.updated_at, "running", "retrying", workflow.error);
  }
  addSteps(add);
  for (const promise of state.promises.values()) {
    if (promise.completed_at) {
      add(promise.completed_at, promise.state, `${promise.name} ${promise.state}`, "completed from outside");
    }
  }
  for (const subscription of workflow.subscriptions) {
    add(subscription.created_at, "waiting", "subscribed", `${subscription.email} for ${subscription.promise}`);
    const attempts = `${subscription.attempts} attempt${subscription.attempts === 1 ? "" : "s"}`;
    if (subscription.outcome_unknown_at) {
      add(
        subscription.outcome_unknown_at,
        "ready",
        "outcome unknown",
        `to ${subscription.email}: the mail server was sent the email but never confirmed it; `,
        "it is sent once more, later, with the same Message-ID",
      );
    }
    if (subscription.status === "sent") {
      add(
        subscription.sent_at,
        "sent",
        "email sent",
        `to ${subscription.email}, `,
        h("code", {}, subscription.message_id),
        `, ${attempts}`,
      );
    } else if (!IN_FLIGHT.has(subscription.status)) {
      add(
        null,
        subscription.status,
        `email ${subscription.status}`,
        `to ${subscription.email}: ${subscription.last_error || "no reason recorded"} (${attempts})`,
      );
    } else {
      add(
        null,
        subscription.status,
        subscription.status === "ready" ? "email sending" : "email waiting",
        `to ${subscription.email}, `,
        h("code", {}, subscription.message_id),
        subscription.last_error ? ` — last error: ${subscription.last_error}` : "",
      );
    }
  }
  // In time order; what has not happened yet (no time) goes last, in the order added.
  const timed = entries.filter((entry) => entry.at).sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
  const pending = entries.filter((entry) => !entry.at);
  return [...timed, ...pending].map((entry) =>
    h(
      "li",
      { dataset: entry.step === undefined ? { state: entry.state } : { state: entry.state, step: entry.step } },
      h("span", { class: "when", title: entry.at ? formatTime(entry.at) : "" }, entry.at ? formatTime(entry.at).slice(11) : "…"),
      h("span", { class: "offset" }, entry.at && start ? offset(start, entry.at) : ""),
      h("span", { class: "label" }, h("span", { class: "badge", dataset: { state: entry.state } }, entry.label)),
      h("span", { class: "what" }, ...entry.details),
    ),
  );
}

function promiseRow(promise) {
  const outcome = promise.state === "rejected" ? promise.error : jsonText(promise.value);
  return h(
    "tr",
    { dataset: { promise: promise.name } },
    h("td", { class: "name" }, h("code", {}, promise.name)),
    h("td", { class: "state" }, badge(promise.state)),
    h("td", { class: "outcome" }, h("pre", { class: `value${promise.state === "rejected" ? " error-text" : ""}` }, outcome || "–")),
    h("td", { class: "time completed" }, when(promise.completed_at)),
  );
}

function subscriptionRow(subscription) {
  return h(
    "tr",
    { dataset: { email: subscription.email || subscription.target, promise: subscription.promise, status: subscription.status } },
    h("td", { class: "email" }, subscription.email || subscription.target),
    h("td", { class: "promise" }, h("code", {}, subscription.promise)),
    h(
      "td",
      { class: "state" },
      badge(subscription.status),
      subscription.outcome_unknown_at
        ? h("span", { class: "outcome-unknown", title: `since ${formatTime(subscription.outcome_unknown_at)}` }, " outcome unknown")
        : null,
    ),
    h("td", { class: "message" }, h("code", { class: "message-id" }, subscription.message_id)),
    h("td", { class: "number attempts" }, String(subscription.attempts)),
    h("td", { class: "error-text last-error" }, subscription.last_error || ""),
    h("td", { class: "time subscribed" }, when(subscription.created_at)),
    h("td", { class: "time sent" }, when(subscription.sent_at)),
  );
}

// A run waiting for a person: the promise form names the approval it waits for, so that one
// click on Resolve approves it (Reject, with a reason, rejects it).
function offerDecision(workflow) {
  const requests = workflow.subscriptions
    .map((subscription) => subscription.promise)
    .filter((name) => /^approval-\d+\.request$/.test(name));
  if (!requests.length) return;
  const name = requests[requests.length - 1].replace(/\.request$/, "");
  const input = byId("promise-name");
  if (input.value === name || document.activeElement === input) return;
  input.value = name;
  byId("promise-value").value = '{"approved": true, "by": "dashboard"}';
}

function render() {
  const workflow = state.workflow;
  if (!workflow) return;
  setBadge(byId("detail-status"), workflow.status);
  byId("cancel-button").hidden = !["pending", "running", "waiting"].includes(workflow.status);
  if (workflow.status === "waiting") offerDecision(workflow);
  renderFacts(workflow);
  text(byId("detail-query"), workflow.query, "(no run with this key yet)");
  byId("detail-instructions").textContent = workflow.instructions
    ? `Instructions: ${workflow.instructions}`
    : "";
  const outputPlaceholder =
    workflow.status === "failed" || workflow.status === "cancelled" ? "(no output)" : "(not ready yet)";
  // A run with an output_schema answers a JSON value: shown as indented JSON.
  const output =
    workflow.output !== null && typeof workflow.output === "object"
      ? JSON.stringify(workflow.output, null, 2)
      : workflow.output;
  text(byId("detail-output"), output, outputPlaceholder);
  byId("detail-error-card").hidden = !workflow.error;
  byId("detail-error").textContent = workflow.error || "";
  byId("detail-error-card").dataset.kind = workflow.status === "failed" ? "failed" : "retrying";
  byId("detail-timeline").replaceChildren(...timeline(workflow));
  const promises = [];
  if (workflow.promise) promises.push(workflow.promise);
  for (const [name, promise] of state.promises) if (name !== AGENT_PROMISE) promises.push(promise);
  byId("promise-rows").replaceChildren(...promises.map(promiseRow));
  byId("subscription-rows").replaceChildren(...workflow.subscriptions.map(subscriptionRow));
  const live = byId("detail-live");
  live.textContent = state.streaming ? "● live" : settled(workflow) ? "" : "○ polling";
  live.title = state.streaming ? "Following the workflow's Server-Sent Events" : "";
}

/** Other promises than the agent's: those subscribers wait for, and those the page touched. */
async function loadPromises(signal) {
  const names = new Set(state.promises.keys());
  for (const subscription of state.workflow?.subscriptions || []) names.add(subscription.promise);
  names.delete(AGENT_PROMISE);
  await Promise.all(
    [...names].map(async (name) => {
      try {
        state.promises.set(name, await get(`${base()}/promises/${path(name)}`, signal));
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 404)) throw error;
      }
    }),
  );
}

/** The run's journal so far (the stream adds what happens next). */
async function loadSteps(signal) {
  if (!state.workflow?.status) return;
  try {
    const page = await get(`${base()}/steps?limit=500`, signal);
    for (const step of page.items) state.steps.set(step.seq, step);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) throw error;
  }
}

async function load() {
  const signal = state.controller.signal;
  try {
    state.workflow = await get(base(), signal);
    await Promise.all([loadPromises(signal), loadSteps(signal)]);
    render();
    return true;
  } catch (error) {
    if (error.name === "AbortError") return false;
    const message =
      error instanceof ApiError && error.status === 404
        ? `No workflow ${state.key}: start one from the list, or subscribe to it below before it starts.`
        : `Could not load ${state.key}: ${error}`;
    say(byId("detail-result"), message, "error");
    return false;
  }
}

function applyEvent(name, data) {
  if (name === "step") {
    state.steps.set(data.seq, data);
  } else if (name === "subscription") {
    const subscriptions = state.workflow.subscriptions;
    const index = subscriptions.findIndex((s) => s.id === data.id);
    if (index >= 0) subscriptions[index] = data;
    else subscriptions.push(data);
    if (data.promise !== AGENT_PROMISE) loadPromises(state.controller.signal).then(render, () => {});
  } else {
    state.workflow = data;
  }
  render();
}

/** Follow the event stream until the workflow is settled; reconnect when it drops. */
async function follow(controller) {
  if (state.following === controller) return; // already following (or waiting to reconnect)
  state.following = controller;
  try {
    await followLoop(controller);
  } finally {
    if (state.following === controller) state.following = null;
  }
}

async function followLoop(controller) {
  let backoff = 1;
  while (!controller.signal.aborted && !settled(state.workflow)) {
    try {
      state.streaming = true;
      render();
      await streamEvents(`${base()}/events`, applyEvent, controller.signal);
      backoff = 1;
    } catch (error) {
      if (error.name === "AbortError") return;
      if (error instanceof ApiError && [401, 404].includes(error.status)) break;
      backoff = Math.min(backoff * 2, 10);
    } finally {
      state.streaming = false;
    }
    render();
    if (!settled(state.workflow)) await sleep(backoff * 1000, controller.signal);
  }
  render();
}

function sleep(milliseconds, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, milliseconds);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function act(resultElement, description, call) {
  try {
    const answer = await call();
    say(resultElement, description(answer), "ok");
    await load();
    if (!settled(state.workflow)) follow(state.controller);
  } catch (error) {
    if (error.name !== "AbortError") say(resultElement, `${error}`, "error");
  }
}

function subscribe(event) {
  event.preventDefault();
  const email = byId("subscribe-email").value.trim();
  const promise = byId("subscribe-promise").value.trim() || AGENT_PROMISE;
  act(
    byId("subscribe-result"),
    (subscription) =>
      `Subscribed ${subscription.email} to ${subscription.promise} (${subscription.status}); ` +
      `its email will carry Message-ID ${subscription.message_id}.`,
    () => post(`${base()}/on_notify/send`, { email, promise }),
  );
}

function completePromise(event) {
  event.preventDefault();
  const action = event.submitter?.dataset.action || "resolve";
  const name = byId("promise-name").value.trim();
  const result = byId("promise-result");
  if (!name) {
    say(result, "Enter the promise's name, e.g. approval.", "error");
    return;
  }
  const url = `${base()}/promises/${path(name)}`;
  let call;
  if (action === "peek") {
    call = () => get(url);
  } else if (action === "reject") {
    call = () => post(`${url}/reject`, { error: byId("promise-error").value });
  } else {
    let value;
    try {
      value = JSON.parse(byId("promise-value").value);
    } catch (error) {
      say(result, `The value must be JSON, e.g. {"approved": true} or "a quoted text" (${error.message}).`, "error");
      return;
    }
    call = () => post(`${url}/resolve`, { value });
  }
  act(
    result,
    (promise) => {
      if (promise.name !== AGENT_PROMISE) state.promises.set(promise.name, promise);
      const outcome =
        promise.state === "rejected" ? `: ${promise.error}` : promise.state === "resolved" ? ` with ${JSON.stringify(promise.value)}` : "";
      return `Promise ${promise.name} is ${promise.state}${outcome}.`;
    },
    call,
  );
}

function cancel() {
  act(
    byId("detail-result"),
    (workflow) => `Cancelled ${workflow.key}.`,
    () => post(`${base()}/cancel`),
  );
}

let wired = false;

function wire() {
  if (wired) return;
  wired = true;
  byId("subscribe-form").addEventListener("submit", subscribe);
  byId("promise-form").addEventListener("submit", completePromise);
  byId("cancel-button").addEventListener("click", cancel);
}

export const detailView = {
  element: () => byId("detail-view"),

  async start({ key }) {
    wire();
    state.key = key;
    state.workflow = null;
    state.promises = new Map();
    state.steps = new Map();
    state.controller = new AbortController();
    const controller = state.controller;
    document.title = `${key} · agent-notify`;
    byId("detail-key").textContent = key;
    setBadge(byId("detail-status"), null);
    for (const id of ["detail-result", "subscribe-result", "promise-result"]) say(byId(id), "");
    for (const id of ["detail-facts", "detail-timeline", "promise-rows", "subscription-rows"]) {
      byId(id).replaceChildren();
    }
    text(byId("detail-query"), null, "…");
    text(byId("detail-output"), null, "…");
    byId("detail-error-card").hidden = true;
    byId("cancel-button").hidden = true;
    byId("detail-live").textContent = "";
    if (!(await load())) return;
    follow(controller);
    // After the stream ends, subscribers of other promises may still be owed an email.
    state.poll = setInterval(() => {
      if (!document.hidden && !state.streaming && somethingOwed(state.workflow)) load();
    }, POLL_SECONDS * 1000);
  },

  stop() {
    state.controller?.abort();
    clearInterval(state.poll);
    document.title = "agent-notify · dashboard";
  },

  reload: () => load(),
};
