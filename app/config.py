"""Settings: every knob is an environment variable with a safe default."""

from __future__ import annotations

import fnmatch
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

OFFLINE_MODEL = "agent-notify-offline/echo"
# Workflow keys and promise names: URL-safe, 1 to 256 characters.
KEY_PATTERN = r"^[A-Za-z0-9._~-]{1,256}$"


class Settings(BaseSettings):
    """Read once at start-up; environment variable names are the upper-cased field names."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    # Where the service listens.
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)

    # Postgres. Unset: an embedded server with its data under DATA_DIR/pg.
    database_url: str | None = None
    data_dir: Path = Path(".data")
    db_pool_size: int = Field(default=10, ge=1)
    migrate_on_start: bool = True

    # The agent (litellm). Unset AGENT_MODEL: the built-in offline model answers.
    agent_model: str | None = None
    agent_api_base: str | None = None
    agent_api_key: SecretStr | None = None
    agent_instructions: str = "You are a helpful assistant."
    agent_timeout_seconds: float = Field(default=600.0, gt=0)
    # OpenAI-protocol models skip litellm.acompletion's logging and cost calculation
    # (app/agent.py); false: every call goes through litellm.acompletion.
    agent_lean_calls: bool = True
    # Models a run may choose besides AGENT_MODEL (comma-separated, * wildcards); the operator's
    # keys pay for them, so none by default.
    agent_allowed_models: str = ""

    # Email. Unset SMTP_HOST: messages are written as .eml files to OUTBOX_DIR.
    smtp_host: str | None = None
    smtp_port: int | None = Field(default=None, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_tls: bool = False
    smtp_timeout_seconds: float = Field(default=30.0, gt=0)
    mail_from: str = "agent-notify <agent-notify@localhost>"
    outbox_dir: Path | None = None

    # Durability: leases, polling and retries.
    lease_seconds: float = Field(default=15.0, gt=0)
    poll_interval_seconds: float = Field(default=5.0, gt=0)
    retry_initial_seconds: float = Field(default=0.5, gt=0)
    retry_max_seconds: float = Field(default=60.0, gt=0)
    retry_max_attempts: int = Field(default=30, ge=1)
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    notify_on_failure: bool = True
    # A subscription still waiting after this long (its task never finished) expires.
    subscription_ttl_seconds: float = Field(default=7 * 24 * 3600.0, gt=0)

    # Capacity of one process.
    runner_concurrency: int = Field(default=64, ge=1)
    delivery_concurrency: int = Field(default=32, ge=1)

    # HTTP limits and protection.
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    max_query_chars: int = Field(default=32_000, ge=1)
    max_subscriptions_per_workflow: int = Field(default=1000, ge=1)
    # Subscriptions one client (API token, else IP address) may create per minute; 0: no limit.
    subscribe_rate_per_minute: int = Field(default=120, ge=0)
    # The longest a request may wait for a result (GET …/output?timeout=).
    max_wait_seconds: float = Field(default=300.0, gt=0)
    # Comma-separated bearer tokens; when set, every endpoint but the probes requires one.
    api_tokens: SecretStr | None = None
    metrics_public: bool = False

    # Retention: finished workflows (with promises and subscriptions) are deleted after this.
    retention: timedelta = Field(default=timedelta(days=7), gt=timedelta(0))
    # How long an Idempotency-Key's response is kept for replay.
    idempotency_ttl: timedelta = Field(default=timedelta(hours=24), gt=timedelta(0))

    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("agent_model", "agent_api_base", "smtp_host", "database_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # docker-compose and shells often pass VAR= for "not set".
        if isinstance(value, str) and not value.strip():
            return None
        return value

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
    def tokens(self) -> list[str]:
        raw = self.api_tokens.get_secret_value() if self.api_tokens else ""
        return [token.strip() for token in raw.split(",") if token.strip()]

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
