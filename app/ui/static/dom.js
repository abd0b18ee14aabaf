// Building DOM nodes and formatting values. Data only ever reaches the page as text nodes
// (textContent), never as HTML: a query, an answer or an error that holds markup shows as text.

/** An element with attributes and children (strings become text nodes). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") element.className = value;
    else if (name === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export function byId(id) {
  return document.getElementById(id);
}

/** Show `text` in a result line, styled as success or error; empty text hides it. */
export function say(element, text, kind = "ok") {
  element.textContent = text;
  element.dataset.kind = kind;
}

/** A state badge: workflow, promise or subscription state; null is "not started". */
export function badge(state) {
  const label = state ?? "not started";
  return h("span", { class: "badge", dataset: { state: state ?? "none" } }, label);
}

export function setBadge(element, state) {
  element.textContent = state ?? "not started";
  element.dataset.state = state ?? "none";
}

/** "4 s", "2 min 5 s", "3 h 10 min", "2 d 4 h". */
export function formatSeconds(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  if (seconds < 0) seconds = 0;
  if (seconds < 10) return `${seconds.toFixed(seconds < 1 ? 2 : 1)} s`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** Whole seconds, for what ticks: "just now", "12 s", "2 min 5 s". */
export function formatElapsed(seconds) {
  const whole = Math.floor(Math.max(0, seconds));
  if (whole < 1) return "<1 s";
  return whole < 60 ? `${whole} s` : formatSeconds(whole);
}

export function secondsSince(timestamp) {
  return (Date.now() - Date.parse(timestamp)) / 1000;
}

/** "12 s ago", for a cell that the ticker keeps current (see tickAges). */
export function age(timestamp) {
  if (!timestamp) return h("span", {}, "–");
  return h(
    "time",
    { datetime: timestamp, title: formatTime(timestamp), dataset: { since: timestamp } },
    ageText(secondsSince(timestamp)),
  );
}

function ageText(seconds) {
  return seconds < 1 ? "just now" : `${formatElapsed(seconds)} ago`;
}

/** Keep every "… ago" and every running duration on the page current. */
export function tickAges() {
  for (const element of document.querySelectorAll("[data-since]")) {
    const seconds = secondsSince(element.dataset.since);
    element.textContent = element.dataset.running
      ? `${formatElapsed(seconds)} so far`
      : ageText(seconds);
  }
}

export function formatTime(timestamp) {
  if (!timestamp) return "–";
  const date = new Date(timestamp);
  const pad = (number, width = 2) => String(number).padStart(width, "0");
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.` +
    pad(date.getMilliseconds(), 3)
  );
}

/** The time of day when `timestamp` is today, else the date and time; in full as a tooltip. */
export function when(timestamp) {
  if (!timestamp) return "–";
  const full = formatTime(timestamp);
  const today = formatTime(new Date().toISOString()).slice(0, 10);
  return h("time", { datetime: timestamp, title: full }, full.startsWith(today) ? full.slice(11) : full);
}

/** Seconds from `start` to `end` as "+1.2 s", for the timeline. */
export function offset(start, end) {
  if (!start || !end) return "";
  return `+${formatSeconds((Date.parse(end) - Date.parse(start)) / 1000)}`;
}

/** A JSON value as readable text: strings as they are, anything else pretty-printed. */
export function jsonText(value) {
  if (value === null || value === undefined) return "";
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

export function replaceChildren(element, children) {
  element.replaceChildren(...children);
}
