// The throughput and latency strip, from the service's own /metrics (this process's counters).
// Rates count what finished in the last minute, from samples taken since the page opened; the
// p50 is over every resolve→email latency this process has observed since it started.

import { ApiError, metricsText } from "./api.js";
import { byId, formatSeconds } from "./dom.js";

const SAMPLE_SECONDS = 5;
const WINDOW_SECONDS = 60;

/** Prometheus text format → [{name, labels, value}] (enough of it for our own metrics). */
export function parseMetrics(text) {
  const samples = [];
  const line = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
  const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  for (const row of text.split("\n")) {
    if (!row || row.startsWith("#")) continue;
    const match = line.exec(row);
    if (!match) continue;
    const labels = {};
    for (const [, name, value] of (match[2] || "").matchAll(label)) labels[name] = value;
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

function sum(samples, name, predicate = () => true) {
  return samples
    .filter((sample) => sample.name === name && predicate(sample.labels))
    .reduce((total, sample) => total + sample.value, 0);
}

/** The median of a cumulative histogram, interpolated within its bucket as Prometheus does. */
export function median(buckets) {
  const sorted = [...buckets].sort((a, b) => a.le - b.le);
  const total = sorted.length ? sorted[sorted.length - 1].count : 0;
  if (!total) return null;
  const rank = total / 2;
  let previousBound = 0;
  let previousCount = 0;
  for (const { le, count } of sorted) {
    if (count >= rank) {
      if (!Number.isFinite(le)) return previousBound;
      const inBucket = count - previousCount;
      const fraction = inBucket ? (rank - previousCount) / inBucket : 1;
      return previousBound + (le - previousBound) * fraction;
    }
    previousBound = le;
    previousCount = count;
  }
  return previousBound;
}

function reading(samples) {
  const buckets = samples
    .filter((sample) => sample.name === "agent_notify_resolve_to_email_seconds_bucket")
    .map((sample) => ({
      le: sample.labels.le === "+Inf" ? Infinity : Number(sample.labels.le),
      count: sample.value,
    }));
  return {
    at: Date.now(),
    workflows: sum(samples, "agent_notify_runs_finished_total", (labels) =>
      ["succeeded", "failed"].includes(labels.outcome),
    ),
    emails: sum(samples, "agent_notify_emails_total", (labels) => labels.outcome === "sent"),
    p50: median(buckets),
    paused: samples
      .filter((sample) => sample.name === "agent_notify_model_paused_seconds" && sample.value > 0)
      .map((sample) => `${sample.labels.model} ${formatSeconds(sample.value)}`),
  };
}

/** How many in the last minute (as seen since the page opened: never extrapolated from a
few seconds, so one run just after opening the page reads 1, not 12). */
function perMinute(first, last, field) {
  const minutes = Math.max(1, (last.at - first.at) / 60000);
  const rate = (last[field] - first[field]) / minutes;
  if (rate < 0) return "–"; // the process restarted: its counters began again
  return rate < 10 ? rate.toFixed(1) : String(Math.round(rate));
}

/** Sample /metrics every few seconds and keep the strip current. */
export function startStatsStrip() {
  const history = [];
  const strip = byId("stats");
  const show = () => {
    const last = history[history.length - 1];
    const first = history.find((entry) => last.at - entry.at <= WINDOW_SECONDS * 1000) || last;
    const enough = last.at - first.at >= SAMPLE_SECONDS * 1000 * 0.8;
    byId("stat-workflows").textContent = enough ? perMinute(first, last, "workflows") : "…";
    byId("stat-emails").textContent = enough ? perMinute(first, last, "emails") : "…";
    byId("stat-latency").textContent = last.p50 === null ? "–" : formatSeconds(last.p50);
    // A model its provider paused (429 with Retry-After): a notice while the pause lasts.
    byId("stat-paused").hidden = last.paused.length === 0;
    byId("stat-paused-models").textContent = last.paused.join(", ");
  };
  const sample = async () => {
    try {
      history.push(reading(parseMetrics(await metricsText())));
      while (history.length > 2 && history[1].at < Date.now() - WINDOW_SECONDS * 1000) {
        history.shift();
      }
      strip.dataset.state = "ok";
      strip.title =
        "This process's own metrics (GET /metrics): finished runs and sent emails a minute, " +
        "over the last minute; the median resolve→email latency since the process started.";
      show();
    } catch (error) {
      strip.dataset.state = "error";
      const status = error instanceof ApiError ? error.status : null;
      strip.title =
        status === 401
          ? "/metrics needs the API token (or METRICS_PUBLIC=true)"
          : status === 403
            ? "/metrics is for admin tokens: its counts span every token's workflows"
            : `/metrics: ${error}`;
    }
  };
  sample();
  setInterval(() => {
    if (!document.hidden) sample();
  }, SAMPLE_SECONDS * 1000);
  return sample;
}
