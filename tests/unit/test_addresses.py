"""Addresses in the one form subscriptions store, and NOTIFY_ALLOWED_RECIPIENTS matched in it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.addresses import AllowedRecipients, needs_smtputf8, normalize_address
from app.config import Settings


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("Me@Example.COM", "me@example.com"),
        ("me@bücher.example", "me@xn--bcher-kva.example"),
        ("me@XN--BCHER-KVA.example", "me@xn--bcher-kva.example"),
        # A non-ASCII local part keeps its case (only its server knows what case means there);
        # its domain is IDNA all the same.
        ("Üser@Exämple.com", "Üser@xn--exmple-cua.com"),
    ],
)
def test_normalize_address(given: str, stored: str) -> None:
    assert normalize_address(given) == stored


def test_only_a_non_ascii_local_part_needs_smtputf8() -> None:
    assert needs_smtputf8("üser@xn--exmple-cua.com")
    assert not needs_smtputf8(normalize_address("user@exämple.com"))


def test_an_empty_list_allows_anyone() -> None:
    assert AllowedRecipients.parse(" , ").anyone
    assert AllowedRecipients.parse("").allows("anyone@example.com")


def test_entries_are_normalised_as_subscriptions_are() -> None:
    allowed = AllowedRecipients.parse("Boss@Example.com,*@BÜCHER.example")
    assert allowed.addresses == {"boss@example.com"}
    assert allowed.domains == {"xn--bcher-kva.example"}
    assert allowed.allows("BOSS@example.com")
    assert allowed.allows("leser@Bücher.example")
    assert not allowed.allows("leser@sub.bücher.example")
    assert not allowed.allows("not an address")


@pytest.mark.parametrize("entry", ["boss", "*@", "*.example.com", "@example.com", "a@b@c.com"])
def test_a_wrong_entry_is_refused_at_start_up_by_name(entry: str) -> None:
    with pytest.raises(ValidationError, match="neither an email address nor a"):
        Settings(notify_allowed_recipients=f"ok@example.com,{entry}")
