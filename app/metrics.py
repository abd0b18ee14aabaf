"""Prometheus metrics of one process: counters and histograms updated as work happens, and
gauges of the tables read when /metrics is scraped."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """One registry per app, so several apps in one process (tests) keep their own figures."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.runs_started = Counter(
            "agent_notify_runs_started", "Agent runs started (each attempt)", registry=registry
        )
        self.runs_finished = Counter(
            "agent_notify_runs_finished",
            "Agent runs finished, by outcome (succeeded, failed, retried, waiting, abandoned)",
            ["outcome"],
            registry=registry,
        )
        self.llm_seconds = Histogram(
            "agent_notify_llm_call_seconds",
            "Duration of LLM calls, by outcome (ok, transient_error, permanent_error)",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._agent_steps(registry)
        self._flow(registry)
        self._database(registry)
        self.emails = Counter(
            "agent_notify_emails",
            "Notification attempts, by outcome (sent, failed, retried, unknown)",
            ["outcome"],
            registry=registry,
        )
        self.smtp_seconds = Histogram(
            "agent_notify_smtp_send_seconds",
            "Duration of handing one email to SMTP (or the outbox), by outcome",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.ready_to_sent_seconds = Histogram(
            "agent_notify_resolve_to_email_seconds",
            "From a subscription becoming ready (its promise completed, or it subscribed to a "
            "completed one) to its email being accepted",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.listener_reconnects = Counter(
            "agent_notify_listener_reconnects",
            "Times the LISTEN connection was re-established",
            registry=registry,
        )
        self.listener_waiters = Gauge(
            "agent_notify_waiters",
            "Requests waiting on a workflow in this process",
            registry=registry,
        )
        self.workflows = Gauge(
            "agent_notify_workflows",
            "Workflows by state (whole database)",
            ["state"],
            registry=registry,
        )
        self.subscriptions = Gauge(
            "agent_notify_subscriptions",
            "Subscriptions by state (whole database)",
            ["state"],
            registry=registry,
        )
        self.claimable = Gauge(
            "agent_notify_claimable",
            "Work due and unleased, waiting for a worker (runs, deliveries)",
            ["kind"],
            registry=registry,
        )
        self.inflight = Gauge(
            "agent_notify_inflight",
            "Runs and deliveries in flight in this process",
            ["kind"],
            registry=registry,
        )

    def _agent_steps(self, registry: CollectorRegistry) -> None:
        """The agent loop's steps: tokens, outcomes, tool latency."""
        self.tokens = Counter(
            "agent_notify_tokens",
            "Tokens of the model turns made here, by model and direction (input, output)",
            ["model", "direction"],
            registry=registry,
        )
        self.steps = Counter(
            "agent_notify_steps",
            "Steps of agent runs made here, by kind (llm, tool) and outcome (succeeded, "
            "failed, abandoned: the run was taken away before its result was journaled)",
            ["kind", "outcome"],
            registry=registry,
        )
        self.tool_seconds = Histogram(
            "agent_notify_tool_call_seconds",
            "Duration of tool calls, by tool and outcome (ok, error)",
            ["tool", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def _flow(self, registry: CollectorRegistry) -> None:
        """Flow control per model (app/engine/flow.py)."""
        self.model_paused = Gauge(
            "agent_notify_model_paused_seconds",
            "Seconds left of a model's pause, asked for by its provider's 429 (every replica "
            "waits them out before calling the model)",
            ["model"],
            registry=registry,
        )

    def _database(self, registry: CollectorRegistry) -> None:
        """What this process sends Postgres: statements, and wake-ups after commits
        (app/db/wakeups.py)."""
        self.db_statements = Counter(
            "agent_notify_db_statements",
            "Statements this process sent to Postgres (each outside a transaction is one commit)",
            registry=registry,
        )
        self.wakeups = Counter(
            "agent_notify_wakeups",
            "Wake-ups (NOTIFYs) sent after this process's commits, by outcome (sent; dropped: "
            "their send failed, the fallback poll stands in)",
            ["outcome"],
            registry=registry,
        )
        self.wakeup_commits = Counter(
            "agent_notify_wakeup_commits",
            "Transactions that sent this process's wake-ups: its notifying commits",
            registry=registry,
        )

    def wakeups_sent(self, notifications: int, sent: bool) -> None:
        """One batch of wake-ups: a notifying commit when sent."""
        self.wakeups.labels("sent" if sent else "dropped").inc(notifications)
        if sent:
            self.wakeup_commits.inc()
