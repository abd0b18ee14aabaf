"""Every error code the service can answer with is listed in README.md and has a /docs example
that is one of them: users' scripts match on these codes."""

from __future__ import annotations

import re
from pathlib import Path

from app.api.errors import ERROR_EXAMPLES, HTTP_CODES

ROOT = Path(__file__).resolve().parents[2]
# Where a code is given: `code="…"` / `code = "…"` (class defaults, raises, Problem(...)),
# error_response(status, "…"), and HTTP_CODES' fallback for other statuses.
CODE_LITERALS = [
    re.compile(r'\bcode\s*=\s*"([a-z_]+)"'),
    re.compile(r'\berror_response\(\s*[^,()]+,\s*"([a-z_]+)"'),
    re.compile(r'\bHTTP_CODES\.get\([^,()]+,\s*"([a-z_]+)"'),
]


def emitted_codes() -> set[str]:
    codes = set(HTTP_CODES.values())
    for source in (ROOT / "app").rglob("*.py"):
        text = source.read_text()
        for pattern in CODE_LITERALS:
            codes.update(pattern.findall(text))
    return codes


def readme_error_paragraph() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("Keys are 1–256 characters")
    return readme[start : readme.index("\n\n", start)]


def test_the_search_finds_codes_of_every_kind() -> None:
    codes = emitted_codes()
    # One of each way a code is given, so that a change in style cannot empty the search.
    assert {"not_found", "key_conflict", "invalid_key", "unauthorized", "http_error"} <= codes
    assert {"malformed_json", "method_not_allowed", "already_finished", "rate_limited"} <= codes


def test_readme_lists_every_error_code() -> None:
    listed = set(re.findall(r"`([a-z_]+)`", readme_error_paragraph()))
    missing = emitted_codes() - listed
    assert not missing, f"README.md's error paragraph does not list {sorted(missing)}"


def test_docs_examples_are_codes_the_service_answers_with() -> None:
    unknown = set(ERROR_EXAMPLES) - emitted_codes()
    assert not unknown, f"/docs shows examples of codes nothing answers with: {sorted(unknown)}"
    for code, (status, message) in ERROR_EXAMPLES.items():
        assert 400 <= status < 600, code
        assert message, code
