"""docs/configuration.md lists every setting, as the Settings class describes it; empty
variables count as unset."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from app.config import Settings
from scripts import config_docs


def test_the_configuration_page_is_what_the_settings_class_says() -> None:
    expected = config_docs.render()
    assert config_docs.PAGE.read_text() == expected, (
        "docs/configuration.md is out of date: run `python -m scripts.config_docs` "
        "(or `make config-docs`) and commit the page"
    )


def test_every_setting_has_a_row() -> None:
    page = config_docs.render()
    for name in Settings.model_fields:
        assert f"| `{name.upper()}` |" in page, name


def test_a_field_without_a_description_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    field = Settings.model_fields["log_level"]
    monkeypatch.setattr(field, "description", None)
    with pytest.raises(ValueError, match=r"Settings\.log_level has no description"):
        config_docs.render()


def test_the_check_mode_says_when_the_page_is_stale(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text("# Configuration\n")
    monkeypatch.setattr(config_docs, "PAGE", stale)
    assert config_docs.main(["--check"]) == 1
    assert config_docs.main([]) == 0
    assert config_docs.main(["--check"]) == 0


def test_defaults_are_shown_as_one_would_type_them() -> None:
    fields = Settings.model_fields
    assert config_docs.default_text("agent_model", fields["agent_model"]) == "unset"
    assert config_docs.default_text("agent_lean_calls", fields["agent_lean_calls"]) == "`true`"
    assert config_docs.default_text("agent_allowed_models", fields["agent_allowed_models"]) == (
        "empty"
    )
    assert config_docs.default_text("lease_seconds", fields["lease_seconds"]) == "`15`"
    assert config_docs.default_text("retention", fields["retention"]) == "`604800` (7 days)"


def test_an_empty_variable_is_an_unset_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # docker compose passes VAR= for a variable the shell and .env leave unset.
    for name in ("SMTP_PORT", "RETENTION", "AGENT_MODEL", "SMTP_STARTTLS", "API_TOKENS"):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("RUNNER_CONCURRENCY", "8")
    settings = Settings()
    assert settings.smtp_port is None
    assert settings.retention == timedelta(days=7)
    assert settings.agent_model is None
    assert settings.smtp_starttls is False
    assert settings.tokens == []
    assert settings.runner_concurrency == 8
