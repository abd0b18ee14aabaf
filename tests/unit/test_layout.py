"""The code's shape: layers that only import downwards, every statement named once and used,
SQL nowhere but the data gateway, and modules and functions of a readable size."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.db.gateway import QUERIES

APP = Path(__file__).resolve().parents[2] / "app"

# What each part of app/ may import from app/ besides itself: a part, or one module of one.
LEAVES = {
    "app",
    "app.addresses",
    "app.tokens",
    "app.mcp_config",
    "app.flow_config",
    "app.config",
    "app.server_settings",
    "app.postgres_config",
    "app.errors",
    "app.states",
    "app.logs",
    "app.metrics",
    "app.tracing",
}
ALLOWED: dict[str, set[str] | None] = {
    "app.db": set(),
    "app.engine": {"app.db"},
    "app.llm": set(),
    "app.agent": {"app.llm"},
    "app.notify": set(),
    "app.workflows": {"app.db", "app.engine", "app.llm", "app.agent", "app.notify"},
    # The API calls the workflows' facade; of the layers below it reads only the typed rows
    # and how to tell a database outage (503) from a bug.
    "app.api": {"app.workflows", "app.db.rows", "app.db.step_rows", "app.db.connection"},
    # The HTTP server's connection guard, around uvicorn's protocol: reads the settings only.
    "app.server": set(),
    # The CLI's client commands: the service only through its HTTP API (agent_notify_client).
    "app.console": set(),
    "app.main": None,  # the composition root: anything
    "app.cli": None,
}
# Modules on their way into a part.
MOVING: dict[str, str] = {}


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(APP.rglob("*.py")):
        parts = path.relative_to(APP.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def part_of(module: str) -> str:
    if module in LEAVES:
        return "leaf"
    for moving, part in MOVING.items():
        if within(module, moving):
            return part
    for part in ALLOWED:
        if within(module, part):
            return part
    raise AssertionError(f"{module} belongs to no part of the layout")


def imports_of(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def allowed(importer: str, imported: str) -> bool:
    own, theirs = part_of(importer), part_of(imported)
    if theirs == "leaf":
        return True
    if own == "leaf":
        return False
    rules = ALLOWED[own]
    if rules is None or own == theirs:
        return True
    return any(within(imported, rule) or rule == theirs for rule in rules)


def test_layers_only_import_downwards() -> None:
    wrong = [
        f"{name} imports {imported}"
        for name, path in modules()
        for imported in imports_of(path)
        if within(imported, "app") and not allowed(name, imported)
    ]
    assert wrong == []


def test_every_package_says_what_it_may_import() -> None:
    for package in ("db", "engine", "workflows", "api"):
        docstring = ast.get_docstring(ast.parse((APP / package / "__init__.py").read_text()))
        assert docstring is not None, package
        assert "May import" in docstring or "may import" in docstring, package


def test_every_named_statement_is_used_and_every_used_one_exists() -> None:
    source = "\n".join(path.read_text() for _name, path in modules())
    used = set(re.findall(r"""(?:fetch|fetchrow|fetchval|execute)\(\s*"([a-z_]+)\"""", source))
    assert used - set(QUERIES) == set(), "used but not in queries.sql"
    assert set(QUERIES) - used == set(), "in queries.sql but never used"


SQL = re.compile(r"\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM)\b")


def test_no_sql_outside_the_data_gateway() -> None:
    """Statements live in app/db/queries.sql; the LISTEN connection's keep-alive is the one
    statement on the driver's own API."""
    outside = [
        name
        for name, path in modules()
        if not name.startswith("app.db")
        and SQL.search(path.read_text())
        and name != "app.engine.listener"
    ]
    assert outside == []


@pytest.mark.parametrize(("name", "path"), list(modules()), ids=lambda value: str(value))
def test_modules_and_functions_stay_readable(name: str, path: Path) -> None:
    lines = path.read_text().count("\n")
    assert lines <= 420, f"{name} has {lines} lines: it is doing two jobs"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            assert length <= 80, f"{name}.{node.name} has {length} lines"
