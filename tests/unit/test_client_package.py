"""The Python client stays a package of its own: it imports only the standard library, httpx and
pydantic (its declared dependencies, which the service's distribution has too), nothing of the
service. (tests/unit/test_layout.py keeps the CLI's client commands, app/console/, off the
service's internals.)"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "python"
DEPENDENCIES = {"httpx", "pydantic"}


def top_level_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
    return names


def requirement_names(requirements: list[str]) -> set[str]:
    return {
        requirement.split(">")[0].split("=")[0].split("[")[0].split(";")[0].strip().lower()
        for requirement in requirements
    }


def test_the_client_imports_only_its_dependencies() -> None:
    allowed = set(sys.stdlib_module_names) | DEPENDENCIES | {"agent_notify_client"}
    for path in sorted((CLIENT / "agent_notify_client").glob("*.py")):
        assert top_level_imports(path) <= allowed, path.name


def test_the_client_declares_them_and_the_service_has_them() -> None:
    client = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    assert requirement_names(client["dependencies"]) == DEPENDENCIES
    service = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert requirement_names(service["dependencies"]) >= DEPENDENCIES
