"""Settings: every knob is an environment variable with a safe default."""

from __future__ import annotations

import fnmatch
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from app.addresses import AllowedRecipients, checked_networks, checked_public_url, is_loopback
from app.flow_config import MODEL_LIMITS_HELP, ModelLimit
from app.mcp_config import MCP_CONFIG_HELP, McpConfigSetting
from app.postgres_config import PostgresSettings
from app.server_settings import ServerSettings
from app.tokens import ApiToken, parse_api_tokens

OFFLINE_MODEL = "agent-notify-offline/echo"
# Workflow keys and promise names: URL-safe, 1 to 256 characters, but not "." or "..": URLs
# drop those segments (RFC 3986 §5.2.4), so browsers and curl could never reach such a key.
# No look-ahead (the pattern also runs in pydantic's Rust regex engine): a key starts with a
# character other than ".", or with "." and then one, or with ".." and then anything.
KEY_PATTERN = (
    r"^(?:[A-Za-z0-9_~-][A-Za-z0-9._~-]*|\.[A-Za-z0-9_~-][A-Za-z0-9._~-]*|\.\.[A-Za-z0-9._~-]+)$"
)


class Settings(PostgresSettings, ServerSettings):
    """Read once at start-up; environment variable names are the upper-cased field names.

    Each field's description is its line in docs/configuration.md (`python -m
    scripts.config_docs` writes that page; a test fails when it is out of date). The first
    groups come from the bases, in this order: where the service listens (`ServerSettings`,
    app/server_settings.py), then Postgres (`PostgresSettings`, app/postgres_config.py,
    validated together there).
    """

    # An empty variable (`VAR=`, as docker compose passes an unset one) is an unset one.
    model_config = SettingsConfigDict(extra="ignore", frozen=True, env_ignore_empty=True)

    # The agent (litellm).
    agent_model: str | None = Field(
        None,
        description=(
            "a litellm model name, e.g. `openai/gpt-4o-mini`, "
            "`anthropic/claude-3-5-haiku-latest`, `openai/llama3.1` on an OpenAI-compatible "
            "`AGENT_API_BASE`; unset: the offline model `agent-notify-offline/echo`"
        ),
    )
    agent_api_base: str | None = Field(
        None,
        description="the provider's base URL: an OpenAI-compatible server (Ollama, vLLM) "
        "or a proxy",
    )
    agent_api_key: SecretStr | None = Field(
        None,
        description="the provider's key (or set the provider's own variable, e.g. "
        "`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`)",
    )
    agent_instructions: str = Field(
        "You are a helpful assistant.", description="system instructions of runs that give none"
    )
    agent_timeout_seconds: float = Field(
        600.0,
        gt=0,
        description="timeout of one LLM call (a timed-out call is retried like any transient "
        "error)",
    )
    agent_lean_calls: bool = Field(
        True,
        description=(
            "Call OpenAI-protocol models through litellm's OpenAI configuration on the "
            "service's own HTTP session instead of `litellm.acompletion` (same requests and "
            "replies, less CPU per call; [benchmarks](benchmarks.md)). `false`: every call "
            "goes through `litellm.acompletion`."
        ),
    )
    agent_allowed_models: str = Field(
        "",
        description=(
            'other models a run may ask for with `"model"` (comma-separated, `*` wildcards, '
            "e.g. `openai/gpt-4o*,anthropic/*`); your keys pay for them, so none by default"
        ),
    )
    agent_mcp_config: McpConfigSetting = Field(None, description=MCP_CONFIG_HELP)

    agent_tools: str | None = Field(
        None,
        description="Python tools: comma-separated `module:function` or `module` (its `__all__`), "
        "typed and documented; unset: none, or `app.agent.examples` with the offline model",
    )
    agent_max_steps: int = Field(
        20, ge=1, description="model turns a run may take, at most (`max_steps_exceeded` beyond)"
    )
    agent_max_tokens_per_run: int | None = Field(
        None, ge=1, description="tokens a run may use before its next turn (`budget_exceeded`)"
    )
    agent_tool_concurrency: int = Field(4, ge=1, description="tool calls of a turn run at once")
    agent_model_limits: dict[str, ModelLimit] | None = Field(None, description=MODEL_LIMITS_HELP)
    agent_tool_timeout_seconds: float = Field(
        60.0, gt=0, description="a tool call taking longer ends as an error result to the model"
    )

    # Email.
    smtp_host: str | None = Field(
        None, description="SMTP server; unset: emails are written to `OUTBOX_DIR`"
    )
    smtp_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="SMTP port; unset: 25, or 587 with `SMTP_STARTTLS`, 465 with `SMTP_TLS`",
    )
    smtp_username: str | None = Field(None, description="SMTP login (with `SMTP_PASSWORD`)")
    smtp_password: SecretStr | None = Field(None, description="SMTP password")
    smtp_starttls: bool = Field(False, description="upgrade the connection with STARTTLS")
    smtp_tls: bool = Field(False, description="connect over TLS from the start (SMTPS)")
    smtp_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="timeout of each step of an SMTP exchange (connecting, EHLO, MAIL, RCPT, "
        "…) but the reply to the message itself",
    )
    smtp_data_timeout_seconds: float = Field(
        600.0,
        gt=0,
        description=(
            "how long the server may take to confirm a message it was sent (the reply that ends "
            "DATA; RFC 5321 allows 10 minutes). No reply by then, or a lost connection, leaves "
            "unknown whether it took the message: the subscription records an unknown outcome "
            "(`outcome_unknown_at`) and is sent once more after `SMTP_UNKNOWN_RETRY_SECONDS`"
        ),
    )
    smtp_unknown_retry_seconds: float = Field(
        3600.0,
        ge=0,
        description=(
            "after an unknown outcome, how long before the one further attempt (with the same "
            "Message-ID, so receivers can drop a second copy); a second unknown outcome fails "
            "the subscription with the reason, and it is not sent again"
        ),
    )
    smtp_utf8: bool = Field(
        False,
        description=(
            "the SMTP server takes internationalised addresses (SMTPUTF8, RFC 6531): accept "
            "subscribers whose address has a non-ASCII part before the `@` (refused with 422 "
            "`non_ascii_address` otherwise; a non-ASCII domain needs nothing, it is sent as "
            "IDNA)"
        ),
    )
    mail_from: str = Field(
        "agent-notify <agent-notify@localhost>",
        description="sender; its domain ends every Message-ID",
    )
    outbox_dir: Path | None = Field(
        None,
        description="where `.eml` files go when `SMTP_HOST` is unset; unset: `DATA_DIR/outbox`",
    )
    public_url: Annotated[str | None, AfterValidator(checked_public_url)] = Field(
        None,
        description=(
            "the service's address as recipients reach it, e.g. `https://notify.example.com` "
            "(a path prefix is kept). Set: emails link to the task's page on the dashboard and "
            "carry `List-Unsubscribe` with one-click unsubscribe (RFC 8058) at "
            "`/unsubscribe/…`. Unset: neither"
        ),
    )
    secret_key: SecretStr | None = Field(
        None,
        description=(
            "the key that signs links (HMAC-SHA256), e.g. `openssl rand -hex 32`; unset: a key "
            "generated once and kept in the database, shared by every replica. Changing it "
            "invalidates the links already sent"
        ),
    )

    # Webhooks, Apprise and links.
    webhook_allowed_networks: Annotated[str, AfterValidator(checked_networks)] = Field(
        "",
        description="CIDRs (comma-separated, e.g. `10.0.0.0/8`) that webhook and Apprise targets "
        "may reach though not public (else 422 `target_not_allowed`, and not sent). Empty: none",
    )
    webhook_timeout_seconds: float = Field(10.0, gt=0, description="timeout of a webhook POST")
    apprise_concurrency: int = Field(4, ge=1, description="Apprise sends in flight per process")

    # Durability: leases, polling and retries.
    lease_seconds: float = Field(
        15.0,
        gt=0,
        description="how long a claimed run or delivery stays with its process without "
        "renewal; a dead process's work is taken over after this",
    )
    poll_interval_seconds: float = Field(
        5.0,
        gt=0,
        description="fallback poll of the workers and waiters, bounding the delay of a missed "
        "notification",
    )
    retry_initial_seconds: float = Field(
        0.5,
        gt=0,
        description="first retry delay after a transient LLM or SMTP error (doubling, with jitter)",
    )
    retry_max_seconds: float = Field(60.0, gt=0, description="cap of the retry delay")
    retry_max_attempts: int = Field(
        30, ge=1, description="attempts before a run or delivery fails for good"
    )
    shutdown_grace_seconds: float = Field(
        10.0,
        ge=0,
        description="on SIGTERM: how long open requests and in-flight work may take to finish "
        "before the rest is handed back to other processes",
    )
    notify_on_failure: bool = Field(
        True,
        description="email subscribers when the task fails; `false`: their subscription is "
        "marked failed instead",
    )
    notify_allowed_recipients: str = Field(
        "",
        description=(
            "who may be notified: comma-separated addresses and `*@domain` patterns (the whole "
            "domain, not its subdomains; case and IDNA do not matter), e.g. "
            "`boss@example.com,*@example.org`; a subscription for anyone else is refused (422 "
            "`recipient_not_allowed`) and one made before is not sent. Empty: anyone"
        ),
    )
    subscription_ttl_seconds: float = Field(
        7 * 24 * 3600.0,
        gt=0,
        description="a subscription still waiting after this long (its task never finished, "
        "or never started) expires, with the reason recorded",
    )
    approval_timeout_seconds: float = Field(
        86400.0,
        gt=0,
        description="how long a run's approvers have to decide when the run's "
        "`approval_timeout_seconds` is not given; then the request_approval call's result is "
        '`{"approved": false, "timed_out": true}`',
    )

    # Capacity of one process.
    runner_concurrency: int = Field(64, ge=1, description="agent calls in flight per process")
    delivery_concurrency: int = Field(
        32,
        ge=1,
        description="emails in flight per process (and up to 4× that queued behind them; more "
        "is left to other processes)",
    )

    # HTTP limits and protection.
    max_body_bytes: int = Field(
        64 * 1024, ge=1024, description="largest request body accepted (413 beyond)"
    )
    max_query_chars: int = Field(32_000, ge=1, description="longest query accepted (422 beyond)")
    max_subscriptions_per_workflow: int = Field(
        1000, ge=1, description="subscriptions one workflow may have (422 beyond)"
    )
    # No limit by default: a backend that subscribes its users calls from one address, as do
    # all the clients behind one reverse proxy; limiting an address would refuse them.
    subscribe_rate_per_minute: int = Field(
        0,
        ge=0,
        description=(
            "subscriptions a client may create a minute, per process (429 beyond): each API "
            "token its own allowance when `API_TOKENS` is set, else each client address; "
            "`0`: no limit"
        ),
    )
    max_wait_seconds: float = Field(
        300.0,
        gt=0,
        description="the longest a request waits for work: sync `run` and `on_notify`, and "
        "`GET …/output?timeout=`; then it answers 202 with where to look (`Location`), and the "
        "work goes on",
    )
    api_tokens: SecretStr | None = Field(
        None,
        description="comma-separated bearer tokens; when set, every endpoint but `/healthz`, "
        "`/readyz`, the dashboard's page and the docs needs `Authorization: Bearer <token>`. "
        "An entry is `<token>` (an admin), `<name>:<token>` (a user: sees only the workflows "
        "it created) or `admin:<name>:<token>` (a named admin, who sees everything)",
    )
    metrics_public: bool = Field(
        False, description="serve `/metrics` without a token even when `API_TOKENS` is set"
    )
    # Nobody's by default: a client that reaches the service directly could otherwise name any
    # address in X-Forwarded-For and escape the per-address rate limit (and the access log).
    forwarded_allow_ips: str = Field(
        "",
        description=(
            "the reverse proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed: "
            "comma-separated addresses or networks (`10.0.0.0/8`), `*` for any; empty: none, "
            "and the client is whoever connected"
        ),
    )

    # Retention.
    retention: timedelta = Field(
        timedelta(days=7),
        gt=timedelta(0),
        description="finished workflows (with their promises and subscriptions) are deleted "
        "this long after they finish (seconds, or ISO 8601 like `P7D`)",
    )
    idempotency_ttl: timedelta = Field(
        timedelta(hours=24),
        gt=timedelta(0),
        description="how long an `Idempotency-Key`'s response is kept for replay (seconds or "
        "ISO 8601)",
    )

    log_level: str = Field("INFO", description="log level of the service")
    log_format: Literal["text", "json"] = Field(
        "text",
        description="`json`: one JSON object per line (with `workflow_key` and "
        "`subscription_id` fields); tokens and email bodies are never logged",
    )

    @field_validator("agent_model", "agent_api_base", "smtp_host", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # Spaces only (a stray `VAR= ` in an .env file) would otherwise name a model or a host.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("api_tokens")
    @classmethod
    def _tokens_parse(cls, value: SecretStr | None) -> SecretStr | None:
        # Refused at start-up, saying which entry is wrong (never showing a token).
        parse_api_tokens(value.get_secret_value() if value else "")
        return value

    @field_validator("notify_allowed_recipients")
    @classmethod
    def _recipients_parse(cls, value: str) -> str:
        AllowedRecipients.parse(value)  # refused at start-up, saying which entry is wrong
        return value

    @property
    def allowed_recipients(self) -> AllowedRecipients:
        return AllowedRecipients.parse(self.notify_allowed_recipients)

    @property
    def model(self) -> str:
        """The litellm model string runs use unless they name their own."""
        return self.agent_model or OFFLINE_MODEL

    def model_allowed(self, model: str) -> bool:
        """Whether a run may ask for `model` (AGENT_MODEL always, others per the allow-list)."""
        if model == self.model:
            return True
        patterns = [p.strip() for p in self.agent_allowed_models.split(",") if p.strip()]
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in patterns)

    @property
    def tokens(self) -> list[ApiToken]:
        return parse_api_tokens(self.api_tokens.get_secret_value() if self.api_tokens else "")

    def unauthenticated_exposure(self, host: str) -> str | None:
        """Why the service must not be reachable on `host` as configured, or None: without
        tokens, anyone who reaches it could make it email any text to any address."""
        if self.tokens or self.allow_unauthenticated or is_loopback(host):
            return None
        return (
            f"{host} is not a loopback address and API_TOKENS is unset, so anyone who reaches "
            "it could make the service email any text to any address. Set API_TOKENS to a long "
            "random token (e.g. `openssl rand -hex 32`), or ALLOW_UNAUTHENTICATED=true to serve "
            "without tokens"
        )

    @property
    def offline(self) -> bool:
        return self.agent_model is None

    @property
    def outbox_path(self) -> Path:
        return self.outbox_dir if self.outbox_dir is not None else self.data_dir / "outbox"

    @property
    def effective_smtp_port(self) -> int:
        if self.smtp_port is not None:
            return self.smtp_port
        if self.smtp_tls:
            return 465
        return 587 if self.smtp_starttls else 25
